// Shared pieces of the fuzz targets: a small fake guest RAM whose contents
// come from the fuzzer's input, with a hole and a second region so that
// "inside RAM" checks have edges to get wrong.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "vmm/core/guest_memory.h"

// A violated invariant: name it on stderr, then crash (libFuzzer saves
// the input).
#define ensure(ok)                                                                      \
    do {                                                                                \
        if (!(ok)) {                                                                    \
            std::fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #ok);  \
            __builtin_trap();                                                           \
        }                                                                               \
    } while (0)

namespace fuzz {

class Ram {
public:
    static constexpr uint64_t kLowSize = 64 * 1024;     // GPA 0 .. 64 KiB
    static constexpr uint64_t kHighBase = 128 * 1024;   // hole of 64 KiB first
    static constexpr uint64_t kHighSize = 4096;

    Ram()
        : low_(kLowSize), high_(kHighSize),
          mem(vmm::GuestMemory::from_buffers({{0, kLowSize, low_.data()}, {kHighBase, kHighSize, high_.data()}})) {}

    // Fills low RAM from the front of `bytes` (the rest stays zero) and the
    // high region from what follows.
    void load(const std::vector<uint8_t>& bytes) {
        size_t n = std::min(bytes.size(), low_.size());
        if (n == 0) return;
        std::memcpy(low_.data(), bytes.data(), n);
        if (bytes.size() > n) std::memcpy(high_.data(), bytes.data() + n, std::min(bytes.size() - n, high_.size()));
    }

    // A guest address that is mostly inside RAM, sometimes at its edges,
    // sometimes anywhere.
    static uint64_t address(FuzzedDataProvider& in) {
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: return in.ConsumeIntegralInRange<uint64_t>(0, kLowSize + 64);
        case 1: return kHighBase + in.ConsumeIntegralInRange<uint64_t>(0, kHighSize);
        case 2: return in.ConsumeIntegral<uint64_t>();
        default: return in.ConsumeIntegralInRange<uint64_t>(0, 0x4000) & ~uint64_t{15};
        }
    }

private:
    std::vector<uint8_t> low_, high_;

public:
    vmm::GuestMemory mem;
};

}  // namespace fuzz
