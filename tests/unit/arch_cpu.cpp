// Unit tests: page tables, GDT, initial registers, MSRs, LAPIC LVTs and the
// CPUID topology patching.
#include <catch2/catch.hpp>

#include <cstring>
#include <set>
#include <span>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;

namespace {

// Walks the blobs as a guest MMU would: translate a virtual address through
// PML4 -> PDPT -> PD (2 MiB page).
uint64_t translate(const std::vector<Blob>& pt, uint64_t va) {
    auto read_entry = [&](uint64_t gpa) -> uint64_t {
        for (const auto& b : pt) {
            if (gpa >= b.gpa && gpa + 8 <= b.gpa + b.bytes.size()) return vmm::load_le64(b.bytes, gpa - b.gpa);
        }
        FAIL("page table entry at " << gpa << " is not in any blob");
        return 0;
    };
    const uint64_t mask = 0x000ffffffffff000;
    const uint64_t pml4e = read_entry(kPml4Addr + ((va >> 39) & 511) * 8);
    REQUIRE((pml4e & 3) == 3);
    const uint64_t pdpte = read_entry((pml4e & mask) + ((va >> 30) & 511) * 8);
    REQUIRE((pdpte & 3) == 3);
    REQUIRE((pdpte & 0x80) == 0);
    const uint64_t pde = read_entry((pdpte & mask) + ((va >> 21) & 511) * 8);
    REQUIRE((pde & 0x83) == 0x83);
    return (pde & 0x000fffffffe00000) | (va & 0x1fffff);
}

kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t idx, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    kvm_cpuid_entry2 e{};
    e.function = fn;
    e.index = idx;
    e.eax = a;
    e.ebx = b;
    e.ecx = c;
    e.edx = d;
    return e;
}

uint32_t vendor_reg(const char* s) { return vmm::load_le32({reinterpret_cast<const uint8_t*>(s), 4}, 0); }

// A plausible KVM_GET_SUPPORTED_CPUID result for an Intel host.
std::vector<kvm_cpuid_entry2> intel_cpuid() {
    return {
        leaf(0, 0, 0x1f, vendor_reg("Genu"), vendor_reg("ntel"), vendor_reg("ineI")),
        leaf(1, 0, 0x000906ea, 0xff080800, 0x7ffafbff, 0xbfebfbff),
        leaf(4, 0, 0xfc004121, 0x01c0003f, 0x3f, 0),  // L1d
        leaf(4, 1, 0xfc004122, 0x01c0003f, 0x3f, 0),  // L1i
        leaf(4, 2, 0xfc01c143, 0x03c0003f, 0x3ff, 0),  // L3... (shared)
        leaf(4, 3, 0, 0, 0, 0),                        // end of list
        leaf(0xb, 0, 1, 2, 0x100, 7),
        leaf(0xb, 1, 4, 12, 0x201, 7),
        leaf(0xb, 2, 0, 0, 2, 7),
        leaf(0x40000000, 0, 0x40000001, vendor_reg("KVMK"), vendor_reg("VMKV"), vendor_reg("M\0\0\0")),
        leaf(0x40000001, 0, 0x01007afb, 0, 0, 0),
        leaf(0x80000008, 0, 0x3027, 0, 0, 0),
    };
}

std::vector<kvm_cpuid_entry2> amd_cpuid() {
    return {
        leaf(0, 0, 0x10, vendor_reg("Auth"), vendor_reg("cAMD"), vendor_reg("enti")),
        leaf(1, 0, 0x00830f10, 0x00400800, 0x7ed8320b, 0x178bfbff),
        leaf(0x80000008, 0, 0x3030, 0, 0x0000703f, 0),
        leaf(0x8000001e, 0, 5, 0x0107, 0x0303, 0),
    };
}

const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& e, uint32_t fn, uint32_t idx = 0) {
    for (const auto& x : e) {
        if (x.function == fn && x.index == idx) return x;
    }
    FAIL("no cpuid leaf " << fn << "." << idx);
    return e.front();
}

}  // namespace

