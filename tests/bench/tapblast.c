/* tapblast IFNAME FRAME_BYTES SECONDS
 *
 * The host side of the probe guest's virtio-net receive benchmark
 * (docs/benchmarks.md): sends broadcast Ethernet frames of FRAME_BYTES
 * (header included, EtherType 0x88b5) out of the tap IFNAME as fast as it
 * can for SECONDS, so they reach whatever VMM reads the tap. Prints the
 * number of frames the kernel took ("sent") and refused ("dropped"). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tapblast IFNAME FRAME_BYTES SECONDS\n");
        return 2;
    }
    unsigned ifindex = if_nametoindex(argv[1]);
    long frame = strtol(argv[2], NULL, 10);
    double seconds = strtod(argv[3], NULL);
    if (!ifindex) {
        fprintf(stderr, "tapblast: no interface %s\n", argv[1]);
        return 1;
    }
    if (frame < 60 || frame > 1514) {
        fprintf(stderr, "tapblast: frame size %ld is outside 60..1514\n", frame);
        return 1;
    }
    int s = socket(AF_PACKET, SOCK_RAW, 0);
    if (s < 0) {
        perror("tapblast: socket(AF_PACKET)");
        return 1;
    }
    struct sockaddr_ll addr = {.sll_family = AF_PACKET, .sll_ifindex = (int)ifindex, .sll_halen = 6};
    memset(addr.sll_addr, 0xff, 6);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("tapblast: bind");
        return 1;
    }
    unsigned char buf[1514];
    memset(buf, 0xff, 6); /* broadcast: every receive filter takes it */
    memcpy(buf + 6, "\x02\x00\x00\x00\x00\x03", 6);
    buf[12] = 0x88;
    buf[13] = 0xb5;
    for (long i = 14; i < frame; i++) buf[i] = (unsigned char)i;
    struct iovec iov = {.iov_base = buf, .iov_len = (size_t)frame};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    unsigned long long sent = 0, dropped = 0;
    double end = now() + seconds;
    while (!stop && now() < end) {
        int n = sendmmsg(s, msgs, BATCH, 0);
        if (n > 0) {
            sent += (unsigned long long)n;
        } else if (errno == ENOBUFS || errno == EAGAIN || errno == ENETDOWN || errno == EIO) {
            dropped++;
        } else if (errno != EINTR) {
            perror("tapblast: sendmmsg");
            return 1;
        }
    }
    printf("sent=%llu dropped=%llu\n", sent, dropped);
    return 0;
}
