// The host side of virtio-net: a TAP interface (Linux tun driver) with a
// virtio-net header on every packet (IFF_VNET_HDR, 12-byte header), one fd
// per queue pair (IFF_MULTI_QUEUE). The device reads and writes the fds;
// the backend interface covers the ioctls, so unit tests can stand in a
// socketpair for the tap.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmm/core/fd.h"

namespace vmm::virtio {

// TUN_F_* offload bits, as the tap knows them (linux/if_tun.h).
struct TapOffloads {
    bool csum = false, tso4 = false, tso6 = false, tso_ecn = false, ufo = false;
};

class NetBackend {
public:
    virtual ~NetBackend() = default;
    // One non-blocking fd per queue pair; each read gives one header +
    // frame, each write takes one.
    virtual const std::vector<Fd>& fds() const = 0;
    // What the host can deliver to the guest with offloads (decides which
    // GUEST_* features the device offers).
    virtual TapOffloads supported() const = 0;
    // Tells the host which offloaded packets the guest accepts now.
    virtual void set_offloads(const TapOffloads& o) = 0;
    // Multiqueue: only the attached queues get packets from the host.
    virtual void set_queue_attached(size_t index, bool attached) = 0;
};

class Tap final : public NetBackend {
public:
    // Attaches to the tap NAME, creating it if it does not exist (that needs
    // CAP_NET_ADMIN), with `queues` queues. Throws vmm::Error naming `what`.
    Tap(const std::string& name, size_t queues, const std::string& what);
    const std::vector<Fd>& fds() const override { return fds_; }
    TapOffloads supported() const override { return supported_; }
    void set_offloads(const TapOffloads& o) override;
    void set_queue_attached(size_t index, bool attached) override;
    const std::string& name() const { return name_; }

private:
    std::string name_, what_;
    std::vector<Fd> fds_;
    TapOffloads supported_;
};

}  // namespace vmm::virtio
