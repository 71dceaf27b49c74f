/* Probe guest: ring-3 entry. Reads its arguments from the PVH command
 * line, runs one workload, prints parseable "PROBE ..." lines on COM1 and
 * powers off. Arguments:
 *   probe.workload=randread|seqread|seqwrite|flush|verify (virtio-blk, blk.c),
 *                  tx|rx (virtio-net, net.c) or boot (power off at once)
 *   probe.bs=BYTES probe.qd=N probe.seconds=S probe.region_mib=M
 *   probe.frame=BYTES probe.mrg=0|1 probe.wait_seconds=S
 *   probe.event_idx=0|1 probe.queue_size=N  tsc_khz=N (else kvmclock's) */
#include "probe.h"

extern uint32_t probe_start_info;
extern uint8_t __bss_start[], __bss_end[];
void blk_setup(void);
void blk_run(const char *workload);
void net_setup(void);
void net_run(const char *workload);

void probe_main(void) {
    uint64_t t0 = rdtsc();
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    outb(0x440, 1); /* our VMM's boot-progress port (--boot-report); nothing on QEMU */
    const volatile uint8_t *si = (const volatile uint8_t *)(uintptr_t)probe_start_info;
    if (*(const volatile uint32_t *)si != 0x336ec578) fail("no PVH start info at %x", (uint64_t)probe_start_info);
    args_init((const char *)(uintptr_t) * (const volatile uint64_t *)(si + 24));
    time_init();
    pr("PROBE start tsc_khz=%u ring3_tsc=%u\n", tsc_khz(), t0);
    const char *w = arg_str("probe.workload", "randread");
    if (!memcmp(w, "tx", 3) || !memcmp(w, "rx", 3)) {
        net_setup();
        net_run(w);
    } else if (memcmp(w, "boot", 5)) {
        blk_setup();
        blk_run(w);
    }
    pr("PROBE done\n");
    poweroff();
}
