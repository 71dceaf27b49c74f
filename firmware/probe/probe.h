/* Probe guest: shared declarations. Everything here runs in ring 3 with
 * IOPL 3, identity-mapped, interrupts off, no libc. */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

#define NOINIT __attribute__((section(".noinit")))

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port) {
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause"); }

/* MMIO: volatile accesses of the given width. */
static inline uint8_t mmio_r8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_r16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_r32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_w8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_w16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_w32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_w64(uintptr_t a, uint64_t v) {
    mmio_w32(a, (uint32_t)v);
    mmio_w32(a + 4, (uint32_t)(v >> 32));
}

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
void pr(const char *fmt, ...);                 /* COM1; %s %u %x %d (all 64-bit), %c */
__attribute__((noreturn)) void fail(const char *fmt, ...);
__attribute__((noreturn)) void poweroff(void);
/* Command line: "key=value" words. arg_u64 returns def when absent or bad. */
void args_init(const char *cmdline);
uint64_t arg_u64(const char *key, uint64_t def);
const char *arg_str(const char *key, const char *def); /* value up to the next space, copied */
uint64_t rng_next(void);

/* Time: the TSC, scaled by kvmclock or tsc_khz= */
void time_init(void);
uint64_t tsc_khz(void);
uint64_t cycles_to_ns(uint64_t c);
uint64_t ns_to_cycles(uint64_t ns);
void sort_u64(uint64_t *v, size_t n);

/* pci.c */
uint32_t pci_read32(unsigned bdf, unsigned off);
void pci_write32(unsigned bdf, unsigned off, uint32_t v);
uint16_t pci_read16(unsigned bdf, unsigned off);
uint8_t pci_read8(unsigned bdf, unsigned off);
void pci_write16(unsigned bdf, unsigned off, uint16_t v);
uint64_t pci_bar_address(unsigned bdf, unsigned bar);

/* virtio.c: a virtio 1.x PCI driver with split or packed rings, polled. */
#define VQ_MAX 256
#define VQ_MAX_CHAIN 66
struct vq_desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
/* What vq_add takes: one buffer of a chain. */
struct vq_buf { uint64_t addr; uint32_t len; int device_writes; };
#define VQ_DESC_F_NEXT 1
#define VQ_DESC_F_WRITE 2
struct vq {
    uint16_t index, size;
    int packed, event_idx;
    uint8_t *desc;               /* split: struct vq_desc[size]; packed: 16-byte packed descriptors */
    volatile uint16_t *avail;    /* split: flags, idx, ring[size], used_event; packed: driver event suppression */
    volatile uint8_t *used;      /* split: flags, idx, ring[size]{id, len}, avail_event; packed: device's */
    uintptr_t notify;
    uint16_t chain_max;          /* split: descriptors reserved per buffer id (vq_set_chain_max) */
    /* split */
    uint16_t avail_idx, last_used, notified_at;
    /* packed */
    uint16_t next_avail, next_used, added;
    int avail_wrap, used_wrap;
    uint16_t chain_len[VQ_MAX];  /* descriptors each buffer id took */
    uint64_t notifies;           /* doorbell writes done */
};
struct vdev {
    unsigned bdf;
    uint16_t device_id;
    uintptr_t common, notify_base, isr, devcfg;
    uint32_t notify_mul;
    uint64_t features;           /* negotiated */
};
#define VIRTIO_F_RING_PACKED 34
int virtio_find(unsigned virtio_type, struct vdev *d);  /* 1 if found */
/* Negotiates wanted & offered (VERSION_1 is always wanted); fails without it. */
void virtio_init(struct vdev *d, uint64_t wanted);
void virtio_queue_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t max_size);
void virtio_driver_ok(struct vdev *d);
/* Buffers are named by an id below size / chain_max; each id is in flight
 * at most once. Split rings keep chain_max descriptors per id. */
void vq_set_chain_max(struct vq *q, uint16_t n);
void vq_add(struct vq *q, uint16_t id, const struct vq_buf *bufs, unsigned n); /* no notify */
void vq_kick(struct vq *q);                    /* notify if the device asked for it */
int vq_pop(struct vq *q, uint32_t *id, uint32_t *len); /* 1 if a used buffer was taken */
int vq_used_pending(struct vq *q);             /* 1 if vq_pop would take one */
