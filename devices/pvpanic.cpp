#include "devices/pvpanic.h"

#include <algorithm>

namespace vmm::devices {

void PvPanic::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset == 0 && !data.empty()) data[0] = kPanicked | kCrashLoaded;
}

void PvPanic::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset != 0 || data.empty()) return;
    uint8_t events = data[0] & (kPanicked | kCrashLoaded);
    if (events && on_event_) on_event_(events);
}

}  // namespace vmm::devices
