/*
 * blkbench.c - block-device benchmark and integrity checker for the
 * real-guest tests (tests/guest/run-guest-tests.sh, tests/bench/blk-bench.sh).
 *
 * Built static (gcc -O2 -static) so that it runs both in the busybox guest
 * and on the host, where it writes and verifies the same patterns in image
 * files.  No liburing/libaio: Linux AIO through raw syscalls.
 *
 *   blkbench bench DEV [MIB [SECONDS]]
 *       O_DIRECT sequential write then read of MIB MiB (default 256) from
 *       offset 0 in 1 MiB requests, then 4 KiB random reads inside that
 *       region at queue depth 1 and at queue depth 32 (SECONDS each, default
 *       5).  Prints "BLKBENCH key=value" lines.
 *   blkbench pattern-write DEV SEED COUNT
 *       writes COUNT 64 KiB slots chosen at pseudo-random distinct offsets,
 *       each filled with a pseudo-random stream derived from SEED and the
 *       slot number, then fsyncs.
 *   blkbench pattern-verify DEV SEED COUNT
 *       reads the whole device/file: the slots pattern-write would write
 *       must hold their pattern, every other byte must be zero.
 *   blkbench trywrite DEV
 *       tries to open DEV for writing and write+fsync one 4 KiB block;
 *       exit 0 if that is refused (prints the errno), 1 if it succeeded.
 *   blkbench fill DEV MIB
 *       writes MIB MiB of non-zero data from offset 0 and fsyncs.
 *   blkbench tcp-send ADDR PORT FILE
 *       connects to the IPv4 ADDR:PORT (retrying for 30 s) and sends FILE
 *       in 1 MiB writes, then closes.
 *   blkbench tcp-recv PORT FILE
 *       accepts one TCP connection on PORT (any address) and writes what
 *       arrives, read 1 MiB at a time, to FILE until the peer closes.
 *   The virtio-net cases use these two rather than busybox nc, whose 8 KiB
 *   loop cut the guest's sends into ~4 KiB packets: the transfer then
 *   measured nc, not the device.
 * O_DIRECT is used when the file supports it (falls back otherwise, e.g.
 * on tmpfs).  Exit status 0 on success, 1 on a failed check, 2 on usage
 * or I/O errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <arpa/inet.h>
#include <linux/fs.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOT (64u * 1024u)
#define MIB (1024u * 1024u)
#define BLK 4096u
#define QD 32

static void die(const char *what)
{
    fprintf(stderr, "blkbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void *aligned(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, BLK, n) != 0)
        die("posix_memalign");
    memset(p, 0, n);
    return p;
}

/* Opens with O_DIRECT if the filesystem allows it. */
static int open_dev(const char *path, int flags, int *direct)
{
    int fd = open(path, flags | O_DIRECT);
    if (fd >= 0) {
        *direct = 1;
        return fd;
    }
    if (errno != EINVAL)
        return -1;
    *direct = 0;
    return open(path, flags);
}

static uint64_t dev_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    if (S_ISBLK(st.st_mode)) {
        uint64_t n = 0;
        if (ioctl(fd, BLKGETSIZE64, &n) != 0)
            die("BLKGETSIZE64");
        return n;
    }
    return (uint64_t)st.st_size;
}

static void full_pwrite(int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("pwrite");
        done += (size_t)r;
    }
}

static void full_pread(int fd, void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("pread");
        if (r == 0) {
            errno = EIO;
            die("pread: unexpected end of file");
        }
        done += (size_t)r;
    }
}

/* ------------------------------------------------------------ patterns -- */

static void slot_fill(uint8_t *buf, uint64_t seed, uint64_t slot)
{
    uint64_t s = seed ^ (slot * 0xD1B54A32D192ED03ull);
    for (size_t i = 0; i < SLOT; i += 8) {
        uint64_t v = splitmix(&s);
        memcpy(buf + i, &v, 8);
    }
}

/* The COUNT distinct slots (in write order) out of NSLOTS for SEED:
 * a partial Fisher-Yates shuffle. */
static uint64_t *choose_slots(uint64_t seed, uint64_t nslots, uint64_t count)
{
    if (count > nslots) {
        fprintf(stderr, "blkbench: %" PRIu64 " slots requested, device has %" PRIu64 "\n", count, nslots);
        exit(2);
    }
    uint64_t *idx = malloc(nslots * sizeof *idx);
    if (!idx)
        die("malloc");
    for (uint64_t i = 0; i < nslots; i++)
        idx[i] = i;
    uint64_t s = seed;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t j = i + splitmix(&s) % (nslots - i);
        uint64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    return idx;
}

