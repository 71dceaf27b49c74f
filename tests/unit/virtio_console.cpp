// virtio-console port 0 on its I/O thread: guest output reaches the sink,
// host input fills the guest's receive buffers, a broken ring asks for a
// reset instead of crashing.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "test_util.h"
#include "virtio/console.h"
#include "virtq_builder.h"

namespace {

using namespace std::chrono_literals;

struct ConsoleRig {
    test::virtq::FakeRam ram;
    test::virtq::SplitRing rx{ram, 16, test::virtq::feature(vmm::virtio::kFeatureVersion1)};
    test::virtq::SplitRing tx{ram, 16, test::virtq::feature(vmm::virtio::kFeatureVersion1)};
    std::mutex mu;
    std::string out;
    std::shared_ptr<test::virtq::CountingInterrupt> irq = std::make_shared<test::virtq::CountingInterrupt>();
    std::atomic<int> resets{0};
    std::shared_ptr<vmm::EventFd> rx_kick = std::make_shared<vmm::EventFd>();
    std::shared_ptr<vmm::EventFd> tx_kick = std::make_shared<vmm::EventFd>();
    std::unique_ptr<vmm::virtio::ConsoleDevice> dev;

    ConsoleRig() {
        vmm::virtio::ConsoleConfig cfg;
        cfg.output = [this](std::span<const uint8_t> b) {
            std::lock_guard lk(mu);
            out.append(b.begin(), b.end());
        };
        dev = std::make_unique<vmm::virtio::ConsoleDevice>(cfg);
    }
    void activate() {
        vmm::virtio::ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.features = test::virtq::feature(vmm::virtio::kFeatureVersion1);
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { ++resets; };
        ctx.queues.push_back({0, vmm::virtio::Queue(ram.mem, rx.config(), ctx.features), rx_kick});
        ctx.queues.push_back({1, vmm::virtio::Queue(ram.mem, tx.config(), ctx.features), tx_kick});
        dev->activate(std::move(ctx));
    }
    std::string output() {
        std::lock_guard lk(mu);
        return out;
    }
};

}  // namespace

TEST_CASE("virtio-console: guest output reaches the sink", "[virtio][console]") {
    ConsoleRig r;
    r.activate();
    uint64_t a = r.ram.alloc(5), b = r.ram.alloc(6);
    r.ram.fill(a, {'h', 'e', 'l', 'l', 'o'});
    r.ram.fill(b, {' ', 'w', 'o', 'r', 'l', 'd'});
    r.tx.add_chain({{a, 5, false}, {b, 6, false}});
    r.tx_kick->signal();
    REQUIRE(test::wait_for([&] { return r.tx.used_idx() == 1; }));
    CHECK(r.output() == "hello world");
    CHECK(r.dev->stats().tx_bytes == 11);
    CHECK(test::wait_for([&] { return r.irq->queue[1] >= 1; }));
    r.dev->reset();
}

TEST_CASE("virtio-console: host input fills receive buffers, with flow control", "[virtio][console]") {
    ConsoleRig r;
    // Input before the driver is up is kept.
    std::vector<uint8_t> msg = {'l', 's', '\n'};
    CHECK(r.dev->enqueue_input(msg) == 3);
    uint64_t buf = r.ram.alloc(2);
    r.rx.add_chain({{buf, 2, true}});
    r.activate();
    REQUIRE(test::wait_for([&] { return r.rx.used_idx() == 1; }));
    CHECK(r.rx.used(0).len == 2);
    CHECK(r.ram.bytes(buf, 2) == std::vector<uint8_t>{'l', 's'});
    // The rest waits for the next buffer.
    uint64_t buf2 = r.ram.alloc(8);
    r.rx.add_chain({{buf2, 8, true}});
    r.rx_kick->signal();
    REQUIRE(test::wait_for([&] { return r.rx.used_idx() == 2; }));
    CHECK(r.rx.used(1).len == 1);
    CHECK(r.ram.get<uint8_t>(buf2) == '\n');
    // The bounded buffer refuses what does not fit instead of dropping it.
    std::vector<uint8_t> big(vmm::virtio::ConsoleDevice::kInputCapacity + 100, 'x');
    CHECK(r.dev->enqueue_input(big) == vmm::virtio::ConsoleDevice::kInputCapacity);
    r.dev->reset();
}

TEST_CASE("virtio-console: a malformed chain asks for a reset", "[virtio][console]") {
    ConsoleRig r;
    r.activate();
    r.tx.set_desc(0, test::virtq::FakeRam::kHole, 16, 0, 0);  // buffer outside RAM
    r.tx.publish(0);
    r.tx_kick->signal();
    REQUIRE(test::wait_for([&] { return r.resets.load() == 1; }));
    CHECK(r.output().empty());
    CHECK(r.dev->stats().errors == 1);
    // Further kicks are ignored, and the device still stops cleanly.
    r.tx_kick->signal();
    std::this_thread::sleep_for(20ms);
    CHECK(r.resets.load() == 1);
    r.dev->reset();
}
