/*
 * hostile.c - a guest program that attacks its VMM, for the real-guest
 * suite's hostile case (tests/guest/test_security.py).  Built static
 * (gcc -O2 -static, cached like blkbench) and run as root in the virtio
 * block guest, it does what a malicious guest kernel could do, through
 * Linux's user-space doors to the hardware: iopl(3) for port I/O,
 * /sys/bus/pci/devices/BDF/config and resourceN for PCI config space and
 * BARs, /proc/self/pagemap for the guest-physical address of its buffers.
 *
 *   vmmhostile ports SEED [FIRST LAST]
 *       reads and writes random values to every I/O port (below 0x1000 at
 *       sizes 1, 2 and 4, above at one random size) except those whose
 *       defined effect ends or derails the guest itself (list below).
 *   vmmhostile pci SEED ROUNDS BDF...
 *       for each virtio PCI device BDF: unbinds its driver, then ROUNDS
 *       rounds of: reset; a random (sometimes valid, sometimes not) status
 *       and feature sequence; every queue (and some that do not exist)
 *       programmed with random sizes, vectors and ring addresses (in a
 *       garbage-filled buffer of its own, misaligned, outside RAM, in MMIO)
 *       and notified; random writes to the common and device config, the
 *       notify area and the MSI-X table; random BAR values, command bits and
 *       config-space writes (the BARs are put back after each round).  At
 *       the end the device is reset, its BARs restored and the driver bound
 *       again.
 *
 * Everything the device could be told to write lands in the program's own
 * buffer or outside guest RAM: the buffer is filled with words whose top
 * bit is set, so any address or page number read from garbage is outside
 * RAM, and crafted descriptors point only into the buffer.  (A device that
 * writes where the guest told it to is not a VMM bug; the test is about the
 * VMM, so the guest does not shoot itself.)
 *
 * Prints "HOSTILE key=value ..." lines; exit 0 when it ran to the end, 2 on
 * a usage or set-up error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint32_t rnd_below(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }

static void die(const char *what)
{
    printf("HOSTILE error %s: %s\n", what, strerror(errno));
    exit(2);
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ ports -- */

/* Ports not written: in-kernel KVM devices the guest's own interrupts and
 * timers depend on (PIC, PIT, ELCR), the i8042 command port (0xfe resets),
 * pvpanic (a panic report), ACPI PM1a_CNT (sleep = power off), the PCI
 * config mechanism and the reset control register (0xcf8-0xcff: the pci
 * mode attacks config space on purpose, device by device), and COM1, which
 * carries the guest's console and with it the test's results (not read
 * either: reading IIR takes the transmit interrupt Linux waits for). */
static int excluded_port(unsigned p)
{
    return (p >= 0x3f8 && p <= 0x3ff) || (p >= 0x20 && p <= 0x21) || (p >= 0xa0 && p <= 0xa1) || (p >= 0x40 && p <= 0x43) || p == 0x61 ||
           (p >= 0x4d0 && p <= 0x4d1) || p == 0x64 || p == 0x505 || (p >= 0x604 && p <= 0x605) ||
           (p >= 0xcf8 && p <= 0xcff);
}

