// CMOS RTC/NVRAM, driven only through the PIO bus at 0x70/0x71.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "devices/cmos.h"
#include "vmm/core/bus.h"

namespace {

constexpr uint64_t MiB = 1024 * 1024, GiB = 1024 * MiB;
constexpr int64_t k20261123_050607 = 1795410367;  // Monday 2026-11-23 05:06:07 UTC

constexpr int64_t kSec = 1'000'000'000;

// A CMOS register by index, through the ports as a guest reaches it.
struct Ports {
    vmm::Bus bus{"pio"};
    uint8_t get(uint8_t index) {
        uint8_t b = 0;
        REQUIRE(bus.write(0x70, std::span<const uint8_t>(&index, 1)));
        REQUIRE(bus.read(0x71, std::span<uint8_t>(&b, 1)));
        return b;
    }
    void set(uint8_t index, uint8_t v) {
        REQUIRE(bus.write(0x70, std::span<const uint8_t>(&index, 1)));
        REQUIRE(bus.write(0x71, std::span<const uint8_t>(&v, 1)));
    }
};

struct Rig : Ports {
    int64_t now = k20261123_050607;  // the host clock's seconds
    explicit Rig(uint64_t below = 512 * MiB, uint64_t above = 0) {
        vmm::devices::Cmos::Clock clock{[this] { return now * kSec; }, [this] { return now * kSec; }};
        bus.add(0x70, 2, std::make_shared<vmm::devices::Cmos>(below, above, clock));
    }
};

}  // namespace

TEST_CASE("devices: cmos RTC in BCD, 24-hour (default)", "[devices][cmos]") {
    Rig r;
    CHECK(r.get(0x0b) == 0x02);
    CHECK(r.get(0x00) == 0x07);
    CHECK(r.get(0x02) == 0x06);
    CHECK(r.get(0x04) == 0x05);
    CHECK(r.get(0x06) == 0x02);  // Monday (Sunday = 1)
    CHECK(r.get(0x07) == 0x23);
    CHECK(r.get(0x08) == 0x11);
    CHECK(r.get(0x09) == 0x26);
    CHECK(r.get(0x32) == 0x20);  // century
    CHECK(r.get(0x0a) == 0x26);  // UIP clear, 32 kHz divider
    CHECK(r.get(0x0c) == 0x00);
    CHECK(r.get(0x0d) == 0x80);  // VRT
    // The clock is read on every access.
    r.now += 3600 + 60 + 1;
    CHECK(r.get(0x00) == 0x08);
    CHECK(r.get(0x02) == 0x07);
    CHECK(r.get(0x04) == 0x06);
}

TEST_CASE("devices: cmos RTC in binary mode and 12-hour mode", "[devices][cmos]") {
    Rig r;
    r.set(0x0b, 0x06);  // DM (binary) | 24h
    CHECK(r.get(0x00) == 7);
    CHECK(r.get(0x02) == 6);
    CHECK(r.get(0x04) == 5);
    CHECK(r.get(0x07) == 23);
    CHECK(r.get(0x08) == 11);
    CHECK(r.get(0x09) == 26);
    CHECK(r.get(0x32) == 20);

    r.now = k20261123_050607 + 12 * 3600;  // 17:06:07
    r.set(0x0b, 0x00);                      // BCD, 12-hour
    CHECK(r.get(0x04) == (0x80 | 0x05));    // 5 PM
    r.set(0x0b, 0x04);                      // binary, 12-hour
    CHECK(r.get(0x04) == (0x80 | 5));
    r.now = k20261123_050607 - 5 * 3600;  // 00:06:07 -> 12 AM
    CHECK(r.get(0x04) == 12);
}

