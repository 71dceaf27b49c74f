// ACPI tables for a PC-compatible (not hardware-reduced) machine: RSDP,
// RSDT/XSDT, FADT (+FACS), DSDT (with the PCI host bridge \_SB.PCI0 and
// motherboard resources), MADT and MCFG.
//
// Generation and placement are separate steps: generate_acpi_tables()
// produces address-independent byte vectors (pointer fields zero), and
// layout_acpi() assigns addresses, fills the pointers and checksums. The
// zero-page/PVH boot path uses both via build_acpi(); the fw_cfg path
// (fw_cfg_files.h) hands the generated tables to the firmware, which
// places them and fills the pointers (field offsets below).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

struct AcpiConfig {
    uint32_t ncpus;
    // PM1a_EVT at base (4 bytes), PM1a_CNT at base+4 (2 bytes), PM_TMR at
    // base+8 (4 bytes, 32-bit counter).
    uint16_t pm_io_base = 0x600;
    uint8_t sci_irq = 9;
    uint16_t reset_port = 0xcf9;
    uint8_t reset_value = 0x06;
    uint8_t s5_sleep_type = 5;  // SLP_TYP written to PM1a_CNT for soft-off
    uint8_t rtc_century_index = 0x32;
    // The CMOS RTC (index/data ports at rtc_port, rtc_port + 1), described
    // as PNP0B00 with its ISA IRQ, so the OS's driver binds with its
    // interrupt (Linux: rtc_cmos with alarms). Port 0: not described.
    uint16_t rtc_port = 0x70;
    uint8_t rtc_irq = 8;

    // PCI host bridge (segment 0, bus 0 only). When `pci` is false neither
    // \_SB.PCI0 nor the MCFG is generated. The windows go into PCI0's _CRS
    // and must contain every BAR the VMM assigns, so that the OS keeps the
    // assignments instead of reallocating them.
    bool pci = true;
    uint64_t pci_ecam_base = kPciEcamBase;  // MCFG allocation for bus 0
    uint64_t pci_mmio32_start = kPciMmio32Start;
    uint64_t pci_mmio32_end = kPciMmio32End;  // exclusive
    // The 64-bit window; the VMM passes pci_mmio64_window(ram). The default
    // is only right when RAM ends at or below 4 GiB. Size 0: no window.
    uint64_t pci_mmio64_start = 4 * GiB;
    uint64_t pci_mmio64_size = kPciMmio64Size;

    // COM1 for the SPCR (the console a headless OS, Windows' EMS/SAC
    // included, should use); port 0: no SPCR.
    uint16_t serial_port = 0x3f8;
    uint8_t serial_irq = 4;

    // pvpanic I/O port, described as ACPI device QEMU0001 (what Linux's
    // pvpanic-mmio driver and Windows look for). 0: no pvpanic device.
    uint16_t pvpanic_port = 0;
};

struct AcpiTables {
    uint64_t rsdp_gpa;
    std::vector<Blob> blobs;
};

// The tables before placement. Every table is complete and checksummed
// except for the pointers layout_acpi() fills in.
struct AcpiTableSet {
    std::vector<uint8_t> fadt;  // FIRMWARE_CTRL, DSDT and X_DSDT still 0
    std::vector<uint8_t> facs;  // no checksum, 64-byte aligned when placed
    std::vector<uint8_t> dsdt;
    // Further tables listed in the RSDT/XSDT after the FADT: the MADT, and
    // the MCFG when the machine has PCI.
    std::vector<std::vector<uint8_t>> others;
};

AcpiTableSet generate_acpi_tables(const AcpiConfig& cfg);

// Places RSDP at `base` (16-byte aligned) followed by RSDT, XSDT, FADT,
// FACS, DSDT and the other tables, and fixes up pointers and checksums.
// Throws if base is misaligned or the tables would cross 1 MiB (when base
// is below it; the guest finds the RSDP by scanning 0xe0000..0xfffff) or
// 4 GiB (the RSDT and FADT hold 32-bit pointers).
AcpiTables layout_acpi(const AcpiTableSet& tables, uint64_t base);

// generate + layout. Throws if ncpus is 0 or above 254.
AcpiTables build_acpi(const AcpiConfig& cfg, uint64_t base = kBiosAreaStart);

// Individual tables, exposed for tests and for the fw_cfg path.
std::vector<uint8_t> build_fadt(const AcpiConfig& cfg);
std::vector<uint8_t> build_facs();
std::vector<uint8_t> build_dsdt(const AcpiConfig& cfg);
std::vector<uint8_t> build_madt(const AcpiConfig& cfg);
std::vector<uint8_t> build_mcfg(const AcpiConfig& cfg);
// WAET: tells Windows that the RTC and the PM timer need no workarounds
// (reading them is one exit each, no "enlightened" care needed).
std::vector<uint8_t> build_waet();
// SPCR (revision 2): COM1 as a 16550 at cfg.serial_port / IRQ, 115200 8N1.
std::vector<uint8_t> build_spcr(const AcpiConfig& cfg);
// The AML of \_SB.PCI0 and the motherboard resources device (part of the
// DSDT when cfg.pci is set).
std::vector<uint8_t> build_pci_aml(const AcpiConfig& cfg);

