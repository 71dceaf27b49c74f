// Guest-physical memory map of an x86-64 VM, shared by every boot path.
//
// Low memory (below 1 MiB) holds the small structures a VMM hands to the
// guest before its first instruction; nothing here is reachable by the
// guest kernel's own loader (it starts at >= 1 MiB), so the regions never
// collide with the kernel image, the initramfs or each other:
//
//   0x000500  GDT            (6 x 8 bytes: 0x500..0x52f, see cpu.h)
//   0x000530  IDT            (empty; one zero gate)
//   0x006000  PVH hvm_start_info, then modlist (0x6040), memmap (0x6080)
//   0x007000  bzImage zero page (struct boot_params, 4 KiB)
//   0x008ff0  boot stack top (grows down into 0x8000..0x8fef)
//   0x009000  PML4, PDPT at 0xa000, four PDs at 0xb000..0xefff
//   0x020000  kernel command line (up to 64 KiB)
//   0x09fc00  EBDA (last KiB of conventional memory): reserved in E820, unused
//   0x0e0000  ACPI tables, RSDP first, up to 0xeffff
//   0x0f0000  MP table (0xe0000 up to 1 MiB is reserved in E820)
//   0x0f8000  SMBIOS entry points and table (smbios.h), up to 1 MiB
//   0x100000  kernel / initramfs / general RAM
//
// RAM above 3 GiB is moved to 4 GiB so that [3 GiB, 4 GiB) is free for
// MMIO (PCI BARs, IOAPIC, LAPIC):
//
//   0xC0000000  32-bit PCI MMIO window (BARs), up to 0xE0000000
//   0xE0000000  PCI ECAM, 1 MiB (bus 0 only; reserved in E820)
//   0xFEC00000  IOAPIC
//   0xFEE00000  LAPIC
//   0xFEFFC000  KVM identity-map page, then the KVM TSS (3 pages); below
//               any firmware image (those end at 4 GiB, up to 16 MiB)
//
// The 64-bit PCI MMIO window follows RAM above 4 GiB (pci_mmio64_window).
// PCI I/O BARs use ports [0xC000, 0x10000).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vmm::arch::x86 {

inline constexpr uint64_t kGdtAddr = 0x500;
// The IDT cannot start at 0x520: the boot GDT needs 48 bytes (null,
// 32-bit code, 64-bit code, data and a 16-byte long-mode TSS descriptor),
// i.e. up to 0x52f; the IDT follows it.
inline constexpr uint64_t kIdtAddr = 0x530;
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;
inline constexpr uint64_t kPvhModlistAddr = 0x6040;
inline constexpr uint64_t kPvhMemmapAddr = 0x6080;
inline constexpr uint64_t kPvhAreaEnd = 0x7000;
inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kBootStackTop = 0x8ff0;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;  // four PDs: 0xb000..0xefff
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMaxBytes = 0x10000;  // including the NUL
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kEbdaEnd = 0xa0000;
inline constexpr uint64_t kBiosAreaStart = 0xe0000;  // ACPI tables: 0xe0000..0xeffff
// The MP table lives in the upper BIOS area, which Linux scans for the
// floating pointer, because the EBDA's 1 KiB would only hold 40 processors.
inline constexpr uint64_t kMpTableAddr = 0xf0000;
inline constexpr uint64_t kMpTableEnd = 0xf8000;  // SMBIOS follows (smbios.h)
inline constexpr uint64_t kHighMemStart = 0x100000;
inline constexpr uint64_t kMmioHoleStart = 0xC0000000;
inline constexpr uint64_t kMmioHoleEnd = 0x100000000;
inline constexpr uint64_t kIoapicAddr = 0xfec00000;
inline constexpr uint64_t kLapicAddr = 0xfee00000;

inline constexpr uint64_t KiB = 1024;
inline constexpr uint64_t MiB = 1024 * KiB;
inline constexpr uint64_t GiB = 1024 * MiB;

// KVM_SET_IDENTITY_MAP_ADDR (one page) and KVM_SET_TSS_ADDR (three pages).
// Where QEMU puts them: clear of a firmware image of up to 16 MiB at the
// top of the 32-bit space. Firmware must be told (E820) they are reserved.
inline constexpr uint64_t kKvmIdentityMapAddr = 0xfeffc000;
inline constexpr uint64_t kKvmTssAddr = 0xfeffd000;
inline constexpr uint64_t kKvmReservedSize = 4 * 4 * KiB;
// The highest address a firmware image may start at: the image ends at 4 GiB.
inline constexpr uint64_t kFirmwareMaxSize = kMmioHoleEnd - (kKvmIdentityMapAddr + kKvmReservedSize);

// ---- PCI (one host bridge, bus 0 only)
inline constexpr uint64_t kPciMmio32Start = 0xC0000000;
inline constexpr uint64_t kPciMmio32End = 0xE0000000;  // exclusive
inline constexpr uint64_t kPciEcamBase = 0xE0000000;
inline constexpr uint64_t kPciEcamSize = 1 * MiB;  // 32 devices x 8 functions x 4 KiB
inline constexpr uint8_t kPciBusFirst = 0;
inline constexpr uint8_t kPciBusLast = 0;
inline constexpr uint16_t kPciIoStart = 0xC000;
inline constexpr uint32_t kPciIoEnd = 0x10000;  // exclusive
inline constexpr uint64_t kPciMmio64Size = 64 * GiB;
inline constexpr uint64_t kPciMmio64Align = 1 * GiB;

