// Firmware debug console at 0x402, driven through the PIO bus.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "devices/debug_con.h"
#include "vmm/core/bus.h"

namespace {

struct Rig {
    std::vector<std::string> lines;
    vmm::Bus bus{"pio"};
    Rig() {
        bus.add(0x402, 1, std::make_shared<vmm::devices::DebugCon>([this](const std::string& l) { lines.push_back(l); }));
    }
    void put(const std::string& s) {
        for (char c : s) {
            uint8_t b = static_cast<uint8_t>(c);
            REQUIRE(bus.write(0x402, std::span<const uint8_t>(&b, 1)));
        }
    }
};

}  // namespace

TEST_CASE("devices: debugcon reads back 0xe9, which SeaBIOS checks before using it", "[devices][debugcon]") {
    Rig r;
    uint8_t b = 0;
    REQUIRE(r.bus.read(0x402, std::span<uint8_t>(&b, 1)));
    CHECK(b == 0xe9);
}

TEST_CASE("devices: debugcon splits lines and drops carriage returns", "[devices][debugcon]") {
    Rig r;
    r.put("SeaBIOS (version 1.16.2)\r\nNo bootable device.\n");
    r.put("partial");
    REQUIRE(r.lines.size() == 2);
    CHECK(r.lines[0] == "SeaBIOS (version 1.16.2)");
    CHECK(r.lines[1] == "No bootable device.");
    r.put("\n");
    REQUIRE(r.lines.size() == 3);
    CHECK(r.lines[2] == "partial");
}

TEST_CASE("devices: debugcon cuts a line that never ends", "[devices][debugcon]") {
    Rig r;
    r.put(std::string(vmm::devices::DebugCon::kMaxLine * 2 + 5, 'x'));
    REQUIRE(r.lines.size() == 2);
    CHECK(r.lines[0].size() == vmm::devices::DebugCon::kMaxLine);
    CHECK(r.lines[1].size() == vmm::devices::DebugCon::kMaxLine);
}