TEST_CASE("arch: page tables identity-map 4 GiB with 2 MiB pages", "[arch][cpu]") {
    const auto pt = build_page_tables();
    REQUIRE(pt.size() == 3);
    CHECK(pt[0].gpa == kPml4Addr);
    CHECK(pt[1].gpa == 0xa000);
    CHECK(pt[2].gpa == 0xb000);
    CHECK(pt[2].bytes.size() == 4 * 4096);
    CHECK(pt[2].gpa + pt[2].bytes.size() == 0xf000);
    // Only one PML4 entry and four PDPT entries are present.
    for (int i = 1; i < 512; ++i) REQUIRE(vmm::load_le64(pt[0].bytes, i * 8) == 0);
    for (int i = 4; i < 512; ++i) REQUIRE(vmm::load_le64(pt[1].bytes, i * 8) == 0);
    for (uint64_t va : {uint64_t{0}, uint64_t{0x7000}, uint64_t{0x1000200}, uint64_t{0x3fffffff},
                        uint64_t{0x40000000}, uint64_t{0xbfffffff}, uint64_t{0xfee00000},
                        uint64_t{0xffffffff}}) {
        CHECK(translate(pt, va) == va);
    }
    // Every PD entry: present, writable, PS, and the right frame.
    for (uint64_t j = 0; j < 2048; ++j) {
        REQUIRE(vmm::load_le64(pt[2].bytes, j * 8) == ((j << 21) | 0x83));
    }
}

TEST_CASE("arch: page tables do not overlap other boot structures", "[arch][cpu]") {
    const auto pt = build_page_tables();
    for (const auto& b : pt) {
        CHECK(b.gpa >= kBootStackTop);
        CHECK(b.gpa + b.bytes.size() <= kCmdlineAddr);
    }
}

TEST_CASE("arch: GDT descriptors decode to the documented segments", "[arch][cpu]") {
    const Blob g = build_gdt();
    CHECK(g.gpa == kGdtAddr);
    REQUIRE(g.bytes.size() == kGdtBytes);
    CHECK(g.gpa + g.bytes.size() <= kIdtAddr);
    CHECK(vmm::load_le64(g.bytes, 0) == 0);

    const auto c32 = segment_from_descriptor(vmm::load_le64(g.bytes, 0x08), 0x08);
    CHECK(c32.base == 0);
    CHECK(c32.limit == 0xffffffff);
    CHECK(c32.type == 0xb);
    CHECK(c32.s == 1);
    CHECK(c32.present == 1);
    CHECK(c32.db == 1);
    CHECK(c32.l == 0);
    CHECK(c32.g == 1);

    const auto c64 = segment_from_descriptor(vmm::load_le64(g.bytes, 0x10), 0x10);
    CHECK(c64.l == 1);
    CHECK(c64.db == 0);
    CHECK(c64.type == 0xb);
    CHECK(c64.present == 1);

    const auto d = segment_from_descriptor(vmm::load_le64(g.bytes, 0x18), 0x18);
    CHECK(d.type == 0x3);
    CHECK(d.db == 1);
    CHECK(d.limit == 0xffffffff);
    CHECK(d.s == 1);

    const auto tss = segment_from_descriptor(vmm::load_le64(g.bytes, 0x20), 0x20);
    CHECK(tss.type == 0xb);  // busy TSS
    CHECK(tss.s == 0);
    CHECK(tss.present == 1);
    CHECK(tss.limit == 0x67);
    CHECK(tss.g == 0);
    CHECK(vmm::load_le64(g.bytes, 0x28) == 0);  // upper half of the 16-byte TSS descriptor
}

TEST_CASE("arch: segment_from_descriptor decodes base and limit bits", "[arch][cpu]") {
    // base 0x12345678, limit 0xabcde, access 0x93, flags: AVL only
    const uint64_t d = 0x12'1a'93'345678'bcdeULL;
    const auto s = segment_from_descriptor(d, 0x33);
    CHECK(s.base == 0x12345678);
    CHECK(s.limit == 0xabcde);
    CHECK(s.avl == 1);
    CHECK(s.g == 0);
    CHECK(s.selector == 0x33);
    const auto np = segment_from_descriptor(0, 0);
    CHECK(np.present == 0);
    CHECK(np.unusable == 1);
}

TEST_CASE("arch: long mode sregs", "[arch][cpu]") {
    kvm_sregs s{};
    s.apic_base = 0xfee00900;  // as KVM returns it: must be kept
    s.cr0 = 0x60000010;
    setup_sregs_long_mode(s);
    CHECK(s.apic_base == 0xfee00900);
    CHECK(s.gdt.base == kGdtAddr);
    CHECK(s.gdt.limit == kGdtBytes - 1);
    CHECK(s.idt.base == kIdtAddr);
    CHECK(s.cs.selector == 0x10);
    CHECK(s.cs.l == 1);
    CHECK(s.cs.db == 0);
    CHECK(s.cs.present == 1);
    for (const kvm_segment* seg : {&s.ds, &s.es, &s.fs, &s.gs, &s.ss}) {
        CHECK(seg->selector == 0x18);
        CHECK(seg->present == 1);
        CHECK(seg->type == 3);
    }
    CHECK(s.tr.selector == 0x20);
    CHECK(s.tr.type == 0xb);
    CHECK(s.tr.present == 1);
    CHECK((s.cr0 & (kCr0Pe | kCr0Pg | kCr0Et)) == (kCr0Pe | kCr0Pg | kCr0Et));
    CHECK((s.cr0 & 0x60000000) == 0);  // caches enabled (CD/NW clear)
    CHECK(s.cr3 == kPml4Addr);
    CHECK(s.cr4 == kCr4Pae);
    CHECK(s.efer == (kEferLme | kEferLma));
}

