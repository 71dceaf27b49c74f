// rtctest: the CMOS RTC's interrupts as a guest sees them, through Linux's
// rtc-cmos driver (/dev/rtc0) and, for the periodic interrupt, the chip
// itself. Run as root in the blk guest (make-blk-guest.sh, vmmtest.blk=rtc);
// the rtc case in test_boot.py checks the lines it prints:
//
//   RTC pie hz=64 n=64 s=<elapsed> flags=<last read()'s flags>
//   RTC alarm ahead=<s> s=<elapsed> flags=<flags>
//   RTC uie n=3 s=<elapsed> flags=<flags>
//   RTC settime want=<time> got=<time> diff=<s>
//   RTC hwpie hz=64 irqs=<IRQ 8 interrupts in 1 s> s=<elapsed>
//   RTC irq8 <the /proc/interrupts line of IRQ 8>
//   RTC FAIL <what> <why>       (and exit status 1) when something failed
//
// Linux emulates RTC_PIE_ON with an hrtimer and RTC_UIE_ON with one alarm a
// second, so "pie" exercises the kernel and "uie"/"alarm" the chip's alarm
// interrupt (AF on IRQ 8). "hwpie" programs the chip's periodic rate and PIE
// directly (ports 0x70/0x71, each register write a single 16-bit OUT so it
// cannot interleave with the driver's index/data pairs) and counts IRQ 8 in
// /proc/interrupts, which the driver's handler acknowledges.
#include <errno.h>
#include <fcntl.h>
#include <linux/rtc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int failed;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char* what, const char* why) {
    printf("RTC FAIL %s %s\n", what, why);
    fflush(stdout);
    failed = 1;
}

// timegm() of an rtc_time (struct tm is larger: never cast one to it).
static time_t rtc_timegm(const struct rtc_time* r) {
    struct tm t = {.tm_sec = r->tm_sec, .tm_min = r->tm_min, .tm_hour = r->tm_hour, .tm_mday = r->tm_mday,
                   .tm_mon = r->tm_mon, .tm_year = r->tm_year};
    return timegm(&t);
}

// One read() from /dev/rtc0 within timeout_s; returns the data word, or -1.
static long rtc_wait(int fd, double timeout_s) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)(timeout_s * 1000));
    if (r <= 0) return -1;
    unsigned long data = 0;
    if (read(fd, &data, sizeof data) != (ssize_t)sizeof data) return -1;
    return (long)data;
}

// The IRQ 8 count (summed over CPUs) from /proc/interrupts; -1 if none.
static long irq8_count(char* line, size_t len) {
    FILE* f = fopen("/proc/interrupts", "r");
    if (!f) return -1;
    char buf[512];
    long total = -1;
    while (fgets(buf, sizeof buf, f)) {
        char* p = buf;
        while (*p == ' ') ++p;
        if (strncmp(p, "8:", 2) != 0) continue;
        total = 0;
        p += 2;
        for (;;) {
            char* end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            total += v;
            p = end;
        }
        if (line) {
            snprintf(line, len, "%s", buf);
            line[strcspn(line, "\n")] = 0;
        }
    }
    fclose(f);
    return total;
}

static void test_pie(int fd) {
    const int hz = 64, want = 64;
    if (ioctl(fd, RTC_IRQP_SET, (unsigned long)hz) != 0) return fail("pie", "RTC_IRQP_SET 64 failed");
    if (ioctl(fd, RTC_PIE_ON, 0) != 0) return fail("pie", "RTC_PIE_ON failed");
    double t0 = now_s();
    int n = 0;
    long data = 0, last = 0;
    while (n < want && (data = rtc_wait(fd, 5)) >= 0) {
        n += (int)(data >> 8);  // interrupts since the last read
        last = data;
    }
    double s = now_s() - t0;
    ioctl(fd, RTC_PIE_OFF, 0);
    printf("RTC pie hz=%d n=%d s=%.3f flags=0x%02lx\n", hz, n, s, last & 0xff);
    if (n < want) fail("pie", "no periodic interrupt within 5 s");
}

