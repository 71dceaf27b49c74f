// Named event counters: each is declared once, together with the name the
// control API reports it under, so a device's counters() cannot forget one.
//
//     struct Stats {
//         CounterSet set;
//         std::atomic<uint64_t>& requests = set.add("requests");
//     };
//     ++stats.requests;                      // any thread
//     return stats.set.snapshot();           // counters()
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>

namespace vmm {

class CounterSet {
public:
    CounterSet() = default;
    CounterSet(const CounterSet&) = delete;
    CounterSet& operator=(const CounterSet&) = delete;

    // A new counter at 0. Call while constructing the owner only (not
    // thread-safe); the reference stays valid as long as the set.
    std::atomic<uint64_t>& add(std::string name) { return items_.emplace_back(std::move(name), 0).second; }

    // Every counter's current value, by name.
    std::map<std::string, uint64_t> snapshot() const {
        std::map<std::string, uint64_t> out;
        snapshot_into(out);
        return out;
    }
    // The same, added to `out` (a device that reports several sets).
    void snapshot_into(std::map<std::string, uint64_t>& out) const {
        for (const auto& [name, v] : items_) out[name] = v.load(std::memory_order_relaxed);
    }

private:
    std::deque<std::pair<std::string, std::atomic<uint64_t>>> items_;  // deque: stable addresses
};

}  // namespace vmm
