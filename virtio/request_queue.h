// The ring side of a request queue whose requests finish asynchronously on
// host disk engines: what virtio-blk's and virtio-scsi's I/O threads share.
//
// A device's per-queue worker keeps its own request slots (what it needs to
// finish a request) indexed by a cookie from this class, and its own disk
// engines and batches. RequestQueue does the rest the same way for both:
// - pops chains while a slot is free, pausing ("stalled") when every slot is
//   busy and resuming once a completion frees one;
// - returns used chains, and raises one interrupt per batch if the driver
//   asked for it;
// - on a malformed ring (QueueError) stops the queue for good: no more pops
//   or pushes, an error counted and logged (rate-limited), and the device
//   asks for a reset.
// Single-threaded: every call comes from the queue's own I/O thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "virtio/device.h"
#include "virtio/queue.h"

namespace vmm::virtio {

class RequestQueue {
public:
    // The device's counters this queue adds to (all must outlive it).
    struct Counters {
        std::atomic<uint64_t>* notifications;
        std::atomic<uint64_t>* interrupts;
        std::atomic<uint64_t>* errors;
    };

    // One slot per ring entry: at most the queue size of requests can be in
    // flight, each holding its chain. `name` prefixes log lines.
    RequestQueue(std::string name, ActiveQueue&& aq, const ActivationContext& ctx, Counters counters);

    uint16_t index() const { return index_; }
    Queue& queue() { return queue_; }
    EventFd& kick() { return *kick_; }
    bool broken() const { return broken_; }
    size_t busy() const { return busy_; }
    size_t slots() const { return slots_; }

    // A driver notification: consumed and counted; false if the queue is broken.
    bool take_kick();

    // Pops available chains into `handle(DescriptorChain&&)` until the ring
    // is empty (closing the notification race) or every slot is busy.
    // `handle` either finishes the request at once (push) or takes a slot.
    template <typename Handle>
    void pop_all(Handle&& handle) {
        if (broken_) return;
        try {
            for (;;) {
                queue_.disable_notifications();
                while (busy_ < slots()) {
                    auto chain = queue_.pop();
                    if (!chain) break;
                    handle(std::move(*chain));
                }
                if (busy_ >= slots()) {
                    stalled_ = true;  // resume() after a completion pops again
                    break;
                }
                if (!queue_.enable_notifications()) break;
            }
        } catch (const QueueError& e) {
            fail(e.what());
        }
    }

    // A free slot's cookie; call only from pop_all's handle (one is free there).
    uint32_t acquire();
    void release(uint32_t cookie);
    // After completions: true (once) if popping had paused for want of a
    // slot and may go on; the caller then runs pop_all again.
    bool resume();

    // Returns a chain to the driver (ignored once broken).
    void push(const DescriptorChain& chain, uint32_t len);
    // One interrupt for what was pushed since the last call, if wanted.
    void notify();
    // The ring is malformed: stop serving it until the driver resets.
    void fail(const char* what);

private:
    std::string name_;
    uint16_t index_;
    Queue queue_;
    std::shared_ptr<EventFd> kick_;
    std::shared_ptr<VirtioInterrupt> interrupt_;
    std::function<void()> needs_reset_;
    Counters counters_;
    size_t slots_;
    std::vector<uint32_t> free_;  // cookies of idle slots
    size_t busy_ = 0;
    bool broken_ = false;
    bool stalled_ = false;
    bool pushed_ = false;  // used entries added since the last interrupt check
};

}  // namespace vmm::virtio