static void test_alarm(int fd) {
    struct rtc_time tm;
    if (ioctl(fd, RTC_RD_TIME, &tm) != 0) return fail("alarm", "RTC_RD_TIME failed");
    const int ahead = 3;
    time_t t = rtc_timegm(&tm) + ahead;
    struct tm at;
    gmtime_r(&t, &at);
    struct rtc_time alm = {.tm_sec = at.tm_sec, .tm_min = at.tm_min, .tm_hour = at.tm_hour};
    if (ioctl(fd, RTC_ALM_SET, &alm) != 0) return fail("alarm", strerror(errno));
    if (ioctl(fd, RTC_AIE_ON, 0) != 0) return fail("alarm", "RTC_AIE_ON failed");
    double t0 = now_s();
    long data = rtc_wait(fd, 10);
    double s = now_s() - t0;
    ioctl(fd, RTC_AIE_OFF, 0);
    printf("RTC alarm ahead=%d s=%.3f flags=0x%02lx\n", ahead, s, data < 0 ? 0 : data & 0xff);
    if (data < 0) fail("alarm", "no alarm within 10 s");
    else if (!(data & RTC_AF)) fail("alarm", "read() returned without RTC_AF");
}

static void test_uie(int fd) {
    if (ioctl(fd, RTC_UIE_ON, 0) != 0) return fail("uie", "RTC_UIE_ON failed");
    // The first update interrupt starts the count (it comes after a part
    // of a second); three more should take three seconds.
    long data = rtc_wait(fd, 5);
    double t0 = now_s();
    int n = 0;
    while (data >= 0 && n < 3 && (data = rtc_wait(fd, 5)) >= 0) n += (int)(data >> 8);
    double s = now_s() - t0;
    ioctl(fd, RTC_UIE_OFF, 0);
    printf("RTC uie n=%d s=%.3f flags=0x%02lx\n", n, s, data < 0 ? 0 : data & 0xff);
    if (n < 3) fail("uie", "fewer than 3 update interrupts (5 s timeout)");
    else if (!(data & RTC_UF)) fail("uie", "read() returned without RTC_UF");
}

static void test_settime(int fd) {
    // Like hwclock --systohc then --show: a known time in, read back.
    struct rtc_time want = {.tm_sec = 56, .tm_min = 34, .tm_hour = 12, .tm_mday = 17, .tm_mon = 4, .tm_year = 131};
    if (ioctl(fd, RTC_SET_TIME, &want) != 0) return fail("settime", strerror(errno));
    struct rtc_time got;
    if (ioctl(fd, RTC_RD_TIME, &got) != 0) return fail("settime", "RTC_RD_TIME failed");
    long diff = (long)(rtc_timegm(&got) - rtc_timegm(&want));
    printf("RTC settime want=%04d-%02d-%02dT%02d:%02d:%02d got=%04d-%02d-%02dT%02d:%02d:%02d diff=%ld\n",
           want.tm_year + 1900, want.tm_mon + 1, want.tm_mday, want.tm_hour, want.tm_min, want.tm_sec,
           got.tm_year + 1900, got.tm_mon + 1, got.tm_mday, got.tm_hour, got.tm_min, got.tm_sec, diff);
    if (diff < 0 || diff > 2) fail("settime", "the time read back is not the time set");
}

// Index and data in one 16-bit OUT (the chipset splits it into 0x70, 0x71).
static void cmos_write(unsigned char index, unsigned char value) { outw((unsigned short)(value << 8 | index), 0x70); }
static unsigned char cmos_read(unsigned char index) {
    outb(index, 0x70);
    return inb(0x71);
}

static void test_hwpie(void) {
    if (ioperm(0x70, 2, 1) != 0) return fail("hwpie", strerror(errno));
    const unsigned char a = cmos_read(0x0a), b = cmos_read(0x0b);
    cmos_write(0x0a, (unsigned char)((a & 0xf0) | 10));  // RS 10: 64 Hz
    long c0 = irq8_count(NULL, 0);
    double t0 = now_s();
    cmos_write(0x0b, b | 0x40);  // PIE
    usleep(1000000);
    cmos_write(0x0b, b & ~0x40);
    double s = now_s() - t0;
    long c1 = irq8_count(NULL, 0);
    cmos_write(0x0a, a);
    printf("RTC hwpie hz=64 irqs=%ld s=%.3f\n", c0 < 0 || c1 < 0 ? -1 : c1 - c0, s);
}

int main(int argc, char** argv) {
    const char* dev = argc > 1 ? argv[1] : "/dev/rtc0";
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open(dev, O_RDONLY);
    if (fd < 0) {
        printf("RTC FAIL open %s: %s\n", dev, strerror(errno));
        return 1;
    }
    char line[512] = "";
    test_pie(fd);
    test_alarm(fd);
    test_uie(fd);
    test_settime(fd);
    close(fd);
    test_hwpie();
    irq8_count(line, sizeof line);
    printf("RTC irq8 %s\n", line);
    return failed;
}
