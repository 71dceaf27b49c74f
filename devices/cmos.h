// MC146818-compatible CMOS RTC and 128 bytes of CMOS RAM at ports 0x70/0x71,
// with its interrupt on IRQ 8.
//
// Offset 0 (port 0x70) selects the register: bit 7 is the NMI mask, stored
// (nmi_masked()) but not acted on, and bits 6:0 the index (so indices >= 128
// wrap). Reads of port 0x70 return 0xff (write-only on a PC). Offset 1 (0x71)
// reads/writes the selected byte.
//
// Time: registers 0x00..0x09 and the century (0x32) are computed on every
// read from the clock plus a guest-set offset (the clock: UTC, or the host's
// local time with --rtc base=localtime, see host_clock()), formatted per register
// B (DM bit 2: binary instead of BCD; bit 1: 24-hour instead of 12-hour with
// bit 7 = PM). Register A always reads UIP = 0, register D reads 0x80 (valid
// RAM and time).
//
// Guest writes to the time are accepted and kept as an offset from the host
// clock (never changing the host's time). With register B's SET bit the
// guest freezes the visible fields, writes them, and the new time takes
// effect when SET is cleared (how Linux and Windows set the clock); a single
// field written while SET is clear is applied at once. Invalid dates are
// ignored. The day-of-week register is always derived from the date.
//
// Interrupts. Register C's flags, as on the chip:
//   PF (bit 6)  the periodic rate of register A's RS bits (3:0) came round:
//               RS 0 off, 1 and 2 256 and 128 Hz (as on the PC), else
//               32768 >> (RS - 1) Hz (RS 3 = 8192 Hz ... RS 15 = 2 Hz);
//   AF (bit 5)  an update found the time equal to the alarm registers 1, 3
//               and 5 (seconds, minutes, hours, compared as the bytes the
//               current data mode gives; 0xc0..0xff is "don't care");
//   UF (bit 4)  an update (once a second) ended;
//   IRQF (bit 7) one of them is set and enabled in register B (PIE bit 6,
//               AIE bit 5, UIE bit 4).
// IRQ 8 is asserted while IRQF is set; reading register C returns the flags
// and clears all of them, which lowers the line. The flags are set whether
// or not their interrupt is enabled (a guest may poll C), but they are worked
// out when looked at: only an enabled interrupt, not yet pending, needs a
// timer. SET stops the updates (no UF, AF) and clears UIE, as the datasheet
// says. Register A's divider bits (6:4) other than 010 (the normal 0x2x)
// stop all three interrupts; the time keeps following the host clock.
// A timer that comes late sets PF once (no burst of interrupts to catch up).
//
// Time base and threads: the device has no thread and no timer of its own.
// Its Clock gives the RTC's time base (nanoseconds of the unix epoch) and a
// monotonic clock; set_timer() hands it a callback that the device calls
// (with its lock held) with the monotonic time at which tick() must next be
// called, or kNoDeadline. The machine backs that with a timerfd on its event
// loop; unit tests call tick() themselves with a fake clock. vCPU threads
// (port I/O) and the timer's thread are serialised by one mutex.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"
#include "vmm/core/irq.h"
#include "vmm/core/log.h"

namespace vmm::devices {

class Cmos : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 2;
    static constexpr int64_t kNoDeadline = std::numeric_limits<int64_t>::max();

    struct Clock {
        // The RTC's time base in nanoseconds since the unix epoch (default:
        // CLOCK_REALTIME; see host_clock()).
        std::function<int64_t()> wall_ns;
        // Monotonic nanoseconds, the time line of deadlines (default:
        // CLOCK_MONOTONIC, what the machine's timerfd uses).
        std::function<int64_t()> mono_ns;
    };

    // mem_below_4g / mem_above_4g: guest RAM in bytes below and above 4 GiB.
    // irq: IRQ 8 (null: the flags still work, nothing is raised).
    Cmos(uint64_t mem_below_4g, uint64_t mem_above_4g, Clock clock = {}, std::shared_ptr<vmm::IrqLine> irq = nullptr);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "cmos"; }

    // The host clock as the RTC shows it, in nanoseconds: UTC, or with
    // `localtime` the host's local time (what Windows keeps in its RTC;
    // QEMU's -rtc base=localtime). The time zone is loaded here, so later
    // reads (in vCPU threads, under seccomp) open no file.
    static std::function<int64_t()> host_clock(bool localtime);
    static int64_t monotonic_ns();

    // The timer: `arm` is called with the monotonic time tick() is next due
    // (kNoDeadline: no timer needed), whenever that changes. It runs with the
    // device's lock held and must not call back into the device. Set it
    // before the guest runs.
    void set_timer(std::function<void(int64_t deadline_ns)> arm);
    // Brings the flags and IRQ 8 up to the clock's now; re-arms the timer.
    void tick();
    // When tick() is due next (kNoDeadline: nothing enabled is pending).
    int64_t next_deadline_ns() const;

    // For the device manager: set a platform byte (e.g. 0x5f = CPUs - 1 or
    // the 0x3d boot order that SeaBIOS reads) before the guest starts.
    void set_byte(uint8_t index, uint8_t value);
    bool nmi_masked() const;

private:
    uint8_t read_data();            // lock held
    void write_data(uint8_t value);  // lock held
    int64_t rtc_now() const;         // guest-visible unix time
    int64_t rtc_subsecond_ns() const;  // 0 .. 999999999
    void freeze_into_ram();          // time fields -> ram
    void commit_from_ram();          // ram -> offset, if valid
    uint8_t encode(unsigned v) const;
    int decode(uint8_t v) const;  // -1 when not valid BCD
    uint8_t encode_hour(unsigned h) const;
    int decode_hour(uint8_t v) const;

    // Interrupts (lock held).
    bool running() const;                    // divider bits 010
    int64_t periodic_ticks() const;          // the period in 1/32768 s, 0: off
    int64_t periodic_after(int64_t t) const; // first periodic edge > t
    void restart_periodic(int64_t now);
    void resync_updates();                   // the next update starts from now's second
    bool alarm_matches(int64_t t) const;
    void advance(int64_t now);               // flags up to monotonic `now`
    void update_irq();
    int64_t deadline_locked(int64_t now) const;
    void rearm(int64_t now);

    mutable std::mutex mu_;
    std::array<uint8_t, 128> ram_{};
    uint8_t index_ = 0;
    bool nmi_masked_ = false;
    int64_t offset_ = 0;  // guest RTC time minus host time, in seconds
    Clock clock_;
    std::shared_ptr<vmm::IrqLine> irq_;
    std::function<void(int64_t)> arm_;
    uint8_t flags_ = 0;              // register C
    bool line_ = false;              // IRQ 8's level as last set
    int64_t periodic_anchor_ = 0;    // monotonic ns the periodic edges count from
    int64_t periodic_next_ = 0;      // the next periodic edge
    int64_t last_second_ = 0;        // the RTC second the last update saw
    int64_t armed_ = kNoDeadline;    // what the timer was last set to
    vmm::log::RateLimit log_limit_;
};

}  // namespace vmm::devices
