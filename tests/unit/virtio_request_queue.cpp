// RequestQueue, the ring side virtio-blk and virtio-scsi share: slots,
// pausing when all are busy, one interrupt per batch, and a malformed ring
// stopping the queue with an error and a reset request.
#include <catch2/catch.hpp>

#include "virtio/request_queue.h"
#include "virtq_builder.h"

namespace {

namespace v = vmm::virtio;

struct Rig {
    test::virtq::FakeRam ram;
    test::virtq::SplitRing ring{ram, 4};
    std::shared_ptr<test::virtq::CountingInterrupt> irq = std::make_shared<test::virtq::CountingInterrupt>();
    std::shared_ptr<v::QueueStats> stats = std::make_shared<v::QueueStats>();
    std::atomic<uint64_t> errors{0};
    int resets = 0;
    std::unique_ptr<v::RequestQueue> rq;

    Rig() {
        v::ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { ++resets; };
        v::Queue q(ram.mem, ring.config(), 0);
        q.set_stats(stats);
        v::ActiveQueue aq{3, std::move(q), std::make_shared<vmm::EventFd>()};
        rq = std::make_unique<v::RequestQueue>("test", std::move(aq), ctx, errors);
    }
    void post(unsigned n) {
        for (unsigned i = 0; i < n; ++i) ring.add_chain({{ram.alloc(16), 16, true}});
    }
};

}  // namespace

TEST_CASE("request queue: slots, pausing when all are busy, one interrupt per batch", "[virtio][request-queue]") {
    Rig r;
    REQUIRE(r.rq->slots() == 4);
    CHECK(r.rq->index() == 3);
    r.rq->kick().signal();
    CHECK(r.rq->take_kick());
    CHECK(r.stats->notifications == 1);

    // Four chains, each taking a slot: the fourth fills the last slot and
    // popping pauses.
    std::vector<std::pair<uint32_t, v::DescriptorChain>> held;
    r.post(4);
    r.rq->pop_all([&](v::DescriptorChain&& c) { held.emplace_back(r.rq->acquire(), std::move(c)); });
    REQUIRE(held.size() == 4);
    CHECK(r.rq->busy() == 4);
    r.rq->push(held[0].second, 7);
    r.rq->release(held[0].first);
    CHECK(r.rq->busy() == 3);
    r.rq->notify();
    CHECK(r.ring.used_idx() == 1);
    CHECK(r.ring.used(0).len == 7);
    CHECK(r.irq->queue[3] == 1);
    r.rq->notify();  // nothing new pushed: no second interrupt
    CHECK(r.irq->queue[3] == 1);

    // Chains finished at once (no slot) do not count against the slots.
    r.post(1);
    size_t seen = 0;
    r.rq->pop_all([&](v::DescriptorChain&& c) {
        ++seen;
        r.rq->push(c, 0);
    });
    CHECK(seen == 1);
    for (size_t i = 1; i < 4; ++i) {
        r.rq->push(held[i].second, 0);
        r.rq->release(held[i].first);
    }
    CHECK(r.rq->busy() == 0);
    CHECK(r.errors == 0);
    CHECK(r.resets == 0);
}

TEST_CASE("request queue: a stalled queue resumes after a release", "[virtio][request-queue]") {
    Rig r;
    std::vector<uint32_t> cookies;
    r.post(4);
    r.rq->pop_all([&](v::DescriptorChain&& c) {
        cookies.push_back(r.rq->acquire());
        r.rq->push(c, 0);  // answered, but the slot stays busy (host I/O in flight)
    });
    REQUIRE(cookies.size() == 4);
    r.post(1);  // arrives while every slot is busy
    size_t popped = 0;
    r.rq->pop_all([&](v::DescriptorChain&&) { ++popped; });
    CHECK(popped == 0);
    r.rq->release(cookies[0]);
    REQUIRE(r.rq->resume());
    CHECK_FALSE(r.rq->resume());  // once
    r.rq->pop_all([&](v::DescriptorChain&& c) {
        ++popped;
        r.rq->push(c, 0);
    });
    CHECK(popped == 1);
}

TEST_CASE("request queue: a malformed ring stops the queue, counts an error and asks for a reset",
          "[virtio][request-queue]") {
    Rig r;
    r.ring.set_avail_idx(9);  // more than the queue size ahead
    size_t popped = 0;
    r.rq->pop_all([&](v::DescriptorChain&&) { ++popped; });
    CHECK(popped == 0);
    CHECK(r.rq->broken());
    CHECK(r.errors == 1);
    CHECK(r.resets == 1);
    // Broken for good: kicks are consumed but not served, nothing is pushed.
    r.rq->kick().signal();
    CHECK_FALSE(r.rq->take_kick());
    r.rq->fail("again");
    CHECK(r.errors == 1);
    CHECK(r.resets == 1);
    CHECK_FALSE(r.rq->resume());
}