TEST_CASE("devices: cmos index port masks the NMI bit", "[devices][cmos]") {
    Rig r;
    CHECK(r.get(0x80 | 0x09) == 0x26);  // NMI-disable bit ignored for the index
    r.set(0xc0, 0xab);                   // index 0x40
    CHECK(r.get(0x40) == 0xab);
    uint8_t b = 0;
    REQUIRE(r.bus.read(0x70, std::span<uint8_t>(&b, 1)));
    CHECK(b == 0xff);  // the index port is write-only
    // Registers C and D are read-only.
    r.set(0x0d, 0x00);
    CHECK(r.get(0x0d) == 0x80);
    // Odd widths: a 16-bit write sets index and data in one access.
    const uint8_t both[2] = {0x41, 0x5a};
    REQUIRE(r.bus.write(0x70, both));
    CHECK(r.get(0x41) == 0x5a);
    uint8_t two[2] = {};
    REQUIRE(r.bus.read(0x70, two));
    CHECK(two[0] == 0xff);
    CHECK(two[1] == 0x5a);
}

TEST_CASE("devices: cmos memory size bytes", "[devices][cmos]") {
    SECTION("512 MiB") {
        Rig r(512 * MiB, 0);
        CHECK(r.get(0x15) == 0x80);  // 640 KiB base memory
        CHECK(r.get(0x16) == 0x02);
        CHECK(r.get(0x17) == 0xff);  // extended memory saturates at 0xffff KiB
        CHECK(r.get(0x18) == 0xff);
        CHECK(r.get(0x30) == 0xff);
        CHECK(r.get(0x31) == 0xff);
        CHECK(r.get(0x34) == 0x00);  // (512 - 16) MiB / 64 KiB = 0x1f00
        CHECK(r.get(0x35) == 0x1f);
        CHECK(r.get(0x5b) == 0x00);
        CHECK(r.get(0x5c) == 0x00);
        CHECK(r.get(0x5d) == 0x00);
    }
    SECTION("6 GiB: 3 GiB below the PCI hole, 3 GiB above 4 GiB") {
        Rig r(3 * GiB, 3 * GiB);
        CHECK(r.get(0x34) == 0x00);  // (3072 - 16) MiB / 64 KiB = 0xbf00
        CHECK(r.get(0x35) == 0xbf);
        CHECK(r.get(0x5b) == 0x00);  // 3 GiB / 64 KiB = 0x00c000
        CHECK(r.get(0x5c) == 0xc0);
        CHECK(r.get(0x5d) == 0x00);
        CHECK(r.get(0x17) == 0xff);
    }
    SECTION("32 MiB") {
        Rig r(32 * MiB, 0);
        CHECK(r.get(0x17) == 0x00);  // 31 MiB = 31744 KiB = 0x7c00
        CHECK(r.get(0x18) == 0x7c);
        CHECK(r.get(0x34) == 0x00);  // 16 MiB / 64 KiB = 0x0100
        CHECK(r.get(0x35) == 0x01);
    }
}

TEST_CASE("devices: cmos RTC writes are kept as an offset", "[devices][cmos]") {
    Rig r;
    // Linux-style set: SET, write fields, clear SET.
    r.set(0x0b, 0x82);
    r.now += 5;                  // frozen while SET
    CHECK(r.get(0x00) == 0x07);
    r.set(0x09, 0x30);           // year 2030
    r.set(0x04, 0x21);           // 21:xx
    r.set(0x0b, 0x02);
    CHECK(r.get(0x09) == 0x30);
    CHECK(r.get(0x04) == 0x21);
    CHECK(r.get(0x08) == 0x11);
    CHECK(r.get(0x00) == 0x07);
    r.now += 10;  // keeps running from the new time
    CHECK(r.get(0x00) == 0x17);
    CHECK(r.get(0x06) == 0x07);  // 2030-11-23 is a Saturday

    // A single field on the running clock.
    r.set(0x02, 0x45);
    CHECK(r.get(0x02) == 0x45);
    CHECK(r.get(0x04) == 0x21);

    // Invalid values (bad BCD, 30 February) are ignored.
    r.set(0x08, 0x13);
    CHECK(r.get(0x08) == 0x11);
    r.set(0x0b, 0x82);
    r.set(0x08, 0x02);
    r.set(0x07, 0x30);
    r.set(0x0b, 0x02);
    CHECK(r.get(0x08) == 0x11);
    CHECK(r.get(0x07) == 0x23);
}

