// Q35 MCH and ICH9 LPC registers, and the movable ECAM they drive.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "devices/pci.h"
#include "devices/q35.h"
#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

using namespace vmm::devices::pci;

namespace {

constexpr unsigned kLpcSlot = 31;

// A device with one 4 KiB memory BAR whose reads return 0xa0 + offset.
class BarDev : public PciDevice {
public:
    explicit BarDev(uint64_t addr)
        : cfg_(ConfigSpace::Ids{.vendor = 0x1af4,
                                .device = 0x1041,
                                .revision = 1,
                                .class_code = 0x020000,
                                .subsystem_vendor = 0x1af4,
                                .subsystem = 1}) {
        cfg_.add_bar(0, BarKind::Mem32, 0x1000, addr);
        cfg_.set_command(kCommandMem);
    }
    std::string name() const override { return "bar_dev"; }
    void config_read(uint16_t offset, std::span<uint8_t> data) override { cfg_.read(offset, data); }
    void config_write(uint16_t offset, std::span<const uint8_t> data) override { cfg_.write(offset, data); }
    std::vector<BarRegion> decoded_bars() const override { return cfg_.decoded_bars(); }
    void bar_read(unsigned, uint64_t offset, std::span<uint8_t> data) override { vmm::store_le(data, 0xa0 + offset); }
    void bar_write(unsigned, uint64_t offset, std::span<const uint8_t> data) override {
        writes.emplace_back(offset, vmm::load_le(data));
    }
    std::vector<std::pair<uint64_t, uint64_t>> writes;

private:
    ConfigSpace cfg_;
};

struct Q35Fixture {
    std::vector<std::pair<std::optional<uint64_t>, uint64_t>> ecam_calls;
    std::vector<std::pair<uint16_t, bool>> pm_calls;
    PciBus bus;
    std::shared_ptr<Q35Mch> mch = std::make_shared<Q35Mch>(
        [this](std::optional<uint64_t> base, uint64_t size) { ecam_calls.emplace_back(base, size); });
    std::shared_ptr<Ich9Lpc> lpc =
        std::make_shared<Ich9Lpc>([this](uint16_t port, bool on) { pm_calls.emplace_back(port, on); });
    Q35Fixture() {
        bus.add(0, mch);
        bus.add(kLpcSlot, lpc);
    }
    uint32_t rd(unsigned slot, uint16_t off, std::size_t size = 4) {
        uint8_t b[4] = {};
        bus.config_read(0, slot, 0, off, std::span<uint8_t>(b, size));
        return static_cast<uint32_t>(vmm::load_le(std::span<const uint8_t>(b, size)));
    }
    void wr(unsigned slot, uint16_t off, uint32_t v, std::size_t size = 4) {
        uint8_t b[4];
        vmm::store_le(std::span<uint8_t>(b, 4), v);
        bus.config_write(0, slot, 0, off, std::span<const uint8_t>(b, size));
    }
};

uint64_t win_rd(vmm::BusDevice& d, uint64_t off, std::size_t size) {
    uint8_t b[8] = {};
    d.read(off, std::span<uint8_t>(b, size));
    return vmm::load_le(std::span<const uint8_t>(b, size));
}

void win_wr(vmm::BusDevice& d, uint64_t off, uint64_t v, std::size_t size) {
    uint8_t b[8];
    vmm::store_le(std::span<uint8_t>(b, 8), v);
    d.write(off, std::span<const uint8_t>(b, size));
}

}  // namespace

TEST_CASE("q35: ids, classes and subsystem through 0xCF8", "[devices][q35]") {
    Q35Fixture f;
    auto ports = f.bus.io_port_device();
    auto cfg = [&](unsigned slot, unsigned reg) {
        win_wr(*ports, 0, 0x80000000u | slot << 11 | reg, 4);
        return win_rd(*ports, 4, 4);
    };
    CHECK(cfg(0, 0) == 0x29c08086);
    CHECK(cfg(0, 8) == 0x06000000);
    CHECK(cfg(0, 0x2c) == 0x11001af4);
    CHECK((cfg(0, 0x0c) >> 16 & 0xff) == 0);  // header type 0
    CHECK(cfg(kLpcSlot, 0) == 0x29188086);
    CHECK(cfg(kLpcSlot, 8) == 0x06010002);
    CHECK(cfg(kLpcSlot, 0x2c) == 0x11001af4);
    CHECK(cfg(kLpcSlot, 0x10) == 0);  // no BARs
    CHECK(f.mch->name() == "q35_mch");
    CHECK(f.lpc->name() == "ich9_lpc");
    CHECK(f.mch->decoded_bars().empty());
    CHECK(f.lpc->decoded_bars().empty());

    // make_host_bridge() is the same bridge.
    PciBus other;
    other.add(0, make_host_bridge());
    uint8_t b[4];
    other.config_read(0, 0, 0, 0, b);
    CHECK(vmm::load_le(b) == 0x29c08086);
}

