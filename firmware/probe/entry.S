/*
 * Probe guest entry: the PVH boot protocol starts us in 32-bit protected
 * mode, flat segments, paging off, %ebx = hvm_start_info.
 *
 * The ring-0 part is as short as possible, because on a nested KVM without
 * hardware support underneath guest ring 0 is emulated one instruction at a
 * time while ring 3 runs natively (docs/benchmarks.md). It builds an
 * identity map of the first PD_COUNT GiB in 2 MiB pages, all user-accessible
 * (RAM and the PCI BARs), enters long mode, registers a kvmclock
 * page (the TSC frequency for the ring-3 timer), and drops to ring 3 with
 * IOPL 3 through sysretq: iretq and far returns to ring 3 are not emulated
 * there, sysretq is. Nothing ever returns to ring 0: there is no IDT, so a
 * fault in ring 3 ends the VM as a triple fault.
 */
#include "layout.h"
#define PD_COUNT PROBE_MAP_GIB

    .section .note.pvh, "a"
    .p2align 2
    .long 4                     /* namesz: "Xen\0" */
    .long 4                     /* descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_entry

    .section .text.entry, "ax"
    .code32
    .globl pvh_entry
pvh_entry:
    cld
    movl %ebx, probe_start_info

    /* Mask both PICs: the firmware may have left the timer's IRQ 0 on, and
     * ring 3 runs with interrupts enabled (below) and no IDT. */
    movb $0xFF, %al
    outb %al, $0x21
    outb %al, $0xA1

    /* The TSS descriptor's base (only the TSS's I/O bitmap is used). */
    movl $tss, %eax
    movw %ax, gdt_tss + 2
    shrl $16, %eax
    movb %al, gdt_tss + 4
    movb %ah, gdt_tss + 7
    lgdt gdt_desc

    /* PML4[0] -> PDPT, PML4[1..511] = 0 */
    xorl %ecx, %ecx
1:  movl $0, pml4(,%ecx,8)
    movl $0, pml4+4(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b
    movl $pdpt, %eax
    orl $7, %eax                /* present, writable, user */
    movl %eax, pml4

    /* PDPT[i] -> PD i for the first PD_COUNT GiB; PD entries are 2 MiB
     * pages: present, writable, user, PS. (1 GiB pages fault here.) */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $12, %eax
    addl $pds, %eax
    orl $7, %eax
    movl %eax, pdpt(,%ecx,8)
    movl $0, pdpt+4(,%ecx,8)
    incl %ecx
    cmpl $PD_COUNT, %ecx
    jne 2b
3:  movl $0, pdpt(,%ecx,8)
    movl $0, pdpt+4(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 3b
    xorl %ecx, %ecx             /* 2 MiB page index */
4:  movl %ecx, %eax
    shll $21, %eax
    orl $0x87, %eax
    movl %ecx, %edx
    shrl $11, %edx
    movl %eax, pds(,%ecx,8)
    movl %edx, pds+4(,%ecx,8)
    incl %ecx
    cmpl $(PD_COUNT * 512), %ecx
    jne 4b

    movl %cr4, %eax
    orl $0x20, %eax             /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx      /* EFER */
    rdmsr
    orl $0x101, %eax            /* LME | SCE (sysret) */
    wrmsr
    movl %cr0, %eax
    andl $0x9FFFFFFF, %eax      /* caches on: CD = NW = 0 */
    orl $0x80000001, %eax       /* PG | PE */
    movl %eax, %cr0
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw $0x28, %ax
    ltr %ax

    /* kvmclock (MSR_KVM_SYSTEM_TIME_NEW): KVM fills in the TSC scale. */
    movl $0x4b564d01, %ecx
    leaq probe_kvmclock(%rip), %rax
    orl $1, %eax
    xorl %edx, %edx
    wrmsr

    /* STAR[63:48] = 0x10: sysretq loads SS = 0x18|3, CS = 0x20|3. */
    movl $0xC0000081, %ecx
    xorl %eax, %eax
    movl $0x00100008, %edx
    wrmsr

    leaq user_stack_top(%rip), %rsp
    leaq user_entry(%rip), %rcx
    movq $0x3002, %r11          /* IOPL 3, interrupts off: what we ask for */
    sysretq

user_entry:                     /* ring 3 from here on */
    andq $-16, %rsp
    call probe_main
3:  jmp 3b

    .data
    .p2align 3
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08 ring-0 code, 64-bit */
    .quad 0x00CF92000000FFFF    /* 0x10 ring-0 data */
    .quad 0x00CFF2000000FFFF    /* 0x18 ring-3 data */
    .quad 0x00AFFA000000FFFF    /* 0x20 ring-3 code, 64-bit */
gdt_tss:                        /* 0x28 64-bit TSS, base filled in above */
    .word tss_end - tss - 1
    .word 0
    .byte 0, 0x89, 0, 0
    .quad 0
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt

    /* The TSS, whose I/O permission bitmap (all ports allowed) is what
     * lets ring 3 use port I/O: sysretq here leaves RFLAGS at 0x202 (IOPL 0,
     * interrupts on) whatever R11 says. */
    .p2align 4
tss:
    .skip 102
    .word iomap - tss
iomap:
    .skip 8192
    .byte 0xFF
tss_end:

    .section .noinit, "aw", @nobits
    .p2align 12
pml4:
    .skip 4096
pdpt:
    .skip 4096
pds:
    .skip 4096 * PD_COUNT
    .p2align 4
    .skip 65536
user_stack_top:
