// pvpanic at port 0x505, driven through the PIO bus.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "devices/pvpanic.h"
#include "vmm/core/bus.h"

TEST_CASE("devices: pvpanic reports supported events and what the guest writes", "[devices][pvpanic]") {
    std::vector<uint8_t> events;
    auto dev = std::make_shared<vmm::devices::PvPanic>([&](uint8_t e) { events.push_back(e); });
    vmm::Bus bus{"pio"};
    bus.add(0x505, 1, dev);
    uint8_t b = 0;
    REQUIRE(bus.read(0x505, std::span<uint8_t>(&b, 1)));
    CHECK(b == 0x03);
    for (uint8_t v : {uint8_t(0x01), uint8_t(0x02), uint8_t(0x00), uint8_t(0xfc), uint8_t(0xff)})
        REQUIRE(bus.write(0x505, std::span<const uint8_t>(&v, 1)));
    // Zero and unsupported bits are not events; supported bits are masked.
    CHECK(events == std::vector<uint8_t>{0x01, 0x02, 0x03});
}
