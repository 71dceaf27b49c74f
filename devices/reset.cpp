#include "devices/reset.h"

namespace vmm::devices {

ResetControl::ResetControl(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

void ResetControl::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i == 0 ? value_ : 0xff;
}

void ResetControl::write(uint64_t offset, std::span<const uint8_t> data) {
    bool reset = false;
    {
        std::lock_guard lk(mu_);
        for (size_t i = 0; i < data.size(); ++i) {
            if (offset + i != 0) continue;  // only one byte is ours
            value_ = data[i] & (kSysRst | kFullRst);
            if (data[i] & kRstCpu) reset = true;
        }
    }
    if (reset && on_reset_) on_reset_();
}

}  // namespace vmm::devices
