// How every virtio device serves its queues: one shape for all of them.
//
// ServedQueue is one active virtqueue as the device sees it. It owns the
// ring (Queue), its kick eventfd and the error path every device needs:
// a malformed ring (QueueError from pop, push or the interrupt check)
// stops that queue for good, is counted in the device's "errors" counter,
// logged (rate-limited) and reported to the transport, which sets
// DEVICE_NEEDS_RESET and tells the driver. Pushes are remembered so that
// notify() raises at most one interrupt per batch, and only if the driver
// wants one. Interrupts and kicks are counted in one place: the transport's
// per-queue counters (QueueStats: q<N>.interrupts, q<N>.notifications).
//
// QueueWorker is one I/O thread serving one or more ServedQueues plus any
// other fds the device needs (a tap, a disk engine's completion eventfd, a
// timer). It owns the queues and the thread; on a kick it runs the queue's
// handler unless the queue is broken; start() also serves buffers the
// driver posted before activation. A device creates its workers in
// activate() and destroys them in reset() (which joins the threads).
//
// Single-threaded: after start(), a queue is touched only from its worker's
// thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "virtio/device.h"
#include "virtio/queue.h"
#include "vmm/core/event_loop.h"

namespace vmm::virtio {

class ServedQueue {
public:
    // `device` prefixes log lines; `errors` is the device's error counter
    // (it must outlive the queue).
    ServedQueue(std::string device, ActiveQueue&& aq, const ActivationContext& ctx, std::atomic<uint64_t>& errors);
    virtual ~ServedQueue() = default;
    ServedQueue(const ServedQueue&) = delete;
    ServedQueue& operator=(const ServedQueue&) = delete;

    uint16_t index() const { return index_; }
    // The ring itself, for pops and pushes inside guard().
    Queue& queue() { return queue_; }
    EventFd& kick() { return *kick_; }
    bool broken() const { return broken_; }

    // A driver notification: consumed and counted; false if the queue is broken.
    bool take_kick();

    // Polling (QueueWorker::set_poll_max_ns): ready() says the handler has
    // work (a cheap look at the ring); while polling() the handlers leave
    // driver notifications off, the worker turns them on before sleeping.
    virtual bool ready() const { return !broken_ && queue_.has_available(); }
    bool polling() const { return polling_; }
    // Returns true if chains became available (leaving polling).
    bool set_polling(bool on);

    // Runs `f`, which may pop from and push to queue(); a QueueError from it
    // breaks the queue (fail()). Returns false if the queue is broken.
    template <typename F>
    bool guard(F&& f) {
        if (broken_) return false;
        try {
            f();
        } catch (const QueueError& e) {
            fail(e.what());
        }
        return !broken_;
    }

    // virtio::drain() under guard(): serves every available chain through
    // `handle(DescriptorChain&)` (which should push() it or keep it; a bool
    // result false stops the drain). Returns the number handled.
    template <typename Handle>
    size_t drain(Handle&& handle) {
        size_t n = 0;
        guard([&] {
            n = virtio::drain(queue_, [&](DescriptorChain& chain) -> bool {
                if constexpr (std::is_same_v<std::invoke_result_t<Handle&, DescriptorChain&>, bool>) {
                    return handle(chain) && !broken_;
                } else {
                    handle(chain);
                    return !broken_;
                }
            }, polling_);
        });
        return n;
    }

    // Returns a chain to the driver (ignored once broken).
    void push(const DescriptorChain& chain, uint32_t len);
    // One interrupt for what was pushed since the last call, if the driver
    // wants it now.
    void notify();
    // The ring is malformed: stop serving it until the driver resets.
    void fail(const std::string& what);

private:
    std::string device_;
    uint16_t index_;
    Queue queue_;
    std::shared_ptr<EventFd> kick_;
    std::shared_ptr<VirtioInterrupt> interrupt_;
    std::function<void()> needs_reset_;
    std::atomic<uint64_t>& errors_;
    bool broken_ = false;
    bool pushed_ = false;  // used entries added since the last notify()
    bool polling_ = false;
};

class RequestQueue;

class QueueWorker {
public:
    // `thread` names the I/O thread (15 characters are kept); `device`,
    // `ctx` and `errors` go to every queue added.
    QueueWorker(std::string thread, std::string device, const ActivationContext& ctx,
                std::atomic<uint64_t>& errors);
    ~QueueWorker();
    QueueWorker(const QueueWorker&) = delete;
    QueueWorker& operator=(const QueueWorker&) = delete;

    using OnKick = std::function<void(ServedQueue&)>;
    // Serves `aq` on this thread: every kick runs `on_kick(queue)` there
    // (not once the queue is broken). Call before start().
    ServedQueue& add(ActiveQueue&& aq, OnKick on_kick);
    // The same for a queue whose requests finish later (request_queue.h).
    RequestQueue& add_requests(ActiveQueue&& aq, OnKick on_kick);
    // For the device's other fds (before start(), or from the thread itself).
    EventLoop& loop() { return thread_.loop(); }
    // Busy polling of this thread's queues (vmm/core/event_loop.h): at most
    // `ns` of spinning before sleeping; 0 (the default) turns it off. Call
    // before start(); the device adds its other poll sources to loop().
    void set_poll_max_ns(uint64_t ns) { poll_max_ns_ = ns; }

    // Starts the thread, then signals every queue's kick: chains the driver
    // posted before activation get served.
    void start();
    void stop();  // joins; idempotent

private:
    void serve(ServedQueue& q, OnKick on_kick);

    std::string device_;
    ActivationContext ctx_;  // interrupt and needs_reset (no queues)
    std::atomic<uint64_t>& errors_;
    std::vector<std::unique_ptr<ServedQueue>> queues_;
    std::vector<OnKick> on_kick_;  // per queue, for polling
    uint64_t poll_max_ns_ = 0;
    IoThread thread_;  // last: stopped first on destruction
};

// "virtio-blk0" + "q3" -> "blk0-q3": an I/O thread name within the 15
// characters Linux keeps.
std::string io_thread_name(const std::string& device, const std::string& suffix);

}  // namespace vmm::virtio
