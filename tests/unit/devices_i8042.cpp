// i8042 keyboard controller, driven only through the PIO bus at 0x60..0x64.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "devices/i8042.h"
#include "vmm/core/bus.h"

namespace {

constexpr uint64_t kData = 0x60, kCmd = 0x64;
constexpr uint8_t kObf = 0x01, kSys = 0x04, kAuxObf = 0x20;

struct Rig {
    int resets = 0;
    vmm::Bus bus{"pio"};
    Rig() { bus.add(0x60, 5, std::make_shared<vmm::devices::I8042>([this] { ++resets; })); }
    uint8_t in(uint64_t port) {
        uint8_t b = 0;
        REQUIRE(bus.read(port, std::span<uint8_t>(&b, 1)));
        return b;
    }
    void put(uint64_t port, uint8_t v) { REQUIRE(bus.write(port, std::span<const uint8_t>(&v, 1))); }
    // Poll like Linux's i8042_wait_read: wait for OBF, then read the data port.
    std::vector<uint8_t> drain() {
        std::vector<uint8_t> v;
        for (int i = 0; i < 32 && (in(kCmd) & kObf); ++i) v.push_back(in(kData));
        return v;
    }
};

using Bytes = std::vector<uint8_t>;

}  // namespace

TEST_CASE("devices: i8042 self test and interface tests", "[devices][i8042]") {
    Rig r;
    CHECK((r.in(kCmd) & (kObf | kSys)) == 0);
    r.put(kCmd, 0xaa);
    CHECK((r.in(kCmd) & kObf) == kObf);
    CHECK(r.in(kData) == 0x55);
    CHECK((r.in(kCmd) & kObf) == 0);
    CHECK((r.in(kCmd) & kSys) == kSys);  // system flag set after self test
    r.put(kCmd, 0xab);
    CHECK(r.drain() == Bytes{0x00});
    r.put(kCmd, 0xa9);
    CHECK(r.drain() == Bytes{0x00});
    CHECK(r.resets == 0);
}

TEST_CASE("devices: i8042 command byte round trip and port enables", "[devices][i8042]") {
    Rig r;
    r.put(kCmd, 0x20);
    Bytes ctr = r.drain();
    REQUIRE(ctr.size() == 1);
    r.put(kCmd, 0x60);
    r.put(kData, 0x65);
    CHECK(r.drain().empty());  // the parameter is not a keyboard command
    r.put(kCmd, 0x20);
    CHECK(r.drain() == Bytes{0x65});
    r.put(kCmd, 0xa7);  // disable AUX -> CTR bit 5
    r.put(kCmd, 0xad);  // disable keyboard -> CTR bit 4
    r.put(kCmd, 0x20);
    CHECK(r.drain() == Bytes{0x75});
    r.put(kCmd, 0xa8);
    r.put(kCmd, 0xae);
    r.put(kCmd, 0x20);
    CHECK(r.drain() == Bytes{0x45});
    // AUX loopback (0xD3), as Linux's AUX probe uses it: the byte comes back
    // flagged as AUX data.
    r.put(kCmd, 0xd3);
    r.put(kData, 0x5a);
    CHECK((r.in(kCmd) & (kObf | kAuxObf)) == (kObf | kAuxObf));
    CHECK(r.in(kData) == 0x5a);
    CHECK((r.in(kCmd) & kAuxObf) == 0);
}

TEST_CASE("devices: i8042 reset through the controller", "[devices][i8042]") {
    Rig r;
    r.put(kCmd, 0xfe);
    CHECK(r.resets == 1);
    r.put(kCmd, 0xff);  // pulses no line
    CHECK(r.resets == 1);
    r.put(kCmd, 0xf0);  // pulses all four, including reset
    CHECK(r.resets == 2);
    r.put(kCmd, 0xd0);  // read output port: not in reset, A20 on
    Bytes op = r.drain();
    REQUIRE(op.size() == 1);
    CHECK((op[0] & 0x03) == 0x03);
    r.put(kCmd, 0xd1);
    r.put(kData, 0x03);  // bit 0 set: no reset
    CHECK(r.resets == 2);
    r.put(kCmd, 0xd1);
    r.put(kData, 0xfe);  // bit 0 clear: reset
    CHECK(r.resets == 3);
}

TEST_CASE("devices: i8042 keyboard commands are acknowledged", "[devices][i8042]") {
    Rig r;
    r.put(kData, 0xff);
    CHECK(r.drain() == Bytes{0xfa, 0xaa});
    r.put(kData, 0xf2);
    CHECK(r.drain() == Bytes{0xfa, 0xab, 0x83});
    r.put(kData, 0xed);  // set LEDs + parameter
    r.put(kData, 0x07);
    CHECK(r.drain() == Bytes{0xfa, 0xfa});
    r.put(kData, 0xf0);  // get scancode set
    r.put(kData, 0x00);
    CHECK(r.drain() == Bytes{0xfa, 0xfa, 0x02});
    r.put(kData, 0xf4);
    CHECK(r.drain() == Bytes{0xfa});
    r.put(kData, 0xee);
    CHECK(r.drain() == Bytes{0xee});
    r.put(kData, 0x12);  // not a command
    CHECK(r.drain() == Bytes{0xfe});
}

TEST_CASE("devices: i8042 odd offsets and widths", "[devices][i8042]") {
    Rig r;
    for (uint64_t p = 0x61; p <= 0x63; ++p) CHECK(r.in(p) == 0xff);
    uint8_t before = r.in(kCmd);
    for (uint64_t p = 0x61; p <= 0x63; ++p) r.put(p, 0xfe);  // not a reset: not ours
    CHECK(r.resets == 0);
    CHECK(r.in(kCmd) == before);
    // 16-bit read at 0x60: data port then 0x61.
    r.put(kCmd, 0xaa);
    uint8_t two[2] = {};
    REQUIRE(r.bus.read(kData, two));
    CHECK(two[0] == 0x55);
    CHECK(two[1] == 0xff);
    // Reading an empty data port repeats the stale byte instead of failing.
    CHECK(r.in(kData) == 0x55);
    // 32-bit read at 0x61 ends on the status port.
    uint8_t four[4] = {};
    REQUIRE(r.bus.read(0x61, four));
    CHECK(four[0] == 0xff);
    CHECK(four[3] == r.in(kCmd));
    // 32-bit read at 0x60 (stale data byte, then other chips' 0xff).
    uint8_t eight[8] = {};
    REQUIRE(r.bus.read(kData, std::span<uint8_t>(eight, 4)));
    CHECK(eight[3] == 0xff);
    CHECK_FALSE(r.bus.read(0x64, eight));  // 8 bytes past the range end
    // The output buffer is bounded: a flood of replies never exceeds it.
    for (int i = 0; i < 100; ++i) r.put(kData, 0xf2);
    CHECK(r.drain().size() == 8);
}