static int pattern_write(const char *path, uint64_t seed, uint64_t count)
{
    int direct;
    int fd = open_dev(path, O_RDWR, &direct);
    if (fd < 0)
        die(path);
    uint64_t nslots = dev_size(fd) / SLOT;
    uint64_t *slots = choose_slots(seed, nslots, count);
    uint8_t *buf = aligned(SLOT);
    for (uint64_t i = 0; i < count; i++) {
        slot_fill(buf, seed, slots[i]);
        full_pwrite(fd, buf, SLOT, slots[i] * SLOT);
    }
    if (fsync(fd) != 0)
        die("fsync");
    close(fd);
    printf("BLKBENCH pattern-write slots=%" PRIu64 " bytes=%" PRIu64 " seed=%" PRIu64 " direct=%d\n", count,
           count * SLOT, seed, direct);
    return 0;
}

static int pattern_verify(const char *path, uint64_t seed, uint64_t count)
{
    int direct;
    int fd = open_dev(path, O_RDONLY, &direct);
    if (fd < 0)
        die(path);
    uint64_t size = dev_size(fd);
    uint64_t nslots = size / SLOT;
    uint64_t *slots = choose_slots(seed, nslots, count);
    uint8_t *mark = calloc(nslots ? nslots : 1, 1);
    if (!mark)
        die("calloc");
    for (uint64_t i = 0; i < count; i++)
        mark[slots[i]] = 1;
    uint8_t *buf = aligned(MIB), *want = aligned(SLOT), *zero = aligned(SLOT);
    uint64_t bad_slots = 0, first_bad = UINT64_MAX;
    for (uint64_t off = 0; off < nslots * SLOT; off += MIB) {
        size_t n = (size_t)((nslots * SLOT - off) < MIB ? (nslots * SLOT - off) : MIB);
        full_pread(fd, buf, n, off);
        for (size_t o = 0; o < n; o += SLOT) {
            uint64_t slot = (off + o) / SLOT;
            const uint8_t *exp = zero;
            if (mark[slot]) {
                slot_fill(want, seed, slot);
                exp = want;
            }
            if (memcmp(buf + o, exp, SLOT) != 0) {
                bad_slots++;
                if (first_bad == UINT64_MAX) {
                    size_t k = 0;
                    while (buf[o + k] == exp[k])
                        k++;
                    first_bad = off + o + k;
                }
            }
        }
    }
    /* a tail shorter than a slot is never written: must be zero */
    if (size > nslots * SLOT) {
        size_t tail = (size_t)(size - nslots * SLOT);
        uint8_t *t = calloc(tail, 1), *z = calloc(tail, 1);
        if (!t || !z)
            die("calloc");
        int fd2 = open(path, O_RDONLY);
        if (fd2 < 0)
            die(path);
        full_pread(fd2, t, tail, nslots * SLOT);
        close(fd2);
        if (memcmp(t, z, tail) != 0) {
            bad_slots++;
            if (first_bad == UINT64_MAX)
                first_bad = nslots * SLOT;
        }
    }
    close(fd);
    if (bad_slots) {
        printf("BLKBENCH pattern-verify FAIL bad_slots=%" PRIu64 " first_bad_offset=%" PRIu64 " size=%" PRIu64 "\n",
               bad_slots, first_bad, size);
        return 1;
    }
    printf("BLKBENCH pattern-verify OK slots=%" PRIu64 " size=%" PRIu64 " seed=%" PRIu64 "\n", count, size, seed);
    return 0;
}

static int trywrite(const char *path)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        printf("BLKBENCH trywrite refused open errno=%d (%s)\n", errno, strerror(errno));
        return 0;
    }
    uint8_t *buf = aligned(BLK);
    memset(buf, 0xA5, BLK);
    ssize_t r = pwrite(fd, buf, BLK, 0);
    if (r != (ssize_t)BLK) {
        printf("BLKBENCH trywrite refused write errno=%d (%s)\n", errno, strerror(errno));
        close(fd);
        return 0;
    }
    if (fsync(fd) != 0) {
        printf("BLKBENCH trywrite refused fsync errno=%d (%s)\n", errno, strerror(errno));
        close(fd);
        return 0;
    }
    close(fd);
    printf("BLKBENCH trywrite ACCEPTED (the write went through)\n");
    return 1;
}

