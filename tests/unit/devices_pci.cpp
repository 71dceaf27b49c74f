// PCI configuration space, bus (0xCF8/0xCFC, ECAM, BAR dispatch) and MSI-X.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "devices/pci.h"
#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

using namespace vmm::devices::pci;

namespace {

const ConfigSpace::Ids kIds{.vendor = 0x1af4,
                            .device = 0x1041,
                            .revision = 1,
                            .class_code = 0x020000,
                            .subsystem_vendor = 0x1af4,
                            .subsystem = 0x0001};

uint32_t cfg_read(const ConfigSpace& c, uint16_t off, std::size_t size = 4) {
    uint8_t b[4] = {};
    c.read(off, std::span<uint8_t>(b, size));
    return static_cast<uint32_t>(vmm::load_le(std::span<const uint8_t>(b, size)));
}

void cfg_write(ConfigSpace& c, uint16_t off, uint32_t v, std::size_t size = 4) {
    uint8_t b[4];
    vmm::store_le(std::span<uint8_t>(b, 4), v);
    c.write(off, std::span<const uint8_t>(b, size));
}

// A device with a ConfigSpace and BARs that record their accesses.
class FakeDev : public PciDevice {
public:
    explicit FakeDev(std::string n = "fake") : cfg(kIds), name_(std::move(n)) {}
    std::string name() const override { return name_; }
    void config_read(uint16_t offset, std::span<uint8_t> data) override { cfg.read(offset, data); }
    void config_write(uint16_t offset, std::span<const uint8_t> data) override { cfg.write(offset, data); }
    std::vector<BarRegion> decoded_bars() const override { return cfg.decoded_bars(); }
    void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) override {
        reads.push_back({bar, offset});
        vmm::store_le(data, 0xa0 + bar + offset);
    }
    void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) override {
        writes.push_back({bar, offset, vmm::load_le(data)});
    }
    void bars_changed(const std::vector<BarRegion>& now) override { changes.push_back(now); }

    struct Access {
        unsigned bar;
        uint64_t offset;
        uint64_t value = 0;
    };
    ConfigSpace cfg;
    std::vector<Access> reads, writes;
    std::vector<std::vector<BarRegion>> changes;

private:
    std::string name_;
};

struct FakeVector : MsiVector {
    std::vector<MsiMessage>* updates;
    int* triggers;
    FakeVector(std::vector<MsiMessage>* u, int* t) : updates(u), triggers(t) {}
    void update(const MsiMessage& m) override { updates->push_back(m); }
    void trigger() override { ++*triggers; }
};

// Records per-vector update()/trigger() calls.
struct VectorLog {
    std::vector<std::vector<MsiMessage>> updates;
    std::vector<int> triggers;
    explicit VectorLog(std::size_t n) : updates(n), triggers(n, 0) {}
    MsiVectorFactory factory() {
        auto next = std::make_shared<std::size_t>(0);
        return [this, next] {
            const std::size_t i = (*next)++;
            return std::make_unique<FakeVector>(&updates[i], &triggers[i]);
        };
    }
};

}  // namespace

TEST_CASE("pci config: header ids and read-only fields", "[devices][pci]") {
    ConfigSpace c(kIds);
    CHECK(cfg_read(c, 0) == 0x10411af4);
    CHECK(cfg_read(c, 8) == 0x02000001);  // class 02 00 00, revision 1
    CHECK(cfg_read(c, 0x0e, 1) == 0);
    CHECK(cfg_read(c, 0x2c) == 0x00011af4);
    CHECK(cfg_read(c, 0x06, 2) == 0);  // no capabilities yet
    // Writes to read-only fields are dropped.
    cfg_write(c, 0, 0xffffffff);
    cfg_write(c, 8, 0xffffffff);
    cfg_write(c, 0x2c, 0xffffffff);
    cfg_write(c, 0x34, 0xff, 1);
    cfg_write(c, 0x3d, 0xff, 1);
    CHECK(cfg_read(c, 0) == 0x10411af4);
    CHECK(cfg_read(c, 8) == 0x02000001);
    CHECK(cfg_read(c, 0x2c) == 0x00011af4);
    CHECK(cfg_read(c, 0x34, 1) == 0);
    // COMMAND: only IO, MEM, BUS_MASTER and INTX_DISABLE stick.
    cfg_write(c, 4, 0xffff, 2);
    CHECK(cfg_read(c, 4, 2) == 0x0407);
    CHECK(c.command() == 0x0407);
    // STATUS is read-only.
    cfg_write(c, 6, 0xffff, 2);
    CHECK(cfg_read(c, 6, 2) == 0);
    // Interrupt line is scratch, pin read-only.
    c.set_interrupt_pin(1, 11);
    cfg_write(c, 0x3c, 0xffff, 2);
    CHECK(cfg_read(c, 0x3c, 1) == 0xff);
    CHECK(cfg_read(c, 0x3d, 1) == 1);
    // Extended space reads 0, writes ignored; byte/word lanes inside a dword.
    CHECK(cfg_read(c, 0x100) == 0);
    CHECK(cfg_read(c, 0xffc) == 0);
    cfg_write(c, 0x100, 0x12345678);
    CHECK(cfg_read(c, 0x100) == 0);
    CHECK(cfg_read(c, 1, 1) == 0x1a);
    CHECK(cfg_read(c, 2, 2) == 0x1041);
    CHECK(cfg_read(c, 3, 1) == 0x10);
    c.set_status_bit(kStatusInterrupt, true);
    CHECK(cfg_read(c, 6, 2) == kStatusInterrupt);
    c.set_status_bit(kStatusInterrupt, false);
    CHECK(cfg_read(c, 6, 2) == 0);
}