TEST_CASE("cmos: base=localtime shows the host's local time, utc the UTC time", "[devices][cmos]") {
    const char* old = std::getenv("TZ");
    std::string saved = old ? old : "";
    ::setenv("TZ", "XYZ-02:30", 1);  // 2 h 30 min east of UTC, no DST
    auto local = vmm::devices::Cmos::host_clock(true);
    auto utc = vmm::devices::Cmos::host_clock(false);
    int64_t a = utc() / kSec, d = local() / kSec - a;
    CHECK((d == 9000 || d == 9001));  // the two reads may straddle a second
    if (old) ::setenv("TZ", saved.c_str(), 1);
    else ::unsetenv("TZ");
    ::tzset();
}

// ---------------------------------------------------------------------------
// Interrupts on IRQ 8, in simulated time: the rig plays the machine (the
// timer: it calls tick() when the armed deadline comes) and, with `ack`,
// the guest's interrupt handler (it reads register C on every interrupt).

namespace {

using vmm::devices::Cmos;

struct FakeIrq : vmm::IrqLine {
    bool level = false;
    int raised = 0;
    void set_level(bool high) override {
        if (high && !level) ++raised;
        level = high;
    }
};

struct IrqRig : Ports {
    int64_t t = 0;  // monotonic ns
    int64_t wall0;  // the host clock (ns) at t = 0
    std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
    std::shared_ptr<Cmos> dev;
    int64_t armed = Cmos::kNoDeadline;
    int ticks = 0;
    std::vector<int64_t> at;     // when each interrupt was taken
    std::vector<uint8_t> flags;  // what register C said then

    // phase_ns: how far into its second the host clock is at t = 0.
    explicit IrqRig(int64_t phase_ns = 0) : wall0(k20261123_050607 * kSec + phase_ns) {
        dev = std::make_shared<Cmos>(512 * MiB, 0, Cmos::Clock{[this] { return wall0 + t; }, [this] { return t; }},
                                     irq);
        dev->set_timer([this](int64_t d) { armed = d; });
        bus.add(0x70, 2, dev);
    }
    // The timer fires (one-shot, like the machine's timerfd) at the time now.
    void fire() {
        armed = Cmos::kNoDeadline;
        ++ticks;
        dev->tick();
    }
    // Runs to `until`; returns the interrupts raised meanwhile.
    int run_until(int64_t until, bool ack = true) {
        const int before = irq->raised;
        while (armed != Cmos::kNoDeadline && armed <= until) {
            t = std::max(t, armed);
            fire();
            // Never a deadline that is already due after a tick: no busy loop.
            REQUIRE((armed == Cmos::kNoDeadline || armed > t));
            if (irq->level) {
                at.push_back(t);
                if (ack) flags.push_back(get(0x0c));
                if (ack) REQUIRE_FALSE(irq->level);
            }
        }
        t = until;
        return irq->raised - before;
    }
    int run_for(int64_t ns, bool ack = true) { return run_until(t + ns, ack); }
};

}  // namespace

