// The kernel loaders (bzImage and PVH ELF, arch/x86_64/kernel.h) and
// initramfs placement, on any file a user might pass as --kernel. A bad
// file must end in vmm::Error; whatever parses must describe only bytes
// inside the file and guest memory inside RAM (the same invariants as
// tests/unit/arch_kernel.cpp checks on mutated images).
#include <fuzzer/FuzzedDataProvider.h>

#include <vector>

#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    const uint64_t mem = uint64_t{in.ConsumeIntegralInRange<uint32_t>(1, 8192)} << 20;  // 1 MiB .. 8 GiB
    const auto entry = in.ConsumeBool() ? BzImageEntry::RealMode : BzImageEntry::Entry64;
    const uint64_t initrd = in.ConsumeIntegral<uint32_t>();
    const std::vector<uint8_t> file = in.ConsumeRemainingBytes<uint8_t>();
    std::vector<RamRegion> ram;
    try {
        ram = ram_layout(mem);
    } catch (const vmm::Error&) {
        return 0;
    }
    try {
        KernelLayout k = parse_kernel(file, ram, entry);
        if (k.segments.empty()) __builtin_trap();
        for (const auto& s : k.segments) {
            if (s.data.data() < file.data() || s.data.data() + s.data.size() > file.data() + file.size())
                __builtin_trap();  // a segment outside the file
            if (s.mem_size < s.data.size() || s.gpa + s.mem_size < s.gpa) __builtin_trap();
            if (s.gpa + s.mem_size > ram[0].gpa + ram[0].size || s.gpa + s.mem_size > k.kernel_end)
                __builtin_trap();  // a segment outside RAM
        }
        if (k.cmdline_max >= kCmdlineMaxBytes) __builtin_trap();
        uint64_t at = place_initrd(k, initrd, ram);
        if (at < k.kernel_end || at % 4096 || at + initrd > ram[0].gpa + ram[0].size || at + initrd < at ||
            (initrd && at + initrd - 1 > k.initrd_addr_max))
            __builtin_trap();  // the initramfs overlaps the kernel or leaves RAM
    } catch (const vmm::Error&) {
    }
    return 0;
}
