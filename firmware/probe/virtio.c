/* A polled virtio 1.x PCI driver: device discovery through the vendor
 * capabilities, feature negotiation and split virtqueues. MSI-X vectors are
 * left unassigned (VIRTIO_MSI_NO_VECTOR) and the driver asks for no
 * interrupts: it polls the used ring, so what is measured is the device
 * path (doorbell -> ioeventfd -> I/O thread -> backend -> used ring). */
#include "probe.h"

enum { COMMON = 1, NOTIFY = 2, ISR = 3, DEVICE = 4 };
/* common configuration structure offsets */
enum {
    C_DFSELECT = 0x00, C_DF = 0x04, C_GFSELECT = 0x08, C_GF = 0x0C, C_MSIX = 0x10, C_STATUS = 0x14,
    C_QSELECT = 0x16, C_QSIZE = 0x18, C_QMSIX = 0x1A, C_QENABLE = 0x1C, C_QNOFF = 0x1E,
    C_QDESC = 0x20, C_QAVAIL = 0x28, C_QUSED = 0x30,
};
#define NO_VECTOR 0xFFFF
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define F_VERSION_1 32
#define F_EVENT_IDX 29

int virtio_find(unsigned type, struct vdev *d) {
    for (unsigned dev = 0; dev < 32; dev++) {
        unsigned bdf = dev << 3;
        uint32_t id = pci_read32(bdf, 0);
        if ((id & 0xFFFF) != 0x1AF4) continue;
        uint16_t did = (uint16_t)(id >> 16);
        /* modern 0x1040 + type; transitional IDs: net 0x1000, blk 0x1001 */
        static const uint16_t transitional[] = {0, 0x1000, 0x1001, 0x1003, 0x1005, 0x1002, 0, 0, 0x1004};
        if (did != 0x1040 + type && !(type < 9 && transitional[type] && did == transitional[type])) continue;
        memset(d, 0, sizeof *d);
        d->bdf = bdf;
        d->device_id = did;
        if (!(pci_read16(bdf, 0x06) & 0x10)) fail("virtio %x: no capability list", (uint64_t)did);
        for (unsigned p = pci_read8(bdf, 0x34) & 0xFC; p; p = pci_read8(bdf, p + 1) & 0xFC) {
            if (pci_read8(bdf, p) != 0x09) continue; /* vendor-specific */
            unsigned cfg_type = pci_read8(bdf, p + 3);
            uint64_t base = pci_bar_address(bdf, pci_read8(bdf, p + 4));
            uintptr_t a = (uintptr_t)(base + pci_read32(bdf, p + 8));
            if (!base) continue;
            if (a + pci_read32(bdf, p + 12) > ((uint64_t)PROBE_MAP_GIB << 30))
                fail("virtio %x: its registers at %x lie outside the probe's identity map (%u GiB, layout.h)",
                     (uint64_t)did, (uint64_t)a, (uint64_t)PROBE_MAP_GIB);
            if (cfg_type == COMMON && !d->common) d->common = a;
            if (cfg_type == NOTIFY && !d->notify_base) {
                d->notify_base = a;
                d->notify_mul = pci_read32(bdf, p + 16);
            }
            if (cfg_type == ISR && !d->isr) d->isr = a;
            if (cfg_type == DEVICE && !d->devcfg) d->devcfg = a;
        }
        if (!d->common || !d->notify_base || !d->devcfg)
            fail("virtio %x at 00:%x.0: no modern interface (common/notify/device capabilities)", (uint64_t)did,
                 (uint64_t)dev);
        pci_write16(bdf, 0x04, pci_read16(bdf, 0x04) | 0x6); /* memory decoding, bus master */
        return 1;
    }
    return 0;
}

void virtio_init(struct vdev *d, uint64_t wanted) {
    mmio_w8(d->common + C_STATUS, 0);
    while (mmio_r8(d->common + C_STATUS)) pause();
    mmio_w8(d->common + C_STATUS, S_ACK);
    mmio_w8(d->common + C_STATUS, S_ACK | S_DRIVER);
    uint64_t offered = 0;
    for (uint32_t i = 0; i < 2; i++) {
        mmio_w32(d->common + C_DFSELECT, i);
        offered |= (uint64_t)mmio_r32(d->common + C_DF) << (32 * i);
    }
    if (!(offered & (1ull << F_VERSION_1))) fail("virtio %x: no VIRTIO_F_VERSION_1", (uint64_t)d->device_id);
    d->features = offered & (wanted | (1ull << F_VERSION_1));
    for (uint32_t i = 0; i < 2; i++) {
        mmio_w32(d->common + C_GFSELECT, i);
        mmio_w32(d->common + C_GF, (uint32_t)(d->features >> (32 * i)));
    }
    mmio_w8(d->common + C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(mmio_r8(d->common + C_STATUS) & S_FEATURES_OK))
        fail("virtio %x: features %x not accepted", (uint64_t)d->device_id, d->features);
    mmio_w16(d->common + C_MSIX, NO_VECTOR);
}

