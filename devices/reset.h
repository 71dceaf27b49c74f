// The PIIX/ICH reset control register (port 0xcf9), named by the FADT as the
// ACPI reset register (value 0x06) and used by Linux's "reboot=pci".
//
// Bits: 1 SYS_RST (hard vs soft reset), 2 RST_CPU (do it), 3 FULL_RST. A
// write with RST_CPU set calls on_reset (every reset is a full VM restart
// here). SYS_RST and FULL_RST read back as last written; RST_CPU is an action
// bit and reads 0, as do the reserved bits.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"

namespace vmm::devices {

class ResetControl : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 1;
    static constexpr uint8_t kSysRst = 0x02;
    static constexpr uint8_t kRstCpu = 0x04;
    static constexpr uint8_t kFullRst = 0x08;

    // `on_reset` is called without the device lock held, on the vCPU thread.
    explicit ResetControl(std::function<void()> on_reset);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "reset_control"; }

private:
    std::mutex mu_;
    uint8_t value_ = 0;
    std::function<void()> on_reset_;
};

}  // namespace vmm::devices
