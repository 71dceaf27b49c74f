// The virtio-pci transport against a fake device: capabilities, feature
// negotiation, queue setup, deferred activation/reset, ISR/INTx, MSI-X and
// the notify fallback, plus hostile register accesses.
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <map>

#include "test_util.h"
#include "virtio/pci_transport.h"
#include "virtq_builder.h"
#include "vmm/core/bytes.h"

namespace {

using vmm::virtio::PciTransport;
namespace pci = vmm::devices::pci;

struct FakeDevice : vmm::virtio::VirtioDevice {
    uint32_t device_type() const override { return vmm::virtio::kDeviceBlock; }
    std::string name() const override { return "fake0"; }
    std::vector<uint16_t> queue_max_sizes() const override { return {256, 128}; }
    uint64_t device_features() const override { return 1ull << 5; }
    void read_config(uint64_t offset, std::span<uint8_t> data) override {
        for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(0xa0 + offset + i);
    }
    void write_config(uint64_t offset, std::span<const uint8_t> data) override { config_writes[offset] = data[0]; }
    void activate(vmm::virtio::ActivationContext c) override {
        ++activations;
        ctx = std::move(c);
    }
    void reset() override {
        ++resets;
        ctx.queues.clear();
    }
    int activations = 0, resets = 0;
    std::map<uint64_t, uint8_t> config_writes;
    vmm::virtio::ActivationContext ctx;
};

struct FakeVector : pci::MsiVector {
    void update(const pci::MsiMessage& m) override { msg = m; }
    void trigger() override { ++*triggers; }
    pci::MsiMessage msg;
    std::shared_ptr<int> triggers = std::make_shared<int>(0);
};

struct Rig {
    test::virtq::FakeRam ram;
    std::shared_ptr<FakeDevice> dev = std::make_shared<FakeDevice>();
    std::shared_ptr<test::FakeIrq> intx = std::make_shared<test::FakeIrq>();
    std::vector<std::function<void()>> tasks;
    std::map<uint64_t, int> ioeventfds;  // addr -> fd
    std::vector<std::shared_ptr<int>> vector_triggers;
    std::shared_ptr<PciTransport> t;
    static constexpr uint64_t kBar = 0xc0000000;