TEST_CASE("cmos: periodic interrupt at register A's rate", "[devices][cmos][rtc]") {
    struct Case {
        uint8_t rs;
        int hz;
    };
    for (Case c : {Case{6, 1024}, Case{3, 8192}, Case{15, 2}, Case{1, 256}, Case{2, 128}, Case{10, 64}}) {
        INFO("RS " << int(c.rs));
        IrqRig r;
        r.set(0x0a, uint8_t(0x20 | c.rs));
        CHECK(r.armed == Cmos::kNoDeadline);  // PIE off: no timer
        r.set(0x0b, 0x42);                    // PIE, 24-hour
        CHECK(r.run_for(3 * kSec) == 3 * c.hz);
        CHECK(r.ticks == 3 * c.hz);  // one wake-up per interrupt, no more
        for (uint8_t f : r.flags) CHECK((f & 0xe0) == 0xc0);  // IRQF | PF, no AF
        // The edges keep the rate's exact phase (no drift from rounding).
        REQUIRE(r.at.size() >= 2);
        const double period = 1e9 / c.hz;
        CHECK(std::abs(double(r.at.back() - r.at.front()) - period * double(r.at.size() - 1)) < 2.0);
    }
    // RS 0: no periodic interrupt even with PIE.
    IrqRig r;
    r.set(0x0a, 0x20);
    r.set(0x0b, 0x42);
    CHECK(r.run_for(2 * kSec) == 0);
    CHECK(r.ticks == 0);
}

TEST_CASE("cmos: a late timer sets PF once, no burst; an unread IRQF needs no timer", "[devices][cmos][rtc]") {
    IrqRig r;
    r.set(0x0a, 0x23);  // 8192 Hz
    r.set(0x0b, 0x42);
    REQUIRE(r.armed != Cmos::kNoDeadline);
    r.t += 10'000'000;  // the host timer comes 10 ms (81 periods) late
    r.fire();
    CHECK(r.irq->raised == 1);
    CHECK(r.armed == Cmos::kNoDeadline);  // IRQF is up: nothing to wake for
    CHECK(r.get(0x0c) == 0xc0);
    CHECK(r.get(0x0c) == 0x00);  // once
    REQUIRE(r.armed != Cmos::kNoDeadline);
    CHECK(r.armed > r.t);
    CHECK(r.armed - r.t <= 122071);  // the next edge of the same phase

    // A guest that never reads C: one interrupt, then the timer stays off.
    IrqRig q;
    q.set(0x0a, 0x23);
    q.set(0x0b, 0x42);
    CHECK(q.run_for(2 * kSec, false) == 1);
    CHECK(q.ticks == 1);
    CHECK(q.irq->level);
    CHECK((q.get(0x0c) & 0xe0) == 0xc0);
    CHECK_FALSE(q.irq->level);
}

