#include "vmm/guest_walk.h"

#include <fmt/format.h>

namespace vmm {

namespace {
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kCr4Pse = 1ull << 4;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr uint64_t kPresent = 1;
constexpr uint64_t kPageSize = 1ull << 7;
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;
}  // namespace

std::optional<uint64_t> translate_linear(const GuestMemory& mem, const kvm_sregs& s, uint64_t linear) {
    if (!(s.cr0 & kCr0Pg)) return linear;
    if (s.efer & kEferLma) {
        uint64_t table = s.cr3 & kAddrMask;
        for (int level = 3; level >= 0; --level) {
            unsigned idx = (linear >> (12 + 9 * level)) & 0x1ff;
            auto e = mem.read_obj<uint64_t>(table + idx * 8);
            if (!e || !(*e & kPresent)) return std::nullopt;
            if (level > 0 && level < 3 && (*e & kPageSize)) {
                uint64_t span = 1ull << (12 + 9 * level);
                return (*e & kAddrMask & ~(span - 1)) | (linear & (span - 1));
            }
            table = *e & kAddrMask;
        }
        return table | (linear & 0xfff);
    }
    if (s.cr4 & kCr4Pae) {
        auto pdpte = mem.read_obj<uint64_t>((s.cr3 & 0xffffffe0) + ((linear >> 30) & 3) * 8);
        if (!pdpte || !(*pdpte & kPresent)) return std::nullopt;
        auto pde = mem.read_obj<uint64_t>((*pdpte & kAddrMask) + ((linear >> 21) & 0x1ff) * 8);
        if (!pde || !(*pde & kPresent)) return std::nullopt;
        if (*pde & kPageSize) return (*pde & kAddrMask & ~0x1fffffull) | (linear & 0x1fffff);
        auto pte = mem.read_obj<uint64_t>((*pde & kAddrMask) + ((linear >> 12) & 0x1ff) * 8);
        if (!pte || !(*pte & kPresent)) return std::nullopt;
        return (*pte & kAddrMask) | (linear & 0xfff);
    }
    auto pde = mem.read_obj<uint32_t>((s.cr3 & 0xfffff000) + ((linear >> 22) & 0x3ff) * 4);
    if (!pde || !(*pde & kPresent)) return std::nullopt;
    if ((s.cr4 & kCr4Pse) && (*pde & kPageSize)) return (*pde & 0xffc00000ull) | (linear & 0x3fffff);
    auto pte = mem.read_obj<uint32_t>((*pde & 0xfffff000) + ((linear >> 12) & 0x3ff) * 4);
    if (!pte || !(*pte & kPresent)) return std::nullopt;
    return (*pte & 0xfffff000ull) | (linear & 0xfff);
}

std::string describe_vcpu_state(const GuestMemory& mem, const kvm_regs& r, const kvm_sregs& s) {
    std::string out = fmt::format(
        "  rip={:#018x} rsp={:#018x} rflags={:#x}\n"
        "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n"
        "  rsi={:#018x} rdi={:#018x} rbp={:#018x}\n"
        "  r8={:#018x} r9={:#018x} r10={:#018x} r11={:#018x}\n"
        "  r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}\n"
        "  cs={:#06x} (base {:#x} l={} db={}) ss={:#06x} ds={:#06x}\n"
        "  cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}\n",
        r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector, s.ds.selector, s.cr0, s.cr2,
        s.cr3, s.cr4, s.efer);
    uint64_t linear = s.cs.base + r.rip;
    auto gpa = translate_linear(mem, s, linear);
    if (!gpa || !mem.contains(*gpa, 1)) {
        out += fmt::format("  code at {:#x}: not mapped in guest RAM\n", linear);
        return out;
    }
    out += fmt::format("  code at {:#x} (gpa {:#x}):", linear, *gpa);
    for (int i = 0; i < 16; ++i) {
        auto b = mem.read_obj<uint8_t>(*gpa + i);
        if (!b) break;
        out += fmt::format(" {:02x}", *b);
    }
    out += "\n";
    return out;
}

}  // namespace vmm
