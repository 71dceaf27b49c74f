// Test helper: a fake guest RAM and drivers-side builders for split and
// packed virtqueues, so device tests can play the guest driver.
//
// Usage (split ring):
//
//     test::virtq::FakeRam ram;                       // 2 MiB at 0, hole, 1 MiB at 4 MiB
//     test::virtq::SplitRing ring(ram, 256);          // lays out desc/avail/used in low RAM
//     vmm::virtio::Queue q(ram.mem, ring.config(), ring.features());
//     uint64_t hdr = ram.alloc(16), data = ram.alloc(512), st = ram.alloc(1);
//     ram.put<MyHeader>(hdr, {...});
//     uint16_t head = ring.add_chain({{hdr, 16, false}, {data, 512, true}, {st, 1, true}});
//     // ... device pops, processes, push_used(chain, n) ...
//     REQUIRE(ring.used_idx() == 1);
//     auto u = ring.used(0);                          // {id, len}; u.id == head
//
// Usage (packed ring): identical, with test::virtq::PackedRing. add_chain()
// takes an optional buffer id (default: the ring slot of the head); used
// elements are read back in order with next_used(), which returns nullopt
// when the device has not written one yet.
//
// Both builders accept feature flags (EVENT_IDX / INDIRECT_DESC; the packed
// builder adds RING_PACKED) via the constructor, expose raw setters for
// malformed-ring tests (set_desc, set_avail_idx, ...), and add_indirect()
// builds an indirect table in RAM and makes one descriptor pointing at it
// available. FakeRam::alloc() is a bump allocator in the low region (16-byte
// aligned by default); kHole is a GPA inside the hole, kHighBase/kHighSize
// describe the high region (e.g. to test a buffer crossing its end).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <vector>

#include "virtio/device.h"
#include "virtio/queue.h"
#include "vmm/core/guest_memory.h"

namespace test::virtq {

// A VirtioInterrupt that counts what a device raises (queues 0..7).
struct CountingInterrupt : vmm::virtio::VirtioInterrupt {
    void signal_queue(uint16_t q) override { ++queue[q % 8]; }
    void signal_config() override { ++config; }
    std::atomic<int> queue[8]{};
    std::atomic<int> config{0};
};

inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;
inline constexpr uint16_t kPackedAvail = 1u << 7;
inline constexpr uint16_t kPackedUsed = 1u << 15;

inline constexpr uint64_t feature(unsigned bit) { return uint64_t{1} << bit; }

// One driver buffer for a chain.
struct Desc {
    uint64_t addr;
    uint32_t len;
    bool writable;
};

struct UsedElem {
    uint32_t id;
    uint32_t len;
};

// Two RAM regions with a hole between them.
class FakeRam {
public:
    static constexpr uint64_t kLowBase = 0;
    static constexpr uint64_t kLowSize = 2u << 20;
    static constexpr uint64_t kHighBase = 4u << 20;
    static constexpr uint64_t kHighSize = 1u << 20;
    static constexpr uint64_t kHole = 3u << 20;  // not RAM

    FakeRam()
        : low_(kLowSize), high_(kHighSize),
          mem(vmm::GuestMemory::from_buffers({{kLowBase, kLowSize, low_.data()}, {kHighBase, kHighSize, high_.data()}})) {}
    FakeRam(const FakeRam&) = delete;
    FakeRam& operator=(const FakeRam&) = delete;

    // Bump allocation in the low region (the first page stays unused).
    uint64_t alloc(uint64_t len, uint64_t align = 16) {
        next_ = (next_ + align - 1) / align * align;
        uint64_t a = next_;
        next_ += len;
        if (next_ > kLowSize) throw std::runtime_error("FakeRam: out of memory");
        return a;
    }

