/* virtio-net workloads, polled, on queue pair 0 (rx = 0, tx = 1):
 *   tx   transmit frames of probe.frame bytes (Ethernet header included,
 *        default 64) as fast as the device takes them, keeping up to
 *        probe.qd (default: the queue size) in flight
 *   rx   receive what a host program blasts into the tap, for
 *        probe.seconds from the first frame; probe.wait_seconds (10) for it
 * With probe.mrg=1 the driver negotiates mergeable receive buffers.
 * One "PROBE result" line per run. */
#include "probe.h"

#define F_MAC 5
#define F_MRG_RXBUF 15
#define F_EVENT_IDX 29
#define HDR 12 /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define BUF 2048
#define MAX_Q 256

static struct vdev dev;
static struct vq rxq, txq;
static uint8_t rx_buf[MAX_Q][BUF] NOINIT __attribute__((aligned(4096)));
static uint8_t tx_buf[MAX_Q][BUF] NOINIT __attribute__((aligned(4096)));
static uint8_t mac[6];

void net_setup(void) {
    if (!virtio_find(1, &dev)) fail("no virtio-net device");
    uint64_t want = 1ull << F_MAC;
    if (arg_u64("probe.event_idx", 1)) want |= 1ull << F_EVENT_IDX;
    if (arg_u64("probe.mrg", 0)) want |= 1ull << F_MRG_RXBUF;
    if (arg_u64("probe.packed", 0)) want |= 1ull << VIRTIO_F_RING_PACKED;
    virtio_init(&dev, want);
    for (int i = 0; i < 6; i++) mac[i] = mmio_r8(dev.devcfg + (uintptr_t)i);
    virtio_queue_setup(&dev, &rxq, 0, MAX_Q);
    virtio_queue_setup(&dev, &txq, 1, MAX_Q);
    virtio_driver_ok(&dev);
    pr("PROBE device virtio-net bdf=00:%x.0 id=%x regs=%x mac=%x:%x:%x:%x:%x:%x queue_size=%u features=%x\n",
       (uint64_t)(dev.bdf >> 3), (uint64_t)dev.device_id, (uint64_t)dev.common, (uint64_t)mac[0], (uint64_t)mac[1], (uint64_t)mac[2],
       (uint64_t)mac[3], (uint64_t)mac[4], (uint64_t)mac[5], (uint64_t)txq.size, dev.features);
}

static void result(const char *w, uint64_t frame, uint64_t frames, uint64_t bytes, uint64_t ns, uint64_t notifies,
                   uint64_t extra) {
    pr("PROBE result workload=%s frame=%u mrg=%u event_idx=%u packed=%u ops=%u ns=%u pps=%u mbps=%u notifies=%u bad=%u\n", w,
       frame, (uint64_t)!!(dev.features & (1ull << F_MRG_RXBUF)), (uint64_t)txq.event_idx, (uint64_t)txq.packed, frames, ns,
       ns ? frames * 1000000000ull / ns : 0, ns ? bytes * 1000 / ns : 0, notifies, extra);
}

static void tx_add(unsigned i, uint64_t frame) {
    struct vq_buf b = {(uintptr_t)tx_buf[i], (uint32_t)(HDR + frame), 0};
    vq_add(&txq, (uint16_t)i, &b, 1);
}
static void rx_add(unsigned i) {
    struct vq_buf b = {(uintptr_t)rx_buf[i], BUF, 1};
    vq_add(&rxq, (uint16_t)i, &b, 1);
}

static void tx(uint64_t seconds) {
    uint64_t frame = arg_u64("probe.frame", 64);
    uint64_t qd = arg_u64("probe.qd", txq.size);
    if (frame < 60 || frame > 1514) fail("probe.frame=%u: want 60..1514 (Ethernet header included)", frame);
    if (!qd || qd > txq.size) qd = txq.size;
    for (unsigned i = 0; i < qd; i++) {
        uint8_t *b = tx_buf[i];
        memset(b, 0, HDR);
        /* to a locally administered unicast address nobody has, EtherType
         * 0x88b5 (local experimental): the host drops it early */
        static const uint8_t hdr[14] = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5};
        memcpy(b + HDR, hdr, 14);
        memcpy(b + HDR + 6, mac, 6);
        for (uint64_t j = 14; j < frame; j++) b[HDR + j] = (uint8_t)j;
    }
    pr("PROBE phase begin workload=tx\n");
    uint64_t n0 = txq.notifies, done = 0, start = rdtsc(), deadline = start + ns_to_cycles(seconds * 1000000000ull);
    uint32_t id, len;
    for (unsigned i = 0; i < qd; i++) tx_add(i, frame);
    vq_kick(&txq);
    unsigned outstanding = (unsigned)qd;
    int stopping = 0;
    while (outstanding) {
        while (!vq_pop(&txq, &id, &len)) pause();
        if (id >= qd) fail("virtio-net tx: used id %u is not ours", (uint64_t)id);
        done++;
        outstanding--;
        if (!stopping && (done & 63) == 0 && rdtsc() >= deadline) stopping = 1;
        if (!stopping) {
            tx_add(id, frame);
            outstanding++;
        }
        if (!vq_used_pending(&txq)) vq_kick(&txq);
    }
    uint64_t ns = cycles_to_ns(rdtsc() - start);
    result("tx", frame, done, done * frame, ns, txq.notifies - n0, 0);
}

static void rx(uint64_t seconds) {
    unsigned n = rxq.size;
    for (unsigned i = 0; i < n; i++) rx_add(i);
    vq_kick(&rxq);
    pr("PROBE phase begin workload=rx\n");
    uint32_t id, len;
    uint64_t wait_until = rdtsc() + ns_to_cycles(arg_u64("probe.wait_seconds", 10) * 1000000000ull);
    while (!vq_used_pending(&rxq))
        if (rdtsc() > wait_until) fail("virtio-net rx: no frame arrived (is anything sending into the tap?)");
    uint64_t n0 = rxq.notifies, frames = 0, bytes = 0, bad = 0, frame = 0;
    uint64_t start = rdtsc(), deadline = start + ns_to_cycles(seconds * 1000000000ull), now = start;
    while (now < deadline) {
        int got = 0;
        while (vq_pop(&rxq, &id, &len)) {
            if (id >= n || len < HDR || len > BUF) {
                bad++;
                if (id >= n) fail("virtio-net rx: used id %u is not ours", (uint64_t)id);
            } else {
                frames++;
                bytes += len - HDR;
                frame = len - HDR;
            }
            rx_add(id);
            got = 1;
        }
        if (got) vq_kick(&rxq);
        now = rdtsc();
    }
    uint64_t ns = cycles_to_ns(now - start);
    result("rx", frame, frames, bytes, ns, rxq.notifies - n0, bad);
}

void net_run(const char *w) {
    uint64_t seconds = arg_u64("probe.seconds", 5);
    if (!memcmp(w, "tx", 3)) tx(seconds);
    else if (!memcmp(w, "rx", 3)) rx(seconds);
    else fail("unknown probe.workload=%s", w);
}
