#include "devices/boot_progress.h"

namespace vmm::devices {

BootProgress::BootProgress(std::function<void(uint8_t value)> on_mark) : on_mark_(std::move(on_mark)) {}

void BootProgress::read(uint64_t offset, std::span<uint8_t> data) {
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i == 0 ? 0 : 0xff;
}

void BootProgress::write(uint64_t offset, std::span<const uint8_t> data) {
    for (size_t i = 0; i < data.size(); ++i) {
        if (offset + i != 0) continue;  // only one byte is ours
        {
            std::lock_guard lk(mu_);
            last_ = data[i];
            ++count_;
        }
        if (on_mark_) on_mark_(data[i]);
    }
}

uint8_t BootProgress::last() const {
    std::lock_guard lk(mu_);
    return last_;
}

uint64_t BootProgress::count() const {
    std::lock_guard lk(mu_);
    return count_;
}

}  // namespace vmm::devices