TEST_CASE("pci config: BAR sizing for mem32, mem64, io and prefetchable", "[devices][pci]") {
    ConfigSpace c(kIds);
    c.add_bar(0, BarKind::Mem32, 0x1000, 0xc0001000);
    c.add_bar(1, BarKind::Io, 0x20, 0xc040);
    c.add_bar(2, BarKind::Mem64, 0x4000, 0x1000000000, true);
    c.add_bar(4, BarKind::Mem32, 0x100, 0xc0000100, true);
    CHECK(cfg_read(c, 0x10) == 0xc0001000);
    CHECK(cfg_read(c, 0x14) == 0xc041);
    CHECK(cfg_read(c, 0x18) == 0x0000000c);  // 64-bit, prefetchable, low address bits 0
    CHECK(cfg_read(c, 0x1c) == 0x10);
    CHECK(cfg_read(c, 0x20) == 0xc0000108);
    CHECK(cfg_read(c, 0x24) == 0);

    for (uint16_t off = 0x10; off < 0x28; off += 4) cfg_write(c, off, 0xffffffff);
    CHECK(cfg_read(c, 0x10) == 0xfffff000);
    CHECK(cfg_read(c, 0x14) == 0xffffffe1);
    CHECK(cfg_read(c, 0x18) == 0xffffc00c);
    CHECK(cfg_read(c, 0x1c) == 0xffffffff);
    CHECK(cfg_read(c, 0x20) == 0xffffff08);
    CHECK(cfg_read(c, 0x24) == 0);  // absent BAR stays 0

    // Addresses are aligned down to the BAR size.
    cfg_write(c, 0x10, 0xc0002abc);
    CHECK(cfg_read(c, 0x10) == 0xc0002000);
    cfg_write(c, 0x14, 0xd00f);
    CHECK(cfg_read(c, 0x14) == 0xd001);
    // Byte writes into a BAR go through the same mask.
    cfg_write(c, 0x11, 0x35, 1);
    CHECK(cfg_read(c, 0x10) == 0xc0003000);

    CHECK_THROWS_AS(c.add_bar(5, BarKind::Mem64, 0x1000, 0), vmm::Error);  // needs two slots
    CHECK_THROWS_AS(c.add_bar(3, BarKind::Mem32, 0x1000, 0), vmm::Error);  // upper half of BAR 2
    CHECK_THROWS_AS(c.add_bar(5, BarKind::Mem32, 0x1800, 0), vmm::Error);  // not a power of two
    CHECK_THROWS_AS(c.add_bar(5, BarKind::Mem32, 0x1000, 0x800), vmm::Error);  // misaligned
    CHECK_THROWS_AS(c.add_bar(5, BarKind::Mem32, 8, 0), vmm::Error);
    CHECK_THROWS_AS(c.add_bar(6, BarKind::Mem32, 0x1000, 0), vmm::Error);
}

TEST_CASE("pci config: BAR decoding follows COMMAND and the sizing pattern", "[devices][pci]") {
    ConfigSpace c(kIds);
    c.add_bar(0, BarKind::Mem32, 0x1000, 0xc0001000);
    c.add_bar(1, BarKind::Io, 0x20, 0xc040);
    c.add_bar(2, BarKind::Mem64, 0x4000, 0x1000000000);
    CHECK(c.decoded_bars().empty());
    c.set_command(kCommandMem);
    auto d = c.decoded_bars();
    REQUIRE(d.size() == 2);
    CHECK(d[0] == BarRegion{0, BarKind::Mem32, 0xc0001000, 0x1000});
    CHECK(d[1] == BarRegion{2, BarKind::Mem64, 0x1000000000, 0x4000});
    cfg_write(c, 4, kCommandIo, 2);
    d = c.decoded_bars();
    REQUIRE(d.size() == 1);
    CHECK(d[0] == BarRegion{1, BarKind::Io, 0xc040, 0x20});
    cfg_write(c, 4, kCommandIo | kCommandMem, 2);
    CHECK(c.decoded_bars().size() == 3);

    // Sizing (all ones) and address 0 are not decoded.
    cfg_write(c, 0x10, 0xffffffff);
    cfg_write(c, 0x14, 0xffffffff);
    cfg_write(c, 0x1c, 0xffffffff);
    CHECK(c.decoded_bars().empty());
    cfg_write(c, 0x1c, 0);
    d = c.decoded_bars();
    CHECK(d.empty());  // BAR 2 is back at address 0: not decoded
    cfg_write(c, 0x18, 0x80000000);
    cfg_write(c, 0x10, 0);
    cfg_write(c, 0x14, 0xfff0);  // ends exactly at 64 KiB: fine
    d = c.decoded_bars();
    REQUIRE(d.size() == 2);
    CHECK(d[0] == BarRegion{1, BarKind::Io, 0xffe0, 0x20});  // 0xfff0 aligned down
    CHECK(d[1] == BarRegion{2, BarKind::Mem64, 0x80000000, 0x4000});
    cfg_write(c, 0x14, 0x10000);  // beyond the 16-bit port space
    CHECK(c.decoded_bars().size() == 1);
}

