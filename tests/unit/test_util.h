// Helpers shared by the unit tests.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "vmm/core/irq.h"

namespace test {

// Little-endian read of `n` bytes at `off`; fails the test if out of range.
inline uint64_t rd(const std::vector<uint8_t>& b, std::size_t off, int n) {
    REQUIRE(off + static_cast<std::size_t>(n) <= b.size());
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t{b[off + i]} << (8 * i);
    return v;
}

// Polls `cond` every 5 ms for up to 2 s (I/O threads answer asynchronously);
// returns its last value.
template <typename F>
bool wait_for(F cond) {
    for (int i = 0; i < 400; ++i) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return cond();
}

// An IrqLine that records every level change a device makes.
struct FakeIrq : vmm::IrqLine {
    std::vector<bool> calls;
    bool level = false;
    void set_level(bool high) override {
        calls.push_back(high);
        level = high;
    }
};

}  // namespace test
