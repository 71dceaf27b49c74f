// virtio-balloon on its I/O thread: inflated frames are given back (read as
// zero), deflate is counted, the stats buffer is parsed and held until the
// refresh timer returns it, free page reports are discarded, queue numbers
// follow the negotiated features, and hostile input is counted, not fatal.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "test_util.h"
#include "virtio/balloon.h"
#include "virtq_builder.h"
#include "vmm/core/bytes.h"

namespace {

using namespace std::chrono_literals;
using test::virtq::FakeRam;
using vmm::virtio::BalloonConfig;
using vmm::virtio::BalloonDevice;

constexpr uint64_t kV1 = test::virtq::feature(vmm::virtio::kFeatureVersion1);
constexpr uint64_t kStats = test::virtq::feature(vmm::virtio::kBalloonFStatsVq);
constexpr uint64_t kReporting = test::virtq::feature(vmm::virtio::kBalloonFPageReporting);
// The high region of FakeRam: 256 frames from PFN 0x400, used as balloon pages.
constexpr uint32_t kFirstPfn = FakeRam::kHighBase / 4096;

struct BalloonRig {
    FakeRam ram;
    std::vector<std::unique_ptr<test::virtq::SplitRing>> rings;
    std::vector<std::shared_ptr<vmm::EventFd>> kicks;
    std::shared_ptr<test::virtq::CountingInterrupt> irq = std::make_shared<test::virtq::CountingInterrupt>();
    std::atomic<int> resets{0};
    BalloonDevice dev;

    explicit BalloonRig(BalloonConfig cfg = {}) : dev(std::move(cfg)) {}

    // Activates with `queues` enabled queues (numbered 0..queues-1).
    void activate(uint64_t features, size_t queues) {
        vmm::virtio::ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.features = features | kV1;
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { ++resets; };
        for (size_t i = 0; i < queues; ++i) {
            rings.push_back(std::make_unique<test::virtq::SplitRing>(ram, 16, kV1));
            kicks.push_back(std::make_shared<vmm::EventFd>());
            ctx.queues.push_back({static_cast<uint16_t>(i), vmm::virtio::Queue(ram.mem, rings[i]->config(), ctx.features),
                                  kicks[i]});
        }
        dev.activate(std::move(ctx));
    }

    // Posts a read-only chain holding `pfns` (le32 each) on queue q and kicks.
    void post_pfns(size_t q, const std::vector<uint32_t>& pfns, uint32_t extra_bytes = 0) {
        uint32_t len = static_cast<uint32_t>(pfns.size() * 4) + extra_bytes;
        uint64_t a = ram.alloc(len, 4);
        std::vector<uint8_t> bytes(len, 0);
        for (size_t i = 0; i < pfns.size(); ++i) vmm::store_le32(bytes, 4 * i, pfns[i]);
        ram.fill(a, bytes);
        rings[q]->add_chain({{a, len, false}});
        kicks[q]->signal();
    }

    bool page_is(uint32_t pfn, uint8_t v) {
        auto b = ram.bytes(uint64_t{pfn} * 4096, 4096);
        return std::all_of(b.begin(), b.end(), [v](uint8_t x) { return x == v; });
    }
};

std::vector<uint8_t> stat(uint16_t tag, uint64_t val) {
    std::vector<uint8_t> r(10);
    vmm::store_le16(r, 0, tag);
    vmm::store_le64(r, 2, val);
    return r;
}

uint32_t config_u32(BalloonDevice& dev, uint64_t off) {
    uint8_t b[4];
    dev.read_config(off, b);
    return vmm::load_le32(b, 0);
}

}  // namespace

