#include "virtio/request_queue.h"

namespace vmm::virtio {

RequestQueue::RequestQueue(std::string device, ActiveQueue&& aq, const ActivationContext& ctx,
                           std::atomic<uint64_t>& errors)
    : ServedQueue(std::move(device), std::move(aq), ctx, errors), slots_(queue().size()) {
    free_.reserve(slots_);
    for (size_t i = slots_; i-- > 0;) free_.push_back(static_cast<uint32_t>(i));
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
    if (!stalled_ || broken()) return false;
    stalled_ = false;
    return true;
}

}  // namespace vmm::virtio
