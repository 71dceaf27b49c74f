// epoll event loop on a named thread: the I/O threads of virtio devices,
// the control API server ("vmm-api") and the serial ports' host side
// ("serial-ports").
//
// An IoThread runs one EventLoop. Handlers are registered per fd before
// start() (or from the loop's own thread). stop() signals a reserved
// eventfd and joins; it is idempotent and called from the destructor.
// A handler that throws is logged (rate-limited) and the thread keeps
// running: guest-triggered failures never cross the thread boundary.
//
// Busy polling (off unless set_poll_max_ns() > 0): before sleeping in
// epoll_wait the loop spins for a while calling every poll source, so work
// that arrives within microseconds is taken without a thread wakeup and, for
// a virtqueue, without the guest's notification exit (the source turns the
// driver's notifications off while the loop spins). The window adapts the
// way QEMU's iothreads do: it starts at 4 us and doubles while the events
// the loop sleeps for come within the maximum, keeps its size while spinning
// finds work, and drops to 0 after a sleep longer than the maximum (an idle
// device costs nothing). docs/benchmarks.md has what it buys and costs.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "vmm/core/eventfd.h"
#include "vmm/core/fd.h"
#include "vmm/core/log.h"
#include "vmm/core/thread_role.h"

namespace vmm {

class EventLoop {
public:
    using Handler = std::function<void(uint32_t events)>;
    EventLoop();

    struct PollSource {
        // Handles whatever is ready; true if there was something.
        std::function<bool()> poll;
        // Called with true when the loop starts spinning and false before it
        // sleeps; on false it returns true if work is pending (checked after
        // re-arming the wakeup, which closes the race). May be empty.
        std::function<bool(bool spinning)> mode;
    };
    // Before start() or from the loop's thread.
    void add_poll(PollSource s);
    void set_poll_max_ns(uint64_t ns) { poll_max_ns_ = ns; }
    uint64_t poll_max_ns() const { return poll_max_ns_; }
    // Register `fd` for `events` (EPOLLIN by default). Throws vmm::Error.
    void add(int fd, Handler h, uint32_t events = 0x001 /* EPOLLIN */);
    void remove(int fd);
    // Runs until stop_requested(); returns then.
    void run();
    // Thread-safe: asks run() to return.
    void request_stop();
    bool stop_requested() const;

private:
    friend class IoThread;  // re-arms the loop on a restart
    bool wait(int timeout_ms);       // epoll_wait and dispatch; false on a fatal error
    bool spin();                     // polls for up to poll_ns_; true if work was found
    bool set_mode(bool spinning);    // true if a source has work pending
    bool call(const char* what, const std::function<bool()>& f);

    Fd epoll_;
    std::vector<PollSource> polls_;
    uint64_t poll_max_ns_ = 0;
    uint64_t poll_ns_ = 0;  // the current window
    EventFd stop_;
    std::atomic<bool> stopping_{false};
    // shared_ptr: a handler may remove itself (or another) while it runs.
    std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
    log::RateLimit errors_;
};

class IoThread {
public:
    // name: at most 15 chars are kept (pthread limit); role: announced at the
    // thread's start (vmm/core/thread_role.h).
    explicit IoThread(std::string name, ThreadRole role = ThreadRole::Io);
    ~IoThread();
    IoThread(const IoThread&) = delete;
    IoThread& operator=(const IoThread&) = delete;
    EventLoop& loop() { return loop_; }
    void start();
    void stop();  // request_stop + join; idempotent
    const std::string& name() const { return name_; }

private:
    std::string name_;
    ThreadRole role_;
    EventLoop loop_;
    std::thread thread_;
};

}  // namespace vmm
