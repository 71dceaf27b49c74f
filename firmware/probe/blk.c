/* virtio-blk workloads, polled, at a fixed queue depth:
 *   randread   random reads of bs bytes (bs-aligned) within the region
 *   seqread    sequential reads of bs bytes, wrapping at the region's end
 *   seqwrite   sequential writes, likewise
 *   flush      a bs write then a FLUSH, one at a time; the latency is the
 *              flush's
 *   verify     writes a pattern over the region, flushes, reads it back and
 *              compares (a functional check, not a benchmark)
 * One "PROBE result" line per run. */
#include "probe.h"

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define F_SIZE_MAX 1
#define F_FLUSH 9
#define F_EVENT_IDX 29
#define MAX_QD 64
#define MAX_SEGS (VQ_MAX_CHAIN - 2)
#define BUF_BYTES (16u << 20)
#define MAX_SAMPLES (1u << 20)

struct hdr { uint32_t type, reserved; uint64_t sector; };
static struct hdr hdrs[MAX_QD] NOINIT;
static volatile uint8_t status[MAX_QD] NOINIT;
static uint8_t buf[BUF_BYTES] NOINIT __attribute__((aligned(4096)));
static uint64_t samples[MAX_SAMPLES] NOINIT;

static struct vdev dev;
static struct vq q;
static uint64_t capacity;   /* bytes */
static uint32_t size_max;   /* 0: no limit */
static uint64_t slot_t0[MAX_QD];
static uint32_t slot_type[MAX_QD];

static void submit(unsigned slot, uint32_t type, uint64_t offset, uint32_t len, uint8_t *data) {
    struct vq_buf b[2 + MAX_SEGS];
    unsigned n = 0;
    hdrs[slot].type = type;
    hdrs[slot].reserved = 0;
    hdrs[slot].sector = offset / 512;
    status[slot] = 0xFF;
    b[n++] = (struct vq_buf){(uintptr_t)&hdrs[slot], sizeof(struct hdr), 0};
    for (uint32_t done = 0; done < len;) {
        uint32_t k = len - done;
        if (size_max && k > size_max) k = size_max;
        b[n++] = (struct vq_buf){(uintptr_t)(data + done), k, type == T_IN};
        done += k;
    }
    b[n++] = (struct vq_buf){(uintptr_t)&status[slot], 1, 1};
    slot_type[slot] = type;
    slot_t0[slot] = rdtsc();
    vq_add(&q, (uint16_t)slot, b, n);
}

/* Waits for one completion; returns its slot, checks its status. */
static unsigned reap(uint64_t *now) {
    uint32_t id, len;
    while (!vq_pop(&q, &id, &len)) pause();
    *now = rdtsc();
    if (id >= MAX_QD) fail("virtio-blk: used buffer id %u is not a request of ours", (uint64_t)id);
    if (status[id] != 0)
        fail("virtio-blk: request type %u failed, status %u", (uint64_t)slot_type[id], (uint64_t)status[id]);
    return id;
}

void blk_setup(void) {
    if (!virtio_find(2, &dev)) fail("no virtio-blk device");
    uint64_t want = (1ull << F_SIZE_MAX) | (1ull << F_FLUSH);
    if (arg_u64("probe.event_idx", 1)) want |= 1ull << F_EVENT_IDX;
    if (arg_u64("probe.packed", 0)) want |= 1ull << VIRTIO_F_RING_PACKED;
    virtio_init(&dev, want);
    capacity = (uint64_t)mmio_r32(dev.devcfg) * 512 + ((uint64_t)mmio_r32(dev.devcfg + 4) << 32) * 512;
    size_max = (dev.features & (1ull << F_SIZE_MAX)) ? mmio_r32(dev.devcfg + 8) : 0;
    virtio_queue_setup(&dev, &q, 0, (uint16_t)arg_u64("probe.queue_size", 256));
    virtio_driver_ok(&dev);
    pr("PROBE device virtio-blk bdf=00:%x.0 id=%x regs=%x capacity=%u queue_size=%u features=%x\n",
       (uint64_t)(dev.bdf >> 3), (uint64_t)dev.device_id, (uint64_t)dev.common, capacity, (uint64_t)q.size,
       dev.features);
}

static uint64_t pattern(uint64_t offset, uint64_t seed) { return offset * 0x9E3779B97F4A7C15ull ^ seed; }

static void verify(uint64_t region, uint32_t bs) {
    uint64_t seed = rdtsc(), t;
    for (uint64_t off = 0; off < region; off += bs) {
        for (uint32_t i = 0; i < bs; i += 8) *(uint64_t *)(buf + i) = pattern(off + i, seed);
        submit(0, T_OUT, off, bs, buf);
        vq_kick(&q);
        reap(&t);
    }
    submit(0, T_FLUSH, 0, 0, buf);
    vq_kick(&q);
    reap(&t);
    uint64_t bad = 0;
    for (uint64_t off = 0; off < region; off += bs) {
        memset(buf, 0, bs);
        submit(0, T_IN, off, bs, buf);
        vq_kick(&q);
        reap(&t);
        for (uint32_t i = 0; i < bs; i += 8)
            if (*(uint64_t *)(buf + i) != pattern(off + i, seed)) {
                if (!bad) pr("PROBE mismatch at offset %u\n", off + i);
                bad++;
            }
    }
    pr("PROBE result workload=verify bytes=%u mismatches=%u seed=%x\n", region, bad, seed);
    if (bad) fail("verify: %u mismatching words", bad);
}

