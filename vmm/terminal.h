// Raw mode for the controlling terminal while the guest owns the console.
// The saved settings are restored by the destructor, by an atexit hook and
// from the fatal-signal path, so every exit leaves the terminal usable.
#pragma once

namespace vmm {

class RawTerminal {
public:
    // No-op unless `fd` is a terminal.
    explicit RawTerminal(int fd);
    ~RawTerminal();
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;
    bool active() const { return active_; }

    // Async-signal-safe restore of whatever terminal is currently raw.
    static void restore_now();

private:
    bool active_ = false;
};

}  // namespace vmm
