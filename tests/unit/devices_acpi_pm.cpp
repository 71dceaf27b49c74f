// ACPI PM1 event/control blocks and PM timer, driven only through the PIO bus
// at 0x600.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "devices/acpi_pm.h"
#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/irq.h"

namespace {

constexpr uint64_t kBase = 0x600;
constexpr uint64_t STS = 0, EN = 2, CNT = 4, TMR = 8;
constexpr uint16_t kSlpEn = 1u << 13;
uint16_t slp_typ(unsigned t) { return uint16_t(t << 10); }

using test::FakeIrq;

struct Rig {
    int poweroffs = 0;
    std::shared_ptr<FakeIrq> sci = std::make_shared<FakeIrq>();
    vmm::Bus bus{"pio"};
    Rig() {
        bus.add(kBase, 12, std::make_shared<vmm::devices::AcpiPm>(5, [this] { ++poweroffs; }, sci));
    }
    uint64_t in(uint64_t off, size_t width) {
        uint8_t b[8] = {};
        REQUIRE(bus.read(kBase + off, std::span<uint8_t>(b, width)));
        return vmm::load_le(std::span<const uint8_t>(b, width));
    }
    void put(uint64_t off, size_t width, uint64_t v) {
        uint8_t b[8] = {};
        vmm::store_le(std::span<uint8_t>(b, width), v);
        REQUIRE(bus.write(kBase + off, std::span<const uint8_t>(b, width)));
    }
};

}  // namespace

TEST_CASE("devices: acpi_pm S5 poweroff needs SLP_EN and the S5 SLP_TYP", "[devices][acpi_pm]") {
    Rig r;
    r.put(CNT, 2, slp_typ(5));  // type without SLP_EN: nothing yet
    CHECK(r.poweroffs == 0);
    r.put(CNT, 2, slp_typ(3) | kSlpEn);  // S3 is not supported
    CHECK(r.poweroffs == 0);
    r.put(CNT, 2, slp_typ(0) | kSlpEn);
    CHECK(r.poweroffs == 0);
    r.put(CNT, 2, slp_typ(5) | kSlpEn);
    CHECK(r.poweroffs == 1);
    // A byte write of the high half (SLP_EN | SLP_TYP=5 in bits 13, 12:10).
    r.put(CNT + 1, 1, (slp_typ(5) | kSlpEn) >> 8);
    CHECK(r.poweroffs == 2);
    // A dword write at PM1_EN that reaches PM1_CNT counts too.
    r.put(EN, 4, uint64_t(slp_typ(5) | kSlpEn) << 16);
    CHECK(r.poweroffs == 3);
}

TEST_CASE("devices: acpi_pm SCI_EN reads 1 and PM1_CNT reads back", "[devices][acpi_pm]") {
    Rig r;
    CHECK(r.in(CNT, 2) == 0x0001);
    r.put(CNT, 2, 0x0000);  // cannot leave ACPI mode
    CHECK((r.in(CNT, 2) & 1) == 1);
    r.put(CNT, 2, slp_typ(5));
    CHECK(r.in(CNT, 2) == (slp_typ(5) | 1u));
    CHECK(r.in(CNT + 1, 1) == (slp_typ(5) >> 8));  // 1-byte read of offset 5
    CHECK(r.in(CNT, 1) == 0x01);
    // SLP_EN is write-only.
    r.put(CNT, 2, slp_typ(2) | kSlpEn);
    CHECK((r.in(CNT, 2) & kSlpEn) == 0);
    // Reserved bytes 6..7 read 0; a dword at 4 is PM1_CNT plus them.
    CHECK(r.in(6, 2) == 0);
    CHECK(r.in(CNT, 4) == (slp_typ(2) | 1u));
    CHECK(r.poweroffs == 0);
}

