// SMBIOS tables (DMTF DSP0134): what `dmidecode`, /sys/class/dmi/id and
// Windows read about the machine (vendor, product, serial, UUID, CPUs,
// memory).
//
// The structure table is built as address-independent data; an entry point
// then says where it lies. Two placements use it:
//   - direct kernel boot: smbios_blobs() puts the 3.0 (64-bit, "_SM3_") and
//     the 2.1 (32-bit, "_SM_") entry points and the table in the BIOS area
//     at kSmbiosAddr, where Linux and older guests scan for them;
//   - firmware boot: the table and a 3.0 entry point go to the firmware as
//     fw_cfg files (fw_cfg_files.h); SeaBIOS and OVMF place them, fill in
//     the address, and add their own type 0 unless the table has one.
//
// Structures: 0 BIOS (only when asked for, see SmbiosConfig::bios), 1
// system, 3 chassis, 4 one per vCPU, 16 the memory array, 17 one memory
// device, 19 one mapped range per RAM region, 32 boot status, 127 end.
// Handles follow QEMU's scheme, type << 8 plus an index, so a firmware's
// own type 0 (handle 0) never collides with ours.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

// Where direct boot puts SMBIOS: the upper half of the F segment (the MP
// table keeps 0xF0000..kSmbiosAddr). Entry points must be 16-byte aligned
// in 0xF0000..0xFFFFF, where Linux's dmi_scan looks without EFI.
inline constexpr uint64_t kSmbiosAddr = 0xf8000;
inline constexpr uint64_t kSmbiosEnd = 0x100000;

// A user-settable SMBIOS string: printable ASCII, at most this long.
inline constexpr std::size_t kSmbiosMaxString = 64;
// The one rule for such strings, for the builder and the option check,
// which each say what went wrong in their own terms.
enum class SmbiosStringError { None, TooLong, NotPrintable };
SmbiosStringError smbios_string_error(std::string_view s);

struct SmbiosStrings {
    // Type 0 (BIOS): only with `bios`; a firmware adds its own otherwise.
    bool bios = false;
    std::string bios_vendor = "vmm";
    std::string bios_version = "1.0";
    std::string bios_date = "01/01/2026";  // MM/DD/YYYY
    // Type 1 (system)
    std::string manufacturer = "vmm";
    std::string product = "KVM Virtual Machine";
    std::string version = "1.0";
    std::string serial;  // "" leaves the field empty (string 0)
    std::string sku;
    std::string family = "Virtual Machine";
    // Type 3 (chassis)
    std::string chassis_manufacturer = "vmm";
    std::string chassis_version;
    std::string chassis_serial;
    std::string chassis_asset;
    std::string chassis_sku;
};

struct SmbiosConfig {
    SmbiosStrings strings;
    // Type 1 UUID in its text byte order ("0011..." -> bytes 00 11 ...);
    // none: all zero, which SMBIOS defines as "present but not set".
    std::optional<std::array<uint8_t, 16>> uuid;
    uint32_t cpus = 1;
    // CPUID leaf 1 EAX (signature) and EDX (features), for type 4.
    uint32_t cpuid_signature = 0;
    uint32_t cpuid_features = 0;
    std::vector<RamRegion> ram;  // type 19 per region, type 16/17 for the total
};

struct SmbiosTable {
    std::vector<uint8_t> bytes;    // every structure, 127 last
    uint16_t structures = 0;       // count, for the 2.1 entry point
    uint16_t max_structure = 0;    // largest structure with its strings
};

// Throws vmm::Error (naming the field) for a string that is not printable
// ASCII or longer than kSmbiosMaxString, or a table over 64 KiB.
SmbiosTable build_smbios_table(const SmbiosConfig& cfg);

// SMBIOS 3.0 entry point (24 bytes, checksummed) for a table at `table_addr`.
std::vector<uint8_t> smbios3_entry_point(const SmbiosTable& t, uint64_t table_addr);
// SMBIOS 2.1 entry point (31 bytes, both checksums) for a table at a 32-bit
// address; it announces version 2.8.
std::vector<uint8_t> smbios21_entry_point(const SmbiosTable& t, uint32_t table_addr);

// Direct boot: the 3.0 entry point at kSmbiosAddr, the 2.1 one 32 bytes on,
// the table after them. Throws vmm::Error if it does not fit below kSmbiosEnd.
std::vector<Blob> smbios_blobs(const SmbiosTable& t);

// "01234567-89ab-cdef-0123-456789abcdef" (either case) as 16 bytes; nullopt
// if malformed.
std::optional<std::array<uint8_t, 16>> parse_uuid(const std::string& s);

}  // namespace vmm::arch::x86