TEST_CASE("q35: read-only registers cannot be written", "[devices][q35]") {
    Q35Fixture f;
    for (unsigned slot : {0u, kLpcSlot}) {
        const uint32_t id = f.rd(slot, 0), cls = f.rd(slot, 8), sub = f.rd(slot, 0x2c);
        f.wr(slot, 0, 0xffffffff);
        f.wr(slot, 8, 0xffffffff);
        f.wr(slot, 0x2c, 0);
        f.wr(slot, 2, 0x1234, 2);
        CHECK(f.rd(slot, 0) == id);
        CHECK(f.rd(slot, 8) == cls);
        CHECK(f.rd(slot, 0x2c) == sub);
    }
    // Reserved PCIEXBAR bits and SMRAM's C_BASE_SEG are dropped.
    f.wr(0, Q35Mch::kPciexbar, 0x03fffff8);
    f.wr(0, Q35Mch::kPciexbar + 4, 0xfffffff0);
    CHECK(f.mch->pciexbar() == 0);
    CHECK(f.rd(0, Q35Mch::kSmram, 1) == 0x02);
    f.wr(0, Q35Mch::kSmram, 0xff, 1);
    CHECK(f.mch->smram() == 0x7a);
    f.wr(0, Q35Mch::kSmram, 0, 1);
    CHECK(f.mch->smram() == 0x02);
    CHECK(f.mch->esmramc() == 0x38);
    f.wr(0, Q35Mch::kEsmramc, 0x81, 1);
    CHECK(f.mch->esmramc() == 0xb9);
    CHECK(f.pm_calls.empty());
    CHECK(f.ecam_calls.empty());
}

TEST_CASE("q35: PCIEXBAR written by dword halves drives the callback", "[devices][q35]") {
    Q35Fixture f;
    CHECK(f.mch->ecam() == Q35Mch::Ecam{});
    // SeaBIOS' order: low 0, high, then low with the enable bit.
    f.wr(0, Q35Mch::kPciexbar, 0);
    f.wr(0, Q35Mch::kPciexbar + 4, 0);
    CHECK(f.ecam_calls.empty());
    f.wr(0, Q35Mch::kPciexbar, 0xb0000001);
    REQUIRE(f.ecam_calls.size() == 1);
    CHECK(f.ecam_calls[0].first == 0xb0000000);
    CHECK(f.ecam_calls[0].second == 256u << 20);
    CHECK(f.rd(0, Q35Mch::kPciexbar) == 0xb0000001);
    CHECK(f.mch->ecam() == Q35Mch::Ecam{0xb0000000, 256u << 20});
    // Rewriting the same value does not call again.
    f.wr(0, Q35Mch::kPciexbar, 0xb0000001);
    CHECK(f.ecam_calls.size() == 1);

    // 64 MiB (length 2) above 4 GiB: the high dword moves it at once.
    f.wr(0, Q35Mch::kPciexbar, 0xe0000005);
    REQUIRE(f.ecam_calls.size() == 2);
    CHECK(f.ecam_calls[1] == std::pair<std::optional<uint64_t>, uint64_t>{0xe0000000, 64u << 20});
    f.wr(0, Q35Mch::kPciexbar + 4, 0x3);
    REQUIRE(f.ecam_calls.size() == 3);
    CHECK(f.ecam_calls[2].first == 0x3e0000000);
    CHECK(f.mch->pciexbar() == 0x3e0000005);
    f.wr(0, Q35Mch::kPciexbar + 4, 0);

    // The base ignores address bits below the window size.
    f.wr(0, Q35Mch::kPciexbar, 0xe4000001);
    CHECK(f.ecam_calls.back().first == 0xe0000000);
    CHECK(f.ecam_calls.back().second == 256u << 20);
    f.wr(0, Q35Mch::kPciexbar, 0xe4000003);  // 128 MiB: still 0xe0000000
    CHECK(f.ecam_calls.back().second == 128u << 20);

    // Disable, by the enable bit and by the reserved length.
    const std::size_t n = f.ecam_calls.size();
    f.wr(0, Q35Mch::kPciexbar, 0xe0000000);
    REQUIRE(f.ecam_calls.size() == n + 1);
    CHECK(!f.ecam_calls.back().first);
    CHECK(f.ecam_calls.back().second == 0);
    f.wr(0, Q35Mch::kPciexbar, 0xe0000007);
    CHECK(f.ecam_calls.size() == n + 1);
    CHECK(f.mch->ecam() == Q35Mch::Ecam{});
    // A byte write to the enable bit alone turns it back on.
    f.wr(0, Q35Mch::kPciexbar, 0x00, 1);
    f.wr(0, Q35Mch::kPciexbar, 0x01, 1);
    REQUIRE(f.ecam_calls.size() == n + 2);
    CHECK(f.ecam_calls.back().first == 0xe0000000);
}

