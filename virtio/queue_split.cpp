// Split virtqueue (virtio 1.x section 2.7): descriptor table, avail ring
// written by the driver, used ring written by the device.
//
// Layout (all little-endian):
//   desc:  size x {u64 addr, u32 len, u16 flags, u16 next}       align 16
//   avail: u16 flags, u16 idx, u16 ring[size], u16 used_event     align 2
//   used:  u16 flags, u16 idx, {u32 id, u32 len}[size], u16 avail_event  align 4
#include <fmt/format.h>

#include "virtio/queue_impl.h"

namespace vmm::virtio {
namespace {

constexpr uint16_t kAvailNoInterrupt = 1;
constexpr uint16_t kUsedNoNotify = 1;

// True if `event` lies in (old, new], all modulo 2^16 (the vring_need_event rule).
bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
    return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

class SplitRing final : public RingEngine {
public:
    SplitRing(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features)
        : mem_(mem), size_(cfg.size), event_idx_(has_feature(features, kFeatureEventIdx)),
          indirect_(has_feature(features, kFeatureIndirectDesc)) {
        if (size_ == 0 || size_ > kMaxQueueSize || (size_ & (size_ - 1)))
            throw QueueError(fmt::format("split queue size {} is not a power of two in 1..{}", size_, kMaxQueueSize));
        // The only place the ring areas are checked: they do not move while
        // the queue lives, so every later access below stays inside them.
        desc_ = ring_area(mem, "descriptor table", cfg.desc_addr, 16ull * size_, 16);
        avail_ = ring_area(mem, "avail ring", cfg.driver_addr, 6ull + 2ull * size_, 2);
        used_ = ring_area(mem, "used ring", cfg.device_addr, 6ull + 8ull * size_, 4);
    }

    bool is_packed() const override { return false; }

    std::optional<DescriptorChain> pop() override {
        uint16_t avail_idx = load16(avail_ + 2);
        if (avail_idx == last_avail_) return std::nullopt;
        uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
        if (pending > size_)
            throw QueueError(fmt::format("avail index {} runs ahead of the device ({}) by {} (queue size {})",
                                         avail_idx, last_avail_, pending, size_));
        // Ring entries and descriptors were written before avail->idx.
        std::atomic_thread_fence(std::memory_order_acquire);
        uint16_t slot = last_avail_ & (size_ - 1);
        uint16_t head = load16(avail_ + 4 + 2u * slot);  // slot < size: inside the avail area
        if (head >= size_)
            throw QueueError(fmt::format("avail ring slot {}: head index {} out of range (queue size {})", slot,
                                         head, size_));
        DescriptorChain chain = walk(head);
        ++last_avail_;
        return chain;
    }

    void push_used(const DescriptorChain& chain, uint32_t written) override {
        uint8_t* e = used_ + 4 + 8u * (next_used_ & (size_ - 1));  // inside the used area
        store32(e, chain.id);
        store32(e + 4, written);
        ++next_used_;
        // The element must be visible before the index that publishes it.
        std::atomic_thread_fence(std::memory_order_release);
        store16(used_ + 2, next_used_);
        dirty_ = true;
    }

    bool should_notify() override {
        // Our used->idx store must be ordered before reading the driver's
        // suppression state, or we could miss a just-enabled interrupt.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        uint16_t old_idx = signalled_used_;
        signalled_used_ = next_used_;
        if (!dirty_) return false;
        dirty_ = false;
        if (event_idx_) return need_event(load16(avail_ + 4 + 2u * size_), next_used_, old_idx);
        return !(load16(avail_) & kAvailNoInterrupt);
    }

    void disable_notifications() override {
        // With EVENT_IDX an avail_event behind everything the driver may add
        // next suppresses its kicks until enable_notifications() moves it
        // (merely not moving it would still let the next buffer kick).
        if (event_idx_)
            store16(used_ + 4 + 8u * size_, static_cast<uint16_t>(last_avail_ - 1));
        else
            store16(used_, kUsedNoNotify);
    }

    bool enable_notifications() override {
        if (event_idx_)
            store16(used_ + 4 + 8u * size_, last_avail_);
        else
            store16(used_, 0);
        // Publish the request before re-reading avail->idx (pairs with the
        // driver's barrier between its idx update and the kick check).
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return has_available();
    }

    bool has_available() override { return load16(avail_ + 2, std::memory_order_acquire) != last_avail_; }

private:
    DescriptorChain walk(uint16_t head) {
        ChainBuilder b(mem_);
        uint16_t idx = head;
        uint32_t count = 0;
        for (;;) {
            // A chain visits each slot at most once, so a longer one loops.
            if (++count > size_)
                throw QueueError(fmt::format("descriptor chain at head {} is longer than the queue size {} (loop?)",
                                             head, size_));
            RawDesc d = load_split_desc(desc_ + 16u * idx);  // idx < size: inside the table
            DescWhere where{idx};
            if (d.flags & kDescIndirect) {
                if (d.flags & kDescNext)
                    throw QueueError(fmt::format("{}: INDIRECT together with NEXT", where.str()));
                walk_indirect(b, d, where);
                break;
            }
            b.add(d, where);
            if (!(d.flags & kDescNext)) break;
            if (d.id >= size_)
                throw QueueError(
                    fmt::format("descriptor {}: next index {} out of range (queue size {})", idx, d.id, size_));
            idx = d.id;
        }
        DescriptorChain& c = b.chain();
        c.id = head;
        c.desc_count = static_cast<uint16_t>(count);
        return std::move(c);
    }

    void walk_indirect(ChainBuilder& b, const RawDesc& d, const DescWhere& where) {
        IndirectTable t = indirect_table(mem_, d, where, indirect_);
        uint32_t e = 0;
        for (uint32_t count = 1;; ++count) {
            DescWhere w{where.index, true, e};
            if (count > t.entries)
                throw QueueError(fmt::format("{}: indirect chain longer than the table's {} entries (loop?)",
                                             where.str(), t.entries));
            RawDesc x = load_split_desc(t.host + 16u * e);  // e < entries: inside the table
            if (x.flags & kDescIndirect) throw QueueError(fmt::format("{}: nested indirect table", w.str()));
            b.add(x, w);
            if (!(x.flags & kDescNext)) break;
            if (x.id >= t.entries)
                throw QueueError(fmt::format("{}: next index {} out of range (table of {} entries)", w.str(), x.id,
                                             t.entries));
            e = x.id;
        }
    }

    const GuestMemory& mem_;
    uint16_t size_;
    bool event_idx_;
    bool indirect_;
    uint8_t* desc_ = nullptr;
    uint8_t* avail_ = nullptr;
    uint8_t* used_ = nullptr;
    uint16_t last_avail_ = 0;
    uint16_t next_used_ = 0;
    uint16_t signalled_used_ = 0;
    bool dirty_ = false;
};

}  // namespace

std::unique_ptr<RingEngine> make_split_ring(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features) {
    return std::make_unique<SplitRing>(mem, cfg, features);
}

}  // namespace vmm::virtio
