// epoll event loop on a named thread: the I/O threads of virtio devices,
// the control API server ("vmm-api") and the serial ports' host side
// ("serial-ports").
//
// An IoThread runs one EventLoop. Handlers are registered per fd before
// start() (or from the loop's own thread). stop() signals a reserved
// eventfd and joins; it is idempotent and called from the destructor.
// A handler that throws is logged (rate-limited) and the thread keeps
// running: guest-triggered failures never cross the thread boundary.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "vmm/core/eventfd.h"
#include "vmm/core/fd.h"
#include "vmm/core/log.h"
#include "vmm/core/thread_role.h"

namespace vmm {

class EventLoop {
public:
    using Handler = std::function<void(uint32_t events)>;
    EventLoop();
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
    Fd epoll_;
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