TEST_CASE("q35: PCIEXBAR preset for direct boot", "[devices][q35]") {
    Q35Fixture f;
    f.mch->preset_pciexbar(0xe0000000, 256u << 20);
    CHECK(f.ecam_calls.empty());
    CHECK(f.rd(0, Q35Mch::kPciexbar) == 0xe0000001);
    CHECK(f.mch->ecam() == Q35Mch::Ecam{0xe0000000, 256u << 20});
    // The firmware rewriting the same value is no change.
    f.wr(0, Q35Mch::kPciexbar, 0xe0000001);
    CHECK(f.ecam_calls.empty());
    f.mch->preset_pciexbar(0xb0000000, 64u << 20);
    CHECK(f.mch->pciexbar() == 0xb0000005);
    CHECK_THROWS_AS(f.mch->preset_pciexbar(0xb0000000, 32u << 20), vmm::Error);
    CHECK_THROWS_AS(f.mch->preset_pciexbar(0xb8000000, 256u << 20), vmm::Error);
    CHECK_THROWS_AS(f.mch->preset_pciexbar(uint64_t{1} << 36, 256u << 20), vmm::Error);
}

TEST_CASE("q35: ECAM routed through an MMIO window after set_ecam", "[devices][q35]") {
    Q35Fixture f;
    auto bar = std::make_shared<BarDev>(0xc0001000);
    f.bus.add(3, bar);
    auto mmio = f.bus.mmio_device(0x80000000);  // covers 0x80000000 up
    const uint64_t ecam = 0xb0000000 - 0x80000000;

    // Off by default: the ECAM range is just an unclaimed window address.
    CHECK(win_rd(*mmio, ecam, 4) == 0xffffffff);
    CHECK(win_rd(*mmio, 0x40001000, 4) == 0xa0);

    // Wire the callback the way the VMM does.
    f.wr(0, Q35Mch::kPciexbar, 0xb0000001);
    REQUIRE(f.ecam_calls.size() == 1);
    f.bus.set_ecam(f.ecam_calls[0].first, f.ecam_calls[0].second);

    CHECK(win_rd(*mmio, ecam, 4) == 0x29c08086);
    CHECK(win_rd(*mmio, ecam + 2, 2) == 0x29c0);
    CHECK(win_rd(*mmio, ecam + 1, 1) == 0x80);
    CHECK(win_rd(*mmio, ecam + (kLpcSlot << 15), 4) == 0x29188086);
    CHECK(win_rd(*mmio, ecam + (3 << 15), 4) == 0x10411af4);
    CHECK(win_rd(*mmio, ecam + (1 << 20), 4) == 0xffffffff);             // bus 1
    CHECK(win_rd(*mmio, ecam + (255 << 20) + (kLpcSlot << 15), 4) == 0xffffffff);
    CHECK(win_rd(*mmio, ecam + 3, 2) == 0xffff);                          // crosses a dword
    CHECK(win_rd(*mmio, ecam, 8) == ~uint64_t{0});                        // too wide
    // Writes through the window reach config space; bus 1 writes are dropped.
    win_wr(*mmio, ecam + (kLpcSlot << 15) + Ich9Lpc::kPmBase, 0x601, 4);
    CHECK(f.lpc->pm_base() == 0x600);
    win_wr(*mmio, ecam + (1 << 20) + (kLpcSlot << 15) + Ich9Lpc::kPmBase, 0x701, 4);
    CHECK(f.lpc->pm_base() == 0x600);
    // Outside the ECAM, BARs still decode.
    CHECK(win_rd(*mmio, 0x40001010, 4) == 0xa0 + 0x10);
    win_wr(*mmio, 0x40001004, 0x55, 4);
    REQUIRE(bar->writes.size() == 1);
    CHECK(bar->writes[0] == std::pair<uint64_t, uint64_t>{4, 0x55});
    // Just past the end of the 256 MiB window is not ECAM.
    CHECK(win_rd(*mmio, ecam + (256u << 20), 4) == 0xffffffff);
    // An I/O window never decodes ECAM.
    auto pio = f.bus.pio_device(0);
    CHECK(win_rd(*pio, 0xb0000000, 4) == 0xffffffff);

    // A BAR inside the ECAM range is shadowed by it until ECAM moves.
    f.wr(3, kCfgBar0, 0xb0000000);
    CHECK(win_rd(*mmio, ecam, 4) == 0x29c08086);
    f.wr(0, Q35Mch::kPciexbar, 0xe0000001);
    f.bus.set_ecam(f.ecam_calls.back().first, f.ecam_calls.back().second);
    CHECK(win_rd(*mmio, ecam, 4) == 0xa0);
    CHECK(win_rd(*mmio, 0x60000000, 4) == 0x29c08086);

    // Disabled: no ECAM routing at all.
    f.wr(0, Q35Mch::kPciexbar, 0);
    REQUIRE(!f.ecam_calls.back().first);
    f.bus.set_ecam(std::nullopt, 0);
    CHECK(win_rd(*mmio, 0x60000000, 4) == 0xffffffff);
    win_wr(*mmio, 0x60000000 + (kLpcSlot << 15) + Ich9Lpc::kPmBase, 0x701, 4);
    CHECK(f.lpc->pm_base() == 0x600);

    CHECK_THROWS_AS(f.bus.set_ecam(0x1000, 0), vmm::Error);
    CHECK_THROWS_AS(f.bus.set_ecam(~uint64_t{0} - 0xfff, 0x2000), vmm::Error);
}