TEST_CASE("arch: PVH sregs", "[arch][cpu]") {
    kvm_sregs s{};
    s.apic_base = 0xfee00900;
    s.efer = 0x500;
    s.cr4 = kCr4Pae;
    setup_sregs_pvh(s);
    CHECK(s.apic_base == 0xfee00900);
    CHECK(s.cs.selector == 0x08);
    CHECK(s.cs.db == 1);
    CHECK(s.cs.g == 1);
    CHECK(s.cs.l == 0);
    CHECK(s.cs.base == 0);
    CHECK(s.cs.limit == 0xffffffff);
    CHECK(s.ds.selector == 0x18);
    CHECK(s.ss.selector == 0x18);
    CHECK(s.ss.db == 1);
    CHECK(s.tr.selector == 0x20);
    CHECK(s.cr0 == (kCr0Pe | kCr0Et));
    CHECK(s.cr4 == 0);
    CHECK(s.efer == 0);
}

TEST_CASE("arch: initial registers", "[arch][cpu]") {
    const auto b = initial_regs_bzimage(0x1000200);
    CHECK(b.rip == 0x1000200);
    CHECK(b.rsi == kZeroPageAddr);
    CHECK(b.rsp == kBootStackTop);
    CHECK(b.rbp == kBootStackTop);
    CHECK(b.rflags == 2);
    CHECK(b.rax == 0);
    const auto p = initial_regs_pvh(0x1000040);
    CHECK(p.rip == 0x1000040);
    CHECK(p.rbx == kPvhStartInfoAddr);
    CHECK(p.rflags == 2);
    CHECK(p.rsi == 0);
    const auto f = initial_fpu();
    CHECK(f.fcw == 0x37f);
    CHECK(f.mxcsr == 0x1f80);
}

TEST_CASE("arch: boot MSRs", "[arch][cpu]") {
    const auto m = boot_msrs();
    auto value = [&](uint32_t idx) -> uint64_t {
        for (const auto& e : m) {
            if (e.index == idx) return e.data;
        }
        FAIL("MSR " << idx << " missing");
        return 0;
    };
    for (uint32_t idx : {0x174u, 0x175u, 0x176u, 0xc0000081u, 0xc0000082u, 0xc0000083u, 0xc0000084u,
                         0xc0000102u, 0x10u}) {
        CHECK(value(idx) == 0);
    }
    CHECK(value(0x1a0) == 1);
    CHECK(value(0x2ff) == ((1u << 11) | 6));
    std::set<uint32_t> unique;
    for (const auto& e : m) unique.insert(e.index);
    CHECK(unique.size() == m.size());
}

TEST_CASE("arch: LAPIC LINT0 ExtINT and LINT1 NMI", "[arch][cpu]") {
    kvm_lapic_state l{};
    const std::span<uint8_t> regs(reinterpret_cast<uint8_t*>(l.regs), sizeof l.regs);
    auto put = [&](std::size_t off, uint32_t v) { vmm::store_le32(regs, off, v); };
    auto get = [&](std::size_t off) { return vmm::load_le32(regs, off); };
    put(0x350, 0x00010000 | (1u << 8));  // masked, fixed -> mode 1 junk
    put(0x360, 0x00010000 | (7u << 8));
    put(0x370, 0x12345678);
    setup_lapic_lint(l);
    CHECK(get(0x350) == (0x00010000 | (7u << 8)));
    CHECK(get(0x360) == (0x00010000 | (4u << 8)));
    CHECK(get(0x370) == 0x12345678);  // neighbours untouched
}

