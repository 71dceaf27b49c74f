// Helpers shared by the unit tests.
#pragma once

#include <catch2/catch.hpp>

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "vmm/core/bytes.h"
#include "vmm/core/irq.h"

namespace test {

// A fresh directory under /tmp, removed with everything in it.
struct TempDir {
    std::string path;
    TempDir() {
        std::string t = "/tmp/vmm-unit-test.XXXXXX";
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// Little-endian read of `n` bytes at `off`; out of range throws vmm::Error,
// which fails the test.
inline uint64_t rd(const std::vector<uint8_t>& b, std::size_t off, int n) {
    return vmm::load_le(b, off, static_cast<std::size_t>(n));
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