TEST_CASE("q35: the fixed ECAM device is unaffected by set_ecam", "[devices][q35]") {
    Q35Fixture f;
    auto ecam = f.bus.ecam_device();
    f.bus.set_ecam(0xb0000000, 256u << 20);
    CHECK(win_rd(*ecam, 0, 4) == 0x29c08086);
    CHECK(win_rd(*ecam, kLpcSlot << 15, 4) == 0x29188086);
    CHECK(win_rd(*ecam, 1 << 20, 4) == 0xffffffff);
    f.bus.set_ecam(std::nullopt, 0);
    CHECK(win_rd(*ecam, 0, 4) == 0x29c08086);
}

TEST_CASE("q35: PAM registers read back", "[devices][q35]") {
    Q35Fixture f;
    for (unsigned i = 0; i < Q35Mch::kPamCount; ++i) CHECK(f.mch->pam(i) == 0);
    // SeaBIOS makes the shadow writable, then read-only.
    CHECK(f.rd(0, Q35Mch::kPam0, 1) == 0);
    f.wr(0, Q35Mch::kPam0, 0x30, 1);
    for (uint16_t i = 1; i < Q35Mch::kPamCount; ++i) f.wr(0, Q35Mch::kPam0 + i, 0x33, 1);
    CHECK(f.rd(0, Q35Mch::kPam0, 4) == 0x33333330);
    CHECK(f.rd(0, Q35Mch::kPam0 + 4, 4) == 0x00333333);
    f.wr(0, Q35Mch::kPam0 + 4, 0x00111111);
    CHECK(f.mch->pam(5) == 0x11);
    // Reserved bits: PAM0's low field and bits 7:6, 3:2 are dropped.
    f.wr(0, Q35Mch::kPam0, 0xff, 1);
    f.wr(0, Q35Mch::kPam0 + 1, 0xff, 1);
    CHECK(f.mch->pam(0) == 0x30);
    CHECK(f.mch->pam(1) == 0x33);
    CHECK(f.mch->pam(7) == 0);
    CHECK(f.rd(0, Q35Mch::kPam0 + 7, 1) == 0);  // past PAM6
}

