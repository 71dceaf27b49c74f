// Reset control register (0xcf9), driven through the PIO bus.
#include <catch2/catch.hpp>

#include <memory>

#include "devices/reset.h"
#include "vmm/core/bus.h"

TEST_CASE("devices: reset control calls on_reset for RST_CPU", "[devices][reset]") {
    int resets = 0;
    vmm::Bus bus{"pio"};
    bus.add(0xcf9, 1, std::make_shared<vmm::devices::ResetControl>([&] { ++resets; }));
    auto in = [&] {
        uint8_t b = 0;
        REQUIRE(bus.read(0xcf9, std::span<uint8_t>(&b, 1)));
        return b;
    };
    auto out = [&](uint8_t v) { REQUIRE(bus.write(0xcf9, std::span<const uint8_t>(&v, 1))); };

    CHECK(in() == 0);
    out(0x02);  // select hard reset, do not reset yet (Linux's first write)
    CHECK(resets == 0);
    CHECK(in() == 0x02);
    out(0x06);  // SYS_RST | RST_CPU: the FADT reset value
    CHECK(resets == 1);
    CHECK(in() == 0x02);  // RST_CPU is an action bit and reads 0
    out(0xff);
    CHECK(resets == 2);
    CHECK(in() == 0x0a);  // only SYS_RST | FULL_RST are kept
    out(0x08);
    CHECK(resets == 2);
    // Wider accesses do not fit the 1-byte range and are refused by the bus.
    uint8_t two[2] = {0x06, 0x06};
    CHECK_FALSE(bus.write(0xcf9, std::span<const uint8_t>(two, 2)));
    CHECK(resets == 2);
}