/* A write of SIZE bytes at port P reaches ports P..P+SIZE-1. */
static int write_excluded(unsigned p, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        if (excluded_port(p + i))
            return 1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Ports FIRST..LAST: below 0x1000 (where the platform's devices live) each
 * is read and written at sizes 1, 2 and 4; above, once each way at a
 * random size (every access is a VM exit, and exits are dear in an
 * emulated test host). */
static int ports(uint64_t seed, unsigned first, unsigned last)
{
    rng_state = seed;
    if (iopl(3) != 0)
        die("iopl(3)");
    double t0 = now();
    unsigned long reads = 0, writes = 0;
    for (unsigned p = first; p <= last && p <= 0xffff; p++) {
        unsigned sizes[3] = {1, 2, 4}, n = 3;
        if (p >= 0x1000) {
            sizes[0] = 1u << rnd_below(3);
            n = 1;
        }
        for (unsigned k = 0; k < n; k++) {
            unsigned sz = sizes[k];
            if (p + sz - 1 > 0xffff)
                continue;
            if (!(p + sz - 1 >= 0x3f8 && p <= 0x3ff)) { /* COM1: see excluded_port() */
                if (sz == 1)
                    (void)inb(p);
                else if (sz == 2)
                    (void)inw(p);
                else
                    (void)inl(p);
                reads++;
            }
            if (write_excluded(p, sz))
                continue;
            uint32_t v = (uint32_t)rnd();
            if (sz == 1)
                outb((uint8_t)v, p);
            else if (sz == 2)
                outw((uint16_t)v, p);
            else
                outl(v, p);
            writes++;
        }
    }
    printf("HOSTILE ports 0x%x-0x%x reads=%lu writes=%lu seconds=%.1f\n", first, last, reads, writes, now() - t0);
    return 0;
}

/* -------------------------------------------------------------- pci -- */

#define BUF_SIZE (2u << 20)

struct buf {
    uint8_t *p;
    uint64_t phys; /* of p[0]; the buffer is physically contiguous */
    uint32_t size;
};

static uint64_t phys_of(void *va)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        die("open /proc/self/pagemap");
    uint64_t e = 0;
    long ps = sysconf(_SC_PAGESIZE);
    if (pread(fd, &e, 8, (off_t)((uintptr_t)va / (uintptr_t)ps) * 8) != 8)
        die("read pagemap");
    close(fd);
    if (!(e & (1ULL << 63)) || (e & ((1ULL << 55) - 1)) == 0) {
        errno = EPERM;
        die("pagemap gives no frame number");
    }
    return (e & ((1ULL << 55) - 1)) * (uint64_t)ps + ((uintptr_t)va % (uintptr_t)ps);
}

/* A physically contiguous buffer: a 2 MiB huge page. */
static struct buf get_buf(void)
{
    struct buf b = {0};
    int fd = open("/proc/sys/vm/nr_hugepages", O_WRONLY);
    if (fd >= 0) {
        (void)!write(fd, "4\n", 2);
        close(fd);
    }
    b.p = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    if (b.p == MAP_FAILED)
        die("mmap of a 2 MiB huge page");
    if (mlock(b.p, BUF_SIZE) != 0)
        die("mlock");
    b.phys = phys_of(b.p);
    b.size = BUF_SIZE;
    return b;
}

/* Garbage in which every 32-bit word has its top bit set: a page number
 * or address read from it is outside guest RAM. */
static void garbage(struct buf *b, uint32_t off, uint32_t len)
{
    for (uint32_t i = off; i + 4 <= off + len && i + 4 <= b->size; i += 4) {
        uint32_t v = (uint32_t)rnd() | 0x80000000u;
        memcpy(b->p + i, &v, 4);
    }
}

struct cfg {
    int fd;
    char bdf[32];
};

static uint32_t cfg_read(struct cfg *c, unsigned off, unsigned size)
{
    uint32_t v = 0;
    if (pread(c->fd, &v, size, off) != (ssize_t)size)
        return 0xffffffffu;
    return v;
}

static void cfg_write(struct cfg *c, unsigned off, unsigned size, uint32_t v)
{
    (void)!pwrite(c->fd, &v, size, off);
}

struct region {
    volatile uint8_t *p;
    uint32_t len;
};

struct dev {
    struct cfg cfg;
    struct region bars[6];
    uint32_t bar_regs[6];
    uint64_t bar_addr[6];
    struct region common, notify, isr, devcfg, msix, pba;
    uint32_t notify_mult;
    uint16_t msix_entries;
    unsigned msix_cap;
    uint16_t command;
};

static void w8(struct region *r, uint32_t off, uint8_t v) { if (off < r->len) r->p[off] = v; }
static void w16(struct region *r, uint32_t off, uint16_t v) { if (off + 2 <= r->len) *(volatile uint16_t *)(r->p + off) = v; }
static void w32(struct region *r, uint32_t off, uint32_t v) { if (off + 4 <= r->len) *(volatile uint32_t *)(r->p + off) = v; }
static void w64(struct region *r, uint32_t off, uint64_t v)
{
    w32(r, off, (uint32_t)v);
    w32(r, off + 4, (uint32_t)(v >> 32));
}
static uint8_t r8(struct region *r, uint32_t off) { return off < r->len ? r->p[off] : 0xff; }
static uint16_t r16(struct region *r, uint32_t off) { return off + 2 <= r->len ? *(volatile uint16_t *)(r->p + off) : 0xffff; }
static uint32_t r32(struct region *r, uint32_t off) { return off + 4 <= r->len ? *(volatile uint32_t *)(r->p + off) : ~0u; }

static int map_bar(struct dev *d, unsigned bar)
{
    if (bar > 5)
        return -1;
    if (d->bars[bar].p)
        return 0;
    char path[96];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/resource%u", d->cfg.bdf, bar);
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -1;
    d->bars[bar].p = p;
    d->bars[bar].len = (uint32_t)st.st_size;
    return 0;
}

static void sub_region(struct dev *d, struct region *out, unsigned bar, uint32_t off, uint32_t len)
{
    if (map_bar(d, bar) != 0 || off >= d->bars[bar].len)
        return;
    out->p = d->bars[bar].p + off;
    out->len = len < d->bars[bar].len - off ? len : d->bars[bar].len - off;
}

static int open_dev(struct dev *d, const char *bdf)
{
    memset(d, 0, sizeof *d);
    snprintf(d->cfg.bdf, sizeof d->cfg.bdf, "%s", bdf);
    char path[96];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/config", bdf);
    d->cfg.fd = open(path, O_RDWR);
    if (d->cfg.fd < 0)
        return -1;
    /* Unbind whatever driver has it: the device is ours now. */
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/driver/unbind", bdf);
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
        (void)!write(fd, bdf, strlen(bdf));
        close(fd);
    }
    d->command = (uint16_t)cfg_read(&d->cfg, 0x04, 2);
    cfg_write(&d->cfg, 0x04, 2, d->command | 0x6); /* memory decode, bus master */
    for (unsigned i = 0; i < 6; i++)
        d->bar_regs[i] = cfg_read(&d->cfg, 0x10 + 4 * i, 4);
    unsigned cap = cfg_read(&d->cfg, 0x34, 1) & 0xfc;
    for (int guard = 0; cap && guard < 48; guard++) {
        unsigned id = cfg_read(&d->cfg, cap, 1);
        if (id == 0x09) {
            unsigned type = cfg_read(&d->cfg, cap + 3, 1), bar = cfg_read(&d->cfg, cap + 4, 1);
            uint32_t off = cfg_read(&d->cfg, cap + 8, 4), len = cfg_read(&d->cfg, cap + 12, 4);
            struct region *r = type == 1 ? &d->common : type == 2 ? &d->notify : type == 3 ? &d->isr
                             : type == 4 ? &d->devcfg : NULL;
            if (r)
                sub_region(d, r, bar, off, len);
            if (type == 2)
                d->notify_mult = cfg_read(&d->cfg, cap + 16, 4);
        } else if (id == 0x11) {
            d->msix_cap = cap;
            d->msix_entries = (uint16_t)((cfg_read(&d->cfg, cap + 2, 2) & 0x7ff) + 1);
            uint32_t t = cfg_read(&d->cfg, cap + 4, 4), p = cfg_read(&d->cfg, cap + 8, 4);
            sub_region(d, &d->msix, t & 7, t & ~7u, d->msix_entries * 16u);
            sub_region(d, &d->pba, p & 7, p & ~7u, 8);
        }
        cap = cfg_read(&d->cfg, cap + 1, 1) & 0xfc;
    }
    return d->common.p ? 0 : -1;
}