static_assert(kPciMmio32Start >= kMmioHoleStart && kPciMmio32End <= kPciEcamBase);
static_assert(kPciEcamBase + kPciEcamSize <= kIoapicAddr);
static_assert(kIoapicAddr < kLapicAddr && kLapicAddr < kKvmIdentityMapAddr);
static_assert(kKvmTssAddr + 3 * 4 * KiB == kKvmIdentityMapAddr + kKvmReservedSize);

// First GSI of the PCI INTx lines: IOAPIC pins 16..23 are free of ISA IRQs.
inline constexpr uint32_t kPciIntxGsiBase = 16;
inline constexpr uint32_t kPciIntxGsiCount = 8;

// The GSI that `pin` (0 = INTA .. 3 = INTD) of the device in `slot` raises.
// The usual rotation ("swizzle") spreads the slots' INTA lines over the
// eight GSIs: gsi = 16 + ((slot + pin) % 8). The VMM wires device
// interrupts with it and the DSDT's _PRT describes the same mapping.
constexpr uint32_t pci_intx_gsi(unsigned slot, unsigned pin) {
    return kPciIntxGsiBase + (slot + pin) % kPciIntxGsiCount;
}

struct RamRegion {
    uint64_t gpa;
    uint64_t size;
};

// Guest RAM regions for `mem_bytes` of memory: [0, mem) if it fits below
// `low_max` (default: the MMIO hole at 3 GiB), else [0, low_max) plus the
// rest relocated to start at 4 GiB.
// Throws vmm::Error if mem_bytes is below 1 MiB (the low-memory structures
// above need it), not a multiple of 4 KiB (KVM memory slots are page
// granular) or absurdly large.
std::vector<RamRegion> ram_layout(uint64_t mem_bytes, uint64_t low_max = kMmioHoleStart);

// Firmware boot (Q35): SeaBIOS programs the chipset's ECAM window at
// 0xB0000000 and expects RAM below 4 GiB to end there; with that much RAM or
// more, low RAM ends at 2 GiB instead (QEMU's q35 rule, which firmware is
// built around). PCI BARs then go between low RAM's end and the IOAPIC.
inline constexpr uint64_t kQ35EcamBase = 0xB0000000;
inline constexpr uint64_t kQ35EcamSize = 256 * MiB;  // PCIEXBAR's default length: 256 buses
inline constexpr uint64_t kQ35PciMmio32End = kIoapicAddr;
uint64_t q35_low_ram_max(uint64_t mem_bytes);

// The 64-bit PCI MMIO window for 64-bit BARs: it starts at the end of RAM
// (but not below 4 GiB) rounded up to 1 GiB and spans 64 GiB. 64 GiB holds
// many large BARs while keeping the window's end low: it must stay below the
// guest's physical address width (CPUID 0x80000008, 39 bits or more on
// current hosts), or Linux ignores the window. Size and alignment are
// fixed so the window only moves when the RAM size changes.
struct AddrRange {
    uint64_t start;
    uint64_t size;
    uint64_t end() const { return start + size; }  // exclusive
};
AddrRange pci_mmio64_window(std::span<const RamRegion> ram);

// The machine's address map as a whole: RAM, where ECAM starts and the
// PCI BAR windows. Direct kernel boot keeps the VMM's own map (RAM up to
// 3 GiB, BARs assigned by the VMM in [3 GiB, 3.5 GiB), ECAM at 3.5 GiB);
// firmware boot follows the Q35 map the firmware is written for (low RAM
// up to kQ35EcamBase, ECAM there, BARs anywhere up to the IOAPIC, as
// SeaBIOS assigns them top-down from 0xFEC00000).
struct PlatformLayout {
    std::vector<RamRegion> ram;
    uint64_t ecam_base;   // the MCFG's and the E820's ECAM address
    AddrRange pci_mmio32;  // BARs below 4 GiB: ACPI _CRS and the bus decode window
    AddrRange pci_mmio64;
};
// `firmware`: the Q35 map. Debian's SeaBIOS and OVMF both put ECAM at
// 0xB0000000 (fixed in their builds: SeaBIOS's Q35 code, OVMF's
// PcdPciExpressBaseAddress) and their 32-bit BARs above it, up to 0xFC000000
// (OVMF) or the IOAPIC (SeaBIOS).
PlatformLayout platform_layout(uint64_t mem_bytes, bool firmware);

// Bytes to copy into guest RAM at `gpa` before the first vCPU runs.
struct Blob {
    uint64_t gpa;
    std::vector<uint8_t> bytes;
};

// "40 MiB", "1.5 GiB", "3000 bytes": sizes in user-facing error messages.
std::string human_size(uint64_t bytes);

}  // namespace vmm::arch::x86