TEST_CASE("virtio-balloon: identity, features, queues and config space", "[virtio][balloon]") {
    BalloonConfig cfg;
    cfg.target_pages = 1234;
    SECTION("defaults: stats only") {
        BalloonDevice dev(cfg);
        CHECK(dev.device_type() == 5);
        CHECK(dev.device_features() == kStats);
        CHECK(dev.queue_max_sizes().size() == 3);
    }
    SECTION("every feature") {
        cfg.deflate_on_oom = true;
        cfg.free_page_reporting = true;
        BalloonDevice dev(cfg);
        CHECK(dev.device_features() ==
              (kStats | kReporting | test::virtq::feature(vmm::virtio::kBalloonFDeflateOnOom)));
        CHECK(dev.queue_max_sizes().size() == 4);
    }
    SECTION("no stats") {
        cfg.stats = false;
        BalloonDevice dev(cfg);
        CHECK(dev.device_features() == 0);
        CHECK(dev.queue_max_sizes().size() == 2);
    }
    BalloonDevice dev(cfg);
    CHECK(config_u32(dev, 0) == 1234);  // num_pages
    CHECK(config_u32(dev, 4) == 0);     // actual
    uint32_t act = 1000;
    dev.write_config(4, {reinterpret_cast<uint8_t*>(&act), 4});
    CHECK(dev.actual_pages() == 1000);
    // A one-byte write changes only that byte; writes to num_pages and
    // beyond the space are ignored.
    uint8_t one = 0x01;
    dev.write_config(5, {&one, 1});
    CHECK(dev.actual_pages() == 0x01e8);
    uint32_t evil = 0xffffffff;
    dev.write_config(0, {reinterpret_cast<uint8_t*>(&evil), 4});
    dev.write_config(4096, {reinterpret_cast<uint8_t*>(&evil), 4});
    CHECK(config_u32(dev, 0) == 1234);
    std::vector<uint8_t> tail(8, 0xaa);
    dev.read_config(12, tail);  // poison_val and past the end read zero
    CHECK(std::all_of(tail.begin(), tail.end(), [](uint8_t b) { return b == 0; }));
    CHECK(dev.counters().at("target_bytes") == 1234ull * 4096);
    CHECK(dev.counters().at("actual_bytes") == 0x01e8ull * 4096);
}

TEST_CASE("virtio-balloon: a new target raises a configuration interrupt", "[virtio][balloon]") {
    BalloonRig r;
    r.dev.set_target_pages(10);  // not active: nothing to signal
    CHECK(r.irq->config.load() == 0);
    r.activate(0, 2);
    r.dev.set_target_pages(256);
    CHECK(r.irq->config.load() == 1);
    CHECK(config_u32(r.dev, 0) == 256);
    r.dev.reset();
    r.dev.set_target_pages(0);
    CHECK(r.irq->config.load() == 1);
}

TEST_CASE("virtio-balloon: inflate gives frames back, deflate counts them", "[virtio][balloon]") {
    BalloonRig r;
    r.ram.fill(FakeRam::kHighBase, std::vector<uint8_t>(FakeRam::kHighSize, 0xab));
    r.activate(0, 2);
    r.post_pfns(0, {kFirstPfn, kFirstPfn + 1, kFirstPfn + 3});
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
    CHECK(r.page_is(kFirstPfn, 0));
    CHECK(r.page_is(kFirstPfn + 1, 0));
    CHECK(r.page_is(kFirstPfn + 2, 0xab));  // not in the balloon: untouched
    CHECK(r.page_is(kFirstPfn + 3, 0));
    CHECK(r.rings[0]->used(0).len == 0);
    CHECK(test::wait_for([&] { return r.irq->queue[0].load() == 1; }));
    r.post_pfns(1, {kFirstPfn, kFirstPfn + 1});
    REQUIRE(test::wait_for([&] { return r.rings[1]->used_idx() == 1; }));
    auto c = r.dev.counters();
    CHECK(c.at("inflated_pages") == 3);
    CHECK(c.at("deflated_pages") == 2);
    CHECK(c.at("discarded_bytes") == 3 * 4096);
    CHECK(c.at("bad_pfns") == 0);
    CHECK(c.at("errors") == 0);
    CHECK(r.resets.load() == 0);
    r.dev.reset();
}