void blk_run(const char *w) {
    uint32_t bs = (uint32_t)arg_u64("probe.bs", !memcmp(w, "seq", 3) ? (1u << 20) : 4096);
    uint64_t qd = arg_u64("probe.qd", 1);
    uint64_t seconds = arg_u64("probe.seconds", 5);
    uint64_t region = arg_u64("probe.region_mib", 256) << 20;
    if (region > capacity) region = capacity & ~(uint64_t)(bs - 1);
    int flush = !memcmp(w, "flush", 6);
    if (flush) qd = 1;
    if (!bs || bs % 512 || bs > (1u << 20)) fail("probe.bs=%u: want a multiple of 512 up to 1 MiB", (uint64_t)bs);
    if (!qd || qd > MAX_QD || qd * bs > BUF_BYTES) fail("probe.qd=%u: too deep for bs=%u", qd, (uint64_t)bs);
    if (region < bs) fail("disk of %u bytes is too small", capacity);
    unsigned segs = size_max ? (bs + size_max - 1) / size_max : 1;
    if (segs > MAX_SEGS) fail("bs=%u needs %u segments", (uint64_t)bs, (uint64_t)segs);
    if (qd * (2 + segs) > q.size)
        fail("qd=%u needs %u descriptors, the queue has %u", qd, qd * (2 + segs), (uint64_t)q.size);
    vq_set_chain_max(&q, (uint16_t)(2 + segs));
    if ((flush || !memcmp(w, "verify", 7)) && !(dev.features & (1ull << F_FLUSH)))
        fail("the device does not offer FLUSH");

    if (!memcmp(w, "verify", 7)) {
        verify(region, bs);
        return;
    }
    int rnd = !memcmp(w, "randread", 9), write = !memcmp(w, "seqwrite", 9) || flush;
    if (!rnd && !write && memcmp(w, "seqread", 8)) fail("unknown probe.workload=%s", w);
    for (uint32_t i = 0; i < qd * bs; i += 8) *(uint64_t *)(buf + i) = pattern(i, 1);

    pr("PROBE phase begin workload=%s\n", w);
    uint64_t blocks = region / bs, next = 0, ops = 0, nsamp = 0, lat_sum = 0, now;
    uint64_t notifies0 = q.notifies;
    uint64_t start = rdtsc(), deadline = start + ns_to_cycles(seconds * 1000000000ull);
    uint32_t type = rnd ? T_IN : write ? T_OUT : T_IN;
    for (unsigned s = 0; s < qd; s++) {
        uint64_t off = rnd ? (rng_next() % blocks) * bs : (next++ % blocks) * bs;
        submit(s, type, off, bs, buf + (uint64_t)s * bs);
    }
    vq_kick(&q);
    unsigned outstanding = (unsigned)qd;
    int stopping = 0;
    while (outstanding) {
        unsigned slot = reap(&now);
        outstanding--;
        uint64_t lat = now - slot_t0[slot];
        int counted = !flush || slot_type[slot] == T_FLUSH;
        if (counted) {
            ops++;
            lat_sum += lat;
            if (nsamp < MAX_SAMPLES) samples[nsamp++] = lat;
        }
        if (now >= deadline) stopping = 1;
        if (flush && slot_type[slot] == T_OUT) {
            submit(slot, T_FLUSH, 0, 0, buf); /* the flush that follows the write, even at the end */
            outstanding++;
        } else if (!stopping) {
            uint64_t off = rnd ? (rng_next() % blocks) * bs : (next++ % blocks) * bs;
            submit(slot, type, off, bs, buf + (uint64_t)slot * bs);
            outstanding++;
        }
        /* Hand over everything queued once nothing more is ready: one
         * doorbell per batch, as a real driver does. */
        if (!vq_used_pending(&q)) vq_kick(&q);
    }
    uint64_t end = rdtsc();
    uint64_t ns = cycles_to_ns(end - start);
    sort_u64(samples, nsamp);
    uint64_t bytes = flush ? 0 : ops * bs;
    pr("PROBE result workload=%s bs=%u qd=%u event_idx=%u packed=%u ops=%u ns=%u iops=%u mbps=%u lat_avg_ns=%u "
       "lat_p50_ns=%u lat_p99_ns=%u lat_max_ns=%u notifies=%u\n",
       w, (uint64_t)bs, qd, (uint64_t)q.event_idx, (uint64_t)q.packed, ops, ns, ns ? ops * 1000000000ull / ns : 0,
       ns ? bytes * 1000 / ns : 0, ops ? cycles_to_ns(lat_sum / ops) : 0,
       nsamp ? cycles_to_ns(samples[nsamp / 2]) : 0, nsamp ? cycles_to_ns(samples[nsamp * 99 / 100]) : 0,
       nsamp ? cycles_to_ns(samples[nsamp - 1]) : 0, q.notifies - notifies0);
}
