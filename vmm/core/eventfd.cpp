#include "vmm/core/eventfd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "vmm/core/error.h"

namespace vmm {

EventFd::EventFd(bool nonblocking) : fd_(::eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0))) {
    if (!fd_) throw_errno("eventfd");
}

void EventFd::signal(uint64_t n) const {
    // A full counter (EAGAIN) already means "signalled": nothing is lost.
    while (::write(fd_.get(), &n, sizeof n) < 0 && errno == EINTR) {
    }
}

uint64_t EventFd::consume() const {
    uint64_t v = 0;
    for (;;) {
        ssize_t r = ::read(fd_.get(), &v, sizeof v);
        if (r == sizeof v) return v;
        if (r < 0 && errno == EINTR) continue;
        return 0;
    }
}

}  // namespace vmm