TEST_CASE("virtio-balloon: hostile inflate chains", "[virtio][balloon]") {
    BalloonRig r;
    r.ram.fill(FakeRam::kHighBase, std::vector<uint8_t>(FakeRam::kHighSize, 0xab));
    r.activate(0, 2);
    SECTION("frames outside RAM are counted and skipped; the rest are served") {
        uint32_t hole = FakeRam::kHole / 4096;
        r.post_pfns(0, {hole, 0xffffffff, kFirstPfn + 5});
        REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
        CHECK(r.dev.counters().at("bad_pfns") == 2);
        CHECK(r.dev.counters().at("inflated_pages") == 1);
        CHECK(r.page_is(kFirstPfn + 5, 0));
    }
    SECTION("a length that is not a multiple of 4 is an error; whole entries are served") {
        r.post_pfns(0, {kFirstPfn + 7}, 3);
        REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
        CHECK(r.dev.counters().at("errors") == 1);
        CHECK(r.page_is(kFirstPfn + 7, 0));
    }
    SECTION("an empty or write-only chain is returned untouched") {
        uint64_t w = r.ram.alloc(64);
        r.rings[0]->add_chain({{w, 64, true}});
        r.kicks[0]->signal();
        REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
        CHECK(r.dev.counters().at("inflated_pages") == 0);
        CHECK(r.page_is(kFirstPfn, 0xab));
    }
    SECTION("a descriptor outside RAM asks for a reset, once") {
        r.rings[0]->set_desc(0, FakeRam::kHole, 16, 0, 0);
        r.rings[0]->publish(0);
        r.kicks[0]->signal();
        REQUIRE(test::wait_for([&] { return r.resets.load() == 1; }));
        r.kicks[1]->signal();
        std::this_thread::sleep_for(20ms);
        CHECK(r.resets.load() == 1);
    }
    CHECK(r.resets.load() <= 1);
    r.dev.reset();
}

TEST_CASE("virtio-balloon: stats buffer is parsed, held and returned for refresh", "[virtio][balloon]") {
    BalloonConfig cfg;
    cfg.stats_interval_ms = 50;
    BalloonRig r(cfg);
    r.activate(kStats, 3);
    auto post = [&](std::vector<uint8_t> bytes) {
        uint64_t a = r.ram.alloc(bytes.size(), 2);
        r.ram.fill(a, bytes);
        r.rings[2]->add_chain({{a, static_cast<uint32_t>(bytes.size()), false}});
        r.kicks[2]->signal();
    };
    std::vector<uint8_t> buf;
    for (auto [t, v] : {std::pair<uint16_t, uint64_t>{4, 111 << 20}, {5, 512 << 20}, {99, 7}}) {
        auto s = stat(t, v);
        buf.insert(buf.end(), s.begin(), s.end());
    }
    post(buf);
    REQUIRE(test::wait_for([&] { return r.dev.counters().at("stats_updates") == 1; }));
    auto c = r.dev.counters();
    CHECK(c.at("guest_free_memory") == 111u << 20);
    CHECK(c.at("guest_total_memory") == 512u << 20);
    // The unknown tag 99 is ignored: only the two known ones are reported.
    CHECK(std::count_if(c.begin(), c.end(), [](auto& kv) { return kv.first.rfind("guest_", 0) == 0; }) == 2);
    CHECK(c.at("errors") == 0);
    // Held, then returned by the refresh timer.
    REQUIRE(test::wait_for([&] { return r.rings[2]->used_idx() == 1; }));
    CHECK(test::wait_for([&] { return r.irq->queue[2].load() >= 1; }));
    // The driver refills and re-posts; a record cut short is an error.
    auto s = stat(4, 99);
    s.push_back(0x01);
    post(s);
    REQUIRE(test::wait_for([&] { return r.dev.counters().at("stats_updates") == 2; }));
    CHECK(r.dev.counters().at("guest_free_memory") == 99);
    CHECK(r.dev.counters().at("errors") == 1);
    REQUIRE(test::wait_for([&] { return r.rings[2]->used_idx() == 2; }));
    CHECK(r.resets.load() == 0);
    r.dev.reset();
}

TEST_CASE("virtio-balloon: a second stats buffer returns the first", "[virtio][balloon]") {
    BalloonConfig cfg;
    cfg.stats_interval_ms = 0;  // never refreshed by the device
    BalloonRig r(cfg);
    r.activate(kStats, 3);
    for (int i = 0; i < 2; ++i) {
        auto s = stat(4, 1);
        uint64_t a = r.ram.alloc(s.size(), 2);
        r.ram.fill(a, s);
        r.rings[2]->add_chain({{a, 10, false}});
    }
    r.kicks[2]->signal();
    REQUIRE(test::wait_for([&] { return r.dev.counters().at("stats_updates") == 2; }));
    CHECK(r.rings[2]->used_idx() == 1);
    CHECK(r.dev.counters().at("errors") == 1);
    std::this_thread::sleep_for(50ms);
    CHECK(r.rings[2]->used_idx() == 1);  // interval 0: the second stays held
    r.dev.reset();
}

