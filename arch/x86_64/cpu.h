// Initial vCPU state as plain data: page tables, GDT, segment/control
// registers, general registers, FPU, MSRs, LAPIC LVTs and CPUID. The
// caller applies it with the KVM_SET_* ioctls; nothing here touches KVM.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

// Boot GDT selectors (the GDT lives at kGdtAddr, see build_gdt()):
//   0x00  null
//   0x08  flat 32-bit code   - PVH entry (32-bit protected mode)
//   0x10  flat 64-bit code   - bzImage 64-bit entry (the boot protocol
//                              wants __BOOT_CS = 0x10)
//   0x18  flat data          - every data segment, both paths (__BOOT_DS)
//   0x20  TSS (16 bytes in long mode: slots 0x20 and 0x28) - only so TR
//         holds a valid busy TSS, which VM entry requires; it has no I/O
//         bitmap and the kernel installs its own early.
inline constexpr uint16_t kSelCode32 = 0x08;
inline constexpr uint16_t kSelCode64 = 0x10;
inline constexpr uint16_t kSelData = 0x18;
inline constexpr uint16_t kSelTss = 0x20;
inline constexpr uint16_t kGdtBytes = 0x30;
static_assert(kGdtAddr + kGdtBytes <= kIdtAddr, "GDT overlaps the IDT");

inline constexpr uint64_t kCr0Pe = 1u << 0;
inline constexpr uint64_t kCr0Et = 1u << 4;
inline constexpr uint64_t kCr0Ne = 1u << 5;
inline constexpr uint64_t kCr0Pg = 1u << 31;
inline constexpr uint64_t kCr4Pae = 1u << 5;
inline constexpr uint64_t kEferLme = 1u << 8;
inline constexpr uint64_t kEferLma = 1u << 10;

// Identity map of [0, 4 GiB) with 2 MiB pages: PML4 at kPml4Addr, PDPT at
// kPdptAddr, four page directories at kPdAddr..kPdAddr+0x3fff. The bzImage
// 64-bit entry requires paging on with the kernel, zero page and command
// line identity mapped; the kernel builds its own tables soon after.
std::vector<Blob> build_page_tables();

// The boot GDT (see the selectors above) at kGdtAddr.
Blob build_gdt();

// Decodes one 8-byte GDT descriptor into the kvm_segment KVM expects, so
// the hidden segment state always matches what the GDT in memory says.
kvm_segment segment_from_descriptor(uint64_t descriptor, uint16_t selector);

// 64-bit long mode for the bzImage entry. Starts from what KVM_GET_SREGS
// returned (keeps apic_base, ldt, interrupt bitmap, ...) and sets GDT/IDT,
// CS=0x10 (L=1), DS/ES/FS/GS/SS=0x18, TR=0x20, CR0=PE|ET|PG,
// CR3=kPml4Addr, CR4=PAE, EFER=LME|LMA.
void setup_sregs_long_mode(kvm_sregs& s);

// 32-bit protected mode with paging off for the PVH entry: CS=0x08 (flat,
// D=1, G=1), data 0x18, TR=0x20, CR0=PE|ET, CR3=CR4=EFER=0.
void setup_sregs_pvh(kvm_sregs& s);

// rip=entry, rsi=kZeroPageAddr (the boot protocol's pointer to
// boot_params), rsp=rbp=kBootStackTop, rflags=2 (reserved bit 1, IF off).
kvm_regs initial_regs_bzimage(uint64_t entry);

// rip=entry, rbx=kPvhStartInfoAddr (the PVH ABI's pointer to
// hvm_start_info), rflags=2.
kvm_regs initial_regs_pvh(uint64_t entry);

// x87 and SSE state after FNINIT / power-on: FCW=0x37f, MXCSR=0x1f80.
kvm_fpu initial_fpu();

namespace msr {
inline constexpr uint32_t kTsc = 0x10;
inline constexpr uint32_t kSysenterCs = 0x174;
inline constexpr uint32_t kSysenterEsp = 0x175;
inline constexpr uint32_t kSysenterEip = 0x176;
inline constexpr uint32_t kMiscEnable = 0x1a0;
inline constexpr uint32_t kMtrrDefType = 0x2ff;
inline constexpr uint32_t kStar = 0xc0000081;
inline constexpr uint32_t kLstar = 0xc0000082;
inline constexpr uint32_t kCstar = 0xc0000083;
inline constexpr uint32_t kSyscallMask = 0xc0000084;
inline constexpr uint32_t kKernelGsBase = 0xc0000102;

inline constexpr uint64_t kMiscEnableFastStrings = 1;
inline constexpr uint64_t kMtrrEnable = 1u << 11;
inline constexpr uint64_t kMtrrTypeWriteBack = 6;
}  // namespace msr

// MSR values for a freshly booted vCPU: syscall/sysenter MSRs and TSC zero,
// fast strings enabled, MTRRs enabled with write-back as the default type
// (otherwise all of RAM would be uncached until the kernel's MTRR code ran).
std::vector<kvm_msr_entry> boot_msrs();

// LVT LINT0 (0x350) = ExtINT (the 8259 PIC's output, virtual wire mode),
// LINT1 (0x360) = NMI, as the MP table / MADT describe. Only the delivery
// mode bits [10:8] change; mask and trigger bits stay as KVM reset them.
void setup_lapic_lint(kvm_lapic_state& l);
inline constexpr std::size_t kApicLvtLint0 = 0x350;
inline constexpr std::size_t kApicLvtLint1 = 0x360;
inline constexpr uint32_t kApicDeliveryExtInt = 7;
inline constexpr uint32_t kApicDeliveryNmi = 4;

// Patches the entries KVM_GET_SUPPORTED_CPUID returned for vCPU
// `cpu_index` of `ncpus` (one socket, ncpus cores, one thread per core;
// APIC ID = cpu_index):
//  - leaf 1: initial APIC ID, logical processor count, HTT, hypervisor bit,
//    and TSC-deadline timer mode when `tsc_deadline` (KVM's in-kernel LAPIC
//    emulates it, KVM_CAP_TSC_DEADLINE_TIMER, but KVM_GET_SUPPORTED_CPUID
//    does not report it; without it Linux calibrates the LAPIC timer
//    against the PM timer at boot and programs it in one-shot mode);
//  - leaves 0xB / 0x1F: x2APIC topology (SMT level 1 thread, core level);
//  - leaf 4 (Intel caches): cores per package, one thread per cache;
//  - AMD leaves 0x80000008 (core count, ApicIdCoreIdSize) and 0x8000001E
//    (extended APIC ID, core ID) on AMD/Hygon;
//  - KVM's own leaves (0x40000000/0x40000001: kvm-clock, PV EOI, PV
//    unhalt, PV TLB flush) are left exactly as KVM reported them.
// Throws if ncpus is 0 or above 254 (8-bit xAPIC IDs, 0xff is broadcast
// and the IOAPIC takes ID ncpus) or cpu_index >= ncpus.
void patch_cpuid(std::vector<kvm_cpuid_entry2>& e, uint32_t cpu_index, uint32_t ncpus, bool tsc_deadline);

// Largest vCPU count the xAPIC-based tables (CPUID, MP table, MADT) allow.
inline constexpr uint32_t kMaxCpus = 254;

}  // namespace vmm::arch::x86
