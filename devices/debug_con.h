// Firmware debug console (QEMU's isa-debugcon, port 0x402): SeaBIOS and
// OVMF write their debug log here one byte at a time. SeaBIOS only uses the
// port when a read returns 0xe9, the value QEMU's device answers with.
// Bytes are gathered into lines; each complete line (or a line cut at
// kMaxLine bytes, so a guest that never sends '\n' cannot grow our memory)
// goes to on_line without the trailing newline or carriage returns.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"

namespace vmm::devices {

class DebugCon : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 1;
    static constexpr uint8_t kReadback = 0xe9;
    static constexpr size_t kMaxLine = 1024;

    // `on_line` runs on the vCPU thread with the device lock held: it must
    // not call back into this device.
    explicit DebugCon(std::function<void(const std::string& line)> on_line);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "debugcon"; }

private:
    std::mutex mu_;
    std::string line_;
    std::function<void(const std::string&)> on_line_;
};

}  // namespace vmm::devices
