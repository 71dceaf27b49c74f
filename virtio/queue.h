// The virtqueue engine: split and packed rings behind one Queue type.
//
// Device code never touches raw descriptors. Queue::pop() walks one
// available chain, validates all of it (index range, loops, chain length,
// zero lengths, indirect tables, readable-before-writable order, and every
// buffer range wholly inside guest RAM, overflow-checked) and returns a
// DescriptorChain: a list of guest-physical buffers already known to be
// inside RAM. Reader/Writer are cursors over the readable and writable parts.
//
// A malformed chain or ring (an avail index that runs more than the queue
// size ahead, a bad descriptor) throws QueueError; the device's I/O thread
// catches it, sets DEVICE_NEEDS_RESET and stops serving the queue. Nothing a
// guest writes can make the engine loop forever or access host memory outside
// guest RAM.
//
// Threading: a Queue is owned by exactly one I/O thread after activation.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "vmm/core/guest_memory.h"

namespace vmm::virtio {

// Feature bits the engine implements (virtio 1.x, section 6).
inline constexpr unsigned kFeatureIndirectDesc = 28;
inline constexpr unsigned kFeatureEventIdx = 29;
inline constexpr unsigned kFeatureVersion1 = 32;
inline constexpr unsigned kFeatureAccessPlatform = 33;
inline constexpr unsigned kFeatureRingPacked = 34;

inline constexpr uint16_t kMaxQueueSize = 32768;  // spec limit for split rings

class QueueError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// One guest buffer, validated: [addr, addr+len) lies wholly in guest RAM.
struct Buffer {
    uint64_t addr;
    uint32_t len;
};

struct DescriptorChain {
    uint16_t id = 0;          // head index (split) or buffer id (packed)
    uint16_t desc_count = 0;  // ring slots the chain occupies (packed ring accounting)
    std::vector<Buffer> readable;  // driver -> device, in order
    std::vector<Buffer> writable;  // device -> driver, in order
    uint64_t readable_bytes() const;
    uint64_t writable_bytes() const;
};

// Sequential reads from the readable part of a chain.
class Reader {
public:
    Reader(const GuestMemory& mem, const DescriptorChain& chain);
    size_t remaining() const;
    // Copies exactly out.size() bytes or returns false (and consumes nothing).
    bool read(std::span<uint8_t> out);
    template <typename T>
    std::optional<T> read_obj() {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        if (!read({reinterpret_cast<uint8_t*>(&v), sizeof(T)})) return std::nullopt;
        return v;
    }
    // Host iovecs for the next `n` bytes (n <= remaining()), consumed.
    std::vector<iovec> take_iovecs(size_t n);
    void skip(size_t n);  // n <= remaining()

private:
    const GuestMemory& mem_;
    std::vector<Buffer> bufs_;
    size_t index_ = 0;   // current buffer
    size_t offset_ = 0;  // within the current buffer
    size_t remaining_ = 0;
};

// Sequential writes into the writable part of a chain.
class Writer {
public:
    Writer(const GuestMemory& mem, const DescriptorChain& chain);
    size_t remaining() const;
    size_t written() const { return written_; }
    // Writes exactly data.size() bytes or returns false (and writes nothing).
    bool write(std::span<const uint8_t> data);
    template <typename T>
    bool write_obj(const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        return write({reinterpret_cast<const uint8_t*>(&v), sizeof(T)});
    }
    // Host iovecs for the next `n` bytes (n <= remaining()), consumed and
    // counted as written (the caller fills them, e.g. with preadv).
    std::vector<iovec> take_iovecs(size_t n);
    // Splits off the last `n` bytes of the writable area (e.g. a status byte
    // at the end of a chain): returns a Writer over them and shrinks this one.
    // nullopt if fewer than n bytes remain.
    std::optional<Writer> split_tail(size_t n);

private:
    Writer(const GuestMemory& mem, std::vector<Buffer> bufs);
    const GuestMemory& mem_;
    std::vector<Buffer> bufs_;
    size_t index_ = 0;
    size_t offset_ = 0;
    size_t remaining_ = 0;
    size_t written_ = 0;
};

// Calls fn(host pointer, position, n) for each piece of the `len` bytes
// that start `offset` bytes into host buffers (from
// Reader/Writer::take_iovecs), `position` counting from the first of them;
// stops at the buffers' end. Returns the bytes covered.
template <typename Fn>
size_t for_each_iov_piece(const std::vector<iovec>& iov, size_t offset, size_t len, Fn&& fn) {
    size_t done = 0;
    for (const auto& v : iov) {
        if (done == len) break;
        if (offset >= v.iov_len) {
            offset -= v.iov_len;
            continue;
        }
        size_t n = std::min(v.iov_len - offset, len - done);
        fn(static_cast<uint8_t*>(v.iov_base) + offset, done, n);
        done += n;
        offset = 0;
    }
    return done;
}

// Copies `bytes` into host buffers, starting `offset` bytes into them;
// returns the number of bytes copied.
inline size_t scatter(const std::vector<iovec>& iov, size_t offset, std::span<const uint8_t> bytes) {
    return for_each_iov_piece(iov, offset, bytes.size(),
                              [&](uint8_t* p, size_t at, size_t n) { std::memcpy(p, bytes.data() + at, n); });
}

// The mirror of scatter(): copies into `out` from host buffers, starting
// `offset` bytes into them; returns the number of bytes copied.
inline size_t gather(const std::vector<iovec>& iov, size_t offset, std::span<uint8_t> out) {
    return for_each_iov_piece(iov, offset, out.size(),
                              [&](const uint8_t* p, size_t at, size_t n) { std::memcpy(out.data() + at, p, n); });
}

// Counters of one queue, shared between the transport (which owns them and
// counts interrupts) and the Queue serving it on an I/O thread. They outlive
// activations: the control API reports totals since the VM started.
struct QueueStats {
    std::atomic<uint64_t> notifications{0};  // driver kicks the device consumed
    std::atomic<uint64_t> chains{0};         // descriptor chains popped
    std::atomic<uint64_t> used{0};           // chains returned to the driver
    std::atomic<uint64_t> interrupts{0};     // used-buffer interrupts raised
    std::atomic<uint64_t> errors{0};         // malformed rings (QueueError from pop)
};

// What the driver programmed through the transport for one queue.
struct QueueConfig {
    uint16_t size = 0;        // power of two for split rings; any 1..32768 for packed
    uint64_t desc_addr = 0;   // descriptor table / packed ring
    uint64_t driver_addr = 0; // avail ring / driver event suppression
    uint64_t device_addr = 0; // used ring / device event suppression
};

class Queue {
public:
    // Validates the configuration against guest memory (alignment, ring
    // areas wholly in RAM, size rules) and throws QueueError if it is bad.
    // `features` are the negotiated ones (EVENT_IDX, INDIRECT_DESC, RING_PACKED).
    Queue(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features);
    Queue(Queue&&) noexcept;
    ~Queue();

