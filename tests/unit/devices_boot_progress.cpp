// Boot progress port (0x440), driven through the PIO bus.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "devices/boot_progress.h"
#include "vmm/core/bus.h"

TEST_CASE("devices: boot progress reports every byte written", "[devices][boot_progress]") {
    std::vector<uint8_t> marks;
    auto dev = std::make_shared<vmm::devices::BootProgress>([&](uint8_t v) { marks.push_back(v); });
    vmm::Bus bus{"pio"};
    bus.add(0x440, 1, dev);
    CHECK(dev->count() == 0);
    for (uint8_t v : {uint8_t(0x01), uint8_t(0x42), uint8_t(0x42)})
        REQUIRE(bus.write(0x440, std::span<const uint8_t>(&v, 1)));
    CHECK(marks == std::vector<uint8_t>{0x01, 0x42, 0x42});
    CHECK(dev->last() == 0x42);
    CHECK(dev->count() == 3);
    uint8_t b = 0xee;
    REQUIRE(bus.read(0x440, std::span<uint8_t>(&b, 1)));
    CHECK(b == 0);
    CHECK(dev->count() == 3);  // reads are not marks
    // A wider direct write only delivers the byte at offset 0.
    const uint8_t two[2] = {0x07, 0x08};
    dev->write(0, two);
    CHECK(marks.back() == 0x07);
    CHECK(dev->count() == 4);
}
