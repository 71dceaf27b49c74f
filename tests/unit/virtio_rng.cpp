// virtio-rng on its I/O thread: writable buffers come back full of random
// bytes (capped per request), read-only ones come back empty, and a broken
// ring asks for a reset instead of crashing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "test_util.h"
#include "virtio/rng.h"
#include "virtq_builder.h"

namespace {

using namespace std::chrono_literals;

struct RngRig {
    test::virtq::FakeRam ram;
    test::virtq::SplitRing ring{ram, 16, test::virtq::feature(vmm::virtio::kFeatureVersion1)};
    std::shared_ptr<test::virtq::CountingInterrupt> irq = std::make_shared<test::virtq::CountingInterrupt>();
    std::atomic<int> resets{0};
    std::shared_ptr<vmm::EventFd> kick = std::make_shared<vmm::EventFd>();
    vmm::virtio::RngDevice dev{vmm::virtio::RngConfig{}};

    void activate() {
        vmm::virtio::ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.features = test::virtq::feature(vmm::virtio::kFeatureVersion1);
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { ++resets; };
        ctx.queues.push_back({0, vmm::virtio::Queue(ram.mem, ring.config(), ctx.features), kick});
        dev.activate(std::move(ctx));
    }
};

}  // namespace

TEST_CASE("virtio-rng: identity and config space", "[virtio][rng]") {
    vmm::virtio::RngDevice dev{vmm::virtio::RngConfig{}};
    CHECK(dev.device_type() == 4);
    CHECK(dev.queue_max_sizes().size() == 1);
    CHECK(dev.device_features() == 0);
    std::vector<uint8_t> cfg(8, 0xaa);
    dev.read_config(0, cfg);
    CHECK(std::all_of(cfg.begin(), cfg.end(), [](uint8_t b) { return b == 0; }));
}

TEST_CASE("virtio-rng: buffers are filled with random bytes", "[virtio][rng]") {
    RngRig r;
    // Posted before activation: served on the first loop iteration.
    uint64_t a = r.ram.alloc(256), b = r.ram.alloc(256);
    r.ring.add_chain({{a, 256, true}});
    r.activate();
    REQUIRE(test::wait_for([&] { return r.ring.used_idx() == 1; }));
    CHECK(r.ring.used(0).len == 256);
    r.ring.add_chain({{b, 256, true}});
    r.kick->signal();
    REQUIRE(test::wait_for([&] { return r.ring.used_idx() == 2; }));
    CHECK(r.ring.used(1).len == 256);
    auto x = r.ram.bytes(a, 256), y = r.ram.bytes(b, 256);
    // 256 random bytes: all zero, or two equal buffers, has probability 2^-2048.
    CHECK(std::any_of(x.begin(), x.end(), [](uint8_t v) { return v != 0; }));
    CHECK(x != y);
    CHECK(test::wait_for([&] { return r.irq->queue[0].load() >= 1; }));
    auto c = r.dev.counters();
    CHECK(c.at("bytes") == 512);
    CHECK(c.at("errors") == 0);
    r.dev.reset();
}

TEST_CASE("virtio-rng: hostile requests", "[virtio][rng]") {
    RngRig r;
    r.activate();
    SECTION("a huge writable chain gets at most kMaxPerRequest bytes") {
        uint64_t big = r.ram.alloc(vmm::virtio::RngDevice::kMaxPerRequest + 4096);
        r.ring.add_chain({{big, static_cast<uint32_t>(vmm::virtio::RngDevice::kMaxPerRequest + 4096), true}});
        r.kick->signal();
        REQUIRE(test::wait_for([&] { return r.ring.used_idx() == 1; }));
        CHECK(r.ring.used(0).len == vmm::virtio::RngDevice::kMaxPerRequest);
    }
    SECTION("a read-only chain comes back with nothing written") {
        uint64_t ro = r.ram.alloc(64);
        r.ring.add_chain({{ro, 64, false}});
        r.kick->signal();
        REQUIRE(test::wait_for([&] { return r.ring.used_idx() == 1; }));
        CHECK(r.ring.used(0).len == 0);
    }
    SECTION("a buffer outside RAM asks for a reset, once") {
        r.ring.set_desc(0, test::virtq::FakeRam::kHole, 16, 2 /* WRITE */, 0);
        r.ring.publish(0);
        r.kick->signal();
        REQUIRE(test::wait_for([&] { return r.resets.load() == 1; }));
        CHECK(r.dev.counters().at("errors") == 1);
        r.kick->signal();
        std::this_thread::sleep_for(20ms);
        CHECK(r.resets.load() == 1);
    }
    r.dev.reset();
}