TEST_CASE("cmos: update-ended interrupt once a second, at the second", "[devices][cmos][rtc]") {
    IrqRig r(400'000'000);  // the host clock is 0.4 s into 05:06:07
    r.set(0x0a, 0x20);      // no periodic rate: PF stays clear
    r.set(0x0b, 0x12);      // UIE, 24-hour
    CHECK(r.run_for(3 * kSec) == 3);
    REQUIRE(r.at.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
        CHECK(std::abs(r.at[i] - (600'000'000 + int64_t(i) * kSec)) < 100'000);
        CHECK((r.flags[i] & 0xf0) == 0x90);  // IRQF | UF
    }
    CHECK(r.ticks <= 4);
    CHECK(r.get(0x00) == 0x10);  // 05:06:10.4
}

TEST_CASE("cmos: alarm interrupt at the alarm time; 0xc0..0xff is don't care", "[devices][cmos][rtc]") {
    SECTION("BCD: 05:06:10") {
        IrqRig r;  // 05:06:07.0 at t = 0
        r.set(0x01, 0x10);
        r.set(0x03, 0x06);
        r.set(0x05, 0x05);
        r.set(0x0b, 0x22);  // AIE, 24-hour
        CHECK(r.run_until(2'900'000'000) == 0);
        CHECK(r.run_until(4 * kSec) == 1);
        REQUIRE(r.at.size() == 1);
        CHECK(std::abs(r.at[0] - 3 * kSec) < 100'000);
        CHECK((r.flags[0] & 0xb0) == 0xb0);  // IRQF | AF | UF
        CHECK(r.run_for(60 * kSec) == 0);    // not again within the day
    }
    SECTION("binary mode: 05:06:12") {
        IrqRig r;
        r.set(0x0b, 0x06);  // binary first, then the alarm in binary
        r.set(0x01, 12);
        r.set(0x03, 6);
        r.set(0x05, 5);
        r.set(0x0b, 0x26);
        CHECK(r.run_until(5'500'000'000) == 1);
        REQUIRE(r.at.size() == 1);
        CHECK(std::abs(r.at[0] - 5 * kSec) < 100'000);
    }
    SECTION("12-hour mode: 5 PM is 0x85") {
        IrqRig r;
        r.wall0 += 12 * 3600 * kSec;  // 17:06:07
        r.set(0x0b, 0x00);            // BCD, 12-hour
        r.set(0x01, 0x09);
        r.set(0x03, 0x06);
        r.set(0x05, 0x85);
        r.set(0x0b, 0x20);
        CHECK(r.run_for(3 * kSec) == 1);
    }
    SECTION("every second: all three don't care") {
        IrqRig r;
        r.set(0x01, 0xc0);
        r.set(0x03, 0xff);
        r.set(0x05, 0xd5);
        r.set(0x0b, 0x22);
        CHECK(r.run_for(5'500'000'000) == 5);
    }
    SECTION("once a minute: seconds 30, minutes and hours don't care") {
        IrqRig r;  // 05:06:07: :30 comes at 23 s and 83 s
        r.set(0x01, 0x30);
        r.set(0x03, 0xc0);
        r.set(0x05, 0xc0);
        r.set(0x0b, 0x22);
        CHECK(r.run_for(125 * kSec) == 2);
        REQUIRE(r.at.size() == 2);
        CHECK(std::abs(r.at[0] - 23 * kSec) < 100'000);
        CHECK(std::abs(r.at[1] - 83 * kSec) < 100'000);
    }
    SECTION("a timer late by seconds still sees the alarm second it skipped") {
        IrqRig r;
        r.set(0x01, 0x09);
        r.set(0x03, 0x06);
        r.set(0x05, 0x05);
        r.set(0x0b, 0x22);
        r.t = 4'500'000'000;  // 05:06:11.5: the timer for 05:06:08 comes this late
        r.fire();
        CHECK(r.irq->raised == 1);
        CHECK((r.get(0x0c) & 0xa0) == 0xa0);
    }
}

TEST_CASE("cmos: reading register C returns and clears the flags and lowers IRQ 8", "[devices][cmos][rtc]") {
    IrqRig r;
    r.set(0x0a, 0x20);
    r.set(0x0b, 0x12);
    r.run_for(1'500'000'000, false);
    CHECK(r.irq->level);
    CHECK(r.irq->raised == 1);
    CHECK(r.get(0x0c) == 0x90);
    CHECK_FALSE(r.irq->level);
    CHECK(r.get(0x0c) == 0x00);
    // An enable for a flag already set raises the line at once (as the chip
    // does); reading C first (what Linux does) avoids that.
    r.set(0x0b, 0x02);
    r.t += 2 * kSec;
    CHECK_FALSE(r.irq->level);
    r.set(0x0b, 0x12);
    CHECK(r.irq->level);
    CHECK(r.get(0x0c) == 0x90);
    CHECK_FALSE(r.irq->level);
}

TEST_CASE("cmos: with every interrupt off nothing is pending and no timer runs", "[devices][cmos][rtc]") {
    IrqRig r;
    r.set(0x0a, 0x23);  // 8192 Hz
    r.set(0x01, 0xff);  // the alarm would match every second
    r.set(0x03, 0xff);
    r.set(0x05, 0xff);
    r.set(0x0b, 0x02);
    CHECK(r.armed == Cmos::kNoDeadline);
    CHECK(r.dev->next_deadline_ns() == Cmos::kNoDeadline);
    CHECK(r.run_for(10 * kSec) == 0);
    CHECK(r.ticks == 0);
    CHECK_FALSE(r.irq->level);
    // The flags were still set (a guest may poll them), without IRQF.
    CHECK(r.get(0x0c) == 0x70);
    CHECK(r.get(0x0c) == 0x00);
}

TEST_CASE("cmos: SET stops updates and clears UIE; the divider stops everything", "[devices][cmos][rtc]") {
    SECTION("SET") {
        IrqRig r;
        r.set(0x0b, 0x92);  // SET | UIE: UIE is cleared
        CHECK(r.get(0x0b) == 0x82);
        r.set(0x01, 0xff);
        r.set(0x03, 0xff);
        r.set(0x05, 0xff);
        r.set(0x0b, 0xa2);  // SET | AIE
        CHECK(r.run_for(5 * kSec) == 0);
        CHECK(r.ticks == 0);
        CHECK(r.get(0x0c) == 0x40);  // PF only (the divider runs): no update happened
        // The periodic interrupt does not stop with SET.
        r.set(0x0a, 0x2f);  // 2 Hz
        r.set(0x0b, 0xc2);
        CHECK(r.run_for(2 * kSec) == 4);
        // Clearing SET: the updates go on from the time then, the next one
        // a second later.
        r.set(0x0b, 0x22);
        r.flags.clear();
        r.at.clear();
        const int64_t t0 = r.t;
        CHECK(r.run_for(3'500'000'000) == 3);
        REQUIRE(r.at.size() == 3);
        CHECK(std::abs(r.at[0] - t0 - kSec) < 100'000);
        CHECK((r.flags[0] & 0xa0) == 0xa0);
    }
    SECTION("divider bits other than 010") {
        IrqRig r;
        r.set(0x0b, 0x72);  // PIE | AIE | UIE
        r.get(0x0c);
        r.set(0x0a, 0x76);  // divider chain reset (what some guests write around a time set)
        r.get(0x0c);
        CHECK(r.armed == Cmos::kNoDeadline);
        CHECK(r.run_for(3 * kSec) == 0);
        CHECK(r.get(0x0c) == 0x00);
        r.set(0x0a, 0x06);  // oscillator off
        CHECK(r.run_for(3 * kSec) == 0);
        r.set(0x0a, 0x26);  // running again
        CHECK(r.run_for(kSec) >= 1000);
    }
}

TEST_CASE("cmos: hostile register values never crash, spin or storm", "[devices][cmos][rtc]") {
    // Every register A value with every interrupt enabled and a guest that
    // acknowledges at once: never more than 8192 Hz plus the updates.
    for (unsigned a = 0; a < 256; ++a) {
        INFO("register A " << a);
        IrqRig r;
        r.set(0x0a, uint8_t(a));
        r.set(0x01, 0xff);
        r.set(0x03, 0xff);
        r.set(0x05, 0xff);
        r.set(0x0b, 0x72);
        const int n = r.run_for(kSec / 4);
        CHECK(n <= 8192 / 4 + 2);
        CHECK(r.ticks <= 8192 / 4 + 4);
    }
    // Random writes to every register (invalid BCD, impossible alarms, SET
    // toggling, rates) in random simulated time, with the timer running.
    IrqRig r;
    uint32_t x = 12345;
    auto rnd = [&x] {
        x = x * 1103515245u + 12345u;
        return x >> 8;
    };
    int64_t start = r.t;
    const int ops = 20000;
    for (int i = 0; i < ops; ++i) {
        const uint8_t idx = uint8_t(rnd() % 16 == 0 ? rnd() & 0x7f : rnd() % 14);
        if (rnd() % 4 == 0) r.get(idx);
        else r.set(idx, uint8_t(rnd()));
        r.run_for(int64_t(rnd() % 200'000));
    }
    // Each access may move the deadline (and cost one early wake-up).
    const double secs = double(r.t - start) / 1e9;
    CHECK(r.ticks <= int(secs * (8192 + 2)) + ops + 10);
    CHECK(r.get(0x0d) == 0x80);
}
