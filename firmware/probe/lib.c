/* Probe guest: the small libc it needs, the console, arguments and time. */
#include "probe.h"

/* Written by entry.S before ring 3, so they must not be in .bss (which
 * probe_main clears). */
__attribute__((section(".data"))) uint32_t probe_start_info;
struct pvclock {
    uint32_t version, pad0;
    uint64_t tsc_timestamp, system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags, pad[2];
};
__attribute__((section(".data"), aligned(64))) volatile struct pvclock probe_kvmclock;

void *memset(void *d, int c, size_t n) {
    uint8_t *p = d;
    while (n--) *p++ = (uint8_t)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n) {
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--) *p++ = *q++;
    return d;
}
int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q) return *p < *q ? -1 : 1;
    return 0;
}
size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* COM1. The VMMs' UARTs take a byte at once, so the line status is not
 * polled (each port access is a VM exit). */
static void putc_(char c) {
    if (c == '\n') outb(0x3F8, '\r');
    outb(0x3F8, (uint8_t)c);
}
static void put_u64(uint64_t v, unsigned base) {
    char buf[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (n) putc_(buf[--n]);
}
static void vpr(const char *fmt, va_list ap) {
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            putc_(*fmt);
            continue;
        }
        switch (*++fmt) {
        case 'u': put_u64(va_arg(ap, uint64_t), 10); break;
        case 'x': put_u64(va_arg(ap, uint64_t), 16); break;
        case 'd': {
            int64_t v = va_arg(ap, int64_t);
            if (v < 0) {
                putc_('-');
                v = -v;
            }
            put_u64((uint64_t)v, 10);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s) putc_(*s++);
            break;
        }
        case 'c': putc_((char)va_arg(ap, int)); break;
        case '%': putc_('%'); break;
        default: return;
        }
    }
}
void pr(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vpr(fmt, ap);
    va_end(ap);
}
void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pr("PROBE error ");
    vpr(fmt, ap);
    pr("\n");
    va_end(ap);
    poweroff();
}

/* ACPI soft-off. PM1a_CNT is PMBASE + 4; the ICH9 LPC bridge (00:1f.0)
 * says where PMBASE is, 0x600 (our VMM's and QEMU Q35's) otherwise. Our
 * VMM's \_S5 is SLP_TYP 5, QEMU's is 0: write both (the other value means
 * nothing to either). */
void poweroff(void) {
    uint16_t pmbase = 0x600;
    unsigned lpc = (31u << 3);
    if (pci_read32(lpc, 0) == 0x29188086) {
        uint16_t b = (uint16_t)(pci_read32(lpc, 0x40) & 0xFF80);
        if (b) pmbase = b;
    }
    outw((uint16_t)(pmbase + 4), (5 << 10) | (1 << 13));
    outw((uint16_t)(pmbase + 4), (0 << 10) | (1 << 13));
    for (;;) pause();
}

static char cmdline[1024];
void args_init(const char *s) {
    size_t n = 0;
    if (s)
        for (; s[n] && n + 1 < sizeof cmdline; n++) cmdline[n] = s[n];
    cmdline[n] = 0;
}
/* Finds "key=" at the start of a word; returns the value or NULL. */
static const char *arg_find(const char *key) {
    size_t k = strlen(key);
    for (const char *p = cmdline; *p;) {
        while (*p == ' ') p++;
        if (!memcmp(p, key, k) && p[k] == '=') return p + k + 1;
        while (*p && *p != ' ') p++;
    }
    return NULL;
}
uint64_t arg_u64(const char *key, uint64_t def) {
    const char *v = arg_find(key);
    if (!v || *v < '0' || *v > '9') return def;
    uint64_t r = 0;
    while (*v >= '0' && *v <= '9') r = r * 10 + (uint64_t)(*v++ - '0');
    return r;
}
const char *arg_str(const char *key, const char *def) {
    static char vals[8][64];
    static int next;
    const char *v = arg_find(key);
    if (!v) return def;
    char *out = vals[next++ % 8];
    size_t n = 0;
    while (v[n] && v[n] != ' ' && n + 1 < 64) {
        out[n] = v[n];
        n++;
    }
    out[n] = 0;
    return out;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
uint64_t rng_next(void) { /* xorshift64 */
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint64_t khz;
void time_init(void) {
    khz = arg_u64("tsc_khz", 0);
    if (khz) return;
    uint32_t v1, v2, mul;
    int8_t shift;
    do {
        v1 = probe_kvmclock.version;
        barrier();
        mul = probe_kvmclock.tsc_to_system_mul;
        shift = probe_kvmclock.tsc_shift;
        barrier();
        v2 = probe_kvmclock.version;
    } while ((v1 & 1) || v1 != v2);
    if (!mul) fail("no TSC frequency: kvmclock was not filled in; pass tsc_khz=");
    /* ns = ((cycles << shift) * mul) >> 32  =>  cycles per ms = 2^32 * 1e6 / (mul << shift) */
    khz = (1000000ull << 32) / mul;
    khz = shift >= 0 ? khz >> shift : khz << -shift;
}
uint64_t tsc_khz(void) { return khz; }
uint64_t cycles_to_ns(uint64_t c) { return c / khz * 1000000 + c % khz * 1000000 / khz; }
uint64_t ns_to_cycles(uint64_t ns) { return ns / 1000000 * khz + ns % 1000000 * khz / 1000000; }

static void sift(uint64_t *v, size_t i, size_t n) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && v[c + 1] > v[c]) c++;
        if (v[i] >= v[c]) return;
        uint64_t t = v[i];
        v[i] = v[c];
        v[c] = t;
        i = c;
    }
}
void sort_u64(uint64_t *v, size_t n) { /* heapsort */
    for (size_t i = n / 2; i-- > 0;) sift(v, i, n);
    for (size_t e = n; e > 1; e--) {
        uint64_t t = v[0];
        v[0] = v[e - 1];
        v[e - 1] = t;
        sift(v, 0, e - 1);
    }
}