static int fill(const char *path, uint64_t mib)
{
    int direct;
    int fd = open_dev(path, O_RDWR, &direct);
    if (fd < 0)
        die(path);
    uint8_t *buf = aligned(MIB);
    uint64_t s = 12345;
    for (uint64_t m = 0; m < mib; m++) {
        for (size_t i = 0; i < MIB; i += 8) {
            uint64_t v = splitmix(&s) | 1;
            memcpy(buf + i, &v, 8);
        }
        full_pwrite(fd, buf, MIB, m * MIB);
    }
    if (fsync(fd) != 0)
        die("fsync");
    close(fd);
    printf("BLKBENCH fill mib=%" PRIu64 "\n", mib);
    return 0;
}

/* --------------------------------------------------------------- bench -- */

static long io_setup_(unsigned nr, aio_context_t *ctx) { return syscall(SYS_io_setup, nr, ctx); }
static long io_destroy_(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long io_submit_(aio_context_t ctx, long n, struct iocb **v) { return syscall(SYS_io_submit, ctx, n, v); }
static long io_getevents_(aio_context_t ctx, long min, long max, struct io_event *ev)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, NULL);
}

static uint64_t rand_block(uint64_t *s, uint64_t nblocks)
{
    return (splitmix(s) % nblocks) * BLK;
}

/* 4 KiB random reads at depth QD for SECONDS over [0, region) */
static void randread_aio(int fd, uint64_t region, double seconds, unsigned depth)
{
    aio_context_t ctx = 0;
    if (io_setup_(depth, &ctx) != 0)
        die("io_setup");
    struct iocb cbs[QD], *ptrs[QD];
    struct io_event ev[QD];
    uint8_t *bufs = aligned((size_t)depth * BLK);
    uint64_t s = 777, nblocks = region / BLK, ops = 0;
    memset(cbs, 0, sizeof cbs);
    for (unsigned i = 0; i < depth; i++) {
        cbs[i].aio_data = i;
        cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
        cbs[i].aio_fildes = (uint32_t)fd;
        cbs[i].aio_buf = (uint64_t)(uintptr_t)(bufs + (size_t)i * BLK);
        cbs[i].aio_nbytes = BLK;
        cbs[i].aio_offset = (int64_t)rand_block(&s, nblocks);
        ptrs[i] = &cbs[i];
    }
    double t0 = now_s(), end = t0 + seconds, t = t0;
    if (io_submit_(ctx, depth, ptrs) != (long)depth)
        die("io_submit");
    unsigned inflight = depth;
    while (inflight > 0) {
        long n = io_getevents_(ctx, 1, depth, ev);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("io_getevents");
        t = now_s();
        long resub = 0;
        for (long i = 0; i < n; i++) {
            if (ev[i].res != (int64_t)BLK) {
                errno = ev[i].res < 0 ? (int)-ev[i].res : EIO;
                die("aio read");
            }
            ops++;
            inflight--;
            if (t < end) {
                struct iocb *cb = &cbs[ev[i].data];
                cb->aio_offset = (int64_t)rand_block(&s, nblocks);
                ptrs[resub++] = cb;
            }
        }
        if (resub > 0) {
            if (io_submit_(ctx, resub, ptrs) != resub)
                die("io_submit");
            inflight += (unsigned)resub;
        }
    }
    io_destroy_(ctx);
    free(bufs);
    double el = t - t0;
    printf("BLKBENCH randread_qd%u_iops=%.0f\n", depth, (double)ops / el);
    if (depth == 1)
        printf("BLKBENCH randread_qd1_lat_us=%.1f\n", el * 1e6 / (double)ops);
    fflush(stdout);
}

static int bench(const char *path, uint64_t mib, double seconds)
{
    int direct;
    int fd = open_dev(path, O_RDWR, &direct);
    if (fd < 0)
        die(path);
    uint64_t size = dev_size(fd);
    if (mib * MIB > size)
        mib = size / MIB;
    if (mib == 0) {
        fprintf(stderr, "blkbench: %s is smaller than 1 MiB\n", path);
        return 2;
    }
    printf("BLKBENCH device=%s size_mib=%" PRIu64 " region_mib=%" PRIu64 " direct=%d\n", path, size / MIB, mib, direct);
    uint8_t *buf = aligned(MIB);
    uint64_t s = 99;
    for (size_t i = 0; i < MIB; i += 8) {
        uint64_t v = splitmix(&s);
        memcpy(buf + i, &v, 8);
    }
    double t0 = now_s();
    for (uint64_t m = 0; m < mib; m++)
        full_pwrite(fd, buf, MIB, m * MIB);
    if (fsync(fd) != 0)
        die("fsync");
    double t1 = now_s();
    printf("BLKBENCH seqwrite_MBps=%.1f\n", (double)mib * MIB / 1e6 / (t1 - t0));
    fflush(stdout);
    for (uint64_t m = 0; m < mib; m++)
        full_pread(fd, buf, MIB, m * MIB);
    double t2 = now_s();
    printf("BLKBENCH seqread_MBps=%.1f\n", (double)mib * MIB / 1e6 / (t2 - t1));
    fflush(stdout);
    randread_aio(fd, mib * MIB, seconds, 1);
    randread_aio(fd, mib * MIB, seconds, QD);
    close(fd);
    printf("BLKBENCH done\n");
    return 0;
}

