// What the kernel finds in memory at its entry point: the bzImage zero page
// (struct boot_params, Linux Documentation/arch/x86/zero-page.rst) or the
// PVH hvm_start_info (Xen include/public/arch-x86/hvm/start_info.h), plus
// the command line both point to.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

struct BootInfoInputs {
    std::span<const RamRegion> ram;
    std::string cmdline;
    uint64_t initrd_gpa = 0, initrd_size = 0;  // size 0: no initramfs
    uint64_t rsdp_gpa = 0;                     // 0: let the guest scan for it
};

// The NUL-terminated command line at kCmdlineAddr, where every boot path
// puts it. Throws if it is longer than k.cmdline_max or contains a NUL.
Blob cmdline_blob(const KernelLayout& k, const std::string& cmdline);

// bzImage: the zero page at kZeroPageAddr and the NUL-terminated command
// line at kCmdlineAddr. Throws if k is not a bzImage, the command line is
// longer than k.cmdline_max or contains a NUL, or the initramfs lies above
// k.initrd_addr_max.
std::vector<Blob> build_boot_params(const KernelLayout& k, const BootInfoInputs& in);

// PVH: hvm_start_info (version 1) at kPvhStartInfoAddr, the module list at
// kPvhModlistAddr (one entry, the initramfs, if any), the memory map at
// kPvhMemmapAddr and the command line at kCmdlineAddr.
std::vector<Blob> build_pvh_start_info(const KernelLayout& k, const BootInfoInputs& in);

// Zero page offsets outside the setup header (zero-page.rst).
namespace zero_page {
inline constexpr std::size_t kAcpiRsdpAddr = 0x070;
inline constexpr std::size_t kExtRamdiskImage = 0x0c0;
inline constexpr std::size_t kExtRamdiskSize = 0x0c4;
inline constexpr std::size_t kExtCmdLinePtr = 0x0c8;
inline constexpr std::size_t kE820Entries = 0x1e8;
inline constexpr std::size_t kE820Table = 0x2d0;
inline constexpr std::size_t kE820EntrySize = 20;  // packed u64 addr, u64 size, u32 type
inline constexpr std::size_t kE820MaxEntries = 128;
inline constexpr std::size_t kSize = 4096;
inline constexpr uint16_t kHeapEnd = 0xfe00;
inline constexpr uint8_t kLoaderUndefined = 0xff;  // type_of_loader: no registered id
inline constexpr uint16_t kProtocolRsdpAddr = 0x020e;
}  // namespace zero_page

// hvm_start_info layout (all little-endian).
namespace pvh {
inline constexpr uint32_t kMagic = 0x336ec578;
inline constexpr uint32_t kVersion = 1;
inline constexpr std::size_t kMagicOff = 0x00;        // u32
inline constexpr std::size_t kVersionOff = 0x04;      // u32
inline constexpr std::size_t kFlagsOff = 0x08;        // u32
inline constexpr std::size_t kNrModulesOff = 0x0c;    // u32
inline constexpr std::size_t kModlistPaddrOff = 0x10;  // u64
inline constexpr std::size_t kCmdlinePaddrOff = 0x18;  // u64
inline constexpr std::size_t kRsdpPaddrOff = 0x20;    // u64
inline constexpr std::size_t kMemmapPaddrOff = 0x28;  // u64 (version >= 1)
inline constexpr std::size_t kMemmapEntriesOff = 0x30;  // u32 (version >= 1)
inline constexpr std::size_t kStartInfoSize = 0x38;
// hvm_modlist_entry: u64 paddr, u64 size, u64 cmdline_paddr, u64 reserved
inline constexpr std::size_t kModlistEntrySize = 32;
// hvm_memmap_table_entry: u64 addr, u64 size, u32 type (E820), u32 reserved
inline constexpr std::size_t kMemmapEntrySize = 24;
inline constexpr std::size_t kMemmapMaxEntries =
    (kPvhAreaEnd - kPvhMemmapAddr) / kMemmapEntrySize;
}  // namespace pvh

}  // namespace vmm::arch::x86