/* An address for a ring of NEED bytes: inside our buffer (aligned or not,
 * sometimes ending exactly at its end), or somewhere the device must
 * refuse: page 0, the local APIC, past RAM, wrapping around, anything. */
static uint64_t pick_addr(struct buf *b, uint32_t need)
{
    switch (rnd_below(10)) {
    case 0: return 0;
    case 1: return 0xfee00000u;
    case 2: return 0xfffffffffffff000ULL;
    case 3: return 1ULL << 46;
    case 4: return (uint64_t)rnd() | (1ULL << 63);
    case 5: return b->phys + b->size - need;
    default: {
        uint32_t off = rnd_below(b->size - need);
        if (rnd_below(3))
            off &= ~63u;
        return b->phys + off;
    }
    }
}

/* Crafted split-ring content for a queue of size qs at desc/avail in the
 * buffer: descriptors into the buffer with random flags and links. */
static void craft_split(struct buf *b, uint64_t desc, uint64_t avail, uint32_t qs)
{
    /* Only rings wholly inside the buffer (no sums that could wrap). */
    if (desc < b->phys || desc - b->phys > b->size || 16ULL * qs > b->size - (desc - b->phys))
        return;
    if (avail < b->phys || avail - b->phys > b->size || 6 + 2ULL * qs > b->size - (avail - b->phys))
        return;
    uint8_t *d = b->p + (desc - b->phys), *a = b->p + (avail - b->phys);
    for (uint32_t i = 0; i < qs; i++) {
        uint32_t len = rnd_below(3) ? rnd_below(4096) : (uint32_t)rnd();
        uint64_t addr = len <= 4096 ? b->phys + rnd_below(b->size - 4096) : (uint64_t)rnd() | (1ULL << 63);
        uint16_t flags = (uint16_t)(rnd() & 7), next = (uint16_t)(rnd_below(4) ? (i + 1) % qs : rnd());
        memcpy(d + 16 * i, &addr, 8);
        memcpy(d + 16 * i + 8, &len, 4);
        memcpy(d + 16 * i + 12, &flags, 2);
        memcpy(d + 16 * i + 14, &next, 2);
    }
    uint16_t flags = (uint16_t)rnd_below(2), idx = (uint16_t)(rnd_below(2) ? rnd_below(qs + 1) : rnd());
    memcpy(a, &flags, 2);
    memcpy(a + 2, &idx, 2);
    for (uint32_t i = 0; i < qs; i++) {
        uint16_t head = (uint16_t)(rnd_below(4) ? rnd_below(qs) : rnd());
        memcpy(a + 4 + 2 * i, &head, 2);
    }
}

