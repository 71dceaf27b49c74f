#include "virtio/net_filter.h"

#include <algorithm>

namespace vmm::virtio {

bool RxFilter::accepts(std::span<const uint8_t> frame) const {
    if (promisc_) return true;
    if (frame.size() < 6) return false;
    MacAddress dst;
    std::copy_n(frame.begin(), 6, dst.begin());
    auto in = [&](const std::vector<MacAddress>& t) { return std::find(t.begin(), t.end(), dst) != t.end(); };
    if (dst[0] & 1) {  // group address
        if (std::all_of(dst.begin(), dst.end(), [](uint8_t b) { return b == 0xff; })) return !no_bcast_;
        if (no_multi_) return false;
        return all_multi_ || multi_overflow_ || in(multi_);
    }
    if (no_uni_) return false;
    return all_uni_ || uni_overflow_ || dst == mac_ || in(uni_);
}

void RxFilter::set_mode(RxMode m, bool on) {
    switch (m) {
        case RxMode::Promisc: promisc_ = on; break;
        case RxMode::AllMulti: all_multi_ = on; break;
        case RxMode::AllUni: all_uni_ = on; break;
        case RxMode::NoMulti: no_multi_ = on; break;
        case RxMode::NoUni: no_uni_ = on; break;
        case RxMode::NoBcast: no_bcast_ = on; break;
    }
}

void RxFilter::set_tables(std::vector<MacAddress> unicast, std::vector<MacAddress> multicast) {
    uni_overflow_ = unicast.size() > kMaxEntries;
    multi_overflow_ = multicast.size() > kMaxEntries;
    uni_ = uni_overflow_ ? std::vector<MacAddress>{} : std::move(unicast);
    multi_ = multi_overflow_ ? std::vector<MacAddress>{} : std::move(multicast);
}

}  // namespace vmm::virtio
