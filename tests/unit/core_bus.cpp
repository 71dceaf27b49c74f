#include <catch2/catch.hpp>

#include <vector>

#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace {
struct Recorder : vmm::BusDevice {
    std::vector<std::pair<uint64_t, uint64_t>> writes;  // offset, value
    uint64_t read_value = 0x1122334455667788ull;
    void read(uint64_t off, std::span<uint8_t> d) override {
        last_read_off = off;
        vmm::store_le(d, read_value);
    }
    void write(uint64_t off, std::span<const uint8_t> d) override { writes.emplace_back(off, vmm::load_le(d)); }
    std::string name() const override { return "rec"; }
    uint64_t last_read_off = ~0ull;
};
}  // namespace

TEST_CASE("core: bus dispatches by interval with relative offsets") {
    vmm::Bus bus("pio");
    auto a = std::make_shared<Recorder>();
    auto b = std::make_shared<Recorder>();
    bus.add(0x3f8, 8, a);
    bus.add(0x400, 4, b);
    uint8_t v = 0x5a;
    REQUIRE(bus.write(0x3fa, {&v, 1}));
    REQUIRE(a->writes.size() == 1);
    CHECK(a->writes[0] == std::pair<uint64_t, uint64_t>{2, 0x5a});
    uint8_t r[2] = {};
    REQUIRE(bus.read(0x402, r));
    CHECK(b->last_read_off == 2);
    CHECK(r[0] == 0x88);
    CHECK(r[1] == 0x77);
}

TEST_CASE("core: bus rejects unclaimed and straddling accesses") {
    vmm::Bus bus("pio");
    auto a = std::make_shared<Recorder>();
    bus.add(0x100, 4, a);
    uint8_t r[4] = {1, 2, 3, 4};
    CHECK_FALSE(bus.read(0x0ff, {r, 1}));
    CHECK(r[0] == 0xff);  // unclaimed reads float high
    CHECK_FALSE(bus.read(0x102, {r, 4}));  // crosses the end
    CHECK_FALSE(bus.write(0x104, {r, 1}));
    CHECK(a->writes.empty());
    // An access near the top of the address space must not wrap around.
    bus.add(~0ull - 7, 4, std::make_shared<Recorder>());
    CHECK_FALSE(bus.read(~0ull - 5, {r, 4}));
    CHECK_FALSE(bus.read(~0ull, {r, 4}));
    CHECK(bus.read(~0ull - 7, {r, 4}));
}

TEST_CASE("core: bus rejects overlapping, empty and overflowing ranges") {
    vmm::Bus bus("mmio");
    bus.add(0x1000, 0x100, std::make_shared<Recorder>());
    CHECK_THROWS_AS(bus.add(0x10ff, 1, std::make_shared<Recorder>()), vmm::Error);
    CHECK_THROWS_AS(bus.add(0x0f00, 0x101, std::make_shared<Recorder>()), vmm::Error);
    CHECK_THROWS_AS(bus.add(0x0, 0x10000, std::make_shared<Recorder>()), vmm::Error);
    CHECK_THROWS_AS(bus.add(0x2000, 0, std::make_shared<Recorder>()), vmm::Error);
    CHECK_THROWS_AS(bus.add(~0ull - 1, 4, std::make_shared<Recorder>()), vmm::Error);
    CHECK_NOTHROW(bus.add(0x1100, 1, std::make_shared<Recorder>()));
    CHECK_NOTHROW(bus.add(0x0fff, 1, std::make_shared<Recorder>()));
}