/* Ring memory for up to 4 queues; page-aligned parts. */
static uint8_t ring_mem[4][3][4096] NOINIT __attribute__((aligned(4096)));
static unsigned rings_used;

void virtio_queue_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t max_size) {
    if (rings_used == 4) fail("too many virtqueues");
    uint8_t(*m)[4096] = ring_mem[rings_used++];
    memset(m, 0, 3 * 4096);
    mmio_w16(d->common + C_QSELECT, index);
    uint16_t dev_max = mmio_r16(d->common + C_QSIZE);
    if (!dev_max) fail("virtio %x: queue %u does not exist", (uint64_t)d->device_id, (uint64_t)index);
    uint16_t size = 1;
    while ((uint32_t)size * 2 <= dev_max && size * 2 <= max_size && size * 2 <= VQ_MAX) size *= 2;
    memset(q, 0, sizeof *q);
    q->index = index;
    q->size = size;
    q->packed = !!(d->features & (1ull << VIRTIO_F_RING_PACKED));
    q->desc = m[0];
    q->avail = (volatile uint16_t *)m[1];
    q->used = m[2];
    q->event_idx = !!(d->features & (1ull << F_EVENT_IDX));
    q->chain_max = 1;
    q->avail_wrap = q->used_wrap = 1;
    if (q->packed)
        q->avail[1] = 1; /* driver event suppression: RING_EVENT_FLAGS_DISABLE, no interrupts */
    else if (!q->event_idx)
        q->avail[0] = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT */
    mmio_w16(d->common + C_QSIZE, size);
    mmio_w16(d->common + C_QMSIX, NO_VECTOR);
    mmio_w64(d->common + C_QDESC, (uintptr_t)q->desc);
    mmio_w64(d->common + C_QAVAIL, (uintptr_t)q->avail);
    mmio_w64(d->common + C_QUSED, (uintptr_t)q->used);
    q->notify = d->notify_base + (uintptr_t)mmio_r16(d->common + C_QNOFF) * d->notify_mul;
    mmio_w16(d->common + C_QENABLE, 1);
}

