// Unit tests: guest RAM layout and the E820 map.
#include <catch2/catch.hpp>

#include "arch/x86_64/e820.h"
#include "arch/x86_64/layout.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;

TEST_CASE("arch: ram_layout keeps small guests in one region", "[arch][layout]") {
    auto r = ram_layout(512 * MiB);
    REQUIRE(r.size() == 1);
    CHECK(r[0].gpa == 0);
    CHECK(r[0].size == 512 * MiB);

    r = ram_layout(3 * GiB);  // exactly up to the MMIO hole
    REQUIRE(r.size() == 1);
    CHECK(r[0].size == 3 * GiB);
}

TEST_CASE("arch: ram_layout splits around the MMIO hole", "[arch][layout]") {
    auto r = ram_layout(8 * GiB);
    REQUIRE(r.size() == 2);
    CHECK(r[0].gpa == 0);
    CHECK(r[0].size == kMmioHoleStart);
    CHECK(r[1].gpa == kMmioHoleEnd);
    CHECK(r[1].size == 5 * GiB);
    CHECK(r[0].size + r[1].size == 8 * GiB);
}

TEST_CASE("arch: ram_layout rejects unusable sizes", "[arch][layout]") {
    CHECK_THROWS_AS(ram_layout(0), vmm::Error);
    CHECK_THROWS_AS(ram_layout(512 * KiB), vmm::Error);
    CHECK_THROWS_AS(ram_layout(64 * MiB + 1), vmm::Error);
    CHECK_THROWS_AS(ram_layout(~uint64_t{0} & ~uint64_t{0xfff}), vmm::Error);
    CHECK_NOTHROW(ram_layout(MiB));
}

TEST_CASE("arch: human_size formats sizes for messages", "[arch][layout]") {
    CHECK(human_size(40 * MiB) == "40 MiB");
    CHECK(human_size(3 * GiB / 2) == "1.5 GiB");
    CHECK(human_size(3000) == "2.9 KiB");
    CHECK(human_size(12) == "12 bytes");
}

TEST_CASE("arch: e820 for a small guest", "[arch][e820]") {
    const auto ram = ram_layout(256 * MiB);
    const auto m = build_e820(ram);
    REQUIRE(m.size() == 5);
    CHECK(m[0].addr == 0);
    CHECK(m[0].size == 0x9fc00);
    CHECK(m[0].type == kE820Ram);
    CHECK(m[1].addr == 0x9fc00);
    CHECK(m[1].size == 0x400);
    CHECK(m[1].type == kE820Reserved);
    CHECK(m[2].addr == 0xe0000);
    CHECK(m[2].size == 0x20000);
    CHECK(m[2].type == kE820Reserved);
    CHECK(m[3].addr == 0x100000);
    CHECK(m[3].size == 256 * MiB - 0x100000);
    CHECK(m[3].type == kE820Ram);
    // The PCI ECAM is reserved so that Linux trusts the MCFG table.
    CHECK(m[4].addr == 0xe0000000);
    CHECK(m[4].size == MiB);
    CHECK(m[4].type == kE820Reserved);
    CHECK_NOTHROW(validate_e820(m));
}

TEST_CASE("arch: e820 for a guest above 4 GiB", "[arch][e820]") {
    const auto ram = ram_layout(6 * GiB);
    const auto m = build_e820(ram);
    REQUIRE(m.size() == 6);
    CHECK(m[3].addr + m[3].size == kMmioHoleStart);
    CHECK(m[4].addr == kPciEcamBase);
    CHECK(m[4].type == kE820Reserved);
    CHECK(m[5].addr == 4 * GiB);
    CHECK(m[5].size == 3 * GiB);
    CHECK(m[5].type == kE820Ram);
    // Nothing in the map claims the MMIO hole except the ECAM (reserved),
    // and nothing touches the PCI windows.
    const AddrRange w64 = pci_mmio64_window(ram);
    for (const auto& e : m) {
        const bool in_hole = e.addr < kMmioHoleEnd && e.addr + e.size > kMmioHoleStart;
        const bool ecam = e.addr == kPciEcamBase && e.size == kPciEcamSize && e.type == kE820Reserved;
        CHECK((!in_hole || ecam));
        CHECK_FALSE((e.addr < kPciMmio32End && e.addr + e.size > kPciMmio32Start));
        CHECK_FALSE((e.addr < w64.end() && e.addr + e.size > w64.start));
    }
    // Total RAM reported is total RAM minus the reserved/hole ranges below 1 MiB.
    uint64_t ram_total = 0;
    for (const auto& e : m) {
        if (e.type == kE820Ram) ram_total += e.size;
    }
    CHECK(ram_total == 6 * GiB - (0x100000 - 0x9fc00));
}

