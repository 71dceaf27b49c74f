// The virtqueue engine: DescriptorChain, Reader/Writer cursors and the
// layout-independent Queue front end. The ring layouts live in
// queue_split.cpp and queue_packed.cpp behind queue_impl.h.
#include "virtio/queue.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "virtio/queue_impl.h"

namespace vmm::virtio {

uint64_t DescriptorChain::readable_bytes() const {
    uint64_t n = 0;
    for (auto& b : readable) n += b.len;
    return n;
}

uint64_t DescriptorChain::writable_bytes() const {
    uint64_t n = 0;
    for (auto& b : writable) n += b.len;
    return n;
}

namespace {

size_t total(const std::vector<Buffer>& bufs) {
    size_t n = 0;
    for (auto& b : bufs) n += b.len;
    return n;
}

// Host span of part of a buffer that was validated when the chain was built;
// the check cannot fail unless guest memory changed under us.
std::span<uint8_t> host_span(const GuestMemory& mem, const Buffer& b, size_t off, size_t len) {
    auto s = mem.slice(b.addr + off, len);
    if (!s) throw QueueError(fmt::format("buffer {:#x}+{:#x} is no longer in guest RAM", b.addr, b.len));
    return *s;
}

// Walks `n` bytes from (index, offset), calling f(buffer, offset, len) per piece.
template <typename F>
void walk(const std::vector<Buffer>& bufs, size_t& index, size_t& offset, size_t n, F&& f) {
    while (n > 0) {
        const Buffer& b = bufs[index];
        size_t chunk = std::min<size_t>(n, b.len - offset);
        f(b, offset, chunk);
        n -= chunk;
        offset += chunk;
        if (offset == b.len) {
            ++index;
            offset = 0;
        }
    }
}

}  // namespace

// ---------------------------------------------------------------- Reader

Reader::Reader(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), bufs_(chain.readable), remaining_(total(chain.readable)) {}

size_t Reader::remaining() const { return remaining_; }

bool Reader::read(std::span<uint8_t> out) {
    if (out.size() > remaining_) return false;
    uint8_t* dst = out.data();
    walk(bufs_, index_, offset_, out.size(), [&](const Buffer& b, size_t off, size_t len) {
        std::memcpy(dst, host_span(mem_, b, off, len).data(), len);
        dst += len;
    });
    remaining_ -= out.size();
    return true;
}

std::vector<iovec> Reader::take_iovecs(size_t n) {
    if (n > remaining_) throw QueueError(fmt::format("reader: {} bytes requested, {} remain", n, remaining_));
    std::vector<iovec> iov;
    walk(bufs_, index_, offset_, n, [&](const Buffer& b, size_t off, size_t len) {
        iov.push_back({host_span(mem_, b, off, len).data(), len});
    });
    remaining_ -= n;
    return iov;
}

void Reader::skip(size_t n) {
    if (n > remaining_) throw QueueError(fmt::format("reader: skip of {} bytes, {} remain", n, remaining_));
    walk(bufs_, index_, offset_, n, [](const Buffer&, size_t, size_t) {});
    remaining_ -= n;
}

// ---------------------------------------------------------------- Writer

Writer::Writer(const GuestMemory& mem, const DescriptorChain& chain) : Writer(mem, chain.writable) {}

Writer::Writer(const GuestMemory& mem, std::vector<Buffer> bufs) : mem_(mem), bufs_(std::move(bufs)) {
    remaining_ = total(bufs_);
}

size_t Writer::remaining() const { return remaining_; }

bool Writer::write(std::span<const uint8_t> data) {
    if (data.size() > remaining_) return false;
    const uint8_t* src = data.data();
    walk(bufs_, index_, offset_, data.size(), [&](const Buffer& b, size_t off, size_t len) {
        std::memcpy(host_span(mem_, b, off, len).data(), src, len);
        src += len;
    });
    remaining_ -= data.size();
    written_ += data.size();
    return true;
}

std::vector<iovec> Writer::take_iovecs(size_t n) {
    if (n > remaining_) throw QueueError(fmt::format("writer: {} bytes requested, {} remain", n, remaining_));
    std::vector<iovec> iov;
    walk(bufs_, index_, offset_, n, [&](const Buffer& b, size_t off, size_t len) {
        iov.push_back({host_span(mem_, b, off, len).data(), len});
    });
    remaining_ -= n;
    written_ += n;
    return iov;
}

std::optional<Writer> Writer::split_tail(size_t n) {
    if (n > remaining_) return std::nullopt;
    // Cut the last n bytes off the end of bufs_. They all lie past the
    // cursor because n <= remaining_.
    std::vector<Buffer> tail;
    size_t need = n;
    while (need > 0) {
        Buffer& last = bufs_.back();
        bool current = bufs_.size() - 1 == index_;
        size_t unread = last.len - (current ? offset_ : 0);
        size_t take = std::min(need, unread);
        tail.push_back({last.addr + last.len - take, static_cast<uint32_t>(take)});
        last.len -= static_cast<uint32_t>(take);
        need -= take;
        if (last.len == 0) {
            bufs_.pop_back();
        } else if (current && last.len == offset_) {
            ++index_;  // keep the invariant: the cursor never rests at the end of a buffer
            offset_ = 0;
        }
    }
    std::reverse(tail.begin(), tail.end());
    remaining_ -= n;
    return Writer(mem_, std::move(tail));
}

// ---------------------------------------------------------------- Queue

Queue::Queue(const GuestMemory& mem, const QueueConfig& cfg, uint64_t features)
    : impl_(new Impl{cfg.size, nullptr}) {
    try {
        impl_->ring = has_feature(features, kFeatureRingPacked) ? make_packed_ring(mem, cfg, features)
                                                                : make_split_ring(mem, cfg, features);
    } catch (...) {
        delete impl_;
        throw;
    }
}

Queue::Queue(Queue&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)) {}

