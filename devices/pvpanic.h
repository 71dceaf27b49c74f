// pvpanic (QEMU's ISA interface, I/O port 0x505): a guest kernel with the
// pvpanic driver writes PANICKED (bit 0) when it panics and CRASH_LOADED
// (bit 1) when it hands over to a kdump kernel, so the VMM learns of a panic
// without reading logs. Reads return the events the device supports. The
// guest finds it through the ACPI device QEMU0001 in the DSDT.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "vmm/core/bus.h"

namespace vmm::devices {

class PvPanic : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 1;
    static constexpr uint8_t kPanicked = 1;
    static constexpr uint8_t kCrashLoaded = 2;

    // `on_event` gets the bits written (only supported ones, never 0), on the
    // vCPU thread.
    explicit PvPanic(std::function<void(uint8_t events)> on_event) : on_event_(std::move(on_event)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "pvpanic"; }

private:
    std::function<void(uint8_t)> on_event_;
};

}  // namespace vmm::devices
