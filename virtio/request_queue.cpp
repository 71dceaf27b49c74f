#include "virtio/request_queue.h"

#include "vmm/core/event_loop.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {
log::RateLimit g_ring_errors;
}

RequestQueue::RequestQueue(std::string name, ActiveQueue&& aq, const ActivationContext& ctx, Counters counters)
    : name_(std::move(name)), index_(aq.index), queue_(std::move(aq.queue)), kick_(std::move(aq.kick)),
      interrupt_(ctx.interrupt), needs_reset_(ctx.needs_reset), counters_(counters), slots_(queue_.size()) {
    free_.reserve(slots_);
    for (size_t i = slots_; i-- > 0;) free_.push_back(static_cast<uint32_t>(i));
}

bool RequestQueue::take_kick() {
    kick_->consume();
    queue_.note_notification();
    counters_.notifications->fetch_add(1, std::memory_order_relaxed);
    return !broken_;
}

uint32_t RequestQueue::acquire() {
    uint32_t cookie = free_.back();  // pop_all only calls handle while one is free
    free_.pop_back();
    ++busy_;
    return cookie;
}

void RequestQueue::release(uint32_t cookie) {
    free_.push_back(cookie);
    --busy_;
}

bool RequestQueue::resume() {
    if (!stalled_ || broken_) return false;
    stalled_ = false;
    return true;
}

void RequestQueue::push(const DescriptorChain& chain, uint32_t len) {
    if (broken_) return;
    try {
        queue_.push_used(chain, len);
        pushed_ = true;
    } catch (const QueueError& e) {
        fail(e.what());
    }
}

void RequestQueue::notify() {
    if (!pushed_ || broken_) return;
    pushed_ = false;
    bool want;
    try {
        want = queue_.should_notify();
    } catch (const QueueError& e) {
        fail(e.what());
        return;
    }
    if (want && interrupt_) {
        interrupt_->signal_queue(index_);
        counters_.interrupts->fetch_add(1, std::memory_order_relaxed);
    }
}

void RequestQueue::fail(const char* what) {
    if (broken_) return;
    broken_ = true;
    counters_.errors->fetch_add(1, std::memory_order_relaxed);
    if (g_ring_errors.allow())
        log::error("{}: q{}: {}; the queue stops until the driver resets the device", name_, index_, what);
    if (needs_reset_) needs_reset_();
}

}  // namespace vmm::virtio