TEST_CASE("arch: e820 with exactly 1 MiB has no high RAM entry", "[arch][e820]") {
    const RamRegion r[] = {{0, MiB}};
    const auto m = build_e820(r);
    REQUIRE(m.size() == 4);
    CHECK(m[2].addr + m[2].size == MiB);
    CHECK(m[3].addr == kPciEcamBase);
}

TEST_CASE("arch: e820 rejects bad RAM regions", "[arch][e820]") {
    CHECK_THROWS_AS(build_e820({}), vmm::Error);
    const RamRegion not_zero[] = {{0x1000, 64 * MiB}};
    CHECK_THROWS_AS(build_e820(not_zero), vmm::Error);
    const RamRegion tiny[] = {{0, 512 * KiB}};
    CHECK_THROWS_AS(build_e820(tiny), vmm::Error);
    const RamRegion overlap[] = {{0, 64 * MiB}, {32 * MiB, 64 * MiB}};
    CHECK_THROWS_AS(build_e820(overlap), vmm::Error);
}

TEST_CASE("arch: validate_e820 catches unsorted, overlapping and wrapping maps", "[arch][e820]") {
    std::vector<E820Entry> ok = {{0, 0x1000, kE820Ram}, {0x1000, 0x1000, kE820Reserved}};
    CHECK_NOTHROW(validate_e820(ok));
    std::vector<E820Entry> unsorted = {{0x2000, 0x1000, kE820Ram}, {0, 0x1000, kE820Ram}};
    CHECK_THROWS_AS(validate_e820(unsorted), vmm::Error);
    std::vector<E820Entry> overlap = {{0, 0x2000, kE820Ram}, {0x1fff, 0x1000, kE820Ram}};
    CHECK_THROWS_AS(validate_e820(overlap), vmm::Error);
    std::vector<E820Entry> wrap = {{~uint64_t{0} - 0xfff, 0x2000, kE820Ram}};
    CHECK_THROWS_AS(validate_e820(wrap), vmm::Error);
    std::vector<E820Entry> empty_entry = {{0, 0, kE820Ram}};
    CHECK_THROWS_AS(validate_e820(empty_entry), vmm::Error);
    CHECK_THROWS_AS(validate_e820({}), vmm::Error);
}

TEST_CASE("arch: PCI windows stay clear of RAM and the fixed MMIO addresses", "[arch][layout]") {
    // 64-bit window: after RAM, at least 4 GiB, 1 GiB aligned, 64 GiB long.
    auto w = pci_mmio64_window(ram_layout(512 * MiB));
    CHECK(w.start == 4 * GiB);
    CHECK(w.size == 64 * GiB);
    CHECK(w.end() == 68 * GiB);
    w = pci_mmio64_window(ram_layout(8 * GiB));  // RAM ends at 9 GiB
    CHECK(w.start == 9 * GiB);
    w = pci_mmio64_window(ram_layout(8 * GiB + 4 * MiB));  // ends just above 9 GiB
    CHECK(w.start == 10 * GiB);
    CHECK(pci_mmio64_window({}).start == 4 * GiB);
    const RamRegion bad[] = {{~uint64_t{0} - 10, 100}};
    CHECK_THROWS_AS(pci_mmio64_window(bad), vmm::Error);

    // 32-bit window and ECAM inside the hole, apart from each other and the
    // IOAPIC, LAPIC and KVM pages.
    CHECK(kPciMmio32Start >= kMmioHoleStart);
    CHECK(kPciMmio32End <= kPciEcamBase);
    for (uint64_t a : {kIoapicAddr, kLapicAddr, kKvmIdentityMapAddr, kKvmTssAddr}) {
        CHECK_FALSE((a >= kPciMmio32Start && a < kPciMmio32End));
        CHECK_FALSE((a >= kPciEcamBase && a < kPciEcamBase + kPciEcamSize));
    }
    CHECK(kPciIoStart == 0xc000);
    CHECK(kPciIoEnd == 0x10000);
}