TEST_CASE("pci config: expansion ROM BAR sizing and decoding", "[devices][pci]") {
    ConfigSpace none(kIds);
    cfg_write(none, kCfgRomAddress, 0xfffff800);
    CHECK(cfg_read(none, kCfgRomAddress) == 0);  // no ROM: reads 0, sizing included

    ConfigSpace c(kIds);
    c.add_rom(0x40000);
    CHECK_THROWS_AS(c.add_rom(0x40000), vmm::Error);
    CHECK_THROWS_AS(ConfigSpace(kIds).add_rom(0x400), vmm::Error);     // below 2 KiB
    CHECK_THROWS_AS(ConfigSpace(kIds).add_rom(0x3000), vmm::Error);    // not a power of two
    CHECK_THROWS_AS(ConfigSpace(kIds).add_rom(32u << 20), vmm::Error);  // above 16 MiB
    CHECK(cfg_read(c, kCfgRomAddress) == 0);
    cfg_write(c, kCfgRomAddress, 0xfffff800);  // SeaBIOS's sizing write (enable clear)
    CHECK(cfg_read(c, kCfgRomAddress) == 0xfffc0000);
    c.set_command(kCommandMem);
    CHECK(c.decoded_bars().empty());  // disabled
    cfg_write(c, kCfgRomAddress, 0xffffffff);
    CHECK(c.decoded_bars().empty());  // the sizing pattern, even with enable set
    cfg_write(c, kCfgRomAddress, 0xc0040000 | kRomEnable);
    auto d = c.decoded_bars();
    REQUIRE(d.size() == 1);
    CHECK(d[0] == BarRegion{kRomBar, BarKind::Mem32, 0xc0040000, 0x40000});
    cfg_write(c, kCfgRomAddress, 0xc0050001);  // misaligned: the low address bits are read-only
    CHECK(cfg_read(c, kCfgRomAddress) == 0xc0040001);
    c.set_command(0);
    CHECK(c.decoded_bars().empty());  // COMMAND.MEM gates it too
    c.set_command(kCommandMem);
    cfg_write(c, kCfgRomAddress, 0xc0040000);
    CHECK(c.decoded_bars().empty());  // enable cleared again
}

TEST_CASE("pci config: capability chain", "[devices][pci]") {
    ConfigSpace c(kIds);
    const uint8_t body1[] = {1, 2, 3};
    const uint8_t body2[] = {0xaa, 0xbb, 0xcc, 0xdd, 0xee};
    const uint8_t mask2[] = {0x00, 0xff, 0x0f, 0x00, 0x00};
    const uint8_t a = c.add_capability(kCapIdVendor, body1);
    const uint8_t b = c.add_capability(kCapIdMsix, body2, mask2);
    CHECK(a == 0x40);
    CHECK(b == 0x48);  // dword aligned after 0x40 + 5 bytes
    CHECK((cfg_read(c, 6, 2) & kStatusCapList) != 0);

    // Walk the list the way an OS does.
    std::vector<std::pair<uint8_t, uint8_t>> found;  // (offset, id)
    uint8_t p = static_cast<uint8_t>(cfg_read(c, 0x34, 1));
    for (int guard = 0; p != 0 && guard < 48; ++guard) {
        found.push_back({p, static_cast<uint8_t>(cfg_read(c, p, 1))});
        p = static_cast<uint8_t>(cfg_read(c, p + 1, 1));
    }
    REQUIRE(found.size() == 2);
    CHECK(found[0] == std::pair<uint8_t, uint8_t>{a, kCapIdVendor});
    CHECK(found[1] == std::pair<uint8_t, uint8_t>{b, kCapIdMsix});
    CHECK(cfg_read(c, a + 2) == 0x00030201);  // body, then padding

    // Only the masked body bits are writable; id/next are not.
    cfg_write(c, b, 0xffffffff);
    CHECK(cfg_read(c, b) == 0xffaa0011);
    cfg_write(c, b, 0x00000000);
    CHECK(cfg_read(c, b) == 0x00aa0011);
    cfg_write(c, b + 4, 0xffffffff);
    CHECK(cfg_read(c, b + 4) == 0x00eeddcf);
    cfg_write(c, a, 0);
    CHECK(cfg_read(c, a, 2) == 0x4809);

    const uint8_t big[200] = {};
    CHECK_THROWS_AS(c.add_capability(0x10, big), vmm::Error);
    CHECK_THROWS_AS(c.add_capability(0x10, body1, mask2), vmm::Error);  // mask size mismatch
}