    template <typename T>
    void put(uint64_t gpa, const T& v) {
        if (!mem.write_obj(gpa, v)) throw std::runtime_error("FakeRam::put outside RAM");
    }
    template <typename T>
    T get(uint64_t gpa) const {
        auto v = mem.read_obj<T>(gpa);
        if (!v) throw std::runtime_error("FakeRam::get outside RAM");
        return *v;
    }
    void fill(uint64_t gpa, const std::vector<uint8_t>& bytes) {
        if (!mem.write(gpa, bytes)) throw std::runtime_error("FakeRam::fill outside RAM");
    }
    std::vector<uint8_t> bytes(uint64_t gpa, uint64_t len) const {
        std::vector<uint8_t> out(len);
        if (!mem.read(gpa, out)) throw std::runtime_error("FakeRam::bytes outside RAM");
        return out;
    }

private:
    std::vector<uint8_t> low_, high_;
    uint64_t next_ = 0x1000;

public:
    vmm::GuestMemory mem;
};

// Driver side of a split ring (virtio 1.x section 2.7).
class SplitRing {
public:
    SplitRing(FakeRam& ram, uint16_t size, uint64_t features = 0) : ram_(ram), size_(size), features_(features) {
        desc_ = ram.alloc(16u * size, 16);
        avail_ = ram.alloc(6u + 2u * size, 2);
        used_ = ram.alloc(6u + 8u * size, 4);
    }

    vmm::virtio::QueueConfig config() const { return {size_, desc_, avail_, used_}; }
    uint64_t features() const { return features_; }
    uint16_t size() const { return size_; }
    uint64_t desc_addr() const { return desc_; }
    uint64_t avail_addr() const { return avail_; }
    uint64_t used_addr() const { return used_; }

    // Raw descriptor write at table index i.
    void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        uint64_t a = desc_ + 16u * i;
        ram_.put<uint64_t>(a, addr);
        ram_.put<uint32_t>(a + 8, len);
        ram_.put<uint16_t>(a + 12, flags);
        ram_.put<uint16_t>(a + 14, next);
    }