TEST_CASE("arch: PCI INTx swizzle", "[arch][layout]") {
    CHECK(pci_intx_gsi(0, 0) == 16);
    CHECK(pci_intx_gsi(1, 0) == 17);
    CHECK(pci_intx_gsi(1, 3) == 20);
    CHECK(pci_intx_gsi(7, 1) == 16);
    CHECK(pci_intx_gsi(31, 3) == 18);
    for (unsigned s = 0; s < 32; ++s) {
        for (unsigned p = 0; p < 4; ++p) {
            CHECK(pci_intx_gsi(s, p) >= 16);
            CHECK(pci_intx_gsi(s, p) <= 23);
        }
    }
}

TEST_CASE("arch: the firmware (Q35) layout keeps low RAM below the firmware's ECAM", "[arch][layout]") {
    // Below 0xB0000000 all of RAM is low; from there on low RAM ends at 2 GiB.
    CHECK(q35_low_ram_max(512 * MiB) == kQ35EcamBase);
    CHECK(q35_low_ram_max(kQ35EcamBase - MiB) == kQ35EcamBase);
    CHECK(q35_low_ram_max(kQ35EcamBase) == 2 * GiB);
    auto small = platform_layout(2 * GiB, true);
    REQUIRE(small.ram.size() == 1);
    CHECK(small.ram[0].size == 2 * GiB);
    auto big = platform_layout(3 * GiB, true);
    REQUIRE(big.ram.size() == 2);
    CHECK(big.ram[0].size == 2 * GiB);
    CHECK(big.ram[1].gpa == 4 * GiB);
    CHECK(big.ram[1].size == 1 * GiB);
    CHECK(big.ecam_base == kQ35EcamBase);
    // SeaBIOS assigns BARs top-down below the IOAPIC, above its ECAM window.
    CHECK(big.pci_mmio32.start == kQ35EcamBase + kQ35EcamSize);
    CHECK(big.pci_mmio32.end() == kIoapicAddr);
    CHECK(big.pci_mmio64.start >= 5 * GiB);
    // The KVM pages sit above the IOAPIC/LAPIC, out of every window, and
    // below the largest firmware image we accept.
    CHECK(kKvmIdentityMapAddr > kLapicAddr);
    CHECK(kKvmIdentityMapAddr + kKvmReservedSize + kFirmwareMaxSize == kMmioHoleEnd);
    // Direct boot keeps the VMM's own map.
    auto direct = platform_layout(3 * GiB, false);
    REQUIRE(direct.ram.size() == 1);
    CHECK(direct.ecam_base == kPciEcamBase);
    CHECK(direct.pci_mmio32.start == kPciMmio32Start);
    CHECK(direct.pci_mmio32.end() == kPciMmio32End);
    CHECK_THROWS_AS(ram_layout(512 * MiB, 512), vmm::Error);
}

TEST_CASE("arch: the firmware's e820 has whole RAM regions and the KVM pages reserved", "[arch][e820]") {
    auto map = firmware_e820(platform_layout(3 * GiB, true).ram);
    REQUIRE(map.size() == 3);
    CHECK(map[0].addr == 0);
    CHECK(map[0].size == 2 * GiB);
    CHECK(map[0].type == kE820Ram);
    CHECK(map[1].addr == kKvmIdentityMapAddr);
    CHECK(map[1].size == kKvmReservedSize);
    CHECK(map[1].type == kE820Reserved);
    CHECK(map[2].addr == 4 * GiB);
    CHECK(map[2].size == 1 * GiB);
    CHECK(map[2].type == kE820Ram);
    CHECK(firmware_e820(platform_layout(256 * MiB, true).ram).size() == 2);
}
