// Unit tests: Intel MP spec 1.4 tables.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <cstring>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;

namespace {

using test::rd;

uint8_t sum(const std::vector<uint8_t>& b, std::size_t off, std::size_t len) {
    REQUIRE(off + len <= b.size());
    uint8_t s = 0;
    for (std::size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + b[off + i]);
    return s;
}

struct Parsed {
    int processors = 0, buses = 0, ioapics = 0, ioints = 0, lints = 0;
    int bsps = 0;
    std::vector<uint8_t> apic_ids;
    uint8_t ioapic_id = 0;
    uint32_t ioapic_addr = 0;
    std::vector<std::pair<uint8_t, uint8_t>> irq_to_pin;
    std::vector<std::pair<uint8_t, uint8_t>> lint_types;  // (type, LINTIN#)
};

// Parses the configuration table the way an OS does: walk entries by type.
Parsed parse(const Blob& b) {
    Parsed p;
    const auto& t = b.bytes;
    const std::size_t ct = rd(t, 4, 4) - b.gpa;  // config table pointer
    const std::size_t len = rd(t, ct + 4, 2);
    const std::size_t count = rd(t, ct + 34, 2);
    std::size_t off = ct + 44;
    for (std::size_t i = 0; i < count; ++i) {
        REQUIRE(off < ct + len);
        switch (t[off]) {
        case 0:
            ++p.processors;
            p.apic_ids.push_back(t[off + 1]);
            CHECK(t[off + 2] == 0x14);
            CHECK((t[off + 3] & 1) == 1);
            if (t[off + 3] & 2) ++p.bsps;
            off += 20;
            break;
        case 1:
            ++p.buses;
            CHECK(std::memcmp(&t[off + 2], "ISA   ", 6) == 0);
            off += 8;
            break;
        case 2:
            ++p.ioapics;
            p.ioapic_id = t[off + 1];
            CHECK(t[off + 2] == 0x11);
            CHECK(t[off + 3] == 1);
            p.ioapic_addr = static_cast<uint32_t>(rd(t, off + 4, 4));
            off += 8;
            break;
        case 3:
            ++p.ioints;
            CHECK(t[off + 1] == 0);  // INT
            CHECK(rd(t, off + 2, 2) == 0);
            CHECK(t[off + 6] == p.ioapic_id);
            p.irq_to_pin.emplace_back(t[off + 5], t[off + 7]);
            off += 8;
            break;
        case 4:
            ++p.lints;
            CHECK(t[off + 6] == 0xff);
            p.lint_types.emplace_back(t[off + 1], t[off + 7]);
            off += 8;
            break;
        default:
            FAIL("unknown MP entry type " << int(t[off]));
        }
    }
    CHECK(off == ct + len);
    return p;
}

}  // namespace

TEST_CASE("arch: MP table checksums and entry counts", "[arch][mptable]") {
    for (uint32_t n : {1u, 4u, mptable_max_cpus()}) {
        INFO("ncpus " << n);
        const Blob b = build_mptable(n);
        CHECK(b.gpa == kMpTableAddr);
        CHECK(b.gpa + b.bytes.size() <= kMpTableEnd);
        const auto& t = b.bytes;

        // Floating pointer.
        CHECK(std::memcmp(t.data(), "_MP_", 4) == 0);
        CHECK(rd(t, 4, 4) == kMpTableAddr + 16);
        CHECK(t[8] == 1);
        CHECK(t[9] == 4);
        CHECK(sum(t, 0, 16) == 0);
        CHECK(t[11] == 0);  // config table present, no default config

        // Configuration table header.
        const std::size_t ct = 16;
        CHECK(std::memcmp(&t[ct], "PCMP", 4) == 0);
        const std::size_t len = rd(t, ct + 4, 2);
        CHECK(ct + len == t.size());
        CHECK(t[ct + 6] == 4);
        CHECK(sum(t, ct, len) == 0);
        CHECK(rd(t, ct + 34, 2) == n + 1 + 1 + 16 + 2);
        CHECK(rd(t, ct + 36, 4) == kLapicAddr);
        CHECK(rd(t, ct + 40, 2) == 0);

        const Parsed p = parse(b);
        CHECK(p.processors == static_cast<int>(n));
        CHECK(p.bsps == 1);
        for (uint32_t i = 0; i < n; ++i) CHECK(p.apic_ids[i] == i);
        CHECK(p.buses == 1);
        CHECK(p.ioapics == 1);
        CHECK(p.ioapic_id == n);
        CHECK(p.ioapic_addr == kIoapicAddr);
        REQUIRE(p.ioints == 16);
        for (uint8_t irq = 0; irq < 16; ++irq) {
            CHECK(p.irq_to_pin[irq] == std::make_pair(irq, irq));
        }
        REQUIRE(p.lints == 2);
        CHECK(p.lint_types[0] == std::make_pair(uint8_t{3}, uint8_t{0}));  // ExtINT on LINT0
        CHECK(p.lint_types[1] == std::make_pair(uint8_t{1}, uint8_t{1}));  // NMI on LINT1
    }
}

TEST_CASE("arch: MP table size limits", "[arch][mptable]") {
    // 16 + 44 + 20 fixed entries * 8 = 220 bytes + 20 per CPU, in the upper
    // BIOS area (64 KiB), so every supported vCPU count fits.
    CHECK(mptable_max_cpus() == 254);
    CHECK_NOTHROW(build_mptable(254));
    CHECK(build_mptable(254).bytes.size() == 220 + 254 * 20);
    CHECK_THROWS_WITH(build_mptable(255), Catch::Contains("1..254"));
    CHECK_THROWS_AS(build_mptable(0), vmm::Error);
    CHECK_THROWS_AS(build_mptable(255), vmm::Error);
    CHECK_NOTHROW(build_mptable(64));
}

TEST_CASE("arch: MP table corruption is detected by the checksum", "[arch][mptable]") {
    Blob b = build_mptable(4);
    b.bytes[16 + 44 + 1] ^= 1;  // first processor's APIC ID
    CHECK(sum(b.bytes, 16, b.bytes.size() - 16) != 0);
}
