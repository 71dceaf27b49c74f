#include "arch/x86_64/cpu.h"

#include <algorithm>
#include <string_view>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

namespace {

// Page table entry bits.
constexpr uint64_t kPtePresent = 1u << 0;
constexpr uint64_t kPteWritable = 1u << 1;
constexpr uint64_t kPtePageSize = 1u << 7;  // in a PD entry: maps a 2 MiB page

// Segment descriptor fields, packed into the 8-byte legacy format:
//   limit[15:0] | base[23:0] << 16 | access << 40 | limit[19:16] << 48 |
//   flags << 52 | base[31:24] << 56
// access = P(7) DPL(6:5) S(4) type(3:0); flags = G(3) D/B(2) L(1) AVL(0).
constexpr uint64_t descriptor(uint8_t access, uint8_t flags, uint32_t base, uint32_t limit) {
    return (uint64_t{limit} & 0xffff) | ((uint64_t{base} & 0xffffff) << 16) |
           (uint64_t{access} << 40) | (((uint64_t{limit} >> 16) & 0xf) << 48) |
           (uint64_t{flags & 0xfu} << 52) | ((uint64_t{base} >> 24) << 56);
}

constexpr uint8_t kAccCode = 0x9b;  // present, DPL0, code, execute/read, accessed
constexpr uint8_t kAccData = 0x93;  // present, DPL0, data, read/write, accessed
constexpr uint8_t kAccTss = 0x8b;   // present, DPL0, system, busy 32/64-bit TSS
constexpr uint8_t kFlagsGranDb = 0xc;  // 4 KiB granularity, 32-bit default size
constexpr uint8_t kFlagsGranL = 0xa;   // 4 KiB granularity, 64-bit code

constexpr uint64_t kGdtCode32 = descriptor(kAccCode, kFlagsGranDb, 0, 0xfffff);
constexpr uint64_t kGdtCode64 = descriptor(kAccCode, kFlagsGranL, 0, 0xfffff);
constexpr uint64_t kGdtData = descriptor(kAccData, kFlagsGranDb, 0, 0xfffff);
// 0x67 = 104-byte TSS minimum limit; byte granular.
constexpr uint64_t kGdtTss = descriptor(kAccTss, 0, 0, 0x67);

void set_data_segments(kvm_sregs& s) {
    const kvm_segment data = segment_from_descriptor(kGdtData, kSelData);
    s.ds = s.es = s.fs = s.gs = s.ss = data;
}

void set_tables(kvm_sregs& s) {
    s.gdt.base = kGdtAddr;
    s.gdt.limit = kGdtBytes - 1;
    // An empty IDT: any exception before the kernel loads its own IDT
    // escalates to a triple fault, which KVM reports as a shutdown exit
    // instead of the guest running off into garbage.
    s.idt.base = kIdtAddr;
    s.idt.limit = 0;
    s.tr = segment_from_descriptor(kGdtTss, kSelTss);
}

uint32_t ceil_log2(uint32_t n) {
    uint32_t s = 0;
    while ((uint64_t{1} << s) < n) ++s;
    return s;
}

enum class Vendor { Intel, Amd, Other };

Vendor cpu_vendor(const std::vector<kvm_cpuid_entry2>& e) {
    for (const auto& x : e) {
        if (x.function != 0) continue;
        uint8_t v[12];
        store_le32(v, 0, x.ebx);  // vendor string order is EBX, EDX, ECX
        store_le32(v, 4, x.edx);
        store_le32(v, 8, x.ecx);
        const std::string_view s(reinterpret_cast<const char*>(v), sizeof v);
        if (s == "GenuineIntel") return Vendor::Intel;
        if (s == "AuthenticAMD" || s == "HygonGenuine") return Vendor::Amd;
        return Vendor::Other;
    }
    return Vendor::Other;
}

}  // namespace

