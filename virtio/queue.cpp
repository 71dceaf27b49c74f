#include "virtio/queue.h"

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

}  // namespace vmm::virtio
