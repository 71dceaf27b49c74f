// Packed virtqueue (virtio 1.x section 2.8): one descriptor ring shared by
// driver and device, availability marked by the AVAIL/USED flag bits against
// each side's wrap counter, plus two event suppression structures.
//
// Layout (all little-endian):
//   desc:   size x {u64 addr, u32 len, u16 id, u16 flags}       align 16
//   driver: u16 desc_event_off_wrap, u16 desc_event_flags       align 4
//   device: same shape, written by the device                   align 4
#include <fmt/format.h>

#include "virtio/queue_impl.h"

namespace vmm::virtio {
namespace {

constexpr uint16_t kPackedAvail = 1u << 7;
constexpr uint16_t kPackedUsed = 1u << 15;
constexpr uint16_t kEventEnable = 0;
constexpr uint16_t kEventDisable = 1;
constexpr uint16_t kEventDesc = 2;

bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
    return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// A descriptor is available in lap `wrap` when AVAIL == wrap and USED != wrap.
bool is_avail(uint16_t flags, bool wrap) {
    bool a = flags & kPackedAvail, u = flags & kPackedUsed;
    return a == wrap && u != wrap;
}

class PackedRing final : public RingEngine {
public:
    PackedRing(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features)
        : mem_(mem), size_(cfg.size), event_idx_(has_feature(features, kFeatureEventIdx)),
          indirect_(has_feature(features, kFeatureIndirectDesc)) {
        if (size_ == 0 || size_ > kMaxQueueSize)
            throw QueueError(fmt::format("packed queue size {} is not in 1..{}", size_, kMaxQueueSize));
        // Checked once; every later access is at a slot < size inside these.
        desc_ = ring_area(mem, "descriptor ring", cfg.desc_addr, 16ull * size_, 16);
        driver_ = ring_area(mem, "driver event suppression", cfg.driver_addr, 4, 4);
        device_ = ring_area(mem, "device event suppression", cfg.device_addr, 4, 4);
    }

    bool is_packed() const override { return true; }

    std::optional<DescriptorChain> pop() override {
        // Acquire: the descriptor bodies were written before the head's flags.
        uint16_t head_flags = load16(flags_of(avail_pos_), std::memory_order_acquire);
        if (!is_avail(head_flags, avail_wrap_)) return std::nullopt;
        ChainBuilder b(mem_);
        uint16_t pos = avail_pos_;
        bool wrap = avail_wrap_;
        uint32_t count = 0;
        uint16_t id = 0;
        for (;;) {
            if (++count > size_)
                throw QueueError(fmt::format("descriptor chain at {} is longer than the queue size {} (loop?)",
                                             avail_pos_, size_));
            RawDesc d = load_packed_desc(desc_ + 16u * pos);  // pos < size: inside the ring
            if (count == 1) d.flags = head_flags;             // the value we synchronised on
            DescWhere where{pos};
            id = d.id;  // the buffer id is the one in the last descriptor
            if (++pos == size_) {
                pos = 0;
                wrap = !wrap;
            }
            if (d.flags & kDescIndirect) {
                if ((d.flags & kDescNext) || count > 1)
                    throw QueueError(fmt::format("{}: INDIRECT descriptor inside a NEXT chain", where.str()));
                walk_indirect(b, d, where);
                break;
            }
            b.add(d, where);
            if (!(d.flags & kDescNext)) break;
        }
        avail_pos_ = pos;
        avail_wrap_ = wrap;
        DescriptorChain& c = b.chain();
        c.id = id;
        c.desc_count = static_cast<uint16_t>(count);
        return std::move(c);
    }

    void push_used(const DescriptorChain& chain, uint32_t written) override {
        if (chain.desc_count == 0 || chain.desc_count > size_)
            throw QueueError(fmt::format("push_used: chain of {} descriptors on a queue of {}", chain.desc_count,
                                         size_));
        uint8_t* e = desc_ + 16u * used_pos_;  // used_pos_ < size: inside the ring
        store32(e + 8, written);
        store16(e + 12, chain.id);
        // The flags make the element visible: order them after id/len.
        std::atomic_thread_fence(std::memory_order_release);
        store16(e + 14, used_wrap_ ? (kPackedAvail | kPackedUsed) : 0);
        uint32_t next = uint32_t{used_pos_} + chain.desc_count;
        if (next >= size_) {
            next -= size_;
            used_wrap_ = !used_wrap_;
        }
        used_pos_ = static_cast<uint16_t>(next);
        unsignalled_ += chain.desc_count;
    }

    bool should_notify() override {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        uint32_t added = unsignalled_;
        unsignalled_ = 0;
        if (added == 0) return false;
        uint16_t off_wrap = load16(driver_);
        uint16_t flags = load16(driver_ + 2);
        if (flags == kEventDisable) return false;
        // Enable, or a value we do not understand: notify (never lose one).
        if (flags != kEventDesc || !event_idx_ || added >= size_) return true;
        // Compare in one index space: positions of the previous lap count
        // as negative (mod 2^16), like the driver does for avail events.
        uint16_t event = off_wrap & 0x7fff;
        bool event_wrap = off_wrap >> 15;
        if (event_wrap != used_wrap_) event = static_cast<uint16_t>(event - size_);
        uint16_t old_idx = static_cast<uint16_t>(used_pos_ - added);
        return need_event(event, used_pos_, old_idx);
    }

    void disable_notifications() override { store16(device_ + 2, kEventDisable); }

    bool enable_notifications() override {
        if (event_idx_) {
            store16(device_, static_cast<uint16_t>(avail_pos_ | (avail_wrap_ ? 0x8000 : 0)));
            store16(device_ + 2, kEventDesc);
        } else {
            store16(device_ + 2, kEventEnable);
        }
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return has_available();
    }

    bool has_available() override {
        return is_avail(load16(flags_of(avail_pos_), std::memory_order_acquire), avail_wrap_);
    }

private:
    uint8_t* flags_of(uint16_t pos) { return desc_ + 16u * pos + 14; }

    // Packed indirect tables are read in order: `entries` descriptors, the
    // NEXT flag inside them carries no meaning.
    void walk_indirect(ChainBuilder& b, const RawDesc& d, const DescWhere& where) {
        IndirectTable t = indirect_table(mem_, d, where, indirect_);
        for (uint32_t e = 0; e < t.entries; ++e) {
            DescWhere w{where.index, true, e};
            RawDesc x = load_packed_desc(t.host + 16u * e);  // e < entries: inside the table
            if (x.flags & kDescIndirect) throw QueueError(fmt::format("{}: nested indirect table", w.str()));
            b.add(x, w);
        }
    }

    const GuestMemory& mem_;
    uint16_t size_;
    bool event_idx_;
    bool indirect_;
    uint8_t* desc_ = nullptr;
    uint8_t* driver_ = nullptr;
    uint8_t* device_ = nullptr;
    uint16_t avail_pos_ = 0;
    bool avail_wrap_ = true;
    uint16_t used_pos_ = 0;
    bool used_wrap_ = true;
    uint32_t unsignalled_ = 0;
};

}  // namespace

std::unique_ptr<RingEngine> make_packed_ring(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features) {
    return std::make_unique<PackedRing>(mem, cfg, features);
}

}  // namespace vmm::virtio
