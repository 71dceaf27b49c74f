// Minimal leveled logging for the VMM's own messages (kept apart from the
// guest console). Thread-safe; writes whole lines to stderr (or a log file).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string_view>

#include <fmt/format.h>

namespace vmm::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_level(Level l);
Level level();
void set_file(std::FILE* f);
void write(Level l, std::string_view msg);

template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... a) {
    if (level() >= Level::Error) write(Level::Error, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... a) {
    if (level() >= Level::Warn) write(Level::Warn, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... a) {
    if (level() >= Level::Info) write(Level::Info, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... a) {
    if (level() >= Level::Debug) write(Level::Debug, fmt::format(f, std::forward<Args>(a)...));
}

// Rate limiter for guest-triggerable log lines: allows `burst` messages per
// `period`, then drops (and counts) the rest. Lock-free, safe from any thread.
class RateLimit {
public:
    explicit RateLimit(unsigned burst = 10, std::chrono::milliseconds period = std::chrono::seconds(5))
        : burst_(burst), period_ns_(std::chrono::nanoseconds(period).count()) {}
    bool allow();
    unsigned long long suppressed() const { return suppressed_.load(); }

private:
    unsigned burst_;
    long long period_ns_;
    std::atomic<long long> window_start_{0};
    std::atomic<unsigned> count_{0};
    std::atomic<unsigned long long> suppressed_{0};
};

}  // namespace vmm::log