TEST_CASE("arch: CPUID topology for 1, 4 and 64 vCPUs (Intel)", "[arch][cpu][cpuid]") {
    for (uint32_t n : {1u, 4u, 64u}) {
        std::set<uint32_t> apic_ids;
        for (uint32_t i = 0; i < n; ++i) {
            auto e = intel_cpuid();
            const auto orig = e;
            patch_cpuid(e, i, n, true);
            INFO("ncpus " << n << " cpu " << i);
            const auto& l1 = find(e, 1);
            CHECK(l1.ebx >> 24 == i);
            CHECK(((l1.ebx >> 16) & 0xff) == n);
            CHECK((l1.ebx & 0xffff) == (find(orig, 1).ebx & 0xffff));
            CHECK(((l1.edx >> 28) & 1) == (n > 1 ? 1u : 0u));
            CHECK((l1.ecx >> 31) == 1);
            CHECK(((l1.ecx >> 24) & 1) == 1);  // TSC-deadline timer
            apic_ids.insert(l1.ebx >> 24);

            const uint32_t shift = n == 1 ? 0 : n == 4 ? 2 : 6;
            const auto& b0 = find(e, 0xb, 0);
            CHECK(b0.eax == 0);
            CHECK(b0.ebx == 1);
            CHECK(b0.ecx == 0x100);
            CHECK(b0.edx == i);
            const auto& b1 = find(e, 0xb, 1);
            CHECK(b1.eax == shift);
            CHECK(b1.ebx == n);
            CHECK(b1.ecx == 0x201);
            CHECK(b1.edx == i);
            const auto& b2 = find(e, 0xb, 2);
            CHECK(b2.eax == 0);
            CHECK(b2.ebx == 0);
            CHECK(b2.ecx == 2);
            CHECK(b2.edx == i);

            const uint32_t cores = 1u << shift;
            for (uint32_t sub = 0; sub < 3; ++sub) {
                const auto& c = find(e, 4, sub);
                CHECK((c.eax >> 26) == cores - 1);
                CHECK(((c.eax >> 14) & 0xfff) == 0);
                CHECK((c.eax & 0x3fff) == (find(orig, 4, sub).eax & 0x3fff));
            }
            CHECK(find(e, 4, 3).eax == 0);  // terminator untouched

            // KVM's PV leaves and Intel's 0x80000008 are passed through.
            for (uint32_t fn : {0x40000000u, 0x40000001u, 0x80000008u}) {
                const auto& a = find(e, fn);
                const auto& o = find(orig, fn);
                CHECK(std::memcmp(&a, &o, sizeof a) == 0);
            }
        }
        CHECK(apic_ids.size() == n);
    }
}

TEST_CASE("arch: CPUID topology for AMD", "[arch][cpu][cpuid]") {
    for (uint32_t n : {1u, 4u, 64u}) {
        std::set<uint32_t> ext_ids;
        for (uint32_t i = 0; i < n; ++i) {
            auto e = amd_cpuid();
            patch_cpuid(e, i, n, true);
            INFO("ncpus " << n << " cpu " << i);
            const auto& l8 = find(e, 0x80000008);
            CHECK((l8.ecx & 0xff) == n - 1);
            CHECK(((l8.ecx >> 12) & 0xf) == (n == 1 ? 0u : n == 4 ? 2u : 6u));
            CHECK(((l8.ecx >> 16) & 0x3) == 0);  // PerfTscSize untouched (was 0)
            const auto& l1e = find(e, 0x8000001e);
            CHECK(l1e.eax == i);
            CHECK((l1e.ebx & 0xff) == i);
            CHECK(((l1e.ebx >> 8) & 0xff) == 0);  // one thread per core
            ext_ids.insert(l1e.eax);
            CHECK(find(e, 1).ebx >> 24 == i);
        }
        CHECK(ext_ids.size() == n);
    }
}

TEST_CASE("arch: CPUID rejects impossible topologies", "[arch][cpu][cpuid]") {
    auto e = intel_cpuid();
    CHECK_THROWS_AS(patch_cpuid(e, 0, 0, true), vmm::Error);
    CHECK_THROWS_AS(patch_cpuid(e, 4, 4, true), vmm::Error);
    CHECK_THROWS_AS(patch_cpuid(e, 0, 255, true), vmm::Error);
    CHECK_NOTHROW(patch_cpuid(e, 253, 254, true));
    CHECK(find(e, 1).ebx >> 24 == 253);
    CHECK(((find(e, 1).ebx >> 16) & 0xff) == 254);
    CHECK((find(e, 4, 0).eax >> 26) == 63);  // 6-bit field saturates
}


TEST_CASE("arch: CPUID offers the TSC-deadline timer only when KVM emulates it", "[arch][cpu][cpuid]") {
    auto on = intel_cpuid(), off = intel_cpuid();
    for (auto& x : off)
        if (x.function == 1) x.ecx |= 1u << 24;  // even if the host reported it
    patch_cpuid(on, 0, 1, true);
    patch_cpuid(off, 0, 1, false);
    CHECK(((find(on, 1).ecx >> 24) & 1) == 1);
    CHECK(((find(off, 1).ecx >> 24) & 1) == 0);
    // Nothing else in leaf 1 ECX depends on it.
    CHECK((find(on, 1).ecx & ~(1u << 24)) == (find(off, 1).ecx & ~(1u << 24)));
}