// Copies `in` to `out` until end of file, 1 MiB per read.
static void copy_all(int in, int out, const char *rd, const char *wr)
{
    char *buf = malloc(MIB);
    if (!buf)
        die("malloc");
    for (;;) {
        ssize_t n = read(in, buf, MIB);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die(rd);
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                die(wr);
            off += w;
        }
    }
    free(buf);
}

/* One line of the kernel's view of a finished transfer (TCP_INFO): what
 * limited it (busy = sending, rwnd = the peer's window, sndbuf = our
 * buffer), the smoothed RTT and the congestion window. */
static void tcp_report(int s)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return;
    fprintf(stderr,
            "blkbench: tcp rtt=%uus rttvar=%uus cwnd=%u ssthresh=%u mss=%u retrans=%u segs_out=%u "
            "busy=%lluus rwnd_limited=%lluus sndbuf_limited=%lluus delivery_rate=%lluB/s\n",
            ti.tcpi_rtt, ti.tcpi_rttvar, ti.tcpi_snd_cwnd, ti.tcpi_snd_ssthresh, ti.tcpi_snd_mss,
            ti.tcpi_total_retrans, ti.tcpi_data_segs_out, (unsigned long long)ti.tcpi_busy_time,
            (unsigned long long)ti.tcpi_rwnd_limited, (unsigned long long)ti.tcpi_sndbuf_limited,
            (unsigned long long)ti.tcpi_delivery_rate);
}

static int tcp_send(const char *addr, uint16_t port, const char *path)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "blkbench: bad IPv4 address '%s'\n", addr);
        return 2;
    }
    int in = open(path, O_RDONLY);
    if (in < 0)
        die(path);
    int s = -1;
    for (int i = 0; i < 300; i++) {
        s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            die("socket");
        if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        close(s);
        s = -1;
        usleep(100000);
    }
    if (s < 0)
        die("connect");
    copy_all(in, s, "read", "send");
    tcp_report(s);
    if (close(s) != 0)
        die("close");
    close(in);
    return 0;
}

static int tcp_recv(uint16_t port, const char *path)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die("socket");
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0)
        die("bind/listen");
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0)
        die(path);
    int s = accept(ls, NULL, NULL);
    if (s < 0)
        die("accept");
    close(ls);
    copy_all(s, out, "recv", "write");
    close(s);
    if (close(out) != 0)
        die("close");
    return 0;
}

static uint64_t num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || end == s) {
        fprintf(stderr, "blkbench: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "bench") == 0)
        return bench(argv[2], argc > 3 ? num(argv[3]) : 256, argc > 4 ? (double)num(argv[4]) : 5.0);
    if (argc == 5 && strcmp(argv[1], "pattern-write") == 0)
        return pattern_write(argv[2], num(argv[3]), num(argv[4]));
    if (argc == 5 && strcmp(argv[1], "pattern-verify") == 0)
        return pattern_verify(argv[2], num(argv[3]), num(argv[4]));
    if (argc == 3 && strcmp(argv[1], "trywrite") == 0)
        return trywrite(argv[2]);
    if (argc == 4 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2], num(argv[3]));
    if (argc == 5 && strcmp(argv[1], "tcp-send") == 0)
        return tcp_send(argv[2], (uint16_t)num(argv[3]), argv[4]);
    if (argc == 4 && strcmp(argv[1], "tcp-recv") == 0)
        return tcp_recv((uint16_t)num(argv[2]), argv[3]);
    fprintf(stderr, "usage: blkbench bench DEV [MIB [SECONDS]] | pattern-write DEV SEED COUNT |\n"
                    "       pattern-verify DEV SEED COUNT | trywrite DEV | fill DEV MIB |\n"
                    "       tcp-send ADDR PORT FILE | tcp-recv PORT FILE\n");
    return 2;
}