Queue::~Queue() { delete impl_; }

uint16_t Queue::size() const { return impl_->size; }
bool Queue::packed() const { return impl_->ring->is_packed(); }
void Queue::set_stats(std::shared_ptr<QueueStats> stats) {
    if (stats) impl_->stats = std::move(stats);
}

void Queue::note_notification() { impl_->stats->notifications.fetch_add(1, std::memory_order_relaxed); }

std::optional<DescriptorChain> Queue::pop() {
    try {
        auto chain = impl_->ring->pop();
        if (chain) impl_->stats->chains.fetch_add(1, std::memory_order_relaxed);
        // enable_notifications() reported buffers and now there are none: a
        // driver never takes buffers back, so the device's own writes (the
        // used ring or its flags laid over the avail index) changed what it
        // reads. Left alone, every drain loop would spin on it forever.
        if (!chain && impl_->work_promised)
            throw QueueError("available buffers vanished: the ring areas overlap what the device writes");
        impl_->work_promised = false;
        return chain;
    } catch (const QueueError&) {
        impl_->stats->errors.fetch_add(1, std::memory_order_relaxed);
        throw;
    }
}

void Queue::push_used(const DescriptorChain& chain, uint32_t written) {
    impl_->ring->push_used(chain, written);
    impl_->stats->used.fetch_add(1, std::memory_order_relaxed);
}
bool Queue::should_notify() { return impl_->ring->should_notify(); }
void Queue::disable_notifications() { impl_->ring->disable_notifications(); }
bool Queue::has_available() const { return impl_->ring->has_available(); }
bool Queue::enable_notifications() { return impl_->work_promised = impl_->ring->enable_notifications(); }

// ---------------------------------------------------------------- shared chain building

std::string DescWhere::str() const {
    if (indirect) return fmt::format("descriptor {}: indirect entry {}", index, entry);
    return fmt::format("descriptor {}", index);
}

void ChainBuilder::add(const RawDesc& d, const DescWhere& where) {
    if (d.len == 0) return;  // skipped, but counted above
    bool writable = d.flags & kDescWrite;
    if (!writable && seen_writable_)
        throw QueueError(fmt::format("{}: readable buffer after a writable one", where.str()));
    seen_writable_ |= writable;
    // The one check that bounds every later host access to this buffer.
    if (!mem_.slice(d.addr, d.len))
        throw QueueError(
            fmt::format("{}: buffer {:#x}+{:#x} is not inside guest RAM", where.str(), d.addr, d.len));
    uint64_t& t = writable ? writable_total_ : readable_total_;
    t += d.len;
    if (t > UINT32_MAX)
        throw QueueError(
            fmt::format("{}: total {} length exceeds 4 GiB", where.str(), writable ? "writable" : "readable"));
    (writable ? chain_.writable : chain_.readable).push_back({d.addr, d.len});
}

IndirectTable indirect_table(const GuestMemory& mem, const RawDesc& d, const DescWhere& where, bool negotiated) {
    if (!negotiated)
        throw QueueError(fmt::format("{}: INDIRECT flag but VIRTIO_F_INDIRECT_DESC was not negotiated", where.str()));
    if (d.len == 0 || d.len % 16)
        throw QueueError(fmt::format("{}: indirect table length {} is not a non-zero multiple of 16", where.str(), d.len));
    uint32_t entries = d.len / 16;
    if (entries > kMaxIndirectEntries)
        throw QueueError(fmt::format("{}: indirect table of {} entries (at most {})", where.str(), entries,
                                     kMaxIndirectEntries));
    auto s = mem.slice(d.addr, d.len);
    if (!s)
        throw QueueError(
            fmt::format("{}: indirect table {:#x}+{:#x} is not inside guest RAM", where.str(), d.addr, d.len));
    return {s->data(), entries};
}

uint8_t* ring_area(const GuestMemory& mem, const char* what, uint64_t gpa, uint64_t len, uint64_t align) {
    if (gpa % align) throw QueueError(fmt::format("{} at {:#x} is not {}-byte aligned", what, gpa, align));
    auto s = mem.slice(gpa, len);
    if (!s) throw QueueError(fmt::format("{} {:#x}+{:#x} is not inside guest RAM", what, gpa, len));
    return s->data();
}

}  // namespace vmm::virtio
