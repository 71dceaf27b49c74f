// Parsing of the two kernel image formats a direct kernel boot supports:
//  - bzImage, entered through the 64-bit boot protocol (Linux
//    Documentation/arch/x86/boot.rst, protocol >= 2.12);
//  - an uncompressed ELF vmlinux carrying a Xen PVH entry note, entered in
//    32-bit protected mode with an hvm_start_info (Xen's
//    include/public/arch-x86/hvm/start_info.h describes the ABI).
// The file is untrusted: every offset and length read from it is bounds-
// and overflow-checked and every failure is a one-line vmm::Error.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

enum class KernelFormat { BzImage, PvhElf };

// Bytes to copy to guest RAM at gpa. `data` points into the caller's file
// buffer, which must outlive the KernelLayout. mem_size >= data.size(); the
// rest is bss / decompression space and relies on fresh guest RAM being zero.
struct KernelSegment {
    uint64_t gpa;
    std::span<const uint8_t> data;
    uint64_t mem_size;
};

struct KernelLayout {
    KernelFormat format;
    std::vector<KernelSegment> segments;
    uint64_t entry;       // bzImage: 64-bit entry (load + 0x200), or load for
                          // BzImageEntry::RealMode; PVH: 32-bit entry
    uint64_t kernel_end;  // highest GPA + 1 the kernel occupies, incl. init_size/bss
    // bzImage only: file bytes [0x1f1, 0x202 + file[0x201]), capped at the
    // end of the header area in struct boot_params (0x290).
    std::vector<uint8_t> setup_header;
    uint32_t cmdline_max;      // max command line length, excluding the NUL
    uint64_t initrd_addr_max;  // highest GPA the initramfs may occupy (inclusive)
    uint16_t protocol_version;  // bzImage boot protocol, e.g. 0x020f; 0 for ELF
};

// How a bzImage will be entered, which decides what it must support:
//  - Entry64: the VMM enters the 64-bit entry point itself (direct boot):
//    protocol >= 2.12 with XLF_KERNEL_64;
//  - RealMode: firmware runs the real-mode setup code, which enters the
//    kernel (linuxboot.h): protocol >= 2.02, so 32-bit kernels qualify.
//    Fields a protocol lacks take boot.rst's defaults: cmdline_max 255
//    before 2.06, initrd_addr_max 0x37ffffff before 2.03, and before 2.10
//    (no init_size) a non-relocatable load at 1 MiB whose size is only
//    the compressed code's.
enum class BzImageEntry { Entry64, RealMode };

// Recognises the format by its magic ("HdrS" at 0x202, else ELF) and
// computes where everything goes in `ram` (from ram_layout()). `entry`
// only matters for a bzImage.
KernelLayout parse_kernel(std::span<const uint8_t> file, std::span<const RamRegion> ram,
                          BzImageEntry entry = BzImageEntry::Entry64);

// Highest 4 KiB-aligned GPA for an initramfs of initrd_size bytes that lies
// in the first RAM region, ends at or below k.initrd_addr_max + 1 and starts
// at or above k.kernel_end. Throws vmm::Error if there is no such address.
uint64_t place_initrd(const KernelLayout& k, uint64_t initrd_size, std::span<const RamRegion> ram);

// Setup header field offsets (file offsets == zero page offsets).
namespace setup_hdr {
inline constexpr std::size_t kSetupSects = 0x1f1;
inline constexpr std::size_t kSysSize = 0x1f4;  // protected-mode code size, 16-byte units
inline constexpr std::size_t kBootFlag = 0x1fe;
inline constexpr std::size_t kJump = 0x200;
inline constexpr std::size_t kHeader = 0x202;
inline constexpr std::size_t kVersion = 0x206;
inline constexpr std::size_t kTypeOfLoader = 0x210;
inline constexpr std::size_t kLoadflags = 0x211;
inline constexpr std::size_t kCode32Start = 0x214;
inline constexpr std::size_t kRamdiskImage = 0x218;
inline constexpr std::size_t kRamdiskSize = 0x21c;
inline constexpr std::size_t kHeapEndPtr = 0x224;
inline constexpr std::size_t kCmdLinePtr = 0x228;
inline constexpr std::size_t kInitrdAddrMax = 0x22c;
inline constexpr std::size_t kKernelAlignment = 0x230;
inline constexpr std::size_t kRelocatableKernel = 0x234;
inline constexpr std::size_t kXloadflags = 0x236;
inline constexpr std::size_t kCmdlineSize = 0x238;
inline constexpr std::size_t kPrefAddress = 0x258;
inline constexpr std::size_t kInitSize = 0x260;
inline constexpr std::size_t kHandoverOffset = 0x264;
// struct boot_params places the next field (edd_mbr_sig_buffer) here, so no
// setup header can extend beyond it.
inline constexpr std::size_t kHeaderAreaEnd = 0x290;

inline constexpr uint8_t kLoadedHigh = 0x01;
inline constexpr uint8_t kCanUseHeap = 0x80;
inline constexpr uint16_t kXlfKernel64 = 0x01;
}  // namespace setup_hdr

}  // namespace vmm::arch::x86
