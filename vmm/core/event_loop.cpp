// epoll event loop and the named I/O thread that runs it (see event_loop.h).
#include "vmm/core/event_loop.h"

#include <pthread.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "vmm/core/error.h"

namespace vmm {

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) throw_errno("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = stop_.fd();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.fd(), &ev) != 0) throw_errno("epoll_ctl(stop eventfd)");
}

void EventLoop::add(int fd, Handler h, uint32_t events) {
    if (fd < 0 || fd == stop_.fd()) fail("event loop: fd {} cannot be registered", fd);
    if (handlers_.count(fd)) fail("event loop: fd {} is already registered", fd);
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno(fmt::format("epoll_ctl(add fd {})", fd));
    handlers_.emplace(fd, std::make_shared<Handler>(std::move(h)));
}

void EventLoop::remove(int fd) {
    if (handlers_.erase(fd) == 0) return;
    // The fd may already be closed (then epoll dropped it itself).
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::add_poll(PollSource s) { polls_.push_back(std::move(s)); }

namespace {
uint64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}
constexpr uint64_t kPollStartNs = 4000;
}  // namespace

bool EventLoop::call(const char* what, const std::function<bool()>& f) {
    try {
        return f();
    } catch (const std::exception& e) {
        if (errors_.allow()) log::error("event loop: {} failed: {}", what, e.what());
    } catch (...) {
        if (errors_.allow()) log::error("event loop: {} failed", what);
    }
    return false;
}

bool EventLoop::spin() {
    uint64_t start = now_ns();
    for (;;) {
        bool found = false;
        for (auto& p : polls_) found |= call("poll source", p.poll);
        if (found) return true;
        if (now_ns() - start >= poll_ns_ || stop_requested()) return false;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

bool EventLoop::set_mode(bool spinning) {
    bool pending = false;
    for (auto& p : polls_)
        if (p.mode) pending |= call("poll mode", [&] { return p.mode(spinning); });
    return pending;
}

void EventLoop::run() {
    bool spinning = false;
    while (!stop_requested()) {
        bool polled = poll_max_ns_ > 0 && !polls_.empty();
        uint64_t t0 = now_ns();
        if (polled && poll_ns_ > 0) {
            if (!spinning) {
                spinning = true;
                set_mode(true);
            }
            if (spin()) {
                // Found work: dispatch what the fds have too, without sleeping.
                if (!wait(0)) break;
                continue;
            }
            spinning = false;
            if (set_mode(false)) {
                for (auto& p : polls_) call("poll source", p.poll);
                continue;
            }
        }
        if (!wait(-1)) break;
        if (polled) {
            uint64_t blocked = now_ns() - t0;
            if (blocked > poll_max_ns_)
                poll_ns_ = 0;
            else if (blocked > poll_ns_ && poll_ns_ < poll_max_ns_)
                poll_ns_ = std::min(poll_max_ns_, poll_ns_ ? poll_ns_ * 2 : kPollStartNs);
        }
    }
    if (spinning) set_mode(false);
    stop_.consume();
}

bool EventLoop::wait(int timeout_ms) {
    constexpr int kBatch = 32;
    epoll_event evs[kBatch];
    int n = ::epoll_wait(epoll_.get(), evs, kBatch, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return true;
        log::error("event loop: epoll_wait: {}", std::strerror(errno));
        return false;
    }
    for (int i = 0; i < n && !stop_requested(); ++i) {
        int fd = evs[i].data.fd;
        if (fd == stop_.fd()) continue;
        // Looked up per event: an earlier handler may have removed it.
        auto it = handlers_.find(fd);
        if (it == handlers_.end()) continue;
        std::shared_ptr<Handler> h = it->second;
        try {
            (*h)(evs[i].events);
        } catch (const std::exception& e) {
            if (errors_.allow()) log::error("event loop: handler for fd {} failed: {}", fd, e.what());
        } catch (...) {
            if (errors_.allow()) log::error("event loop: handler for fd {} failed", fd);
        }
    }
    return true;
}

void EventLoop::request_stop() {
    stopping_.store(true);
    stop_.signal();
}

bool EventLoop::stop_requested() const { return stopping_.load(std::memory_order_relaxed); }

IoThread::IoThread(std::string name, ThreadRole role) : name_(name.substr(0, 15)), role_(role) {}

IoThread::~IoThread() { stop(); }

void IoThread::start() {
    if (thread_.joinable()) return;
    loop_.stopping_.store(false);
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), name_.c_str());
        on_thread_start(role_);
        try {
            loop_.run();
        } catch (const std::exception& e) {
            log::error("{}: event loop failed: {}", name_, e.what());
        }
    });
}

void IoThread::stop() {
    if (!thread_.joinable()) return;
    loop_.request_stop();
    // From one of our own handlers: the loop returns after it; the owner joins.
    if (std::this_thread::get_id() == thread_.get_id()) return;
    thread_.join();
}

}  // namespace vmm