namespace {

struct BusFixture {
    PciBus bus;
    std::shared_ptr<FakeDev> dev = std::make_shared<FakeDev>();
    std::shared_ptr<vmm::BusDevice> ports = bus.io_port_device();
    BusFixture() {
        dev->cfg.add_bar(0, BarKind::Mem32, 0x1000, 0xc0001000);
        dev->cfg.add_bar(1, BarKind::Io, 0x20, 0xc040);
        bus.add(0, make_host_bridge());
        bus.add(3, dev);
    }
    void out32(uint32_t v) {
        uint8_t b[4];
        vmm::store_le(std::span<uint8_t>(b, 4), v);
        ports->write(0, std::span<const uint8_t>(b, 4));
    }
    uint32_t in(uint64_t port, std::size_t size) {
        uint8_t b[4] = {};
        ports->read(port - 0xcf8, std::span<uint8_t>(b, size));
        return static_cast<uint32_t>(vmm::load_le(std::span<const uint8_t>(b, size)));
    }
    void out(uint64_t port, uint32_t v, std::size_t size) {
        uint8_t b[4];
        vmm::store_le(std::span<uint8_t>(b, 4), v);
        ports->write(port - 0xcf8, std::span<const uint8_t>(b, size));
    }
    static uint32_t addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg) {
        return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | reg;
    }
};

}  // namespace

TEST_CASE("pci bus: 0xCF8/0xCFC accesses", "[devices][pci]") {
    BusFixture f;
    f.out32(BusFixture::addr(0, 0, 0, 0));
    CHECK(f.in(0xcf8, 4) == BusFixture::addr(0, 0, 0, 0));
    CHECK(f.in(0xcfc, 4) == 0x29c08086);
    CHECK(f.in(0xcfc, 2) == 0x8086);
    CHECK(f.in(0xcfe, 2) == 0x29c0);
    CHECK(f.in(0xcfd, 1) == 0x80);
    CHECK(f.in(0xcff, 1) == 0x29);
    f.out32(BusFixture::addr(0, 0, 0, 8));
    CHECK(f.in(0xcfc, 4) == 0x06000000);
    f.out32(BusFixture::addr(0, 0, 0, 0x2c));
    CHECK(f.in(0xcfc, 4) == 0x11001af4);

    f.out32(BusFixture::addr(0, 3, 0, 0));
    CHECK(f.in(0xcfc, 4) == 0x10411af4);
    // Word and byte writes to COMMAND through the data window.
    f.out32(BusFixture::addr(0, 3, 0, 4));
    f.out(0xcfc, kCommandMem, 2);
    CHECK(f.dev->cfg.command() == kCommandMem);
    f.out(0xcfc, kCommandIo | kCommandMem, 1);
    CHECK(f.dev->cfg.command() == (kCommandIo | kCommandMem));
    f.out32(BusFixture::addr(0, 3, 0, 0x3c));
    f.out(0xcfc, 0x0b, 1);
    CHECK(f.in(0xcfc, 1) == 0x0b);

    // Enable bit clear: reads all ones, writes ignored.
    f.out32(BusFixture::addr(0, 3, 0, 4) & 0x7fffffff);
    CHECK(f.in(0xcfc, 4) == 0xffffffff);
    f.out(0xcfc, 0, 2);
    CHECK(f.dev->cfg.command() == (kCommandIo | kCommandMem));
    // CONFIG_ADDRESS takes dword accesses only.
    f.out(0xcf8, 0x12, 1);
    CHECK(f.in(0xcf8, 4) == (BusFixture::addr(0, 3, 0, 4) & 0x7fffffff));
    CHECK(f.in(0xcf8, 2) == 0xffff);

    // Unpopulated slot, other functions and buses read all ones.
    f.out32(BusFixture::addr(0, 4, 0, 0));
    CHECK(f.in(0xcfc, 4) == 0xffffffff);
    f.out32(BusFixture::addr(0, 3, 1, 0));
    CHECK(f.in(0xcfc, 4) == 0xffffffff);
    f.out32(BusFixture::addr(1, 3, 0, 0));
    CHECK(f.in(0xcfc, 4) == 0xffffffff);
    f.out32(BusFixture::addr(1, 3, 0, 4));
    f.out(0xcfc, 0, 2);
    f.out32(BusFixture::addr(0, 3, 1, 4));
    f.out(0xcfc, 0, 2);
    CHECK(f.dev->cfg.command() == (kCommandIo | kCommandMem));
}

