// The virtqueue engine (split and packed rings) against a guest that
// writes anything into its rings, descriptor tables and indirect tables:
// the first bytes pick the ring layout and features, the rest is guest RAM.
// Every chain popped is read and written through Reader/Writer as a device
// would, returned with push_used(), and the event-suppression calls run in
// between. QueueError is the expected answer to garbage; anything else
// (a crash, a sanitizer report, an access outside RAM, a hang) is a bug.
#include <algorithm>

#include "fuzz_ram.h"
#include "virtio/queue.h"

using namespace vmm::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    fuzz::Ram ram;

    const bool packed = in.ConsumeBool();
    uint64_t features = uint64_t{1} << kFeatureVersion1;
    if (packed) features |= uint64_t{1} << kFeatureRingPacked;
    if (in.ConsumeBool()) features |= uint64_t{1} << kFeatureEventIdx;
    if (in.ConsumeBool()) features |= uint64_t{1} << kFeatureIndirectDesc;
    QueueConfig cfg;
    cfg.size = in.ConsumeBool() ? uint16_t(1u << in.ConsumeIntegralInRange(0, 8)) : in.ConsumeIntegral<uint16_t>();
    cfg.desc_addr = in.ConsumeBool() ? 0x1000 : fuzz::Ram::address(in);
    cfg.driver_addr = in.ConsumeBool() ? 0x3000 : fuzz::Ram::address(in);
    cfg.device_addr = in.ConsumeBool() ? 0x4000 : fuzz::Ram::address(in);
    // How the "device" consumes each chain: read/write chunk sizes.
    const size_t chunk = in.ConsumeIntegralInRange<size_t>(1, 4096);
    const int batch = in.ConsumeIntegralInRange(1, 8);
    ram.load(in.ConsumeRemainingBytes<uint8_t>());

    std::optional<Queue> q;
    try {
        q.emplace(ram.mem, cfg, features);
    } catch (const QueueError&) {
        return 0;
    }
    q->set_stats(std::make_shared<QueueStats>());
    std::vector<uint8_t> buf(chunk, 0xa5);
    try {
        // Bounded: a split ring can only offer `size` chains before the
        // avail index must move, which this static RAM never does; the
        // engine must still stop on its own (the loop bound is a backstop,
        // and reaching it is reported as a hang by the check below).
        int rounds = 0;
        for (; rounds < 4; ++rounds) {
            q->note_notification();
            size_t n = drain(*q, [&](DescriptorChain& c) {
                Reader r(ram.mem, c);
                while (r.remaining()) {
                    size_t k = std::min(r.remaining(), buf.size());
                    if (!r.read({buf.data(), k})) __builtin_trap();  // remaining() said it fits
                }
                Writer w(ram.mem, c);
                if (w.remaining() > 0 && (c.id & 1)) {
                    if (auto tail = w.split_tail(1)) tail->write_obj<uint8_t>(0);
                }
                while (w.remaining()) {
                    size_t k = std::min(w.remaining(), buf.size());
                    if (!w.write({buf.data(), k})) __builtin_trap();
                }
                q->push_used(c, static_cast<uint32_t>(w.written()));
                static int pushed = 0;
                if (++pushed % batch == 0) q->should_notify();
                return true;
            });
            q->should_notify();
            if (n == 0) break;
            if (n > 2u * kMaxQueueSize) __builtin_trap();  // one drain cannot offer more than the ring holds twice
        }
    } catch (const QueueError&) {
    }
    return 0;
}
