// The BIOS E820 memory map as both boot paths report it (zero page table
// for bzImage, hvm_memmap_table for PVH; both use the E820 type values).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
inline constexpr uint32_t kE820Acpi = 3;

struct E820Entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

// Map for the RAM regions of ram_layout(): the first region must start at
// GPA 0 and be at least 1 MiB. Produces
//   RAM      [0, 0x9fc00)            conventional memory
//   reserved [0x9fc00, 0xa0000)      EBDA: holds the MP table
//   reserved [0xe0000, 0x100000)     BIOS area: holds the ACPI tables
//   RAM      [0x100000, end of first region)   (omitted if empty)
//   reserved [kPciEcamBase, +kPciEcamSize)     PCI ECAM (MMCONFIG)
//   RAM      every further region as is
// The ACPI tables sit in "reserved" rather than "ACPI reclaimable" memory
// because the RSDP must stay findable by the 0xe0000..0xfffff scan, which
// only works if the OS never reuses that range.
// The legacy VGA/ROM hole [0xa0000, 0xe0000) is reported as nothing.
// The ECAM range is reserved because Linux only trusts the MCFG table's
// MMCONFIG area when the firmware map reserves it ("not reserved in E820"
// otherwise, and it falls back to port 0xCF8 accesses). The rest of the
// MMIO hole stays unlisted so the OS may place BARs there.
std::vector<E820Entry> build_e820(std::span<const RamRegion> ram);

// The map handed to firmware (fw_cfg etc/e820): every RAM region whole,
// plus the KVM identity-map/TSS pages reserved. The firmware reserves its
// own areas (EBDA, BIOS, ECAM) in the map it gives the OS.
std::vector<E820Entry> firmware_e820(std::span<const RamRegion> ram);

// Throws vmm::Error unless entries are non-empty, sorted by address,
// non-overlapping, non-empty and do not wrap around 2^64.
void validate_e820(std::span<const E820Entry> entries);

}  // namespace vmm::arch::x86
