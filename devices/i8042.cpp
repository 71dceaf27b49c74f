#include "devices/i8042.h"

namespace vmm::devices {
namespace {

constexpr uint64_t kDataOffset = 0;     // port 0x60
constexpr uint64_t kCommandOffset = 4;  // port 0x64

// Status register (port 0x64 read).
constexpr uint8_t kStsObf = 0x01;      // output buffer full
constexpr uint8_t kStsSys = 0x04;      // system flag (mirrors CTR bit 2)
constexpr uint8_t kStsCmd = 0x08;      // last write went to port 0x64
constexpr uint8_t kStsUnlocked = 0x10;  // keyboard not inhibited
constexpr uint8_t kStsAuxObf = 0x20;   // output buffer holds AUX data

// Command byte (controller RAM byte 0).
constexpr uint8_t kCtrKbdInt = 0x01;
constexpr uint8_t kCtrSys = 0x04;
constexpr uint8_t kCtrKbdDis = 0x10;
constexpr uint8_t kCtrAuxDis = 0x20;
constexpr uint8_t kCtrXlate = 0x40;

// Kept below Linux's I8042_BUFFER_SIZE (16): i8042_flush() reading that many
// bytes makes the probe conclude there is no controller.
constexpr size_t kOutCapacity = 8;

}  // namespace

I8042::I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {
    // As left by a BIOS: keyboard interrupt enabled, scancode translation on.
    // The system flag is clear until the guest runs the self test (0xAA).
    s_.ram[0] = kCtrKbdInt | kCtrXlate;
}

uint8_t I8042::status() const {
    uint8_t v = kStsUnlocked;
    if (!s_.out.empty()) {
        v |= kStsObf;
        if (s_.out.front().aux) v |= kStsAuxObf;
    }
    if (s_.ram[0] & kCtrSys) v |= kStsSys;
    if (s_.last_write_was_cmd) v |= kStsCmd;
    return v;
}

void I8042::push(uint8_t value, bool aux) {
    // A real controller holds one byte and the keyboard waits; a short queue
    // lets multi-byte replies (0xFA 0xAB 0x83) be polled in order. Bytes the
    // guest never reads are dropped once the queue is full.
    if (s_.out.size() < kOutCapacity) s_.out.push_back({value, aux});
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        uint64_t off = offset + i;
        if (off == kDataOffset) {
            if (!s_.out.empty()) {
                s_.last_data = s_.out.front().value;
                s_.out.pop_front();
            }
            data[i] = s_.last_data;  // an empty buffer re-reads the stale byte
        } else if (off == kCommandOffset) {
            data[i] = status();
        } else {
            data[i] = 0xff;  // 0x61..0x63 belong to other chips
        }
    }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    bool reset = false;
    {
        std::lock_guard lk(mu_);
        for (size_t i = 0; i < data.size(); ++i) {
            uint64_t off = offset + i;
            if (off == kDataOffset) {
                s_.last_write_was_cmd = false;
                reset |= data_write(data[i]);
            } else if (off == kCommandOffset) {
                s_.last_write_was_cmd = true;
                reset |= controller_command(data[i]);
            }
        }
    }
    // Outside the lock: the reset handler may stop vCPUs that are waiting on it.
    if (reset && on_reset_) on_reset_();
}

bool I8042::controller_command(uint8_t cmd) {
    s_.pending_cmd = 0;  // a new command cancels one still waiting for data
    if (cmd >= 0x20 && cmd <= 0x3f) {  // read controller RAM (0x20: command byte)
        push(s_.ram[cmd & 0x1f]);
        return false;
    }
    if (cmd >= 0x60 && cmd <= 0x7f) {  // write controller RAM: data follows
        s_.pending_cmd = cmd;
        return false;
    }
    if (cmd >= 0xf0) {
        // Pulse output port lines: bits 3:0 low select the lines to pulse;
        // bit 0 is the CPU reset line (0xFE is the usual reset command).
        return !(cmd & 0x01);
    }
    switch (cmd) {
        case 0xa7: s_.ram[0] |= kCtrAuxDis; break;   // disable AUX interface
        case 0xa8: s_.ram[0] &= ~kCtrAuxDis; break;  // enable AUX interface
        case 0xa9: push(0x00); break;                // AUX interface test: OK
        case 0xaa:                                   // controller self test
            s_.ram[0] |= kCtrSys;
            push(0x55);
            break;
        case 0xab: push(0x00); break;                // keyboard interface test: OK
        case 0xad: s_.ram[0] |= kCtrKbdDis; break;   // disable keyboard
        case 0xae: s_.ram[0] &= ~kCtrKbdDis; break;  // enable keyboard
        case 0xd0: {                                 // read output port
            uint8_t v = s_.output_port & 0xcf;
            if (!s_.out.empty()) v |= s_.out.front().aux ? 0x20 : 0x10;  // OBF lines
            push(v);
            break;
        }
        case 0xd1:  // write output port
        case 0xd2:  // write keyboard output buffer
        case 0xd3:  // write AUX output buffer (Linux's AUX loop test)
        case 0xd4:  // write to AUX device
            s_.pending_cmd = cmd;
            break;
        default:
            if (log_limit_.allow()) vmm::log::debug("i8042: unsupported controller command {:#04x}", cmd);
            break;
    }
    return false;
}

bool I8042::data_write(uint8_t value) {
    uint8_t cmd = s_.pending_cmd;
    s_.pending_cmd = 0;
    if (cmd >= 0x60 && cmd <= 0x7f) {
        s_.ram[cmd & 0x1f] = value;
        return false;
    }
    switch (cmd) {
        case 0xd1:
            // Bit 0 low holds the CPU in reset. The VMM restarts the VM, so
            // the pulse is treated as instantaneous and bit 0 reads back 1.
            s_.output_port = value | 0x01;
            return !(value & 0x01);
        case 0xd2: push(value, false); return false;
        case 0xd3: push(value, true); return false;
        case 0xd4: return false;  // no mouse attached: the byte goes nowhere
        default: break;
    }
    keyboard_write(value);
    return false;
}

// A PS/2 keyboard that answers commands but never sends key codes.
void I8042::keyboard_write(uint8_t value) {
    if (uint8_t cmd = s_.kbd_pending) {
        s_.kbd_pending = 0;
        push(0xfa);
        if (cmd == 0xf0) {  // get/set scancode set
            if (value == 0) push(s_.kbd_scancode_set);
            else if (value <= 3) s_.kbd_scancode_set = value;
        }
        return;
    }
    switch (value) {
        case 0xed:  // set LEDs
        case 0xf0:  // get/set scancode set
        case 0xf3:  // set typematic rate
            s_.kbd_pending = value;
            push(0xfa);
            break;
        case 0xee: push(0xee); break;  // echo
        case 0xf2:                     // identify: MF2 keyboard
            push(0xfa);
            push(0xab);
            push(0x83);
            break;
        case 0xff:  // reset: ACK, then basic assurance test passed
            s_.kbd_scancode_set = 2;
            push(0xfa);
            push(0xaa);
            break;
        default:
            // 0xF4..0xFE (enable/disable scanning, set defaults, typematic
            // modes, resend) are acknowledged; anything else is not a
            // keyboard command and gets "resend".
            push(value >= 0xf4 ? 0xfa : 0xfe);
            break;
    }
}

}  // namespace vmm::devices
