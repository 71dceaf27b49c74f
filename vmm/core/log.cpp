#include "vmm/core/log.h"

#include <mutex>
#include <time.h>

namespace vmm::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Warn)};
std::FILE* g_file = nullptr;
std::mutex g_mu;
const char* name(Level l) {
    switch (l) {
        case Level::Error: return "error";
        case Level::Warn: return "warn";
        case Level::Info: return "info";
        case Level::Debug: return "debug";
    }
    return "?";
}
long long now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
}  // namespace

void set_level(Level l) { g_level.store(static_cast<int>(l)); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }
void set_file(std::FILE* f) {
    std::lock_guard lk(g_mu);
    g_file = f;
}

void write(Level l, std::string_view msg) {
    std::lock_guard lk(g_mu);
    std::FILE* out = g_file ? g_file : stderr;
    fmt::print(out, "vmm: {}: {}\n", name(l), msg);
    std::fflush(out);
}

bool RateLimit::allow() {
    long long now = now_ns();
    long long start = window_start_.load();
    if (now - start > period_ns_ && window_start_.compare_exchange_strong(start, now)) {
        count_.store(0);
    }
    if (count_.fetch_add(1) < burst_) return true;
    suppressed_.fetch_add(1);
    return false;
}

}  // namespace vmm::log