struct stats {
    unsigned long rounds, queues, notifies, needs_reset, cfg_writes, msix_writes, bar_moves;
};

static void notify(struct dev *d, uint16_t q, uint16_t notify_off, struct stats *s)
{
    if (!d->notify.p)
        return;
    uint32_t off = (uint32_t)notify_off * d->notify_mult;
    if (rnd_below(8) == 0)
        off = rnd_below(d->notify.len + 16);
    w16(&d->notify, off, rnd_below(8) ? q : (uint16_t)rnd());
    s->notifies++;
}

static void round_on(struct dev *d, struct buf *b, struct stats *s)
{
    struct region *c = &d->common;
    garbage(b, 0, b->size);
    /* reset, and wait (bounded) for it to read back 0 */
    w8(c, 0x14, 0);
    for (int i = 0; i < 100 && r8(c, 0x14) != 0; i++)
        sleep_us(1000);
    int valid = rnd_below(3) != 0;
    if (valid) {
        w8(c, 0x14, 1);
        w8(c, 0x14, 3);
        /* What the device offers (all of it, or a random part of it, with
         * VERSION_1), and now and then a bit it does not offer. */
        for (uint32_t sel = 0; sel < 2; sel++) {
            w32(c, 0x00, sel);
            uint32_t f = r32(c, 0x04);
            if (rnd_below(2))
                f &= (uint32_t)rnd();
            if (sel == 1)
                f |= 1; /* VERSION_1 */
            if (rnd_below(8) == 0)
                f |= 1u << rnd_below(32);
            w32(c, 0x08, sel);
            w32(c, 0x0c, f);
        }
        w8(c, 0x14, 0x0b);
    } else {
        w8(c, 0x14, (uint8_t)rnd());
    }
    uint16_t nq = r16(c, 0x12);
    if (nq > 64)
        nq = 64;
    for (uint32_t q = 0; q < nq + 2u; q++) {
        uint16_t sel = rnd_below(10) ? (uint16_t)q : (uint16_t)rnd();
        w16(c, 0x16, sel);
        uint16_t max = r16(c, 0x18);
        uint16_t qs;
        switch (rnd_below(6)) {
        case 0: qs = (uint16_t)rnd(); break;
        case 1: qs = 0; break;
        case 2: qs = max ? (uint16_t)(max / 2) : 1; break;
        default: qs = max; break;
        }
        w16(c, 0x18, qs);
        /* Rings sized for what the device took; a size it should not have
         * taken (above its maximum) gets rings outside RAM only. */
        uint32_t eff = r16(c, 0x18);
        uint64_t desc, avail, used;
        if (eff == 0 || eff > 1024 || (max && eff > max)) {
            desc = avail = used = (1ULL << 46) + (rnd() & 0xfff);
        } else {
            desc = pick_addr(b, 16 * eff);
            avail = pick_addr(b, 6 + 2 * eff);
            used = pick_addr(b, 6 + 8 * eff);
        }
        if (rnd_below(2))
            craft_split(b, desc, avail, eff);
        w16(c, 0x1a, rnd_below(4) ? (uint16_t)rnd_below(d->msix_entries + 2) : (uint16_t)rnd());
        w64(c, 0x20, desc);
        w64(c, 0x28, avail);
        w64(c, 0x30, used);
        w16(c, 0x1c, rnd_below(6) ? 1 : (uint16_t)rnd());
        s->queues++;
    }
    w16(c, 0x10, rnd_below(4) ? (uint16_t)rnd_below(d->msix_entries + 2) : (uint16_t)rnd());
    w8(c, 0x14, valid && rnd_below(4) ? 0x0f : (uint8_t)rnd());
    for (uint32_t q = 0; q < nq + 1u; q++) {
        w16(c, 0x16, (uint16_t)q);
        notify(d, (uint16_t)q, r16(c, 0x1e), s);
    }
    /* random register writes: common config, device config, ISR, notify */
    for (int i = 0; i < 64; i++) {
        struct region *r = rnd_below(2) ? c : d->devcfg.p ? &d->devcfg : c;
        uint32_t off = rnd_below(r->len + 8);
        switch (rnd_below(4)) {
        case 0: w8(r, off, (uint8_t)rnd()); break;
        case 1: w16(r, off, (uint16_t)rnd()); break;
        case 2: w32(r, off, (uint32_t)rnd()); break;
        default: (void)r32(r, off); break;
        }
        if (r == c && (off == 0x14 || off == 0x16 || off == 0x1c))
            continue; /* status/select/enable writes are part of the attack too */
        s->cfg_writes++;
    }
    (void)r8(&d->isr, 0);
    for (uint32_t q = 0; q < nq + 1u; q++)
        notify(d, (uint16_t)q, (uint16_t)q, s);
    /* MSI-X: entries past the table, addresses that are no MSI at all, and
     * MSIs to any destination. Their data asks only for fixed or
     * lowest-priority delivery of a device vector (0x30-0xef): an INIT,
     * NMI or exception vector the guest sends itself would end the guest,
     * not test the VMM. */
    for (uint32_t i = 0; d->msix.p && i < d->msix_entries + 1u; i++) {
        uint32_t e = 16 * (rnd_below(4) ? i : rnd_below(d->msix_entries * 2 + 2));
        w32(&d->msix, e, rnd_below(2) ? 0xfee00000u | (uint32_t)(rnd() & 0xff00c) : (uint32_t)rnd());
        w32(&d->msix, e + 4, rnd_below(2) ? 0 : (uint32_t)rnd());
        w32(&d->msix, e + 8, (0x30 + rnd_below(0xc0)) | (rnd_below(2) << 8));
        w32(&d->msix, e + 12, (uint32_t)rnd_below(2));
        w32(&d->pba, 0, (uint32_t)rnd()); /* read-only */
        s->msix_writes++;
    }
    if (d->msix_cap)
        cfg_write(&d->cfg, d->msix_cap + 2, 2, (uint16_t)(rnd() & 0xc000));
    sleep_us(3000); /* let the I/O threads chew on it */
    for (uint32_t q = 0; q < nq + 1u; q++)
        notify(d, (uint16_t)q, (uint16_t)q, s);
    sleep_us(3000);
    if (r8(c, 0x14) & 0x40)
        s->needs_reset++;
    /* Config space: BARs to random places (over RAM, over each other, all
     * ones), the command register, anything else in the first 256 bytes;
     * then the BARs and command put back for the next round. */
    for (int i = 0; i < 8; i++) {
        unsigned off = rnd_below(4) ? 0x10 + 4 * rnd_below(6) : rnd_below(256);
        uint32_t v;
        switch (rnd_below(5)) {
        case 0: v = 0xffffffffu; break;
        case 1: v = 0x00100000u; break;    /* over low RAM */
        case 2: v = d->bar_regs[rnd_below(6)]; break; /* over another BAR */
        case 3: v = 0xfee00000u; break;    /* over the local APIC */
        default: v = (uint32_t)rnd(); break;
        }
        if (off == 0x04)
            v = (v & ~0x4u) | 0x2; /* command: keep memory decode while we still touch the BARs below */
        cfg_write(&d->cfg, off & ~3u, 4, v);
        (void)r32(c, 0x14);
        s->bar_moves++;
    }
    for (unsigned i = 0; i < 6; i++)
        cfg_write(&d->cfg, 0x10 + 4 * i, 4, d->bar_regs[i]);
    cfg_write(&d->cfg, 0x04, 2, d->command | 0x6);
    if (d->msix_cap)
        cfg_write(&d->cfg, d->msix_cap + 2, 2, 0);
    s->rounds++;
}