TEST_CASE("devices: acpi_pm timer advances monotonically at 3.58 MHz", "[devices][acpi_pm]") {
    Rig r;
    uint32_t prev = uint32_t(r.in(TMR, 4));
    uint32_t first = prev;
    for (int i = 0; i < 5; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        uint32_t now = uint32_t(r.in(TMR, 4));
        uint32_t delta = now - prev;  // modular: the counter wraps every ~20 min
        CHECK(delta > 0);
        CHECK(delta < 3579545u);  // less than a second between samples
        prev = now;
    }
    auto t0 = std::chrono::steady_clock::now();
    first = uint32_t(r.in(TMR, 4));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    uint32_t later = uint32_t(r.in(TMR, 4));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double expected = secs * 3579545.0;
    CHECK(double(uint32_t(later - first)) <= expected + 10);
    CHECK(double(uint32_t(later - first)) >= 20e-3 * 3579545.0 * 0.99);
    // Narrow reads work and the timer ignores writes.
    uint32_t a = uint32_t(r.in(TMR, 4));
    uint8_t top = uint8_t(r.in(TMR + 3, 1));
    uint32_t c = uint32_t(r.in(TMR, 4));
    CHECK((top == uint8_t(a >> 24) || top == uint8_t(c >> 24)));
    r.put(TMR, 4, 0);
    CHECK(uint32_t(uint32_t(r.in(TMR, 4)) - later) < 3579545u * 60);
}

TEST_CASE("devices: acpi_pm power button raises SCI only when enabled", "[devices][acpi_pm]") {
    auto sci = std::make_shared<FakeIrq>();
    auto pm = std::make_shared<vmm::devices::AcpiPm>(5, [] {}, sci);
    vmm::Bus bus{"pio"};
    bus.add(kBase, 12, pm);
    auto in16 = [&](uint64_t off) {
        uint8_t b[2] = {};
        REQUIRE(bus.read(kBase + off, b));
        return unsigned(vmm::load_le16(b, 0));
    };
    auto out16 = [&](uint64_t off, unsigned v) { REQUIRE(bus.write(kBase + off, vmm::le_bytes(2, v))); };

    pm->power_button();
    CHECK((in16(STS) & 0x100) == 0x100);  // status set even when not enabled
    CHECK(sci->calls.empty());
    out16(STS, 0x100);  // write 1 to clear
    CHECK(in16(STS) == 0);

    out16(EN, 0x100);  // PWRBTN_EN
    CHECK(in16(EN) == 0x100);
    CHECK_FALSE(sci->level);
    pm->power_button();
    CHECK(sci->level);
    out16(STS, 0x001);  // clearing another bit keeps it
    CHECK(sci->level);
    out16(STS, 0x100);
    CHECK_FALSE(sci->level);

    // A byte write to the high byte of PM1_STS clears it as well.
    pm->power_button();
    CHECK(sci->level);
    const uint8_t one = 0x01;
    REQUIRE(bus.write(kBase + 1, std::span<const uint8_t>(&one, 1)));
    CHECK_FALSE(sci->level);

    // Disabling the enable bit lowers the SCI with status still set.
    pm->power_button();
    CHECK(sci->level);
    out16(EN, 0);
    CHECK_FALSE(sci->level);
    CHECK((in16(STS) & 0x100) == 0x100);
    // set_level only on changes.
    for (size_t i = 1; i < sci->calls.size(); ++i) CHECK(sci->calls[i] != sci->calls[i - 1]);
}

TEST_CASE("devices: acpi_pm works without an SCI line", "[devices][acpi_pm]") {
    int off = 0;
    vmm::devices::AcpiPm pm(7, [&] { ++off; });
    pm.power_button();
    const uint8_t en[2] = {0x00, 0x01};
    pm.write(EN, en);  // would raise the (absent) SCI
    uint8_t sts[2] = {};
    pm.read(STS, sts);
    CHECK(sts[1] == 0x01);
    const uint8_t cnt[2] = {0x00, uint8_t((slp_typ(7) | kSlpEn) >> 8)};
    pm.write(CNT, cnt);
    CHECK(off == 1);
    // Past the end (direct call): 0xff, no crash.
    uint8_t wide[8] = {};
    pm.read(10, wide);
    CHECK(wide[2] == 0xff);
    CHECK(wide[7] == 0xff);
}
