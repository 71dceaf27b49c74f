// eventfd wrapper: the wake-up primitive between threads (and, registered
// with KVM, the ioeventfd/irqfd fast paths).
#pragma once

#include <cstdint>

#include "vmm/core/fd.h"

namespace vmm {

class EventFd {
public:
    explicit EventFd(bool nonblocking = true);
    int fd() const { return fd_.get(); }
    void signal(uint64_t n = 1) const;
    // Returns the accumulated count, 0 if none (non-blocking mode).
    uint64_t consume() const;

private:
    Fd fd_;
};

}  // namespace vmm
