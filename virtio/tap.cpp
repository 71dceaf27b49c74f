#include "virtio/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "virtio/net_hdr.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

unsigned tun_bits(const TapOffloads& o) {
    return (o.csum ? TUN_F_CSUM : 0) | (o.tso4 ? TUN_F_TSO4 : 0) | (o.tso6 ? TUN_F_TSO6 : 0) |
           (o.tso_ecn ? TUN_F_TSO_ECN : 0) | (o.ufo ? TUN_F_UFO : 0);
}

}  // namespace

Tap::Tap(const std::string& name, size_t queues, const std::string& what) : name_(name), what_(what) {
    if (name.empty() || name.size() >= IFNAMSIZ) fail("{}: interface name \"{}\" must have 1-{} characters", what, name, IFNAMSIZ - 1);
    for (size_t i = 0; i < queues; ++i) {
        int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) throw_errno(what + ": /dev/net/tun");
        Fd f(fd);
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (queues > 1 ? IFF_MULTI_QUEUE : 0);
        if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
            int e = errno;
            if (e == EPERM)
                fail("{}: cannot attach to or create tap {}: permission denied (create it beforehand with "
                     "'ip tuntap add dev {} mode tap user $USER{}', or run with CAP_NET_ADMIN)",
                     what, name, name, queues > 1 ? " multi_queue" : "");
            if (e == EINVAL)
                fail("{}: tap {}: flags do not match the existing interface (is it a tun, or {}multi-queue?)", what, name,
                     queues > 1 ? "not " : "");
            errno = e;
            throw_errno(fmt::format("{}: TUNSETIFF {}", what, name));
        }
        int hdr = sizeof(NetHdr);
        if (::ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0) throw_errno(what + ": TUNSETVNETHDRSZ");
        fds_.push_back(std::move(f));
    }
    // Probe what the tap can hand us offloaded: try everything, then less.
    const TapOffloads tries[] = {{true, true, true, true, true}, {true, true, true, true, false}, {true, false, false, false, false}};
    for (const auto& t : tries) {
        if (::ioctl(fds_[0].get(), TUNSETOFFLOAD, tun_bits(t)) == 0) {
            supported_ = t;
            break;
        }
    }
    ::ioctl(fds_[0].get(), TUNSETOFFLOAD, 0u);  // nothing until the guest says what it takes
    log::info("{}: tap {} with {} queue(s); offloads csum={} tso4={} tso6={} ufo={}", what, name, queues,
              supported_.csum, supported_.tso4, supported_.tso6, supported_.ufo);
}

void Tap::set_offloads(const TapOffloads& o) {
    if (::ioctl(fds_[0].get(), TUNSETOFFLOAD, tun_bits(o)) != 0)
        log::warn("{}: TUNSETOFFLOAD {:#x}: {}", what_, tun_bits(o), std::strerror(errno));
}

void Tap::set_queue_attached(size_t index, bool attached) {
    if (index >= fds_.size() || fds_.size() == 1) return;
    ifreq ifr{};
    ifr.ifr_flags = attached ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    if (::ioctl(fds_[index].get(), TUNSETQUEUE, &ifr) != 0 && errno != EINVAL)
        log::warn("{}: TUNSETQUEUE {} queue {}: {}", what_, attached ? "attach" : "detach", index, std::strerror(errno));
}

}  // namespace vmm::virtio
