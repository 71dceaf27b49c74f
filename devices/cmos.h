// MC146818-compatible CMOS RTC and 128 bytes of CMOS RAM at ports 0x70/0x71.
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
// bit 7 = PM). Register A always reads UIP = 0, register C reads 0, register
// D reads 0x80 (valid RAM and time).
//
// Guest writes to the time are accepted and kept as an offset from the host
// clock (never changing the host's time). With register B's SET bit the
// guest freezes the visible fields, writes them, and the new time takes
// effect when SET is cleared (how Linux and Windows set the clock); a single
// field written while SET is clear is applied at once. Invalid dates are
// ignored. The day-of-week register is always derived from the date.
//
// Not implemented yet: alarm/periodic/update-ended interrupts (IRQ 8) —
// register B's interrupt enables are stored only.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"
#include "vmm/core/log.h"

namespace vmm::devices {

class Cmos : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 2;

    // mem_below_4g / mem_above_4g: guest RAM in bytes below and above 4 GiB.
    // now_unix_seconds: the host clock (default: CLOCK_REALTIME).
    Cmos(uint64_t mem_below_4g, uint64_t mem_above_4g, std::function<int64_t()> now_unix_seconds = {});

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "cmos"; }

    // The host clock as the RTC shows it: UTC, or with `localtime` the
    // host's local time (what Windows keeps in its RTC; QEMU's
    // -rtc base=localtime). The time zone is loaded here, so later reads
    // (in vCPU threads, under seccomp) open no file.
    static std::function<int64_t()> host_clock(bool localtime);

    // For the device manager: set a platform byte (e.g. 0x5f = CPUs - 1 or
    // the 0x3d boot order that SeaBIOS reads) before the guest starts.
    void set_byte(uint8_t index, uint8_t value);
    bool nmi_masked() const;

private:
    uint8_t read_data();            // lock held
    void write_data(uint8_t value);  // lock held
    int64_t rtc_now() const;         // guest-visible unix time
    void freeze_into_ram();          // time fields -> ram
    void commit_from_ram();          // ram -> offset, if valid
    uint8_t encode(unsigned v) const;
    int decode(uint8_t v) const;  // -1 when not valid BCD
    uint8_t encode_hour(unsigned h) const;
    int decode_hour(uint8_t v) const;

    mutable std::mutex mu_;
    std::array<uint8_t, 128> ram_{};
    uint8_t index_ = 0;
    bool nmi_masked_ = false;
    int64_t offset_ = 0;  // guest RTC time minus host time, in seconds
    std::function<int64_t()> now_;
    vmm::log::RateLimit log_limit_;
};

}  // namespace vmm::devices