    uint16_t size() const;
    bool packed() const;

    // Counts into `stats` from now on (pop, push_used, note_notification).
    void set_stats(std::shared_ptr<QueueStats> stats);
    // Called by the device for each driver notification it consumes.
    void note_notification();

    // The next available chain, or nullopt if the ring is empty.
    // Throws QueueError on anything malformed.
    std::optional<DescriptorChain> pop();

    // Returns a completed chain to the driver with `written` bytes written.
    void push_used(const DescriptorChain& chain, uint32_t written);

    // After one or more push_used(): true if the driver wants an interrupt
    // now (EVENT_IDX used_event / packed event suppression, or the
    // NO_INTERRUPT flag). Call once per batch; it advances the internal
    // "last signalled" point.
    bool should_notify();

    // Driver-notification suppression while the device is busy. With
    // EVENT_IDX enable_notifications() publishes avail_event; it returns
    // true if buffers became available meanwhile (the caller must pop again
    // before sleeping, to close the race).
    void disable_notifications();
    bool enable_notifications();
    // True if the driver has made a chain available that pop() has not
    // taken: a cheap check for a polling I/O thread (no validation).
    bool has_available() const;

private:
    struct Impl;
    Impl* impl_;
};

// Serves every chain the driver has made available, the way each device's
// I/O thread does on a kick: driver notifications stay off while the ring
// has work; once it looks empty they are turned back on and the ring is
// read once more, since a chain posted in between would otherwise wait for
// a kick that never comes. `handle(DescriptorChain&)` may keep (move) the
// chain or push_used() it; if it returns bool, false stops the drain and
// leaves the rest on the ring. Returns the number of chains handled.
// QueueError from a malformed ring propagates to the caller.
// With `stay_quiet` (a polling I/O thread, which turned notifications off
// and will turn them back on itself before it sleeps) it returns as soon as
// the ring is empty.
template <typename Handle>
size_t drain(Queue& q, Handle&& handle, bool stay_quiet = false) {
    size_t handled = 0;
    for (;;) {
        q.disable_notifications();
        while (auto chain = q.pop()) {
            ++handled;
            if constexpr (std::is_same_v<std::invoke_result_t<Handle&, DescriptorChain&>, bool>) {
                if (!handle(*chain)) return handled;
            } else {
                handle(*chain);
            }
        }
        if (stay_quiet || !q.enable_notifications()) return handled;
    }
}

}  // namespace vmm::virtio