TEST_CASE("q35: LPC PMBASE, ACPI_CNTL and the callback", "[devices][q35]") {
    Q35Fixture f;
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kPmBase) == 1);
    CHECK(f.lpc->pm_base() == 0);
    CHECK(!f.lpc->acpi_enabled());
    f.wr(kLpcSlot, Ich9Lpc::kPmBase, 0xffffffff);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kPmBase) == 0xff81);
    REQUIRE(f.pm_calls.size() == 1);
    CHECK(f.pm_calls[0] == std::pair<uint16_t, bool>{0xff80, false});
    // What SeaBIOS writes.
    f.wr(kLpcSlot, Ich9Lpc::kPmBase, 0x601);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kPmBase) == 0x601);
    f.wr(kLpcSlot, Ich9Lpc::kAcpiCntl, Ich9Lpc::kAcpiEnable, 1);
    REQUIRE(f.pm_calls.size() == 3);
    CHECK(f.pm_calls[1] == std::pair<uint16_t, bool>{0x600, false});
    CHECK(f.pm_calls[2] == std::pair<uint16_t, bool>{0x600, true});
    CHECK(f.lpc->pm_base() == 0x600);
    CHECK(f.lpc->acpi_enabled());
    // Bits 6:0 of the port and the reserved ACPI_CNTL bits are dropped.
    f.wr(kLpcSlot, Ich9Lpc::kPmBase, 0x67f, 2);
    CHECK(f.pm_calls.size() == 3);
    f.wr(kLpcSlot, Ich9Lpc::kAcpiCntl, 0xff, 1);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kAcpiCntl, 1) == 0x87);
    CHECK(f.lpc->sci_select() == 7);
    CHECK(f.pm_calls.size() == 3);  // SCI select only: no PM block change
    f.wr(kLpcSlot, Ich9Lpc::kAcpiCntl, 0x00, 1);
    REQUIRE(f.pm_calls.size() == 4);
    CHECK(f.pm_calls[3] == std::pair<uint16_t, bool>{0x600, false});
    // A byte write to the high byte moves the port.
    f.wr(kLpcSlot, Ich9Lpc::kPmBase + 1, 0xb0, 1);
    CHECK(f.lpc->pm_base() == 0xb000);
    CHECK(f.pm_calls.back() == std::pair<uint16_t, bool>{0xb000, false});
    f.wr(kLpcSlot, Ich9Lpc::kPmBase + 2, 0xffff, 2);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kPmBase) == 0xb001);
}

TEST_CASE("q35: LPC PIRQ routing, GEN_PMCON and RCBA", "[devices][q35]") {
    Q35Fixture f;
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kPirqA) == 0x80808080);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kPirqE) == 0x80808080);
    CHECK(f.rd(kLpcSlot, 0x64) == 0);
    for (unsigned i = 0; i < Ich9Lpc::kPirqCount; ++i) CHECK(f.lpc->pirq_route(i) == 0x80);
    CHECK(f.lpc->pirq_route(8) == 0x80);
    f.wr(kLpcSlot, Ich9Lpc::kPirqA, 0x0b0b0a0a);
    f.wr(kLpcSlot, Ich9Lpc::kPirqE + 3, 0xff, 1);
    CHECK(f.lpc->pirq_route(0) == 0x0a);
    CHECK(f.lpc->pirq_route(3) == 0x0b);
    CHECK(f.lpc->pirq_route(7) == 0x8f);
    CHECK(f.lpc->pirq_route(4) == 0x80);

    f.wr(kLpcSlot, Ich9Lpc::kGenPmcon1, 0x0210, 2);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kGenPmcon1, 2) == 0x0210);

    CHECK(!f.lpc->rcba());
    f.wr(kLpcSlot, Ich9Lpc::kRcba, 0xfed1c001);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kRcba) == 0xfed1c001);
    CHECK(f.lpc->rcba() == 0xfed1c000u);
    f.wr(kLpcSlot, Ich9Lpc::kRcba, 0xffffffff);
    CHECK(f.rd(kLpcSlot, Ich9Lpc::kRcba) == 0xffffc001);
    f.wr(kLpcSlot, Ich9Lpc::kRcba, 0xfed1c000);
    CHECK(!f.lpc->rcba());
    CHECK(f.pm_calls.empty());
}

