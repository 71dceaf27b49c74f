// Minimal 8042 PS/2 keyboard controller: enough for Linux's i8042 probe, for
// the keyboard driver's identification handshake and for the classic "reset
// through the keyboard controller" (command 0xFE / output port bit 0).
//
// Registered at 0x60 with length 5: offset 0 is the data port (0x60), offset 4
// the status/command port (0x64). Offsets 1..3 (0x61 = PIT/speaker control,
// handled by KVM) are not ours: reads return 0xff, writes are ignored.
//
// No keyboard or mouse is attached, no input is ever generated and the device
// raises NO interrupts (IRQ 1/12): Linux polls the status register during its
// probe, so the probe passes. Consequences for a Linux guest: the keyboard
// driver (atkbd) waits for interrupt-driven replies and times out, and the
// AUX IRQ test fails (after 250 ms), so boot with
// `i8042.noaux i8042.nomux i8042.dumbkbd` (or i8042.nokbd / no i8042 in the
// ACPI tables) to skip that; reset via 0xFE works regardless.
//
// A20 is not modelled (always enabled); output port bit 1 is only stored.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"
#include "vmm/core/log.h"

namespace vmm::devices {

class I8042 : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 5;

    // `on_reset` is called (without the device lock held, on the vCPU thread)
    // when the guest pulses the CPU reset line.
    explicit I8042(std::function<void()> on_reset);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "i8042"; }

private:
    struct OutByte {
        uint8_t value;
        bool aux;  // from the AUX (mouse) side: sets status bit 5
    };
    struct State {
        // Controller RAM; byte 0 is the command byte ("CTR").
        std::array<uint8_t, 32> ram{};
        uint8_t output_port = 0x03;  // bit 0: not in reset, bit 1: A20 enabled
        std::deque<OutByte> out;     // output buffer (bounded, see push())
        uint8_t last_data = 0;       // what the data port returns when empty
        uint8_t pending_cmd = 0;     // controller command awaiting a data byte
        uint8_t kbd_pending = 0;     // keyboard command awaiting a parameter
        uint8_t kbd_scancode_set = 2;
        bool last_write_was_cmd = false;  // status bit 3
    };

    uint8_t status() const;
    void push(uint8_t value, bool aux = false);
    bool controller_command(uint8_t cmd);  // returns true to request reset
    bool data_write(uint8_t value);        // returns true to request reset
    void keyboard_write(uint8_t value);

    std::mutex mu_;
    State s_;
    std::function<void()> on_reset_;
    vmm::log::RateLimit log_limit_;
};

}  // namespace vmm::devices
