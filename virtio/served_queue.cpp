#include "virtio/served_queue.h"

#include <algorithm>

#include "virtio/request_queue.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {
log::RateLimit g_ring_errors;
}

ServedQueue::ServedQueue(std::string device, ActiveQueue&& aq, const ActivationContext& ctx,
                         std::atomic<uint64_t>& errors)
    : device_(std::move(device)), index_(aq.index), queue_(std::move(aq.queue)), kick_(std::move(aq.kick)),
      interrupt_(ctx.interrupt), needs_reset_(ctx.needs_reset), errors_(errors) {
    if (!kick_) kick_ = std::make_shared<EventFd>();  // a queue nobody kicks is still served at start()
}

bool ServedQueue::take_kick() {
    kick_->consume();
    queue_.note_notification();
    return !broken_;
}

bool ServedQueue::set_polling(bool on) {
    polling_ = on;
    if (broken_) return false;
    try {
        if (on) {
            queue_.disable_notifications();
            return false;
        }
        return queue_.enable_notifications();
    } catch (const QueueError& e) {
        fail(e.what());
        return false;
    }
}

void ServedQueue::push(const DescriptorChain& chain, uint32_t len) {
    if (broken_) return;
    try {
        queue_.push_used(chain, len);
        pushed_ = true;
    } catch (const QueueError& e) {
        fail(e.what());
    }
}

void ServedQueue::notify() {
    if (!pushed_ || broken_) return;
    pushed_ = false;
    bool want = false;
    try {
        want = queue_.should_notify();
    } catch (const QueueError& e) {
        fail(e.what());
        return;
    }
    if (want && interrupt_) interrupt_->signal_queue(index_);
}

void ServedQueue::fail(const std::string& what) {
    if (broken_) return;
    broken_ = true;
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (g_ring_errors.allow())
        log::warn("{}: q{}: {}; the queue stops until the driver resets the device", device_, index_, what);
    if (needs_reset_) needs_reset_();
}

QueueWorker::QueueWorker(std::string thread, std::string device, const ActivationContext& ctx,
                         std::atomic<uint64_t>& errors)
    : device_(std::move(device)), errors_(errors), thread_(std::move(thread)) {
    ctx_.mem = ctx.mem;
    ctx_.features = ctx.features;
    ctx_.interrupt = ctx.interrupt;
    ctx_.needs_reset = ctx.needs_reset;
}

QueueWorker::~QueueWorker() { stop(); }

void QueueWorker::serve(ServedQueue& q, OnKick on_kick) {
    thread_.loop().add(q.kick().fd(), [&q, on_kick](uint32_t) {
        if (q.take_kick()) on_kick(q);
    });
    on_kick_.push_back(std::move(on_kick));
}

ServedQueue& QueueWorker::add(ActiveQueue&& aq, OnKick on_kick) {
    queues_.push_back(std::make_unique<ServedQueue>(device_, std::move(aq), ctx_, errors_));
    serve(*queues_.back(), std::move(on_kick));
    return *queues_.back();
}

RequestQueue& QueueWorker::add_requests(ActiveQueue&& aq, OnKick on_kick) {
    auto q = std::make_unique<RequestQueue>(device_, std::move(aq), ctx_, errors_);
    RequestQueue& r = *q;
    queues_.push_back(std::move(q));
    serve(r, std::move(on_kick));
    return r;
}

void QueueWorker::start() {
    if (poll_max_ns_ && !thread_.loop().poll_max_ns()) {
        for (size_t i = 0; i < queues_.size(); ++i) {
            ServedQueue& q = *queues_[i];
            OnKick& on_kick = on_kick_[i];
            thread_.loop().add_poll({.poll =
                                         [&q, &on_kick] {
                                             if (!q.ready()) return false;
                                             on_kick(q);
                                             return true;
                                         },
                                     .mode = [&q](bool spinning) { return q.set_polling(spinning); }});
        }
        thread_.loop().set_poll_max_ns(poll_max_ns_);
    }
    thread_.start();
    for (auto& q : queues_) q->kick().signal();
}

void QueueWorker::stop() { thread_.stop(); }

std::string io_thread_name(const std::string& device, const std::string& suffix) {
    std::string base = device.rfind("virtio-", 0) == 0 ? device.substr(7) : device;
    std::string tail = "-" + suffix;
    if (base.size() + tail.size() > 15) base.resize(15 - std::min<size_t>(tail.size(), 15));
    return (base + tail).substr(0, 15);
}

}  // namespace vmm::virtio