// The root tables and the FADT's pointers, checksummed. Addresses are GPAs
// for layout_acpi() and offsets inside etc/acpi/tables for the fw_cfg path
// (where the firmware adds the load address). Throw if a 32-bit field
// cannot hold its value.
void set_fadt_pointers(std::span<uint8_t> fadt, uint64_t facs, uint64_t dsdt);
std::vector<uint8_t> build_rsdt(std::span<const uint64_t> entries);
std::vector<uint8_t> build_xsdt(std::span<const uint64_t> entries);
std::vector<uint8_t> build_rsdp(uint64_t rsdt, uint64_t xsdt);  // revision 2

namespace acpi {
inline constexpr std::size_t kHeaderSize = 36;
inline constexpr std::size_t kChecksumOff = 9;  // in every table header
inline constexpr std::size_t kRsdpSize = 36;
inline constexpr std::size_t kRsdpV1Size = 20;          // the ACPI 1.0 part
inline constexpr std::size_t kRsdpChecksumOff = 8;     // over bytes 0..19
inline constexpr std::size_t kRsdpRsdtOff = 16;
inline constexpr std::size_t kRsdpXsdtOff = 24;
inline constexpr std::size_t kRsdpExtChecksumOff = 32;  // over all 36 bytes
inline constexpr std::size_t kFacsSize = 64;

// FADT (revision 6) field offsets.
inline constexpr std::size_t kFadtSize = 276;
inline constexpr std::size_t kFadtFirmwareCtrl = 36;
inline constexpr std::size_t kFadtDsdt = 40;
inline constexpr std::size_t kFadtSciInt = 46;
inline constexpr std::size_t kFadtSmiCmd = 48;
inline constexpr std::size_t kFadtPm1aEvtBlk = 56;
inline constexpr std::size_t kFadtPm1aCntBlk = 64;
inline constexpr std::size_t kFadtPmTmrBlk = 76;
inline constexpr std::size_t kFadtPm1EvtLen = 88;
inline constexpr std::size_t kFadtPm1CntLen = 89;
inline constexpr std::size_t kFadtPmTmrLen = 91;
inline constexpr std::size_t kFadtPLvl2Lat = 96;
inline constexpr std::size_t kFadtPLvl3Lat = 98;
inline constexpr std::size_t kFadtCentury = 108;
inline constexpr std::size_t kFadtIapcBootArch = 109;
inline constexpr std::size_t kFadtFlags = 112;
inline constexpr std::size_t kFadtResetReg = 116;
inline constexpr std::size_t kFadtResetValue = 128;
inline constexpr std::size_t kFadtMinorVersion = 131;
inline constexpr std::size_t kFadtXFirmwareCtrl = 132;
inline constexpr std::size_t kFadtXDsdt = 140;
inline constexpr std::size_t kFadtXPm1aEvtBlk = 148;
inline constexpr std::size_t kFadtXPm1aCntBlk = 172;
inline constexpr std::size_t kFadtXPmTmrBlk = 208;

inline constexpr uint32_t kFadtWbinvd = 1u << 0;
inline constexpr uint32_t kFadtProcC1 = 1u << 2;
inline constexpr uint32_t kFadtSlpButton = 1u << 5;
inline constexpr uint32_t kFadtTmrValExt = 1u << 8;
inline constexpr uint32_t kFadtResetRegSup = 1u << 10;
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
inline constexpr uint16_t kBootArchLegacyDevices = 1u << 0;
inline constexpr uint16_t kBootArch8042 = 1u << 1;

// Generic Address Structure: space id, bit width, bit offset, access size,
// 64-bit address.
inline constexpr std::size_t kGasSize = 12;
inline constexpr uint8_t kGasSystemIo = 1;

// MADT.
inline constexpr uint32_t kMadtPcatCompat = 1;
inline constexpr uint8_t kMadtLocalApic = 0;
inline constexpr uint8_t kMadtIoApic = 1;
inline constexpr uint8_t kMadtIntSrcOverride = 2;
inline constexpr uint8_t kMadtLocalApicNmi = 4;

// MCFG: 8 reserved bytes after the header, then 16-byte allocations
// (base address, segment group, start bus, end bus, 4 reserved).
inline constexpr std::size_t kMcfgAllocOff = 44;
inline constexpr std::size_t kMcfgAllocSize = 16;
}  // namespace acpi

}  // namespace vmm::arch::x86