static int pci(uint64_t seed, unsigned rounds, int n, char **bdfs)
{
    rng_state = seed;
    struct buf b = get_buf();
    printf("HOSTILE buffer phys=0x%" PRIx64 " size=%u\n", b.phys, b.size);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        struct dev d;
        struct stats s = {0};
        double t0 = now();
        if (open_dev(&d, bdfs[i]) != 0) {
            printf("HOSTILE device %s: no virtio common config found\n", bdfs[i]);
            failed = 1;
            continue;
        }
        for (unsigned r = 0; r < rounds; r++)
            round_on(&d, &b, &s);
        /* leave it reset, its BARs and command as Linux set them, and let
         * the driver have it back */
        w8(&d.common, 0x14, 0);
        for (int k = 0; k < 100 && r8(&d.common, 0x14) != 0; k++)
            sleep_us(1000);
        for (unsigned k = 0; k < 6; k++)
            cfg_write(&d.cfg, 0x10 + 4 * k, 4, d.bar_regs[k]);
        cfg_write(&d.cfg, 0x04, 2, d.command);
        printf("HOSTILE device %s rounds=%lu queues=%lu notifies=%lu needs_reset=%lu cfg_writes=%lu msix_writes=%lu "
               "bar_writes=%lu seconds=%.1f\n",
               bdfs[i], s.rounds, s.queues, s.notifies, s.needs_reset, s.cfg_writes, s.msix_writes, s.bar_moves,
               now() - t0);
        fflush(stdout);
        int fd = open("/sys/bus/pci/drivers/virtio-pci/bind", O_WRONLY);
        if (fd >= 0) {
            if (write(fd, bdfs[i], strlen(bdfs[i])) < 0)
                printf("HOSTILE device %s: rebinding virtio-pci failed: %s\n", bdfs[i], strerror(errno));
            close(fd);
        }
        for (unsigned k = 0; k < 6; k++)
            if (d.bars[k].p)
                munmap((void *)d.bars[k].p, d.bars[k].len);
        close(d.cfg.fd);
    }
    return failed;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((argc == 3 || argc == 5) && strcmp(argv[1], "ports") == 0)
        return ports(strtoull(argv[2], NULL, 0), argc == 5 ? (unsigned)strtoul(argv[3], NULL, 0) : 0,
                     argc == 5 ? (unsigned)strtoul(argv[4], NULL, 0) : 0xffff);
    if (argc >= 5 && strcmp(argv[1], "pci") == 0)
        return pci(strtoull(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0), argc - 4, argv + 4);
    fprintf(stderr, "usage: vmmhostile ports SEED [FIRST LAST] | pci SEED ROUNDS BDF...\n");
    return 2;
}