TEST_CASE("virtio-balloon: free page reports are discarded; queue numbers follow features", "[virtio][balloon]") {
    BalloonConfig cfg;
    cfg.free_page_reporting = true;
    BalloonRig r(cfg);
    r.ram.fill(FakeRam::kHighBase, std::vector<uint8_t>(FakeRam::kHighSize, 0xab));
    // Stats not negotiated: the reporting queue is queue 2, not 3.
    r.activate(kReporting, 3);
    r.rings[2]->add_chain({{FakeRam::kHighBase, 8192, true}, {FakeRam::kHighBase + 16 * 4096, 4096, true}});
    r.kicks[2]->signal();
    REQUIRE(test::wait_for([&] { return r.rings[2]->used_idx() == 1; }));
    CHECK(r.page_is(kFirstPfn, 0));
    CHECK(r.page_is(kFirstPfn + 1, 0));
    CHECK(r.page_is(kFirstPfn + 2, 0xab));
    CHECK(r.page_is(kFirstPfn + 16, 0));
    auto c = r.dev.counters();
    CHECK(c.at("reported_bytes") == 3 * 4096);
    CHECK(c.at("discarded_bytes") == 3 * 4096);
    CHECK(c.at("stats_updates") == 0);
    r.dev.reset();
}

TEST_CASE("core: discard gives whole pages of anonymous guest memory back", "[core][balloon]") {
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    std::pair<uint64_t, uint64_t> range{0, 64 * page};
    auto mem = vmm::GuestMemory::create_anonymous({&range, 1}, /*transparent_hugepages=*/false);
    uint8_t* host = mem.regions()[0].host;
    std::memset(host, 0x5a, 64 * page);
    auto resident = [&](uint64_t i) {
        unsigned char v = 0;
        REQUIRE(mincore(host + i * page, page, &v) == 0);
        return (v & 1) != 0;
    };
    REQUIRE(resident(10));
    // Partial pages at the ends are kept: [10.5 pages, 13.5 pages) frees 11 and 12.
    CHECK(mem.discard(10 * page + page / 2, 3 * page) == 2 * page);
    CHECK(resident(10));
    CHECK_FALSE(resident(11));
    CHECK_FALSE(resident(12));
    CHECK(resident(13));
    CHECK(host[11 * page] == 0);        // a discarded page reads as zero
    CHECK(host[10 * page] == 0x5a);
    CHECK(mem.discard(63 * page, 2 * page) == 0);  // runs past RAM: refused
    CHECK(host[63 * page] == 0x5a);
    CHECK(mem.discard(5 * page + 1, page) == 0);   // no whole page inside
}

TEST_CASE("virtio-balloon: a config write past the end of the address space changes nothing", "[virtio][balloon]") {
    // Found by fuzz_virtio_balloon's model: offset + i wrapped to 4..7 and
    // landed in `actual`.
    BalloonDevice dev(BalloonConfig{});
    std::vector<uint8_t> data(8, 0xab);
    dev.write_config(UINT64_MAX - 1, data);
    CHECK(dev.actual_pages() == 0);
    dev.write_config(4, std::vector<uint8_t>{1, 2});
    CHECK(dev.actual_pages() == 0x0201);
}

TEST_CASE("virtio-balloon: scan_pfns splits runs at frames outside RAM", "[virtio][balloon]") {
    FakeRam ram;
    std::vector<uint8_t> list;
    for (uint32_t pfn : {3u, 4u, 5u, 0x7fffffffu, 6u, 9u}) {
        uint8_t b[4];
        vmm::store_le32(b, 0, pfn);
        list.insert(list.end(), b, b + 4);
    }
    list.push_back(0xee);  // a trailing byte
    ram.fill(0x1000, list);
    vmm::virtio::DescriptorChain chain;
    chain.readable.push_back({0x1000, static_cast<uint32_t>(list.size())});
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    auto got = vmm::virtio::scan_pfns(ram.mem, chain, [&](uint64_t f, uint64_t n) { runs.emplace_back(f, n); });
    CHECK(got.good == 5);
    CHECK(got.bad == 1);
    CHECK(got.trailing == 1);
    CHECK(runs == std::vector<std::pair<uint64_t, uint64_t>>{{3, 3}, {6, 1}, {9, 1}});
}