TEST_CASE("pci bus: 0xCF9 byte accesses go to the reset register", "[devices][pci]") {
    struct Cf9 : vmm::BusDevice {
        std::vector<uint8_t> written;
        void read(uint64_t, std::span<uint8_t> d) override { d[0] = 0x42; }
        void write(uint64_t off, std::span<const uint8_t> d) override {
            CHECK(off == 0);
            written.push_back(d[0]);
        }
        std::string name() const override { return "cf9"; }
    };
    auto cf9 = std::make_shared<Cf9>();
    PciBus bus;
    auto ports = bus.io_port_device(cf9);
    uint8_t b = 0x06;
    ports->write(1, std::span<const uint8_t>(&b, 1));
    REQUIRE(cf9->written.size() == 1);
    CHECK(cf9->written[0] == 0x06);
    ports->read(1, std::span<uint8_t>(&b, 1));
    CHECK(b == 0x42);
    // A dword CONFIG_ADDRESS write does not reach it.
    const uint8_t a[4] = {0, 0, 0, 0x80};
    ports->write(0, a);
    CHECK(cf9->written.size() == 1);
}

TEST_CASE("pci bus: ECAM offsets", "[devices][pci]") {
    BusFixture f;
    auto ecam = f.bus.ecam_device();
    auto rd = [&](uint64_t off, std::size_t size) {
        uint8_t b[4] = {};
        ecam->read(off, std::span<uint8_t>(b, size));
        return static_cast<uint32_t>(vmm::load_le(std::span<const uint8_t>(b, size)));
    };
    CHECK(rd(0, 4) == 0x29c08086);
    CHECK(rd(3 << 15, 4) == 0x10411af4);
    CHECK(rd((3 << 15) | 2, 2) == 0x1041);
    CHECK(rd((3 << 15) | 0x0b, 1) == 0x02);
    CHECK(rd((3 << 15) | 0x100, 4) == 0);           // extended space of a present device
    CHECK(rd((3 << 15) | (1 << 12), 4) == 0xffffffff);  // function 1
    CHECK(rd(5 << 15, 4) == 0xffffffff);             // empty slot
    CHECK(rd((3 << 15) | 3, 2) == 0xffff);           // crosses a dword: refused
    const uint8_t cmd[2] = {kCommandMem, 0};
    ecam->write((3 << 15) | 4, cmd);
    CHECK(f.dev->cfg.command() == kCommandMem);
    REQUIRE(f.dev->changes.size() == 1);
    CHECK(f.dev->changes[0] == std::vector<BarRegion>{{0, BarKind::Mem32, 0xc0001000, 0x1000}});
}

TEST_CASE("pci bus: BAR moves reach bars_changed and the dispatch windows", "[devices][pci]") {
    BusFixture f;
    auto mmio = f.bus.mmio_device(0xc0000000);
    auto pio = f.bus.pio_device(0xc000);
    auto rd = [](vmm::BusDevice& d, uint64_t off, std::size_t size) {
        uint8_t b[8] = {};
        d.read(off, std::span<uint8_t>(b, size));
        return vmm::load_le(std::span<const uint8_t>(b, size));
    };
    // Decoding off: nothing claimed.
    CHECK(rd(*mmio, 0x1000, 4) == 0xffffffff);
    CHECK(f.dev->reads.empty());

    f.out32(BusFixture::addr(0, 3, 0, 4));
    f.out(0xcfc, kCommandMem | kCommandIo, 2);
    REQUIRE(f.dev->changes.size() == 1);
    CHECK(f.dev->changes[0].size() == 2);
    CHECK(rd(*mmio, 0x1010, 4) == 0xa0 + 0x10);
    CHECK(rd(*pio, 0x44, 2) == 0xa1 + 4);
    CHECK(rd(*mmio, 0x0ffc, 4) == 0xffffffff);  // just below
    CHECK(rd(*mmio, 0x1ffe, 4) == 0xffffffff);  // straddles the end
    CHECK(rd(*mmio, 0x1ff8, 8) == 0xa0 + 0xff8);

    // A write that does not change the decode does not notify.
    f.out(0xcfc, kCommandMem | kCommandIo, 2);
    CHECK(f.dev->changes.size() == 1);

    // Move BAR 0 to 0xc0100000.
    f.out32(BusFixture::addr(0, 3, 0, 0x10));
    f.out(0xcfc, 0xc0100000, 4);
    REQUIRE(f.dev->changes.size() == 2);
    CHECK(f.dev->changes[1] == std::vector<BarRegion>{{0, BarKind::Mem32, 0xc0100000, 0x1000},
                                                       {1, BarKind::Io, 0xc040, 0x20}});
    CHECK(rd(*mmio, 0x1010, 4) == 0xffffffff);  // old address unclaimed
    const std::size_t nreads = f.dev->reads.size();
    CHECK(rd(*mmio, 0x100008, 4) == 0xa0 + 8);
    CHECK(f.dev->reads.size() == nreads + 1);
    const uint8_t v[4] = {1, 2, 3, 4};
    mmio->write(0x100004, v);
    REQUIRE(f.dev->writes.size() == 1);
    CHECK(f.dev->writes[0].bar == 0);
    CHECK(f.dev->writes[0].offset == 4);
    CHECK(f.dev->writes[0].value == 0x04030201);
    mmio->write(0x1004, v);  // old address: ignored
    CHECK(f.dev->writes.size() == 1);

    // Sizing the BAR (decode on) drops it, restoring brings it back.
    f.out(0xcfc, 0xffffffff, 4);
    CHECK(f.dev->changes.back().size() == 1);
    CHECK(rd(*mmio, 0x100008, 4) == 0xffffffff);
    f.out(0xcfc, 0xc0100000, 4);
    CHECK(f.dev->changes.back().size() == 2);

    // MEM off: the MMIO BAR disappears, the I/O BAR stays.
    f.out32(BusFixture::addr(0, 3, 0, 4));
    f.out(0xcfc, kCommandIo, 2);
    CHECK(f.dev->changes.back() == std::vector<BarRegion>{{1, BarKind::Io, 0xc040, 0x20}});
    CHECK(rd(*mmio, 0x100008, 4) == 0xffffffff);
    CHECK(rd(*pio, 0x40, 1) == 0xa1);
}