std::vector<Blob> build_page_tables() {
    constexpr uint64_t kPage = 4096;
    constexpr int kNumPds = 4;  // 4 x 1 GiB
    std::vector<uint8_t> pml4(kPage, 0), pdpt(kPage, 0), pds(kNumPds * kPage, 0);
    store_le64(pml4, 0, kPdptAddr | kPtePresent | kPteWritable);
    for (int i = 0; i < kNumPds; ++i) {
        store_le64(pdpt, i * 8, (kPdAddr + i * kPage) | kPtePresent | kPteWritable);
    }
    for (uint64_t j = 0; j < kNumPds * 512; ++j) {
        store_le64(pds, j * 8, (j << 21) | kPtePresent | kPteWritable | kPtePageSize);
    }
    std::vector<Blob> out;
    out.push_back({kPml4Addr, std::move(pml4)});
    out.push_back({kPdptAddr, std::move(pdpt)});
    out.push_back({kPdAddr, std::move(pds)});
    return out;
}

Blob build_gdt() {
    std::vector<uint8_t> g(kGdtBytes, 0);
    store_le64(g, kSelCode32, kGdtCode32);
    store_le64(g, kSelCode64, kGdtCode64);
    store_le64(g, kSelData, kGdtData);
    store_le64(g, kSelTss, kGdtTss);
    // kSelTss + 8: upper half of the long-mode TSS descriptor (base[63:32]
    // = 0); in 32-bit mode the same bytes read as a null descriptor.
    return {kGdtAddr, std::move(g)};
}

kvm_segment segment_from_descriptor(uint64_t d, uint16_t selector) {
    kvm_segment s{};
    const uint32_t raw_limit = static_cast<uint32_t>((d & 0xffff) | (((d >> 48) & 0xf) << 16));
    s.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
    s.g = (d >> 55) & 1;
    // KVM wants the byte-granular limit, as the hidden descriptor cache
    // holds it.
    s.limit = s.g ? (raw_limit << 12) | 0xfff : raw_limit;
    s.selector = selector;
    s.type = (d >> 40) & 0xf;
    s.s = (d >> 44) & 1;
    s.dpl = (d >> 45) & 3;
    s.present = (d >> 47) & 1;
    s.avl = (d >> 52) & 1;
    s.l = (d >> 53) & 1;
    s.db = (d >> 54) & 1;
    s.unusable = s.present ? 0 : 1;
    return s;
}

void setup_sregs_long_mode(kvm_sregs& s) {
    set_tables(s);
    s.cs = segment_from_descriptor(kGdtCode64, kSelCode64);
    set_data_segments(s);
    s.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    s.cr3 = kPml4Addr;
    s.cr4 = kCr4Pae;
    s.efer = kEferLme | kEferLma;
}

void setup_sregs_pvh(kvm_sregs& s) {
    set_tables(s);
    s.cs = segment_from_descriptor(kGdtCode32, kSelCode32);
    set_data_segments(s);
    s.cr0 = kCr0Pe | kCr0Et;
    s.cr3 = 0;
    s.cr4 = 0;
    s.efer = 0;
}

kvm_regs initial_regs_bzimage(uint64_t entry) {
    kvm_regs r{};
    r.rip = entry;
    r.rsi = kZeroPageAddr;
    r.rsp = kBootStackTop;
    r.rbp = kBootStackTop;
    r.rflags = 2;
    return r;
}

kvm_regs initial_regs_pvh(uint64_t entry) {
    kvm_regs r{};
    r.rip = entry;
    r.rbx = kPvhStartInfoAddr;
    r.rflags = 2;
    return r;
}

kvm_fpu initial_fpu() {
    kvm_fpu f{};
    f.fcw = 0x37f;     // all x87 exceptions masked, 64-bit precision
    f.mxcsr = 0x1f80;  // all SSE exceptions masked, round to nearest
    return f;
}

std::vector<kvm_msr_entry> boot_msrs() {
    auto m = [](uint32_t index, uint64_t data) {
        kvm_msr_entry e{};
        e.index = index;
        e.data = data;
        return e;
    };
    return {
        m(msr::kSysenterCs, 0),
        m(msr::kSysenterEsp, 0),
        m(msr::kSysenterEip, 0),
        m(msr::kStar, 0),
        m(msr::kLstar, 0),
        m(msr::kCstar, 0),
        m(msr::kSyscallMask, 0),
        m(msr::kKernelGsBase, 0),
        m(msr::kTsc, 0),
        m(msr::kMiscEnable, msr::kMiscEnableFastStrings),
        m(msr::kMtrrDefType, msr::kMtrrEnable | msr::kMtrrTypeWriteBack),
    };
}