void virtio_driver_ok(struct vdev *d) {
    mmio_w8(d->common + C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

void vq_set_chain_max(struct vq *q, uint16_t n) {
    if (!n || n > VQ_MAX_CHAIN || n > q->size) fail("chains of %u descriptors do not fit the queue", (uint64_t)n);
    q->chain_max = n;
}

/* Packed descriptor flags */
#define P_NEXT 1
#define P_WRITE 2
#define P_AVAIL (1u << 7)
#define P_USED (1u << 15)

static void add_split(struct vq *q, uint16_t id, const struct vq_buf *bufs, unsigned n) {
    struct vq_desc *desc = (struct vq_desc *)q->desc;
    uint16_t h = (uint16_t)(id * q->chain_max);
    for (unsigned i = 0; i < n; i++)
        desc[h + i] = (struct vq_desc){bufs[i].addr, bufs[i].len,
                                       (uint16_t)((i + 1 < n ? VQ_DESC_F_NEXT : 0) |
                                                  (bufs[i].device_writes ? VQ_DESC_F_WRITE : 0)),
                                       (uint16_t)(h + i + 1)};
    q->avail[2 + (q->avail_idx & (q->size - 1))] = h;
    barrier();
    q->avail[1] = ++q->avail_idx;
}

static void add_packed(struct vq *q, uint16_t id, const struct vq_buf *bufs, unsigned n) {
    uint16_t head = q->next_avail, head_flags = 0;
    for (unsigned i = 0; i < n; i++) {
        volatile uint8_t *d = q->desc + 16u * q->next_avail;
        uint16_t f = (uint16_t)((i + 1 < n ? P_NEXT : 0) | (bufs[i].device_writes ? P_WRITE : 0) |
                                (q->avail_wrap ? P_AVAIL : P_USED));
        *(volatile uint64_t *)d = bufs[i].addr;
        *(volatile uint32_t *)(d + 8) = bufs[i].len;
        *(volatile uint16_t *)(d + 12) = id;
        if (i == 0) head_flags = f; /* written last: it publishes the chain */
        else *(volatile uint16_t *)(d + 14) = f;
        if (++q->next_avail == q->size) {
            q->next_avail = 0;
            q->avail_wrap ^= 1;
        }
    }
    q->chain_len[id] = (uint16_t)n;
    barrier();
    *(volatile uint16_t *)(q->desc + 16u * head + 14) = head_flags;
    q->added = (uint16_t)(q->added + n);
}

void vq_add(struct vq *q, uint16_t id, const struct vq_buf *bufs, unsigned n) {
    if (!n || n > q->chain_max || (uint32_t)(id + 1) * q->chain_max > q->size)
        fail("internal: buffer id %u with %u descriptors", (uint64_t)id, (uint64_t)n);
    if (q->packed) add_packed(q, id, bufs, n);
    else add_split(q, id, bufs, n);
}

void vq_kick(struct vq *q) {
    /* The ring update must be visible before the device's suppression
     * fields are read (store -> load ordering needs mfence). */
    __asm__ volatile("mfence" ::: "memory");
    int need;
    if (q->packed) {
        if (!q->added) return;
        uint16_t new_pos = q->next_avail, old = (uint16_t)(new_pos - q->added);
        q->added = 0;
        uint16_t off_wrap = *(volatile uint16_t *)q->used, flags = *(volatile uint16_t *)(q->used + 2);
        if (flags == 2) { /* RING_EVENT_FLAGS_DESC: the device names a position */
            uint16_t ev = off_wrap & 0x7FFF;
            if ((off_wrap >> 15) != q->avail_wrap) ev = (uint16_t)(ev - q->size);
            need = (uint16_t)(new_pos - ev - 1) < (uint16_t)(new_pos - old);
        } else {
            need = flags == 0;
        }
    } else {
        uint16_t now = q->avail_idx, old = q->notified_at;
        if (now == old) return;
        q->notified_at = now;
        if (q->event_idx) {
            uint16_t ev = *(volatile uint16_t *)(q->used + 4 + 8 * (uintptr_t)q->size);
            need = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
        } else {
            need = !(*(volatile uint16_t *)q->used & 1); /* VIRTQ_USED_F_NO_NOTIFY */
        }
    }
    if (need) {
        mmio_w16(q->notify, q->index);
        q->notifies++;
    }
}

int vq_used_pending(struct vq *q) {
    if (q->packed) {
        uint16_t f = *(volatile uint16_t *)(q->desc + 16u * q->next_used + 14);
        int avail = !!(f & P_AVAIL), used = !!(f & P_USED);
        return avail == used && used == q->used_wrap;
    }
    return *(volatile uint16_t *)(q->used + 2) != q->last_used;
}

int vq_pop(struct vq *q, uint32_t *id, uint32_t *len) {
    if (!vq_used_pending(q)) return 0;
    barrier(); /* x86 keeps loads in order; the compiler must too */
    if (q->packed) {
        volatile uint8_t *d = q->desc + 16u * q->next_used;
        *len = *(volatile uint32_t *)(d + 8);
        *id = *(volatile uint16_t *)(d + 12);
        if (*id >= VQ_MAX || !q->chain_len[*id]) fail("packed ring: used buffer id %u is not in flight", (uint64_t)*id);
        uint16_t n = q->chain_len[*id];
        q->chain_len[*id] = 0;
        q->next_used = (uint16_t)(q->next_used + n);
        if (q->next_used >= q->size) {
            q->next_used = (uint16_t)(q->next_used - q->size);
            q->used_wrap ^= 1;
        }
        return 1;
    }
    volatile uint8_t *e = q->used + 4 + 8 * (uintptr_t)(q->last_used & (q->size - 1));
    uint32_t head = *(volatile uint32_t *)e;
    *len = *(volatile uint32_t *)(e + 4);
    q->last_used++;
    if (head % q->chain_max || head >= q->size) fail("split ring: used id %u is no buffer head", (uint64_t)head);
    *id = head / q->chain_max;
    return 1;
}