TEST_CASE("pci bus: slots", "[devices][pci]") {
    PciBus bus;
    bus.add(0, make_host_bridge());
    CHECK(bus.free_slot() == 1);
    bus.add(1, std::make_shared<FakeDev>());
    CHECK(bus.free_slot() == 2);
    CHECK_THROWS_AS(bus.add(1, std::make_shared<FakeDev>()), vmm::Error);
    CHECK_THROWS_AS(bus.add(32, std::make_shared<FakeDev>()), vmm::Error);
    CHECK_THROWS_AS(bus.add(5, nullptr), vmm::Error);
    for (unsigned s = 2; s < 32; ++s) bus.add(s, std::make_shared<FakeDev>());
    CHECK_THROWS_AS(bus.free_slot(), vmm::Error);
    // Bad widths and offsets read all ones.
    uint8_t b[8];
    bus.config_read(0, 1, 0, 0, std::span<uint8_t>(b, 8));
    CHECK(vmm::load_le(std::span<const uint8_t>(b, 8)) == ~uint64_t{0});
    bus.config_read(0, 1, 0, 4096, std::span<uint8_t>(b, 4));
    CHECK(vmm::load_le(std::span<const uint8_t>(b, 4)) == 0xffffffff);
    bus.config_read(0, 1, 0, 0, std::span<uint8_t>(b, 3));
    CHECK(vmm::load_le(std::span<const uint8_t>(b, 3)) == 0xffffff);
}

TEST_CASE("pci bus: a device added with decoding on is mapped at once", "[devices][pci]") {
    PciBus bus;
    auto dev = std::make_shared<FakeDev>();
    dev->cfg.add_bar(0, BarKind::Mem64, 0x4000, 0x1000000000);
    dev->cfg.set_command(kCommandMem);
    bus.add(1, dev);
    REQUIRE(dev->changes.size() == 1);
    auto mmio = bus.mmio_device(0x1000000000);
    uint8_t b[4];
    mmio->read(0x10, b);
    CHECK(vmm::load_le(b) == 0xa0 + 0x10);
}

TEST_CASE("pci: BAR allocator aligns and refuses overflow", "[devices][pci]") {
    BarAllocator a(0xc0000000, 0xc0010000);
    CHECK(a.allocate(0x1000) == 0xc0000000);
    CHECK(a.allocate(0x10) == 0xc0001000);
    CHECK(a.allocate(0x4000) == 0xc0004000);  // aligned up past the 16-byte BAR
    CHECK(a.allocate(0x8000) == 0xc0008000);
    CHECK_THROWS_AS(a.allocate(0x10), vmm::Error);  // window full
    CHECK_THROWS_AS(a.allocate(0x30), vmm::Error);
    BarAllocator top(~uint64_t{0} - 0xfff, ~uint64_t{0});
    CHECK_THROWS_AS(top.allocate(0x2000), vmm::Error);  // alignment would wrap
    CHECK_THROWS_AS(BarAllocator(2, 1), vmm::Error);
}

namespace {

void tw(MsixTable& t, uint64_t off, uint64_t v, std::size_t size = 4) {
    uint8_t b[8];
    vmm::store_le(std::span<uint8_t>(b, 8), v);
    t.table_write(off, std::span<const uint8_t>(b, size));
}
uint64_t tr(const MsixTable& t, uint64_t off, std::size_t size = 4) {
    uint8_t b[8];
    t.table_read(off, std::span<uint8_t>(b, size));
    return vmm::load_le(std::span<const uint8_t>(b, size));
}
uint64_t pba(const MsixTable& t, uint64_t off, std::size_t size = 8) {
    uint8_t b[8];
    t.pba_read(off, std::span<uint8_t>(b, size));
    return vmm::load_le(std::span<const uint8_t>(b, size));
}

}  // namespace

TEST_CASE("msix: capability body and write mask", "[devices][pci][msix]") {
    VectorLog log(3);
    MsixTable t(3, log.factory());
    CHECK(t.size() == 3);
    CHECK(t.table_bytes() == 48);
    CHECK(t.pba_bytes() == 8);
    const auto body = t.capability_body(2, 0x2000, 0x3000);
    REQUIRE(body.size() == 10);
    CHECK(vmm::load_le(std::span<const uint8_t>(body).subspan(0, 2)) == 2);
    CHECK(vmm::load_le(std::span<const uint8_t>(body).subspan(2, 4)) == 0x2002);
    CHECK(vmm::load_le(std::span<const uint8_t>(body).subspan(6, 4)) == 0x3002);
    const auto mask = t.capability_write_mask();
    CHECK(mask == std::vector<uint8_t>{0, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK_THROWS_AS(t.capability_body(6, 0, 0), vmm::Error);
    CHECK_THROWS_AS(t.capability_body(0, 4, 0), vmm::Error);
    CHECK_THROWS_AS(MsixTable(0, log.factory()), vmm::Error);
    CHECK_THROWS_AS(MsixTable(2049, log.factory()), vmm::Error);

    // Through a ConfigSpace: enable and function mask are the only writable bits.
    ConfigSpace c(kIds);
    const uint8_t cap = c.add_capability(kCapIdMsix, body, mask);
    cfg_write(c, cap + 2, 0xffff, 2);
    CHECK(cfg_read(c, cap + 2, 2) == 0xc002);
    t.set_control_word(static_cast<uint16_t>(cfg_read(c, cap + 2, 2)));
    CHECK(t.enabled());
    CHECK(t.function_masked());
}

TEST_CASE("msix: table read back and route updates", "[devices][pci][msix]") {
    VectorLog log(4);
    MsixTable t(4, log.factory());
    CHECK(tr(t, 12) == 1);  // entries start masked
    CHECK(t.masked(0));
    tw(t, 16 + 0, 0xfee01003);  // reserved low bits dropped
    tw(t, 16 + 4, 0x1);
    tw(t, 16 + 8, 0x4041);
    CHECK(tr(t, 16) == 0xfee01000);
    CHECK(tr(t, 20) == 1);
    CHECK(tr(t, 16, 8) == 0x1fee01000);
    CHECK(tr(t, 24, 8) == 0x100004041);  // data, then vector control (masked)
    tw(t, 32, 0x2'fee02000ull, 8);  // one qword write: address low and high
    CHECK(tr(t, 32) == 0xfee02000);
    CHECK(tr(t, 36) == 2);
    // Masked, MSI-X disabled: nothing programmed yet.
    CHECK(log.updates[1].empty());

    t.set_control(true, false);
    CHECK(log.updates[1].empty());  // still masked
    tw(t, 16 + 12, 0);              // unmask: programmed once
    REQUIRE(log.updates[1].size() == 1);
    CHECK(log.updates[1][0] == MsiMessage{0x1fee01000, 0x4041});
    CHECK_FALSE(t.masked(1));
    tw(t, 16 + 12, 0);  // no change, no update
    CHECK(log.updates[1].size() == 1);
    tw(t, 16 + 8, 0x4042);  // data change while live
    REQUIRE(log.updates[1].size() == 2);
    CHECK(log.updates[1][1].data == 0x4042);
    t.trigger(1);
    CHECK(log.triggers[1] == 1);
    CHECK(log.triggers[0] == 0);
    CHECK(log.updates[0].empty());
}

TEST_CASE("msix: masking, pending bits and delivery", "[devices][pci][msix]") {
    VectorLog log(70);
    MsixTable t(70, log.factory());
    CHECK(t.pba_bytes() == 16);

    // Disabled: pending.
    t.trigger(0);
    t.trigger(65);
    CHECK(log.triggers[0] == 0);
    CHECK(t.pending(0));
    CHECK(t.pending(65));
    CHECK(pba(t, 0) == 1);
    CHECK(pba(t, 8) == 2);
    CHECK(pba(t, 8, 4) == 2);
    CHECK(pba(t, 12, 4) == 0);
    CHECK(pba(t, 16) == 0);  // past the PBA

    // Enabling does not deliver while entries are masked.
    t.set_control(true, false);
    CHECK(log.triggers[0] == 0);
    CHECK(t.pending(0));
    // Unmasking the entry delivers and clears the pending bit.
    tw(t, 12, 0);
    CHECK(log.triggers[0] == 1);
    CHECK_FALSE(t.pending(0));
    CHECK(pba(t, 0) == 0);
    REQUIRE(log.updates[0].size() == 1);  // route programmed before the first delivery

    // Entry mask.
    tw(t, 12, 1);
    t.trigger(0);
    CHECK(log.triggers[0] == 1);
    CHECK(t.pending(0));
    tw(t, 12, 0);
    CHECK(log.triggers[0] == 2);
    CHECK_FALSE(t.pending(0));

    // Function mask holds every vector, even unmasked ones.
    t.set_control(true, true);
    t.trigger(0);
    CHECK(log.triggers[0] == 2);
    CHECK(t.pending(0));
    tw(t, 12, 0);  // entry unmask does not bypass the function mask
    CHECK(log.triggers[0] == 2);
    t.set_control(true, false);
    CHECK(log.triggers[0] == 3);
    CHECK_FALSE(t.pending(0));

    // Disable -> pending, re-enable delivers.
    t.set_control(false, false);
    t.trigger(0);
    CHECK(t.pending(0));
    t.set_control(true, false);
    CHECK(log.triggers[0] == 4);

    // Vector 65 is still masked and pending.
    CHECK(t.pending(65));
    CHECK(log.triggers[65] == 0);
    tw(t, 65 * 16 + 12, 0, 4);
    CHECK(log.triggers[65] == 1);

    // Out of range: ignored.
    t.trigger(70);
    t.trigger(0xffff);
    CHECK_FALSE(t.pending(70));
    CHECK(t.masked(70));
}

TEST_CASE("msix: bad access sizes and offsets are ignored", "[devices][pci][msix]") {
    VectorLog log(2);
    MsixTable t(2, log.factory());
    tw(t, 0, 0xfee00000);
    tw(t, 8, 0x55);
    tw(t, 2, 0xffff, 2);      // 2-byte write
    tw(t, 8, 0xff, 1);        // 1-byte write
    tw(t, 4, 0x1234, 8);      // misaligned qword
    tw(t, 32, 0x77);          // past the table
    tw(t, 1ull << 62, 0x77);  // far past the table
    CHECK(tr(t, 0) == 0xfee00000);
    CHECK(tr(t, 4) == 0);
    CHECK(tr(t, 8) == 0x55);
    CHECK(tr(t, 0, 2) == 0);  // refused read returns 0
    CHECK(tr(t, 2, 4) == 0);
    CHECK(tr(t, 32) == 0);
    CHECK(tr(t, ~uint64_t{7}, 8) == 0);
    t.trigger(1);
    CHECK(pba(t, 0, 2) == 0);  // bad PBA width
    CHECK(pba(t, 0, 4) == 2);
    CHECK(pba(t, ~uint64_t{7}) == 0);
}

TEST_CASE("pci bus: a BAR handler may re-enter the bus", "[devices][pci]") {
    // A device whose BAR write moves its own BAR through the bus: dispatch
    // must not hold the bus lock while calling the device.
    struct Mover : FakeDev {
        PciBus* bus = nullptr;
        void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) override {
            FakeDev::bar_write(bar, offset, data);
            uint8_t addr[4];
            vmm::store_le(std::span<uint8_t>(addr, 4), 0xc0200000);
            bus->config_write(0, 2, 0, kCfgBar0, addr);
        }
    };
    PciBus bus;
    auto dev = std::make_shared<Mover>();
    dev->bus = &bus;
    dev->cfg.add_bar(0, BarKind::Mem32, 0x1000, 0xc0001000);
    dev->cfg.set_command(kCommandMem);
    bus.add(2, dev);
    auto mmio = bus.mmio_device(0xc0000000);
    const uint8_t v[4] = {};
    mmio->write(0x1000, v);
    REQUIRE(dev->changes.size() == 2);
    CHECK(dev->changes[1][0].addr == 0xc0200000);
    uint8_t b[4];
    mmio->read(0x200000, b);
    CHECK(vmm::load_le(b) == 0xa0);
}

TEST_CASE("msix: triggers from other threads race with masking safely", "[devices][pci][msix]") {
    struct CountingVector : MsiVector {
        std::atomic<int>* n;
        explicit CountingVector(std::atomic<int>* c) : n(c) {}
        void update(const MsiMessage&) override {}
        void trigger() override { ++*n; }
    };
    std::atomic<int> delivered{0};
    MsixTable t(4, [&] { return std::make_unique<CountingVector>(&delivered); });
    t.set_control(true, false);
    std::vector<std::thread> io;
    for (int k = 0; k < 2; ++k) {
        io.emplace_back([&, k] {
            for (int i = 0; i < 2000; ++i) t.trigger(static_cast<uint16_t>((i + k) % 4));
        });
    }
    for (int i = 0; i < 500; ++i) {
        tw(t, (i % 4) * 16 + 12, i % 2);
        if (i % 50 == 0) t.set_control(true, i % 100 == 0);
    }
    for (auto& th : io) th.join();
    // Unmask everything: whatever is still pending is delivered now.
    t.set_control(true, false);
    for (uint16_t v = 0; v < 4; ++v) tw(t, v * 16 + 12, 0);
    for (uint16_t v = 0; v < 4; ++v) CHECK_FALSE(t.pending(v));
    CHECK(delivered.load() >= 1);
    CHECK(delivered.load() <= 4000);
}
