// The single place that decides how the VM ends. Any thread (vCPU, device
// callback, signal handling) requests an exit; the first request wins (but
// see request()) and wakes the main loop through an eventfd.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "vmm/config.h"
#include "vmm/core/eventfd.h"

namespace vmm {

enum class ExitReason { None, PowerOff, Reboot, Panic, Crash, Error, Signal, Timeout, Stopped, NoBootDevice };

class ExitControl {
public:
    void request(ExitReason r, std::string message = {}, int signo = 0) {
        {
            std::lock_guard lk(mu_);
            // First request wins, except that a signal overrides a guest
            // reboot: with --reboot the VM would otherwise restart and the
            // user's SIGINT/SIGTERM would be lost.
            if (reason_ != ExitReason::None && !(reason_ == ExitReason::Reboot && r == ExitReason::Signal)) return;
            reason_ = r;
            message_ = std::move(message);
            signo_ = signo;
        }
        requested_.store(true);
        ev_.signal();
    }
    bool requested() const { return requested_.load(std::memory_order_relaxed); }
    uint64_t consume_wakeup_for_test() const { return ev_.consume(); }
    int fd() const { return ev_.fd(); }
    ExitReason reason() const {
        std::lock_guard lk(mu_);
        return reason_;
    }
    std::string message() const {
        std::lock_guard lk(mu_);
        return message_;
    }
    int status() const {
        std::lock_guard lk(mu_);
        switch (reason_) {
            case ExitReason::None:
            case ExitReason::PowerOff: return kExitPowerOff;
            case ExitReason::Reboot: return kExitReboot;
            case ExitReason::Panic: return kExitPanic;
            case ExitReason::Crash: return kExitCrash;
            case ExitReason::Error: return kExitError;
            case ExitReason::Signal: return kExitSignalBase + signo_;
            case ExitReason::Timeout: return kExitTimeout;
            case ExitReason::Stopped: return kExitStopped;
            case ExitReason::NoBootDevice: return kExitNoBootDevice;
        }
        return kExitError;
    }

private:
    mutable std::mutex mu_;
    ExitReason reason_ = ExitReason::None;
    std::string message_;
    int signo_ = 0;
    std::atomic<bool> requested_{false};
    EventFd ev_;
};

}  // namespace vmm
