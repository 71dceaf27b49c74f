// Private to the queue engine: the ring-layout interface that split and
// packed rings implement, and the chain-building checks they share.
#pragma once

#include <atomic>
#include <bit>
#include <cstring>
#include <memory>
#include <string>

#include "virtio/queue.h"

namespace vmm::virtio {

static_assert(std::endian::native == std::endian::little, "rings are little-endian; so is the host");

inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;

// An indirect table may hold at most this many entries: the spec bounds a
// chain by the queue size, and no driver needs more than the largest queue.
inline constexpr uint32_t kMaxIndirectEntries = kMaxQueueSize;

// A descriptor snapshot. `id` is the split ring's next field or the packed
// ring's buffer id.
struct RawDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t id;
};

// One copy of the 16 bytes: the driver may change them concurrently, but the
// engine validates and uses only this snapshot. p must point at 16 bytes
// inside guest RAM (the caller's ring or table slice).
inline RawDesc load_split_desc(const uint8_t* p) {
    uint8_t raw[16];
    std::memcpy(raw, p, 16);
    RawDesc d;
    std::memcpy(&d.addr, raw, 8);
    std::memcpy(&d.len, raw + 8, 4);
    std::memcpy(&d.flags, raw + 12, 2);
    std::memcpy(&d.id, raw + 14, 2);
    return d;
}

inline RawDesc load_packed_desc(const uint8_t* p) {
    uint8_t raw[16];
    std::memcpy(raw, p, 16);
    RawDesc d;
    std::memcpy(&d.addr, raw, 8);
    std::memcpy(&d.len, raw + 8, 4);
    std::memcpy(&d.id, raw + 12, 2);
    std::memcpy(&d.flags, raw + 14, 2);
    return d;
}

// Shared ring fields are naturally aligned (checked at construction), so
// they can be accessed atomically in place.
inline uint16_t load16(uint8_t* p, std::memory_order o = std::memory_order_relaxed) {
    return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(o);
}
inline void store16(uint8_t* p, uint16_t v, std::memory_order o = std::memory_order_relaxed) {
    std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, o);
}
inline void store32(uint8_t* p, uint32_t v) {
    std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(p)).store(v, std::memory_order_relaxed);
}

// Where a descriptor came from, for error messages.
struct DescWhere {
    uint32_t index;         // ring / table slot
    bool indirect = false;  // inside the indirect table referenced by `index`
    uint32_t entry = 0;     // entry in that table
    std::string str() const;
};

// Accumulates validated buffers into a DescriptorChain: zero-length skip,
// readable-before-writable order, range in guest RAM, u32 totals.
class ChainBuilder {
public:
    explicit ChainBuilder(const GuestMemory& mem) : mem_(mem) {}
    void add(const RawDesc& d, const DescWhere& where);
    DescriptorChain& chain() { return chain_; }

private:
    const GuestMemory& mem_;
    DescriptorChain chain_;
    bool seen_writable_ = false;
    uint64_t readable_total_ = 0;
    uint64_t writable_total_ = 0;
};

// Validates an INDIRECT descriptor (feature negotiated, length a non-zero
// multiple of 16 and not too long, table in RAM) and returns the table's
// host pointer and entry count.
struct IndirectTable {
    const uint8_t* host;
    uint32_t entries;
};
IndirectTable indirect_table(const GuestMemory& mem, const RawDesc& d, const DescWhere& where, bool negotiated);

// What each ring layout implements (see Queue in queue.h for the contract).
class RingEngine {
public:
    virtual ~RingEngine() = default;
    virtual bool is_packed() const = 0;
    virtual std::optional<DescriptorChain> pop() = 0;
    virtual void push_used(const DescriptorChain& chain, uint32_t written) = 0;
    virtual bool should_notify() = 0;
    virtual void disable_notifications() = 0;
    virtual bool enable_notifications() = 0;
    virtual bool has_available() = 0;
};

std::unique_ptr<RingEngine> make_split_ring(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features);
std::unique_ptr<RingEngine> make_packed_ring(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features);

// The host span of a ring area, checked once: the area must be aligned and
// wholly inside guest RAM. Throws QueueError naming `what`.
uint8_t* ring_area(const GuestMemory& mem, const char* what, uint64_t gpa, uint64_t len, uint64_t align);

inline bool has_feature(uint64_t features, unsigned bit) { return features & (uint64_t{1} << bit); }

struct Queue::Impl {
    uint16_t size;
    std::unique_ptr<RingEngine> ring;
    std::shared_ptr<QueueStats> stats = std::make_shared<QueueStats>();  // private until set_stats()
    bool work_promised = false;  // enable_notifications() saw available buffers not popped yet
};

}  // namespace vmm::virtio
