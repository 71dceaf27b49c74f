// Boot progress port (0x440): the guest's test init writes a byte with
// `dd of=/dev/port` at milestones, and the VMM timestamps each one (the same
// idea as Firecracker's boot timer device). Every byte written calls
// on_mark(value); reads return 0.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"

namespace vmm::devices {

class BootProgress : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 1;

    // `on_mark` is called without the device lock held, on the vCPU thread,
    // so it may call last()/count().
    explicit BootProgress(std::function<void(uint8_t value)> on_mark);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "boot_progress"; }

    uint8_t last() const;    // the last value written (0 before any)
    uint64_t count() const;  // how many bytes were written

private:
    mutable std::mutex mu_;
    uint8_t last_ = 0;
    uint64_t count_ = 0;
    std::function<void(uint8_t)> on_mark_;
};

}  // namespace vmm::devices
