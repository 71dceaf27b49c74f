#include "arch/x86_64/linuxboot.h"

#include <algorithm>

#include "arch/x86_64/bootinfo.h"
#include "arch/x86_64/kernel.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

// heap_end_ptr is an offset from the start of the real-mode code: its heap
// may reach 0x200 bytes (room for its stack) below the command line, which
// is at X + 0x10000. That is zero_page::kHeapEnd, the value direct boot writes.
static_assert(kCmdlineAddr - kLinuxbootSetupAddr - 0x200 == zero_page::kHeapEnd);
static_assert(kLinuxbootMaxSetupSize <= zero_page::kHeapEnd);
static_assert(kCmdlineAddr + kCmdlineMaxBytes <= kEbdaStart);

LinuxBootItems linuxboot_items(std::span<const uint8_t> bzimage, uint64_t initrd_size,
                               const std::string& cmdline, std::span<const RamRegion> ram) {
    using namespace setup_hdr;
    const KernelLayout k = parse_kernel(bzimage, ram, BzImageEntry::RealMode);
    if (k.format != KernelFormat::BzImage) {
        fail("linuxboot: the kernel is an ELF (PVH) image; booting it through firmware needs a "
             "bzImage");
    }
    // parse_kernel() makes the protected-mode part one segment reaching to
    // the end of the file: what precedes it is the real-mode part.
    const std::span<const uint8_t> kernel = k.segments.at(0).data;
    const std::size_t setup_size = bzimage.size() - kernel.size();
    if (setup_size > kLinuxbootMaxSetupSize) {
        fail("linuxboot: the bzImage's real-mode setup is {} bytes; the boot protocol allows at "
             "most {}",
             setup_size, kLinuxbootMaxSetupSize);
    }
    const Blob cmd = cmdline_blob(k, cmdline);

    // The kernel occupies RAM where the ROM copies it (1 MiB) and where it
    // decompresses itself (up to k.kernel_end); both must stay clear of the
    // firmware's reserve, which holds the ACPI tables the kernel will read.
    const RamRegion& low = ram[0];  // parse_kernel() checked there is one
    const uint64_t low_end = low.gpa + low.size;
    const uint64_t kernel_end = std::max(k.kernel_end, kLinuxbootKernelAddr + kernel.size());
    if (low_end < kLinuxbootFirmwareReserve || kernel_end > low_end - kLinuxbootFirmwareReserve) {
        fail("linuxboot: the kernel needs RAM up to {:#x} but guest RAM below 4 GiB ends at {:#x} "
             "and firmware keeps its top {}; give the VM more memory",
             kernel_end, low_end, human_size(kLinuxbootFirmwareReserve));
    }

    LinuxBootItems out;
    out.kernel = kernel;
    out.initrd_size = initrd_size;
    out.initrd_addr = 0;
    if (initrd_size) {
        KernelLayout bounds = k;
        bounds.kernel_end = kernel_end;
        bounds.initrd_addr_max =
            std::min(k.initrd_addr_max, low_end - kLinuxbootFirmwareReserve - 1);
        out.initrd_addr = place_initrd(bounds, initrd_size, ram);
    }

    // The setup part as a boot loader leaves it: the fields boot.rst says a
    // loader writes, the rest as the kernel's build left them.
    std::vector<uint8_t> setup(bzimage.begin(), bzimage.begin() + setup_size);
    store_u8(setup, kTypeOfLoader, zero_page::kLoaderUndefined);
    store_u8(setup, kLoadflags, static_cast<uint8_t>(load_u8(setup, kLoadflags) | kCanUseHeap));
    store_le32(setup, kCode32Start, static_cast<uint32_t>(kLinuxbootKernelAddr));
    store_le32(setup, kRamdiskImage, static_cast<uint32_t>(out.initrd_addr));
    store_le32(setup, kRamdiskSize, static_cast<uint32_t>(initrd_size));
    store_le16(setup, kHeapEndPtr, zero_page::kHeapEnd);
    store_le32(setup, kCmdLinePtr, static_cast<uint32_t>(cmd.gpa));

    auto& f = out.fixed;
    f.emplace_back(fw_cfg_key::kKernelAddr, le_bytes(4, kLinuxbootKernelAddr));
    f.emplace_back(fw_cfg_key::kKernelSize, le_bytes(4, kernel.size()));
    f.emplace_back(fw_cfg_key::kInitrdAddr, le_bytes(4, out.initrd_addr));
    f.emplace_back(fw_cfg_key::kInitrdSize, le_bytes(4, initrd_size));
    f.emplace_back(fw_cfg_key::kCmdlineAddr, le_bytes(4, cmd.gpa));
    f.emplace_back(fw_cfg_key::kCmdlineSize, le_bytes(4, cmd.bytes.size()));
    f.emplace_back(fw_cfg_key::kCmdlineData, cmd.bytes);
    f.emplace_back(fw_cfg_key::kSetupAddr, le_bytes(4, kLinuxbootSetupAddr));
    f.emplace_back(fw_cfg_key::kSetupSize, le_bytes(4, setup_size));
    f.emplace_back(fw_cfg_key::kSetupData, std::move(setup));
    return out;
}

}  // namespace vmm::arch::x86
