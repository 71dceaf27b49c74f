// The fw_cfg files through which SeaBIOS and OVMF take the VM's ACPI
// tables and memory map (pure data; devices/fw_cfg.h serves them).
//
// ACPI goes as three files, as QEMU provides them:
//   etc/acpi/tables   FACS (offset 0, so 64-byte aligned once the file is),
//                     DSDT, FADT, t.others in order, RSDT, XSDT; packed
//   etc/acpi/rsdp     the 36-byte RSDP (revision 2)
//   etc/table-loader  the linker script: the firmware allocates both files,
//                     adds each file's load address to the pointer fields
//                     (which hold offsets inside etc/acpi/tables) and then
//                     fills the checksums, whose fields are 0 in the files.
// Command order: the two allocations, then for each table in file order
// its pointers and its checksum, then the RSDP's pointers and checksums.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/smbios.h"

namespace vmm::arch::x86 {

struct FwCfgFile {
    std::string name;
    std::vector<uint8_t> bytes;
};

inline constexpr const char* kFwCfgAcpiTables = "etc/acpi/tables";
inline constexpr const char* kFwCfgAcpiRsdp = "etc/acpi/rsdp";
inline constexpr const char* kFwCfgTableLoader = "etc/table-loader";
inline constexpr const char* kFwCfgE820 = "etc/e820";
inline constexpr const char* kFwCfgSmbiosAnchor = "etc/smbios/smbios-anchor";
inline constexpr const char* kFwCfgSmbiosTables = "etc/smbios/smbios-tables";

// Layout of the table-loader commands: 128 bytes each, little-endian,
// zero padded; file names are 56 bytes, NUL padded.
namespace table_loader {
inline constexpr std::size_t kCommandSize = 128;
inline constexpr std::size_t kNameSize = 56;
inline constexpr uint32_t kAllocate = 1;
inline constexpr uint32_t kAddPointer = 2;
inline constexpr uint32_t kAddChecksum = 3;
inline constexpr uint8_t kZoneHigh = 1;
inline constexpr uint8_t kZoneFseg = 2;  // 0xe0000..0xfffff, where the RSDP scan looks
// ALLOCATE: file, align (power of 2), zone.
inline constexpr std::size_t kAllocFile = 4;
inline constexpr std::size_t kAllocAlign = 60;
inline constexpr std::size_t kAllocZone = 64;
// ADD_POINTER: dest_file[offset .. +size) += load address of src_file.
inline constexpr std::size_t kPointerDest = 4;
inline constexpr std::size_t kPointerSrc = 60;
inline constexpr std::size_t kPointerOffset = 116;
inline constexpr std::size_t kPointerSize = 120;
// ADD_CHECKSUM: file[result] = value making file[start .. +length) sum to 0.
inline constexpr std::size_t kChecksumFile = 4;
inline constexpr std::size_t kChecksumResult = 60;
inline constexpr std::size_t kChecksumStart = 64;
inline constexpr std::size_t kChecksumLength = 68;
}  // namespace table_loader

// etc/acpi/tables, etc/acpi/rsdp and etc/table-loader, in that order.
std::vector<FwCfgFile> acpi_loader_files(const AcpiTableSet& t);

// etc/smbios/smbios-tables (the structures) and etc/smbios/smbios-anchor
// (a 3.0 entry point whose table address is 0): SeaBIOS copies the table
// into its memory and fixes the address and checksum; OVMF installs each
// structure through its SMBIOS protocol. Both add a type 0 of their own
// when the table has none.
std::vector<FwCfgFile> smbios_files(const SmbiosTable& t);

// A device the firmware may boot from, as the `bootorder` file names it.
struct BootDevice {
    enum class Kind { VirtioBlk, VirtioScsiLun, VirtioNet };
    Kind kind;
    unsigned slot;     // PCI slot on bus 0
    uint32_t lun = 0;  // VirtioScsiLun: the LUN on target 0
    int index;         // boot order: lower first
};
// `bootorder`: one OpenFirmware device path per line (QEMU's spelling, which
// SeaBIOS and OVMF match), sorted by index; empty when `devices` is.
std::vector<uint8_t> fw_cfg_bootorder(std::vector<BootDevice> devices);

// etc/e820: packed 20-byte entries {le64 address, le64 length, le32 type}.
std::vector<uint8_t> fw_cfg_e820(std::span<const E820Entry> entries);

}  // namespace vmm::arch::x86
