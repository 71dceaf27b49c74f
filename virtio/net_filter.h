// The receive filter a virtio-net driver programs through the control queue
// (virtio 1.x 5.1.6.5.1-2): receive modes (CTRL_RX, CTRL_RX_EXTRA), the
// unicast and multicast MAC tables, and the device's own MAC address
// (CTRL_MAC_ADDR). The device consults it for every frame it takes from the
// tap, which delivers whatever the host sends to the interface: a frame the
// guest did not ask for is dropped in the VMM, not woken up for.
//
// Like QEMU, a reset filter is promiscuous: until the driver says what it
// wants (Linux does when the interface comes up), everything is delivered.
// Tables longer than kMaxEntries are not kept; that kind of address is then
// accepted as a whole (the spec lets filtering be best-effort, never lossy).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace vmm::virtio {

using MacAddress = std::array<uint8_t, 6>;

// CTRL_RX commands (class 0): each takes one on/off byte. 2..5 need
// CTRL_RX_EXTRA.
enum class RxMode : uint8_t { Promisc = 0, AllMulti = 1, AllUni = 2, NoMulti = 3, NoUni = 4, NoBcast = 5 };

class RxFilter {
public:
    static constexpr size_t kMaxEntries = 64;  // per table, as QEMU

    explicit RxFilter(const MacAddress& mac) : mac_(mac) {}

    // Whether the guest wants a frame that starts with `frame` (its
    // destination MAC in the first 6 bytes). A frame too short to have one
    // is only accepted in promiscuous mode.
    bool accepts(std::span<const uint8_t> frame) const;

    void set_mode(RxMode m, bool on);
    // Replaces both tables (VIRTIO_NET_CTRL_MAC_TABLE_SET). A table given
    // with more than kMaxEntries addresses is recorded as overflowed.
    void set_tables(std::vector<MacAddress> unicast, std::vector<MacAddress> multicast);
    void set_mac(const MacAddress& mac) { mac_ = mac; }
    const MacAddress& mac() const { return mac_; }

private:
    MacAddress mac_;
    bool promisc_ = true, all_multi_ = false, all_uni_ = false, no_multi_ = false, no_uni_ = false, no_bcast_ = false;
    std::vector<MacAddress> uni_, multi_;
    bool uni_overflow_ = false, multi_overflow_ = false;
};

}  // namespace vmm::virtio
