// The virtio-net receive filter on its own: what a reset filter lets through,
// each receive mode, the MAC tables and their overflow, and short frames.
#include <catch2/catch.hpp>

#include <vector>

#include "virtio/net_filter.h"

namespace {

using vmm::virtio::MacAddress;
using vmm::virtio::RxFilter;
using vmm::virtio::RxMode;

const MacAddress kOwn{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const MacAddress kOther{0x52, 0x54, 0x00, 0x99, 0x99, 0x99};
const MacAddress kBcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
const MacAddress kMcast{0x33, 0x33, 0xff, 0x12, 0x34, 0x56};
const MacAddress kMcast2{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};

// A frame to `dst` (the filter only looks at the first 6 bytes).
std::vector<uint8_t> to(const MacAddress& dst) {
    std::vector<uint8_t> f(dst.begin(), dst.end());
    f.resize(64, 0xab);
    return f;
}

// Promiscuous off: what a driver sets first.
RxFilter strict() {
    RxFilter f(kOwn);
    f.set_mode(RxMode::Promisc, false);
    return f;
}

}  // namespace

TEST_CASE("rx filter: a reset filter is promiscuous; turned off, only our MAC and broadcast pass", "[virtio][net]") {
    RxFilter f(kOwn);
    for (const auto& m : {kOwn, kOther, kBcast, kMcast}) CHECK(f.accepts(to(m)));
    CHECK(f.accepts(std::vector<uint8_t>{1, 2}));  // promiscuous takes even runts
    f = strict();
    CHECK(f.accepts(to(kOwn)));
    CHECK(f.accepts(to(kBcast)));
    CHECK_FALSE(f.accepts(to(kOther)));
    CHECK_FALSE(f.accepts(to(kMcast)));
    CHECK_FALSE(f.accepts(std::vector<uint8_t>(kOwn.begin(), kOwn.begin() + 5)));  // no whole destination
    CHECK_FALSE(f.accepts({}));
}

TEST_CASE("rx filter: MAC tables, and tables too long to keep", "[virtio][net]") {
    RxFilter f = strict();
    f.set_tables({kOther}, {kMcast});
    CHECK(f.accepts(to(kOther)));
    CHECK(f.accepts(to(kMcast)));
    CHECK_FALSE(f.accepts(to(kMcast2)));
    CHECK(f.accepts(to(kOwn)));  // the device's own address needs no entry
    // A new table replaces the old one.
    f.set_tables({}, {kMcast2});
    CHECK_FALSE(f.accepts(to(kOther)));
    CHECK_FALSE(f.accepts(to(kMcast)));
    CHECK(f.accepts(to(kMcast2)));
    // Too many entries: every address of that kind passes.
    std::vector<MacAddress> many(RxFilter::kMaxEntries + 1, kMcast2);
    f.set_tables({}, many);
    CHECK(f.accepts(to(kMcast)));
    CHECK_FALSE(f.accepts(to(kOther)));
    many.pop_back();
    f.set_tables({}, many);  // exactly the maximum is kept as a table
    CHECK_FALSE(f.accepts(to(kMcast)));
    f.set_tables(std::vector<MacAddress>(RxFilter::kMaxEntries + 1, kOwn), {});
    CHECK(f.accepts(to(kOther)));
}

TEST_CASE("rx filter: each receive mode", "[virtio][net]") {
    RxFilter f = strict();
    f.set_mode(RxMode::AllMulti, true);
    CHECK(f.accepts(to(kMcast)));
    CHECK_FALSE(f.accepts(to(kOther)));
    f.set_mode(RxMode::NoMulti, true);  // wins over all-multicast, not over broadcast
    CHECK_FALSE(f.accepts(to(kMcast)));
    CHECK(f.accepts(to(kBcast)));
    f.set_mode(RxMode::NoBcast, true);
    CHECK_FALSE(f.accepts(to(kBcast)));
    f.set_mode(RxMode::AllUni, true);
    CHECK(f.accepts(to(kOther)));
    f.set_mode(RxMode::NoUni, true);
    CHECK_FALSE(f.accepts(to(kOther)));
    CHECK_FALSE(f.accepts(to(kOwn)));
    f.set_mode(RxMode::Promisc, true);  // promiscuous overrides every "no"
    for (const auto& m : {kOwn, kOther, kBcast, kMcast}) CHECK(f.accepts(to(m)));
    f.set_mode(RxMode::Promisc, false);
    f.set_mode(RxMode::NoUni, false);
    f.set_mode(RxMode::AllUni, false);
    f.set_mac(kOther);  // CTRL_MAC_ADDR
    CHECK(f.accepts(to(kOther)));
    CHECK_FALSE(f.accepts(to(kOwn)));
    CHECK(f.mac() == kOther);
}