TEST_CASE("q35: hostile offsets and sizes do not crash", "[devices][q35]") {
    Q35Fixture f;
    auto ecam = f.bus.ecam_device();
    std::mt19937 rng(1234);
    const std::size_t sizes[] = {0, 1, 2, 3, 4, 8};
    for (int i = 0; i < 20000; ++i) {
        const unsigned slot = (rng() & 1) ? 0 : kLpcSlot;
        const auto off = static_cast<uint16_t>(rng() % 4200);
        const std::size_t size = sizes[rng() % 6];
        uint8_t b[8];
        vmm::store_le(std::span<uint8_t>(b, 8), (uint64_t{rng()} << 32) | rng());
        if (rng() & 1) {
            f.bus.config_write(0, slot, 0, off, std::span<const uint8_t>(b, size));
            ecam->write(uint64_t{slot} << 15 | (off & 0xfff), std::span<const uint8_t>(b, size));
        } else {
            f.bus.config_read(0, slot, 0, off, std::span<uint8_t>(b, size));
        }
        // The devices themselves, called directly with any offset.
        if (size != 0) {
            f.mch->config_read(off, std::span<uint8_t>(b, size));
            f.lpc->config_write(off, std::span<const uint8_t>(b, size));
            f.mch->bar_read(0, off, std::span<uint8_t>(b, size));
            f.lpc->bar_write(0, off, std::span<const uint8_t>(b, size));
        }
    }
    // Through a window with the ECAM on, at any offset inside it.
    auto mmio = f.bus.mmio_device(0xb0000000);
    f.bus.set_ecam(0xb0000000, 256u << 20);
    for (int i = 0; i < 20000; ++i) {
        const uint64_t off = rng() % ((256u << 20) + 64);
        const std::size_t size = sizes[rng() % 6];
        uint8_t b[8] = {};
        if (rng() & 1) {
            mmio->write(off, std::span<const uint8_t>(b, size));
        } else {
            mmio->read(off, std::span<uint8_t>(b, size));
        }
    }
    // Identity survives whatever was written.
    CHECK(f.rd(0, 0) == 0x29c08086);
    CHECK(f.rd(kLpcSlot, 0) == 0x29188086);
    CHECK(f.rd(kLpcSlot, 8) == 0x06010002);
    CHECK((f.rd(kLpcSlot, Ich9Lpc::kPmBase) & 1) == 1);
    // The callbacks only ever saw valid decodes.
    for (const auto& [base, size] : f.ecam_calls) {
        if (!base) continue;
        CHECK((size == 64u << 20 || size == 128u << 20 || size == 256u << 20));
        CHECK(*base % size == 0);
        CHECK(*base < uint64_t{1} << 36);
    }
    for (const auto& [port, on] : f.pm_calls) CHECK((port & 0x7f) == 0);
    // Extended space reads 0 on both.
    CHECK(f.rd(0, 0x100) == 0);
    CHECK(f.rd(kLpcSlot, 0xffc) == 0);
}

TEST_CASE("q35: set_ecam races with window accesses safely", "[devices][q35]") {
    Q35Fixture f;
    auto mmio = f.bus.mmio_device(0xb0000000);
    std::atomic<bool> stop{false};
    std::thread mover([&] {
        for (int i = 0; !stop.load(); ++i) {
            if (i & 1) {
                f.bus.set_ecam(0xb0000000, 256u << 20);
            } else {
                f.bus.set_ecam(std::nullopt, 0);
            }
        }
    });
    int hits = 0, misses = 0;
    for (int i = 0; i < 20000; ++i) {
        const uint64_t v = win_rd(*mmio, kLpcSlot << 15, 4);
        if (v == 0x29188086) {
            ++hits;
        } else {
            CHECK(v == 0xffffffff);
            ++misses;
        }
    }
    stop = true;
    mover.join();
    CHECK(hits + misses == 20000);
}