    explicit Rig(bool offer_packed = true, std::shared_ptr<const std::vector<uint8_t>> rom = nullptr) {
        PciTransport::Platform p;
        p.offer_packed = offer_packed;
        p.rom = std::move(rom);
        p.mem = &ram.mem;
        p.ioeventfd = [this](int fd, uint64_t addr, bool assign) {
            if (assign) ioeventfds[addr] = fd;
            else ioeventfds.erase(addr);
        };
        p.msi = [this] {
            auto v = std::make_unique<FakeVector>();
            vector_triggers.push_back(v->triggers);
            return v;
        };
        p.intx = intx;
        p.intx_line = 17;
        p.defer = [this](std::function<void()> f) { tasks.push_back(std::move(f)); };
        p.class_code = 0x010000;  // what the registry gives virtio-blk
        t = std::make_shared<PciTransport>(dev, std::move(p), kBar);
        t->bars_changed(t->decoded_bars());
    }
    void run_tasks() {
        auto pending = std::move(tasks);
        tasks.clear();
        for (auto& f : pending) f();
    }
    uint32_t cfg(uint16_t off, size_t n = 4) {
        std::vector<uint8_t> b(n);
        t->config_read(off, b);
        return static_cast<uint32_t>(vmm::load_le(b));
    }
    void cfg_w(uint16_t off, uint32_t v, size_t n) {
        std::vector<uint8_t> b(n);
        vmm::store_le(b, v);
        t->config_write(off, b);
    }
    uint64_t bar(uint64_t off, size_t n) {
        std::vector<uint8_t> b(n);
        t->bar_read(0, off, b);
        return vmm::load_le(b);
    }
    void bar_w(uint64_t off, uint64_t v, size_t n) {
        std::vector<uint8_t> b(n);
        vmm::store_le(b, v);
        t->bar_write(0, off, b);
    }
    // Finds the vendor capability of virtio cfg_type `type`.
    uint16_t find_virtio_cap(uint8_t type) {
        uint16_t p = static_cast<uint16_t>(cfg(0x34, 1));
        for (int guard = 0; p && guard < 48; ++guard) {
            if (cfg(p, 1) == 0x09 && cfg(p + 3, 1) == type) return p;
            p = static_cast<uint16_t>(cfg(p + 1, 1));
        }
        return 0;
    }
    uint16_t find_cap(uint8_t id) {
        uint16_t p = static_cast<uint16_t>(cfg(0x34, 1));
        for (int guard = 0; p && guard < 48; ++guard) {
            if (cfg(p, 1) == id) return p;
            p = static_cast<uint16_t>(cfg(p + 1, 1));
        }
        return 0;
    }
    // Driver init up to FEATURES_OK, with queue 0 set up on a split ring.
    void negotiate(uint64_t features) {
        bar_w(0x14, 1, 1);
        bar_w(0x14, 3, 1);
        bar_w(0x08, 0, 4);
        bar_w(0x0c, static_cast<uint32_t>(features), 4);
        bar_w(0x08, 1, 4);
        bar_w(0x0c, static_cast<uint32_t>(features >> 32), 4);
        bar_w(0x14, 3 | 8, 1);
    }
    // Selects queue `q` and gives it `ring`'s size and addresses (not enabled).
    void program_queue(uint16_t q, const test::virtq::SplitRing& ring) {
        bar_w(0x16, q, 2);
        bar_w(0x18, ring.size(), 2);
        bar_w(0x20, ring.desc_addr(), 8);
        bar_w(0x28, ring.avail_addr(), 8);
        bar_w(0x30, ring.used_addr(), 8);
    }
    // Enables the selected queue and sets DRIVER_OK; activation runs.
    void enable_and_start() {
        bar_w(0x1c, 1, 2);
        bar_w(0x14, 1 | 2 | 8 | 4, 1);
        run_tasks();
    }
};

constexpr uint64_t kV1 = 1ull << 32;

}  // namespace

TEST_CASE("virtio-pci: identity, capabilities and BAR", "[virtio][pci_transport]") {
    Rig r;
    CHECK(r.cfg(0, 2) == 0x1af4);
    CHECK(r.cfg(2, 2) == 0x1042);  // 0x1040 + block
    CHECK(r.cfg(8, 1) == 1);       // revision 1: modern
    CHECK(r.cfg(8) == 0x01000001);  // the platform's class code (mass storage, SCSI)
    CHECK(r.cfg(0x2c, 2) == 0x1af4);
    CHECK(r.cfg(0x3d, 1) == 1);  // INTA#
    CHECK(r.cfg(0x3c, 1) == 17);
    for (uint8_t type = 1; type <= 5; ++type) {
        INFO("cfg_type " << int(type));
        CHECK(r.find_virtio_cap(type) != 0);
    }
    uint16_t notify = r.find_virtio_cap(2);
    CHECK(r.cfg(notify + 4, 1) == 0);                          // BAR 0
    CHECK(r.cfg(notify + 8) == PciTransport::kNotifyOffset);   // offset
    CHECK(r.cfg(notify + 16) == PciTransport::kNotifyMultiplier);
    uint16_t msix = r.find_cap(0x11);
    REQUIRE(msix != 0);
    CHECK((r.cfg(msix + 2, 2) & 0x7ff) == 2);  // 3 vectors: 2 queues + config
    // BAR 0: 64-bit memory, sized by writing all ones.
    CHECK(r.cfg(0x10) == (Rig::kBar | 0x4));
    r.cfg_w(0x10, 0xffffffff, 4);
    CHECK(r.cfg(0x10) == (~uint32_t(PciTransport::kBarSize - 1) | 0x4));
    r.cfg_w(0x10, static_cast<uint32_t>(Rig::kBar), 4);
    // Notify ioeventfds exist for both queues at the BAR's notify area.
    CHECK(r.ioeventfds.count(Rig::kBar + PciTransport::kNotifyOffset) == 1);
    CHECK(r.ioeventfds.count(Rig::kBar + PciTransport::kNotifyOffset + 4) == 1);
}

