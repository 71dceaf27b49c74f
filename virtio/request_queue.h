// A ServedQueue whose requests finish asynchronously on host disk engines:
// what virtio-blk's and virtio-scsi's I/O threads share.
//
// A device's per-queue worker keeps its own request slots (what it needs to
// finish a request) indexed by a cookie from this class, and its own disk
// engines and batches. RequestQueue adds to ServedQueue (served_queue.h:
// pushes, one interrupt per batch, the error path) the slots: it pops chains
// while a slot is free, pausing ("stalled") when every slot is busy and
// resuming once a completion frees one.
// Single-threaded: every call comes from the queue's own I/O thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "virtio/served_queue.h"

namespace vmm::virtio {

class RequestQueue : public ServedQueue {
public:
    // One slot per ring entry: at most the queue size of requests can be in
    // flight, each holding its chain.
    RequestQueue(std::string device, ActiveQueue&& aq, const ActivationContext& ctx, std::atomic<uint64_t>& errors);

    size_t busy() const { return busy_; }
    bool ready() const override { return busy_ < slots_ && ServedQueue::ready(); }
    size_t slots() const { return slots_; }

    // Pops available chains into `handle(DescriptorChain&&)` until the ring
    // is empty (closing the notification race) or every slot is busy.
    // `handle` either finishes the request at once (push) or takes a slot.
    template <typename Handle>
    void pop_all(Handle&& handle) {
        guard([&] {
            Queue& q = queue();
            for (;;) {
                q.disable_notifications();
                while (busy_ < slots() && !broken()) {
                    auto chain = q.pop();
                    if (!chain) break;
                    handle(std::move(*chain));
                }
                if (broken()) return;
                if (busy_ >= slots()) {
                    stalled_ = true;  // resume() after a completion pops again
                    return;
                }
                if (polling() || !q.enable_notifications()) return;
            }
        });
    }

    // A free slot's cookie; call only from pop_all's handle (one is free there).
    uint32_t acquire();
    void release(uint32_t cookie);
    // After completions: true (once) if popping had paused for want of a
    // slot and may go on; the caller then runs pop_all again.
    bool resume();

private:
    size_t slots_;
    std::vector<uint32_t> free_;  // cookies of idle slots
    size_t busy_ = 0;
    bool stalled_ = false;
};

}  // namespace vmm::virtio