    // Writes the chain into free table slots (allocated round-robin) linked
    // with NEXT, without publishing it. Returns the head index.
    uint16_t write_chain(const std::vector<Desc>& descs) {
        std::vector<uint16_t> idx;
        for (size_t i = 0; i < descs.size(); ++i) idx.push_back(take_slot());
        for (size_t i = 0; i < descs.size(); ++i) {
            bool last = i + 1 == descs.size();
            uint16_t flags = (descs[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext);
            set_desc(idx[i], descs[i].addr, descs[i].len, flags, last ? 0 : idx[i + 1]);
        }
        return idx.empty() ? 0 : idx[0];
    }

    // Puts `head` into the avail ring and bumps avail->idx.
    void publish(uint16_t head) {
        uint16_t idx = avail_idx();
        ram_.put<uint16_t>(avail_ + 4 + 2u * (idx % size_), head);
        set_avail_idx(static_cast<uint16_t>(idx + 1));
    }

    uint16_t add_chain(const std::vector<Desc>& descs) {
        uint16_t head = write_chain(descs);
        publish(head);
        return head;
    }

    // Writes an indirect table (entries linked 0->1->...) into fresh RAM.
    uint64_t write_indirect_table(const std::vector<Desc>& descs) {
        uint64_t t = ram_.alloc(16u * descs.size(), 16);
        for (size_t i = 0; i < descs.size(); ++i) {
            bool last = i + 1 == descs.size();
            uint16_t flags = (descs[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext);
            write_raw_desc(ram_, t + 16 * i, descs[i].addr, descs[i].len, flags, last ? 0 : uint16_t(i + 1));
        }
        return t;
    }

    // One INDIRECT descriptor pointing at a new table with `descs`; published.
    uint16_t add_indirect(const std::vector<Desc>& descs) {
        uint64_t t = write_indirect_table(descs);
        uint16_t head = take_slot();
        set_desc(head, t, static_cast<uint32_t>(16 * descs.size()), kDescIndirect, 0);
        publish(head);
        return head;
    }

    static void write_raw_desc(FakeRam& ram, uint64_t gpa, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        ram.put<uint64_t>(gpa, addr);
        ram.put<uint32_t>(gpa + 8, len);
        ram.put<uint16_t>(gpa + 12, flags);
        ram.put<uint16_t>(gpa + 14, next);
    }

    uint16_t avail_idx() const { return ram_.get<uint16_t>(avail_ + 2); }
    void set_avail_idx(uint16_t v) { ram_.put<uint16_t>(avail_ + 2, v); }
    void set_avail_flags(uint16_t f) { ram_.put<uint16_t>(avail_, f); }  // 1 = NO_INTERRUPT
    void set_avail_entry(uint16_t pos, uint16_t head) { ram_.put<uint16_t>(avail_ + 4 + 2u * (pos % size_), head); }
    void set_used_event(uint16_t v) { ram_.put<uint16_t>(avail_ + 4 + 2u * size_, v); }

    uint16_t used_flags() const { return ram_.get<uint16_t>(used_); }  // 1 = NO_NOTIFY
    uint16_t used_idx() const { return ram_.get<uint16_t>(used_ + 2); }
    UsedElem used(uint16_t pos) const {
        uint64_t a = used_ + 4 + 8u * (pos % size_);
        return {ram_.get<uint32_t>(a), ram_.get<uint32_t>(a + 4)};
    }
    uint16_t avail_event() const { return ram_.get<uint16_t>(used_ + 4 + 8u * size_); }

    // The queue starts at index 0; to test 16-bit wrap-around, run chains
    // through it first. Publishes and completes `n` one-descriptor chains through `q`.
    void cycle(vmm::virtio::Queue& q, unsigned n) {
        uint64_t buf = scratch();
        for (unsigned i = 0; i < n; ++i) {
            add_chain({{buf, 1, false}});
            auto c = q.pop();
            if (!c) throw std::runtime_error("SplitRing::cycle: queue returned nothing");
            q.push_used(*c, 0);
        }
    }

private:
    uint16_t take_slot() {
        uint16_t s = next_slot_;
        next_slot_ = static_cast<uint16_t>((next_slot_ + 1) % size_);
        return s;
    }
    uint64_t scratch() {
        if (!scratch_) scratch_ = ram_.alloc(16);
        return scratch_;
    }

    FakeRam& ram_;
    uint16_t size_;
    uint64_t features_;
    uint64_t desc_ = 0, avail_ = 0, used_ = 0;
    uint16_t next_slot_ = 0;
    uint64_t scratch_ = 0;
};

// Driver side of a packed ring (virtio 1.x section 2.8).
class PackedRing {
public:
    PackedRing(FakeRam& ram, uint16_t size, uint64_t features = 0)
        : ram_(ram), size_(size), features_(features | feature(vmm::virtio::kFeatureRingPacked)) {
        desc_ = ram.alloc(16u * size, 16);
        driver_ = ram.alloc(4, 4);
        device_ = ram.alloc(4, 4);
    }

    vmm::virtio::QueueConfig config() const { return {size_, desc_, driver_, device_}; }
    uint64_t features() const { return features_; }
    uint16_t size() const { return size_; }
    uint64_t desc_addr() const { return desc_; }

    // Raw descriptor write at ring slot i.
    void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags) {
        uint64_t a = desc_ + 16u * i;
        ram_.put<uint64_t>(a, addr);
        ram_.put<uint32_t>(a + 8, len);
        ram_.put<uint16_t>(a + 12, id);
        ram_.put<uint16_t>(a + 14, flags);
    }
    uint16_t desc_flags(uint16_t i) const { return ram_.get<uint16_t>(desc_ + 16u * i + 14); }

    // AVAIL/USED bits that mark a descriptor available in the current lap.
    uint16_t avail_bits() const { return wrap_ ? kPackedAvail : kPackedUsed; }

    // Makes a chain available at the driver's position; the head's flags are
    // written last. `extra_flags` are or-ed into every descriptor (e.g. to
    // test INDIRECT). Returns the buffer id.
    uint16_t add_chain(const std::vector<Desc>& descs, std::optional<uint16_t> id = std::nullopt,
                       uint16_t extra_flags = 0) {
        uint16_t bid = id.value_or(pos_);
        uint16_t head = pos_;
        uint16_t head_flags = 0;
        for (size_t i = 0; i < descs.size(); ++i) {
            bool last = i + 1 == descs.size();
            uint16_t flags = avail_bits() | extra_flags | (descs[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext);
            if (i == 0) {
                head_flags = flags;
                set_desc(pos_, descs[i].addr, descs[i].len, bid, 0);
                ram_.put<uint16_t>(desc_ + 16u * pos_ + 14, static_cast<uint16_t>(flags ^ (kPackedAvail | kPackedUsed)));
            } else {
                set_desc(pos_, descs[i].addr, descs[i].len, bid, flags);
            }
            advance();
        }
        if (!descs.empty()) ram_.put<uint16_t>(desc_ + 16u * head + 14, head_flags);
        counts_[bid] = static_cast<uint16_t>(descs.size());
        return bid;
    }

    // Indirect table entries: sequential, flags only WRITE.
    uint64_t write_indirect_table(const std::vector<Desc>& descs) {
        uint64_t t = ram_.alloc(16u * descs.size(), 16);
        for (size_t i = 0; i < descs.size(); ++i) {
            uint64_t a = t + 16 * i;
            ram_.put<uint64_t>(a, descs[i].addr);
            ram_.put<uint32_t>(a + 8, descs[i].len);
            ram_.put<uint16_t>(a + 12, 0);
            ram_.put<uint16_t>(a + 14, descs[i].writable ? kDescWrite : 0);
        }
        return t;
    }

    uint16_t add_indirect(const std::vector<Desc>& descs, std::optional<uint16_t> id = std::nullopt) {
        uint64_t t = write_indirect_table(descs);
        uint16_t bid = id.value_or(pos_);
        set_desc(pos_, t, static_cast<uint32_t>(16 * descs.size()), bid, avail_bits() | kDescIndirect);
        advance();
        counts_[bid] = 1;
        return bid;
    }

    // The next used element in order, or nullopt if the device has not
    // written it. Advances by the chain's descriptor count.
    std::optional<UsedElem> next_used() {
        uint64_t a = desc_ + 16u * used_pos_;
        uint16_t flags = ram_.get<uint16_t>(a + 14);
        bool avail = flags & kPackedAvail, used = flags & kPackedUsed;
        if (avail != used || used != used_wrap_) return std::nullopt;
        UsedElem e{ram_.get<uint16_t>(a + 12), ram_.get<uint32_t>(a + 8)};
        auto it = counts_.find(static_cast<uint16_t>(e.id));
        uint16_t n = it == counts_.end() ? 1 : it->second;
        used_pos_ = static_cast<uint16_t>(used_pos_ + n);
        if (used_pos_ >= size_) {
            used_pos_ = static_cast<uint16_t>(used_pos_ - size_);
            used_wrap_ = !used_wrap_;
        }
        return e;
    }

    // Driver event suppression (what the device reads before notifying):
    // flags 0 enable, 1 disable, 2 at descriptor off_wrap (EVENT_IDX).
    void set_driver_event(uint16_t off_wrap, uint16_t flags) {
        ram_.put<uint16_t>(driver_, off_wrap);
        ram_.put<uint16_t>(driver_ + 2, flags);
    }
    // Device event suppression (what the device wrote for the driver).
    uint16_t device_event_off_wrap() const { return ram_.get<uint16_t>(device_); }
    uint16_t device_event_flags() const { return ram_.get<uint16_t>(device_ + 2); }

    uint16_t driver_pos() const { return pos_; }
    bool driver_wrap() const { return wrap_; }

    // Publishes and completes `n` one-descriptor chains through `q`.
    void cycle(vmm::virtio::Queue& q, unsigned n) {
        if (!scratch_) scratch_ = ram_.alloc(16);
        for (unsigned i = 0; i < n; ++i) {
            add_chain({{scratch_, 1, false}});
            auto c = q.pop();
            if (!c) throw std::runtime_error("PackedRing::cycle: queue returned nothing");
            q.push_used(*c, 0);
            if (!next_used()) throw std::runtime_error("PackedRing::cycle: no used element");
        }
    }

private:
    void advance() {
        if (++pos_ == size_) {
            pos_ = 0;
            wrap_ = !wrap_;
        }
    }

    FakeRam& ram_;
    uint16_t size_;
    uint64_t features_;
    uint64_t desc_ = 0, driver_ = 0, device_ = 0;
    uint16_t pos_ = 0;
    bool wrap_ = true;
    uint16_t used_pos_ = 0;
    bool used_wrap_ = true;
    std::map<uint16_t, uint16_t> counts_;
    uint64_t scratch_ = 0;
};

}  // namespace test::virtq
