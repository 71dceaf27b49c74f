#include "arch/x86_64/layout.h"

#include <algorithm>

#include <fmt/format.h>

#include "vmm/core/error.h"

namespace vmm::arch::x86 {

namespace {
// 64 TiB: far above any RAM a host will give one VM, low enough that
// 4 GiB + mem cannot overflow and stays within a 48-bit guest physical
// address space.
constexpr uint64_t kMaxMemBytes = uint64_t{64} << 40;
}  // namespace

std::vector<RamRegion> ram_layout(uint64_t mem_bytes, uint64_t low_max) {
    if (mem_bytes < MiB) {
        fail("memory size {} is too small; at least 1 MiB is needed", human_size(mem_bytes));
    }
    if (mem_bytes % (4 * KiB) != 0) {
        fail("memory size {} bytes is not a multiple of 4 KiB", mem_bytes);
    }
    if (mem_bytes > kMaxMemBytes) {
        fail("memory size {} is too large; at most 64 TiB is supported", human_size(mem_bytes));
    }
    if (low_max < MiB || low_max > kMmioHoleStart || low_max % (4 * KiB) != 0)
        fail("internal: low RAM limit {:#x} is outside [1 MiB, 3 GiB] or not page aligned", low_max);
    if (mem_bytes <= low_max) return {{0, mem_bytes}};
    return {{0, low_max}, {kMmioHoleEnd, mem_bytes - low_max}};
}

uint64_t q35_low_ram_max(uint64_t mem_bytes) {
    return mem_bytes >= kQ35EcamBase ? 2 * GiB : kQ35EcamBase;
}

AddrRange pci_mmio64_window(std::span<const RamRegion> ram) {
    uint64_t end = kMmioHoleEnd;
    for (const RamRegion& r : ram) {
        if (r.gpa + r.size < r.gpa || r.gpa + r.size > kMaxMemBytes + kMmioHoleEnd) {
            fail("pci: RAM region at {:#x} ({} bytes) is beyond the supported address space", r.gpa, r.size);
        }
        end = std::max(end, r.gpa + r.size);
    }
    // With RAM capped as above neither the rounding nor the window's end
    // can overflow.
    const uint64_t start = (end + kPciMmio64Align - 1) / kPciMmio64Align * kPciMmio64Align;
    return {start, kPciMmio64Size};
}

PlatformLayout platform_layout(uint64_t mem_bytes, bool firmware) {
    PlatformLayout p;
    if (firmware) {
        p.ram = ram_layout(mem_bytes, q35_low_ram_max(mem_bytes));
        p.ecam_base = kQ35EcamBase;
        p.pci_mmio32 = {kQ35EcamBase + kQ35EcamSize, kQ35PciMmio32End - (kQ35EcamBase + kQ35EcamSize)};
    } else {
        p.ram = ram_layout(mem_bytes);
        p.ecam_base = kPciEcamBase;
        p.pci_mmio32 = {kPciMmio32Start, kPciMmio32End - kPciMmio32Start};
    }
    p.pci_mmio64 = pci_mmio64_window(p.ram);
    return p;
}

std::string human_size(uint64_t bytes) {
    struct Unit {
        uint64_t size;
        const char* name;
    };
    static constexpr Unit units[] = {{uint64_t{1} << 40, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"},
                                     {KiB, "KiB"}};
    for (const auto& u : units) {
        if (bytes >= u.size) {
            if (bytes % u.size == 0) return fmt::format("{} {}", bytes / u.size, u.name);
            return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(u.size),
                               u.name);
        }
    }
    return fmt::format("{} bytes", bytes);
}

}  // namespace vmm::arch::x86