TEST_CASE("virtio-pci: expansion ROM BAR serves the image", "[virtio][pci_transport]") {
    CHECK(Rig().cfg(pci::kCfgRomAddress) == 0);  // no ROM, no ROM BAR
    // One 3000-byte legacy image for 1af4:1042: a 4 KiB ROM BAR.
    auto rom = std::make_shared<std::vector<uint8_t>>(3000, 0x5a);
    auto& b = *rom;
    b[0] = 0x55, b[1] = 0xaa, b[0x18] = 0x40, b[0x19] = 0;
    const uint8_t pcir[] = {'P', 'C', 'I', 'R', 0xf4, 0x1a, 0x42, 0x10};
    std::copy(std::begin(pcir), std::end(pcir), b.begin() + 0x40);
    b[0x40 + 0x10] = 5, b[0x40 + 0x11] = 0;  // 5 * 512 bytes: within the file
    b[0x40 + 0x14] = 0, b[0x40 + 0x15] = 0x80;
    Rig r(true, rom);
    r.cfg_w(pci::kCfgRomAddress, 0xfffff800, 4);
    CHECK(r.cfg(pci::kCfgRomAddress) == 0xfffff000);
    r.cfg_w(pci::kCfgRomAddress, 0xc0100001, 4);
    auto d = r.t->decoded_bars();
    CHECK(std::count(d.begin(), d.end(), pci::BarRegion{pci::kRomBar, pci::BarKind::Mem32, 0xc0100000, 0x1000}) == 1);
    std::vector<uint8_t> got(4);
    r.t->bar_read(pci::kRomBar, 0, got);
    CHECK(got == std::vector<uint8_t>{0x55, 0xaa, 0x5a, 0x5a});
    r.t->bar_read(pci::kRomBar, 2998, got);  // the image's last bytes, then zeros
    CHECK(got == std::vector<uint8_t>{0x5a, 0x5a, 0, 0});
    r.t->bar_read(pci::kRomBar, 0xffc, got);
    CHECK(got == std::vector<uint8_t>(4, 0));
    r.t->bar_read(pci::kRomBar, ~uint64_t{0} - 1, got);  // hostile offset: zeros, no overflow
    CHECK(got == std::vector<uint8_t>(4, 0));
    const uint8_t w[4] = {1, 2, 3, 4};
    r.t->bar_write(pci::kRomBar, 0, w);  // read-only
    r.t->bar_read(pci::kRomBar, 0, got);
    CHECK(got[0] == 0x55);
    // A file that is no ROM is refused when the device is made.
    auto junk = std::make_shared<std::vector<uint8_t>>(4096, 0);
    CHECK_THROWS_WITH(Rig(true, junk), Catch::Matchers::Contains("not a PCI expansion ROM"));
}

TEST_CASE("virtio-pci: feature negotiation requires VERSION_1 and offered bits", "[virtio][pci_transport]") {
    Rig r;
    r.bar_w(0x00, 0, 4);
    CHECK((r.bar(0x04, 4) & (1u << 5)) != 0);
    CHECK((r.bar(0x04, 4) & (1u << 29)) != 0);  // EVENT_IDX
    r.bar_w(0x00, 1, 4);
    CHECK((r.bar(0x04, 4) & 1u) != 0);  // VERSION_1 (bit 32)
    r.bar_w(0x00, 7, 4);
    CHECK(r.bar(0x04, 4) == 0);

    SECTION("without VERSION_1 FEATURES_OK does not stick") {
        r.negotiate(1ull << 5);
        CHECK((r.bar(0x14, 1) & 8) == 0);
    }
    SECTION("an unoffered bit is refused") {
        r.negotiate(kV1 | (1ull << 7));
        CHECK((r.bar(0x14, 1) & 8) == 0);
    }
    SECTION("RING_PACKED is offered unless the platform says not to") {
        r.bar_w(0x00, 1, 4);
        CHECK((r.bar(0x04, 4) & (1u << 2)) != 0);  // bit 34
        Rig split(false);
        split.bar_w(0x00, 1, 4);
        CHECK((split.bar(0x04, 4) & (1u << 2)) == 0);
        CHECK((split.bar(0x04, 4) & 1u) != 0);  // VERSION_1 still offered
        split.negotiate(kV1 | (1ull << 34));
        CHECK((split.bar(0x14, 1) & 8) == 0);  // a driver taking it anyway is refused
        split.negotiate(kV1);
        CHECK((split.bar(0x14, 1) & 8) == 8);
    }
    SECTION("accepted") {
        r.negotiate(kV1 | (1ull << 5));
        CHECK((r.bar(0x14, 1) & 8) == 8);
        // Features are frozen after FEATURES_OK.
        r.bar_w(0x08, 0, 4);
        r.bar_w(0x0c, 0, 4);
        CHECK(r.bar(0x0c, 4) == (1u << 5));
    }
}

TEST_CASE("virtio-pci: queue setup, deferred activation and reset", "[virtio][pci_transport]") {
    Rig r;
    CHECK(r.bar(0x12, 2) == 2);
    test::virtq::SplitRing ring(r.ram, 64);
    r.negotiate(kV1);
    r.bar_w(0x16, 0, 2);
    CHECK(r.bar(0x18, 2) == 256);
    r.bar_w(0x18, 64, 2);
    r.bar_w(0x20, static_cast<uint32_t>(ring.desc_addr()), 4);
    r.bar_w(0x24, 0, 4);
    r.bar_w(0x28, ring.avail_addr(), 8);
    r.bar_w(0x30, ring.used_addr(), 8);
    r.bar_w(0x1c, 1, 2);
    CHECK(r.bar(0x1c, 2) == 1);
    CHECK(r.bar(0x20, 8) == ring.desc_addr());
    // A queue that does not exist reads size 0.
    r.bar_w(0x16, 9, 2);
    CHECK(r.bar(0x18, 2) == 0);
    r.bar_w(0x18, 16, 2);  // ignored, no crash

    r.bar_w(0x14, 1 | 2 | 8 | 4, 1);
    CHECK(r.dev->activations == 0);  // not on the vCPU thread
    REQUIRE(r.tasks.size() == 1);
    r.run_tasks();
    REQUIRE(r.dev->activations == 1);
    REQUIRE(r.dev->ctx.queues.size() == 1);
    CHECK(r.dev->ctx.queues[0].index == 0);
    CHECK(r.dev->ctx.queues[0].queue.size() == 64);
    CHECK(r.dev->ctx.features == kV1);

    // Queue registers are frozen while running.
    r.bar_w(0x16, 0, 2);
    r.bar_w(0x18, 32, 2);
    CHECK(r.bar(0x18, 2) == 64);

    // Reset: status keeps reading non-zero until the main thread ran it.
    r.bar_w(0x14, 0, 1);
    CHECK(r.bar(0x14, 1) != 0);
    r.run_tasks();
    CHECK(r.dev->resets >= 1);
    CHECK(r.bar(0x14, 1) == 0);
    CHECK(r.bar(0x1c, 2) == 0);
    CHECK(r.bar(0x18, 2) == 256);
}

TEST_CASE("virtio-pci: a ring outside guest RAM ends in NEEDS_RESET, not a crash", "[virtio][pci_transport]") {
    Rig r;
    r.negotiate(kV1);
    r.bar_w(0x16, 0, 2);
    r.bar_w(0x18, 64, 2);
    r.bar_w(0x20, test::virtq::FakeRam::kHole, 8);
    r.bar_w(0x28, test::virtq::FakeRam::kHole, 8);
    r.bar_w(0x30, test::virtq::FakeRam::kHole, 8);
    r.bar_w(0x1c, 1, 2);
    r.bar_w(0x14, 1 | 2 | 8 | 4, 1);
    r.run_tasks();
    CHECK(r.dev->activations == 0);
    CHECK((r.bar(0x14, 1) & 0x40) != 0);
}

TEST_CASE("virtio-pci: INTx through ISR, MSI-X through vectors", "[virtio][pci_transport]") {
    Rig r;
    test::virtq::SplitRing ring(r.ram, 64);
    r.negotiate(kV1);
    r.program_queue(0, ring);
    r.bar_w(0x1a, 1, 2);  // queue 0 -> vector 1
    CHECK(r.bar(0x1a, 2) == 1);
    r.bar_w(0x1a, 500, 2);  // out of range reads back NO_VECTOR
    CHECK(r.bar(0x1a, 2) == 0xffff);
    r.bar_w(0x1a, 1, 2);
    r.enable_and_start();
    REQUIRE(r.dev->activations == 1);
    auto irq = r.dev->ctx.interrupt;

    // MSI-X off: ISR bit 0 and the INTx line; reading ISR clears both.
    irq->signal_queue(0);
    CHECK(r.intx->level);
    CHECK(r.bar(PciTransport::kIsrOffset, 1) == 1);
    CHECK_FALSE(r.intx->level);
    CHECK(r.bar(PciTransport::kIsrOffset, 1) == 0);
    irq->signal_config();
    CHECK(r.bar(PciTransport::kIsrOffset, 1) == 2);

    // MSI-X on, vector 1 unmasked: the vector fires, no INTx.
    uint16_t msix = r.find_cap(0x11);
    r.cfg_w(msix + 2, 0x8000, 2);
    r.bar_w(PciTransport::kMsixTableOffset + 16 + 0, 0xfee00000, 4);
    r.bar_w(PciTransport::kMsixTableOffset + 16 + 8, 0x41, 4);
    r.bar_w(PciTransport::kMsixTableOffset + 16 + 12, 0, 4);  // unmask
    REQUIRE(r.vector_triggers.size() == 3);
    irq->signal_queue(0);
    CHECK(*r.vector_triggers[1] == 1);
    CHECK_FALSE(r.intx->level);
    // Masked: pending in the PBA, delivered on unmask.
    r.bar_w(PciTransport::kMsixTableOffset + 16 + 12, 1, 4);
    irq->signal_queue(0);
    CHECK(*r.vector_triggers[1] == 1);
    CHECK((r.bar(PciTransport::kMsixPbaOffset, 8) & 2) == 2);
    r.bar_w(PciTransport::kMsixTableOffset + 16 + 12, 0, 4);
    CHECK(*r.vector_triggers[1] == 2);
}

TEST_CASE("virtio-pci: notify fallback, BAR moves and hostile accesses", "[virtio][pci_transport]") {
    Rig r;
    // A notify write that reaches the VMM (no ioeventfd) still kicks.
    r.negotiate(kV1);
    test::virtq::SplitRing ring(r.ram, 64);
    r.program_queue(1, ring);
    r.enable_and_start();
    REQUIRE(r.dev->ctx.queues.size() == 1);
    CHECK(r.dev->ctx.queues[0].index == 1);
    r.bar_w(PciTransport::kNotifyOffset + 4, 1, 2);
    CHECK(r.dev->ctx.queues[0].kick->consume() == 1);

    // Device config goes to the device.
    CHECK(r.bar(PciTransport::kDeviceCfgOffset + 2, 1) == 0xa2);
    r.bar_w(PciTransport::kDeviceCfgOffset + 5, 0x77, 1);
    CHECK(r.dev->config_writes[5] == 0x77);

    // Accesses beyond the BAR, odd widths, unknown registers: ignored.
    CHECK(r.bar(PciTransport::kBarSize - 2, 4) == 0);  // (bounds-checked by the transport)
    r.bar_w(PciTransport::kBarSize + 10, 1, 4);
    r.bar_w(0x3e, 0xffff, 2);
    r.bar_w(0x14, 0x0f0f, 2);  // status is a byte register
    CHECK(r.bar(0x14, 1) == (1 | 2 | 8 | 4));

    // Moving the BAR moves the ioeventfds.
    uint64_t new_base = 0xc0100000;
    r.cfg_w(0x10, static_cast<uint32_t>(new_base), 4);
    r.t->bars_changed(r.t->decoded_bars());
    CHECK(r.ioeventfds.count(Rig::kBar + PciTransport::kNotifyOffset) == 0);
    CHECK(r.ioeventfds.count(new_base + PciTransport::kNotifyOffset) == 1);
    // Memory decoding off: no ioeventfds at all.
    r.cfg_w(0x04, 0, 2);
    r.t->bars_changed(r.t->decoded_bars());
    CHECK(r.ioeventfds.empty());
}

TEST_CASE("virtio-pci: a device that never started resets at once", "[virtio][pci_transport]") {
    // SeaBIOS writes status 0 and goes straight on (select 1, read the
    // feature bits 32..63) without polling for the reset to finish.
    Rig r;
    r.bar_w(0x14, 1 | 2, 1);  // ACKNOWLEDGE | DRIVER
    r.bar_w(0x00, 1, 4);
    r.bar_w(0x14, 0, 1);
    CHECK(r.tasks.empty());  // nothing deferred
    CHECK(r.dev->resets == 1);
    CHECK(r.bar(0x14, 1) == 0);
    CHECK(r.bar(0x00, 4) == 0);  // the select register was reset too
    r.bar_w(0x14, 1, 1);
    r.bar_w(0x00, 1, 4);
    CHECK((r.bar(0x04, 4) & 1) == 1);  // VERSION_1, read right after the reset
    CHECK(r.bar(0x14, 1) == 1);
}

TEST_CASE("virtio-pci: per-queue counters outlive a reset", "[virtio][pci_transport]") {
    Rig r;
    test::virtq::SplitRing ring(r.ram, 64);
    r.negotiate(kV1);
    r.program_queue(0, ring);
    r.enable_and_start();
    REQUIRE(r.dev->activations == 1);
    auto& q = r.dev->ctx.queues.at(0).queue;

    uint64_t buf = r.ram.alloc(64);
    ring.add_chain({{buf, 64, false}});
    ring.add_chain({{buf, 64, true}});
    q.note_notification();
    auto c1 = q.pop();
    auto c2 = q.pop();
    REQUIRE(c1);
    REQUIRE(c2);
    CHECK_FALSE(q.pop());
    q.push_used(*c1, 0);
    r.dev->ctx.interrupt->signal_queue(0);  // MSI-X off: INTx, counted
    auto c = r.t->counters();
    CHECK(c.at("q0.notifications") == 1);
    CHECK(c.at("q0.chains") == 2);
    CHECK(c.at("q0.used") == 1);
    CHECK(c.at("q0.interrupts") == 1);
    CHECK(c.at("q0.errors") == 0);
    CHECK(c.at("q1.chains") == 0);  // every queue is listed, enabled or not
    CHECK(c.count("q2.chains") == 0);

    // An avail index running ahead of the ring is a counted error.
    ring.set_avail_idx(static_cast<uint16_t>(ring.avail_idx() + 200));
    CHECK_THROWS_AS(q.pop(), vmm::virtio::QueueError);
    CHECK(r.t->counters().at("q0.errors") == 1);

    // Totals survive the driver resetting and re-initialising the device.
    r.bar_w(0x14, 0, 1);
    r.run_tasks();
    REQUIRE(r.dev->resets >= 1);
    c = r.t->counters();
    CHECK(c.at("q0.chains") == 2);
    CHECK(c.at("q0.interrupts") == 1);
}
