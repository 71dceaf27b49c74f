// CMOS RTC/NVRAM, driven only through the PIO bus at 0x70/0x71.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>

#include "devices/cmos.h"
#include "vmm/core/bus.h"

namespace {

constexpr uint64_t MiB = 1024 * 1024, GiB = 1024 * MiB;
constexpr int64_t k20261123_050607 = 1795410367;  // Monday 2026-11-23 05:06:07 UTC

struct Rig {
    int64_t now = k20261123_050607;
    vmm::Bus bus{"pio"};
    explicit Rig(uint64_t below = 512 * MiB, uint64_t above = 0) {
        bus.add(0x70, 2, std::make_shared<vmm::devices::Cmos>(below, above, [this] { return now; }));
    }
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
    int64_t a = utc(), d = local() - a;
    CHECK((d == 9000 || d == 9001));  // the two reads may straddle a second
    if (old) ::setenv("TZ", saved.c_str(), 1);
    else ::unsetenv("TZ");
    ::tzset();
}