void setup_lapic_lint(kvm_lapic_state& l) {
    auto regs = std::span<uint8_t>(reinterpret_cast<uint8_t*>(l.regs), sizeof(l.regs));
    auto set_mode = [&](std::size_t off, uint32_t mode) {
        const uint32_t v = load_le32(regs, off);
        store_le32(regs, off, (v & ~(7u << 8)) | (mode << 8));
    };
    set_mode(kApicLvtLint0, kApicDeliveryExtInt);
    set_mode(kApicLvtLint1, kApicDeliveryNmi);
}

void patch_cpuid(std::vector<kvm_cpuid_entry2>& e, uint32_t cpu_index, uint32_t ncpus, bool tsc_deadline) {
    if (ncpus == 0 || ncpus > kMaxCpus) fail("cpus: {} vCPUs requested; 1..{} are supported", ncpus, kMaxCpus);
    if (cpu_index >= ncpus) fail("internal: vCPU index {} out of range for {} vCPUs", cpu_index, ncpus);

    const Vendor vendor = cpu_vendor(e);
    const uint32_t apic_id = cpu_index;
    // Number of APIC ID bits that select the core within the package.
    const uint32_t core_bits = ceil_log2(ncpus);

    for (auto& x : e) {
        switch (x.function) {
        case 1:
            // EBX[31:24] initial APIC ID, [23:16] logical processors per
            // package; [15:0] (brand index, CLFLUSH size) stays KVM's.
            x.ebx = (x.ebx & 0xffff) | (apic_id << 24) | (ncpus << 16);
            if (ncpus > 1) {
                x.edx |= 1u << 28;  // HTT: the EBX[23:16] count is valid
            } else {
                x.edx &= ~(1u << 28);
            }
            x.ecx |= 1u << 31;  // running under a hypervisor
            if (tsc_deadline) x.ecx |= 1u << 24;
            else x.ecx &= ~(1u << 24);
            break;
        case 0xb:
        case 0x1f:
            // Extended topology: level 0 = SMT (1 thread per core, so 0
            // bits to shift), level 1 = core (all vCPUs in one package);
            // the subleaf after the last valid one reports level type 0.
            x.edx = apic_id;
            if (x.index == 0) {
                x.eax = 0;
                x.ebx = 1;
                x.ecx = 0 | (1u << 8);
            } else if (x.index == 1) {
                x.eax = core_bits;
                x.ebx = ncpus;
                x.ecx = 1 | (2u << 8);
            } else {
                x.eax = 0;
                x.ebx = 0;
                x.ecx = x.index & 0xff;
            }
            break;
        case 4:
            // Deterministic cache parameters; cache type 0 marks the end of
            // the list and is left alone. EAX[31:26] = addressable core IDs
            // in the package - 1 (a power of two, 6 bits wide), EAX[25:14] =
            // threads sharing the cache - 1 = 0.
            if ((x.eax & 0x1f) != 0) {
                const uint32_t cores = std::min<uint32_t>(1u << core_bits, 64);
                x.eax = (x.eax & 0x3fff) | ((cores - 1) << 26);
            }
            break;
        case 0x80000008:
            if (vendor == Vendor::Amd) {
                // ECX[7:0] NC = cores - 1, [15:12] ApicIdCoreIdSize.
                x.ecx = (x.ecx & ~0xf0ffu) | ((ncpus - 1) & 0xff) | (core_bits << 12);
            }
            break;
        case 0x8000001e:
            if (vendor == Vendor::Amd) {
                x.eax = apic_id;                           // extended APIC ID
                x.ebx = (x.ebx & ~0xffffu) | (cpu_index & 0xff);  // core ID, 1 thread/core
                x.ecx = 0;                                 // node 0 of 1
            }
            break;
        default:
            // Everything else, including KVM's 0x4000000x PV leaves, is
            // passed through as KVM reported it.
            break;
        }
    }
}

}  // namespace vmm::arch::x86
