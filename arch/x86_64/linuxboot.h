// Kernel boot through firmware: SeaBIOS runs QEMU's option ROM
// linuxboot_dma.bin, which reads the pieces of a bzImage from fw_cfg items
// (the legacy numeric keys below, read through the DMA interface), copies
// each to the address another item gives and jumps to the real-mode setup
// code. This computes those items; serving them is devices/fw_cfg's job.
//
// Guest memory while the ROM and the setup code run (boot.rst's "modern
// bzImage" layout with the real-mode segment at 0x10000):
//
//   0x010000  boot sector + real-mode setup (at most 32 KiB), then its
//             heap up to heap_end_ptr 0xfe00 and the ROM's stack below
//   0x020000  command line (kCmdlineAddr, as in direct boot)
//   0x100000  protected-mode kernel, compressed; it decompresses itself
//             to where parse_kernel() says (pref_address, + init_size)
//   ...       initramfs: the highest page that ends below both the
//             kernel's initrd_addr_max and the top of low RAM minus
//             kLinuxbootFirmwareReserve, and starts above the kernel
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

// The fw_cfg keys the ROM reads (QEMU's include/hw/nvram/fw_cfg_keys.h).
// Addresses and sizes are little-endian u32 items. 0x09 is not among them:
// it is the older FW_CFG_KERNEL_CMDLINE, which no x86 firmware reads.
namespace fw_cfg_key {
inline constexpr uint16_t kKernelAddr = 0x07;
inline constexpr uint16_t kKernelSize = 0x08;
inline constexpr uint16_t kInitrdAddr = 0x0a;
inline constexpr uint16_t kInitrdSize = 0x0b;
inline constexpr uint16_t kKernelData = 0x11;   // the protected-mode part of the file
inline constexpr uint16_t kInitrdData = 0x12;
inline constexpr uint16_t kCmdlineAddr = 0x13;
inline constexpr uint16_t kCmdlineSize = 0x14;  // including the NUL
inline constexpr uint16_t kCmdlineData = 0x15;  // NUL-terminated
inline constexpr uint16_t kSetupAddr = 0x16;
inline constexpr uint16_t kSetupSize = 0x17;
inline constexpr uint16_t kSetupData = 0x18;    // boot sector + setup, header patched
}  // namespace fw_cfg_key

// The fw_cfg file SeaBIOS runs as an option ROM ("genroms/" prefix).
inline constexpr const char* kLinuxbootRomFile = "genroms/linuxboot_dma.bin";

inline constexpr uint64_t kLinuxbootSetupAddr = 0x10000;
inline constexpr uint64_t kLinuxbootKernelAddr = kHighMemStart;
// boot.rst: the real-mode code of a modern bzImage occupies at most
// X..X+0x8000 of its 64 KiB segment; heap and stack follow it.
inline constexpr uint64_t kLinuxbootMaxSetupSize = 0x8000;
// Kept free of the initramfs at the top of the first RAM region, which
// the firmware takes for itself before the ROM runs: SeaBIOS reserves its
// 256 KiB high zone (ACPI tables, SMBIOS, its own data) there, QEMU leaves
// 128 KiB for the ACPI tables. 1 MiB covers both with room to spare, and
// is nothing next to a VM that boots Linux.
inline constexpr uint64_t kLinuxbootFirmwareReserve = 1 * MiB;

struct LinuxBootItems {
    // Every small item: addresses, sizes, the command line and the patched
    // setup part (KERNEL_ADDR/SIZE, INITRD_ADDR/SIZE, CMDLINE_ADDR/SIZE/
    // DATA, SETUP_ADDR/SIZE/DATA), in key order. INITRD_ADDR and _SIZE are
    // 0 without an initramfs.
    std::vector<std::pair<uint16_t, std::vector<uint8_t>>> fixed;
    // KERNEL_DATA: a view into the caller's bzImage buffer, which must
    // outlive the items (a kernel is tens of MiB; no second copy).
    std::span<const uint8_t> kernel;
    // Where the ROM copies INITRD_DATA, which the caller serves from its
    // own initramfs buffer of initrd_size bytes. 0 without an initramfs.
    uint64_t initrd_addr;
    uint64_t initrd_size;
};

// The items for booting `bzimage` with an initramfs of initrd_size bytes
// (0: none) and `cmdline`, in `ram` (the first region is low RAM as the
// firmware's E820 describes it). Throws a one-line vmm::Error for an ELF,
// a bzImage older than protocol 2.02 or not LOADED_HIGH, a truncated file,
// a real-mode part over 32 KiB, a command line longer than the kernel
// accepts, or an initramfs that does not fit.
LinuxBootItems linuxboot_items(std::span<const uint8_t> bzimage, uint64_t initrd_size,
                               const std::string& cmdline, std::span<const RamRegion> ram);

}  // namespace vmm::arch::x86
