// Unit tests of the virtqueue engine: split and packed rings, chain
// validation against hostile guests, notification suppression and the
// Reader/Writer cursors. The guest side is played by virtq_builder.h.
#include <catch2/catch.hpp>

#include <cstring>
#include <numeric>

#include "tests/unit/virtq_builder.h"
#include "virtio/queue.h"

using Catch::Contains;
using test::virtq::Desc;
using test::virtq::FakeRam;
using test::virtq::feature;
using test::virtq::PackedRing;
using test::virtq::SplitRing;
using vmm::virtio::DescriptorChain;
using vmm::virtio::Queue;
using vmm::virtio::QueueConfig;
using vmm::virtio::QueueError;
using vmm::virtio::Reader;
using vmm::virtio::Writer;
namespace vq = vmm::virtio;

namespace {

constexpr uint64_t kIndirect = feature(vq::kFeatureIndirectDesc);
constexpr uint64_t kEventIdx = feature(vq::kFeatureEventIdx);

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start = 1) {
    std::vector<uint8_t> v(n);
    std::iota(v.begin(), v.end(), start);
    return v;
}

}  // namespace

// ------------------------------------------------------------ split: setup

TEST_CASE("virtio queue: split ring configuration is validated", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 256);
    QueueConfig c = ring.config();
    CHECK_NOTHROW(Queue(ram.mem, c, 0));

    for (uint16_t bad : {0, 3, 100, 40000}) {
        QueueConfig b = c;
        b.size = bad;
        CHECK_THROWS_WITH(Queue(ram.mem, b, 0), Contains("power of two"));
    }
    QueueConfig b = c;
    b.desc_addr += 8;
    CHECK_THROWS_WITH(Queue(ram.mem, b, 0), Contains("descriptor table") && Contains("aligned"));
    b = c;
    b.driver_addr += 1;
    CHECK_THROWS_WITH(Queue(ram.mem, b, 0), Contains("avail ring") && Contains("aligned"));
    b = c;
    b.device_addr += 2;
    CHECK_THROWS_WITH(Queue(ram.mem, b, 0), Contains("used ring") && Contains("aligned"));
    b = c;
    b.desc_addr = FakeRam::kHole;
    CHECK_THROWS_WITH(Queue(ram.mem, b, 0), Contains("not inside guest RAM"));
    b = c;
    b.device_addr = FakeRam::kLowSize - 16;  // used ring runs off the end of the low region
    CHECK_THROWS_WITH(Queue(ram.mem, b, 0), Contains("used ring") && Contains("not inside guest RAM"));
    b = c;
    b.driver_addr = ~0ull - 1;
    CHECK_THROWS_AS(Queue(ram.mem, b, 0), QueueError);
}

TEST_CASE("virtio queue: split ring pops a chain and returns it used", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 16);
    Queue q(ram.mem, ring.config(), 0);
    CHECK(q.size() == 16);
    CHECK_FALSE(q.packed());
    CHECK_FALSE(q.pop());

    uint64_t a = ram.alloc(100), b = ram.alloc(200), w = ram.alloc(300);
    uint16_t head = ring.add_chain({{a, 100, false}, {b, 200, false}, {w, 300, true}});
    auto c = q.pop();
    REQUIRE(c);
    CHECK(c->id == head);
    CHECK(c->desc_count == 3);
    REQUIRE(c->readable.size() == 2);
    CHECK(c->readable[0].addr == a);
    CHECK(c->readable[1].len == 200);
    REQUIRE(c->writable.size() == 1);
    CHECK(c->writable[0].addr == w);
    CHECK(c->readable_bytes() == 300);
    CHECK(c->writable_bytes() == 300);
    CHECK_FALSE(q.pop());

    q.push_used(*c, 123);
    CHECK(ring.used_idx() == 1);
    CHECK(ring.used(0).id == head);
    CHECK(ring.used(0).len == 123);

    // Moving the queue keeps its state.
    Queue moved(std::move(q));
    uint16_t h2 = ring.add_chain({{a, 1, false}});
    auto c2 = moved.pop();
    REQUIRE(c2);
    CHECK(c2->id == h2);
    moved.push_used(*c2, 0);
    CHECK(ring.used_idx() == 2);
}

TEST_CASE("virtio queue: zero-length descriptors are skipped but counted", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 4);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t a = ram.alloc(8);
    // A zero-length descriptor may even point outside RAM: it is never accessed.
    ring.add_chain({{a, 8, false}, {FakeRam::kHole, 0, false}, {a, 0, true}, {a, 8, true}});
    auto c = q.pop();
    REQUIRE(c);
    CHECK(c->desc_count == 4);
    CHECK(c->readable.size() == 1);
    CHECK(c->writable.size() == 1);

    // ... and count toward the length limit: 5 descriptors on a queue of 4.
    ring.set_desc(0, a, 0, test::virtq::kDescNext, 1);
    ring.set_desc(1, a, 0, test::virtq::kDescNext, 2);
    ring.set_desc(2, a, 0, test::virtq::kDescNext, 3);
    ring.set_desc(3, a, 0, test::virtq::kDescNext, 0);
    ring.publish(0);
    CHECK_THROWS_WITH(q.pop(), Contains("longer than the queue size"));
}

// ------------------------------------------------------------ split: malformed chains

TEST_CASE("virtio queue: malformed split chains throw QueueError", "[virtio][queue]") {
    using test::virtq::kDescIndirect;
    using test::virtq::kDescNext;
    using test::virtq::kDescWrite;
    FakeRam ram;
    SplitRing ring(ram, 256, kIndirect);
    Queue q(ram.mem, ring.config(), ring.features());
    uint64_t a = ram.alloc(64);

    SECTION("head index out of range") {
        ring.set_avail_entry(0, 256);
        ring.set_avail_idx(1);
        CHECK_THROWS_WITH(q.pop(), Contains("head index 256 out of range"));
    }
    SECTION("next index out of range") {
        ring.set_desc(5, a, 8, kDescNext, 300);
        ring.publish(5);
        CHECK_THROWS_WITH(q.pop(), Contains("descriptor 5: next index 300 out of range (queue size 256)"));
    }
    SECTION("self loop") {
        ring.set_desc(7, a, 8, kDescNext, 7);
        ring.publish(7);
        CHECK_THROWS_WITH(q.pop(), Contains("longer than the queue size 256"));
    }
    SECTION("longer loop") {
        ring.set_desc(1, a, 8, kDescNext, 2);
        ring.set_desc(2, a, 8, kDescNext, 3);
        ring.set_desc(3, a, 8, kDescNext, 1);
        ring.publish(1);
        CHECK_THROWS_WITH(q.pop(), Contains("loop"));
    }
    SECTION("buffer in the hole between regions") {
        ring.add_chain({{a, 8, false}, {FakeRam::kHole, 16, true}});
        CHECK_THROWS_WITH(q.pop(), Contains("not inside guest RAM"));
    }
    SECTION("buffer crossing the end of a region") {
        ring.add_chain({{FakeRam::kHighBase + FakeRam::kHighSize - 8, 9, false}});
        CHECK_THROWS_WITH(q.pop(), Contains("not inside guest RAM"));
    }
    SECTION("buffer exactly at the end of a region is fine") {
        ring.add_chain({{FakeRam::kHighBase + FakeRam::kHighSize - 8, 8, false}});
        CHECK(q.pop());
    }
    SECTION("addr + len overflows") {
        ring.add_chain({{~0ull - 4, 0x100, false}});
        CHECK_THROWS_WITH(q.pop(), Contains("not inside guest RAM"));
    }
    SECTION("readable after writable") {
        ring.add_chain({{a, 8, true}, {a, 8, false}});
        CHECK_THROWS_WITH(q.pop(), Contains("readable buffer after a writable one"));
    }
    SECTION("indirect together with NEXT") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}});
        ring.set_desc(0, t, 16, kDescIndirect | kDescNext, 1);
        ring.set_desc(1, a, 8, 0, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("INDIRECT together with NEXT"));
    }
    SECTION("indirect table length not a multiple of 16") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}, {a, 8, true}});
        ring.set_desc(0, t, 17, kDescIndirect, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("indirect table length 17"));
    }
    SECTION("indirect table of length 0") {
        ring.set_desc(0, a, 0, kDescIndirect, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("indirect table length 0"));
    }
    SECTION("indirect table outside RAM") {
        ring.set_desc(0, FakeRam::kLowSize - 16, 32, kDescIndirect, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("indirect table") && Contains("not inside guest RAM"));
    }
    SECTION("nested indirect") {
        uint64_t inner = ring.write_indirect_table({{a, 8, false}});
        uint64_t t = ring.write_indirect_table({{a, 8, false}, {inner, 16, false}});
        SplitRing::write_raw_desc(ram, t + 16, inner, 16, kDescIndirect, 0);
        ring.set_desc(0, t, 32, kDescIndirect, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("descriptor 0: indirect entry 1: nested indirect"));
    }
    SECTION("loop inside an indirect table") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}, {a, 8, false}});
        SplitRing::write_raw_desc(ram, t + 16, a, 8, kDescNext, 0);
        ring.set_desc(0, t, 32, kDescIndirect, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("longer than the table's 2 entries"));
    }
    SECTION("next index out of range inside an indirect table") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}, {a, 8, false}});
        SplitRing::write_raw_desc(ram, t + 16, a, 8, kDescNext, 2);
        ring.set_desc(0, t, 32, kDescIndirect, 0);
        ring.publish(0);
        CHECK_THROWS_WITH(q.pop(), Contains("next index 2 out of range (table of 2 entries)"));
    }
    SECTION("buffer outside RAM inside an indirect table") {
        ring.add_indirect({{a, 8, false}, {FakeRam::kHole, 8, true}});
        CHECK_THROWS_WITH(q.pop(), Contains("indirect entry 1: buffer") && Contains("not inside guest RAM"));
    }
    SECTION("readable total beyond 4 GiB") {
        // 2049 entries of the whole 2 MiB low region: 4 GiB + 2 MiB.
        std::vector<Desc> big(2049, Desc{FakeRam::kLowBase, uint32_t(FakeRam::kLowSize), false});
        ring.add_indirect(big);
        CHECK_THROWS_WITH(q.pop(), Contains("total readable length exceeds 4 GiB"));
    }
}

TEST_CASE("virtio queue: INDIRECT without the negotiated feature is an error", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t a = ram.alloc(8);
    ring.add_indirect({{a, 8, false}});
    CHECK_THROWS_WITH(q.pop(), Contains("VIRTIO_F_INDIRECT_DESC was not negotiated"));
}

TEST_CASE("virtio queue: split indirect chain happy path", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8, kIndirect);
    Queue q(ram.mem, ring.config(), ring.features());
    uint64_t h = ram.alloc(16), d = ram.alloc(4096), s = ram.alloc(1);
    uint16_t head = ring.add_indirect({{h, 16, false}, {d, 4096, true}, {s, 1, true}});
    auto c = q.pop();
    REQUIRE(c);
    CHECK(c->id == head);
    CHECK(c->desc_count == 1);
    CHECK(c->readable_bytes() == 16);
    CHECK(c->writable_bytes() == 4097);
    REQUIRE(c->writable.size() == 2);
    CHECK(c->writable[1].addr == s);
}

TEST_CASE("virtio queue: an avail index running ahead stops the queue", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 16);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t a = ram.alloc(8);
    for (int i = 0; i < 16; ++i) ring.add_chain({{a, 8, false}});
    ring.set_avail_idx(17);
    CHECK_THROWS_WITH(q.pop(), Contains("avail index 17 runs ahead"));
    // Exactly `size` pending is legal.
    ring.set_avail_idx(16);
    for (int i = 0; i < 16; ++i) CHECK(q.pop());
    CHECK_FALSE(q.pop());
    // A huge jump (a driver "going backwards") is running ahead too.
    ring.set_avail_idx(15);
    CHECK_THROWS_WITH(q.pop(), Contains("runs ahead"));
}

TEST_CASE("virtio queue: 16-bit indices wrap around", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8, kEventIdx);
    Queue q(ram.mem, ring.config(), ring.features());
    ring.cycle(q, 0xFFFC);
    CHECK(ring.avail_idx() == 0xFFFC);
    CHECK(ring.used_idx() == 0xFFFC);
    ring.set_used_event(0x8000);
    CHECK(q.should_notify());  // 0x8000 was crossed; the signalled point is now 0xFFFC
    uint64_t a = ram.alloc(8);
    std::vector<uint16_t> heads;
    for (int i = 0; i < 8; ++i) heads.push_back(ring.add_chain({{a, 8, false}, {a, 8, true}}));
    CHECK(ring.avail_idx() == 4);  // wrapped
    // 8 pending across the wrap is not "running ahead"; 9 would be.
    ring.set_avail_idx(5);
    CHECK_THROWS_WITH(q.pop(), Contains("runs ahead"));
    ring.set_avail_idx(4);
    for (int i = 0; i < 8; ++i) {
        auto c = q.pop();
        REQUIRE(c);
        CHECK(c->id == heads[i]);
        q.push_used(*c, i);
    }
    CHECK_FALSE(q.pop());
    CHECK(ring.used_idx() == 4);
    CHECK(ring.used(0xFFFF).len == 3);
    CHECK(ring.used(0).len == 4);

    // Event index arithmetic across the wrap: used went 0xFFFC -> 4 since the
    // last signal, used_event in that window notifies.
    ring.set_used_event(0xFFFE);
    CHECK(q.should_notify());
    ring.cycle(q, 1);  // used 4 -> 5
    ring.set_used_event(0xFFFE);
    CHECK_FALSE(q.should_notify());
    CHECK(q.enable_notifications() == false);
    CHECK(ring.avail_event() == 5);
}

// ------------------------------------------------------------ split: notifications

TEST_CASE("virtio queue: EVENT_IDX used_event decides interrupts", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 16, kEventIdx);
    Queue q(ram.mem, ring.config(), ring.features());
    uint64_t a = ram.alloc(8);
    auto complete = [&](int n) {
        for (int i = 0; i < n; ++i) {
            ring.add_chain({{a, 8, false}});
            auto c = q.pop();
            REQUIRE(c);
            q.push_used(*c, 0);
        }
    };
    CHECK_FALSE(q.should_notify());  // nothing used yet
    ring.set_used_event(0);
    complete(1);  // used 0 -> 1 crosses event 0
    CHECK(q.should_notify());
    complete(1);  // 1 -> 2, event 0 already passed
    CHECK_FALSE(q.should_notify());
    ring.set_used_event(4);
    complete(2);  // 2 -> 4: event 4 not yet crossed (needs used idx 5)
    CHECK_FALSE(q.should_notify());
    complete(3);  // 4 -> 7 crosses 4
    CHECK(q.should_notify());
    CHECK_FALSE(q.should_notify());  // nothing new since
    // With EVENT_IDX the NO_INTERRUPT flag is ignored.
    ring.set_avail_flags(1);
    ring.set_used_event(7);
    complete(1);
    CHECK(q.should_notify());
}

TEST_CASE("virtio queue: NO_INTERRUPT flag without EVENT_IDX", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 16);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t a = ram.alloc(8);
    ring.add_chain({{a, 8, false}});
    ring.add_chain({{a, 8, false}});
    q.push_used(*q.pop(), 0);
    CHECK(q.should_notify());
    ring.set_avail_flags(1);
    q.push_used(*q.pop(), 0);
    CHECK_FALSE(q.should_notify());
    ring.set_avail_flags(0);
    CHECK_FALSE(q.should_notify());  // nothing pushed since the last call
}

TEST_CASE("virtio queue: driver notification suppression", "[virtio][queue]") {
    FakeRam ram;
    uint64_t a = ram.alloc(8);
    SECTION("NO_NOTIFY flag without EVENT_IDX") {
        SplitRing ring(ram, 16);
        Queue q(ram.mem, ring.config(), 0);
        q.disable_notifications();
        CHECK(ring.used_flags() == 1);
        CHECK_FALSE(q.enable_notifications());
        CHECK(ring.used_flags() == 0);
        q.disable_notifications();
        ring.add_chain({{a, 8, false}});  // the driver adds while we are "busy"
        CHECK(q.enable_notifications());  // the race: caller must pop again
        CHECK(q.pop());
        CHECK_FALSE(q.enable_notifications());
    }
    SECTION("avail_event with EVENT_IDX") {
        SplitRing ring(ram, 16, kEventIdx);
        Queue q(ram.mem, ring.config(), ring.features());
        ring.add_chain({{a, 8, false}});
        ring.add_chain({{a, 8, false}});
        q.disable_notifications();
        CHECK(ring.used_flags() == 0);  // EVENT_IDX never uses the flag
        CHECK(q.pop());
        CHECK(q.enable_notifications());  // one still pending
        CHECK(ring.avail_event() == 1);
        CHECK(q.pop());
        CHECK_FALSE(q.enable_notifications());
        CHECK(ring.avail_event() == 2);
    }
}

TEST_CASE("virtio queue: drain serves every chain and re-arms notifications", "[virtio][queue]") {
    FakeRam ram;
    uint64_t a = ram.alloc(8);
    SplitRing ring(ram, 16);
    Queue q(ram.mem, ring.config(), 0);
    SECTION("all chains, including one posted while serving, then notifications on") {
        for (int i = 0; i < 3; ++i) ring.add_chain({{a, 8, false}});
        std::vector<uint16_t> seen;
        size_t n = vq::drain(q, [&](DescriptorChain& c) {
            CHECK(ring.used_flags() == 1);  // no kicks while busy
            seen.push_back(c.id);
            if (seen.size() == 1) ring.add_chain({{a, 8, false}});
            q.push_used(c, 0);
        });
        CHECK(n == 4);
        CHECK(seen.size() == 4);
        CHECK(ring.used_idx() == 4);
        CHECK(ring.used_flags() == 0);
        CHECK(vq::drain(q, [](DescriptorChain&) {}) == 0);
    }
    SECTION("a handler returning false stops it and leaves the rest on the ring") {
        for (int i = 0; i < 3; ++i) ring.add_chain({{a, 8, false}});
        size_t n = vq::drain(q, [&](DescriptorChain& c) {
            q.push_used(c, 0);
            return false;
        });
        CHECK(n == 1);
        CHECK(ring.used_flags() == 1);  // still off: the caller stopped serving
        CHECK(vq::drain(q, [&](DescriptorChain& c) { q.push_used(c, 0); }) == 2);
    }
    SECTION("a malformed ring reaches the caller as QueueError") {
        ring.add_chain({{a, 8, false}});
        ring.set_avail_idx(40);
        size_t handled = 0;
        CHECK_THROWS_AS(vq::drain(q, [&](DescriptorChain&) { ++handled; }), QueueError);
        CHECK(handled == 0);
    }
}

// ------------------------------------------------------------ Reader / Writer

TEST_CASE("virtio queue: Reader reads exactly across buffer boundaries", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t b1 = ram.alloc(3), b2 = ram.alloc(5), b3 = ram.alloc(8);
    auto data = iota_bytes(16);
    ram.fill(b1, {data.begin(), data.begin() + 3});
    ram.fill(b2, {data.begin() + 3, data.begin() + 8});
    ram.fill(b3, {data.begin() + 8, data.end()});
    ring.add_chain({{b1, 3, false}, {b2, 5, false}, {b3, 8, false}});
    auto c = q.pop();
    REQUIRE(c);
    Reader r(ram.mem, *c);
    CHECK(r.remaining() == 16);
    std::vector<uint8_t> out(4);
    REQUIRE(r.read(out));  // 1,2,3 | 4
    CHECK(out == std::vector<uint8_t>{1, 2, 3, 4});
    auto v = r.read_obj<uint32_t>();  // 5,6,7,8 spans the end of b2
    REQUIRE(v);
    CHECK(*v == 0x08070605u);
    CHECK(r.remaining() == 8);
    std::vector<uint8_t> too_big(9);
    CHECK_FALSE(r.read(too_big));
    CHECK(r.remaining() == 8);  // nothing consumed
    r.skip(2);
    auto iov = r.take_iovecs(5);
    REQUIRE(iov.size() == 1);
    CHECK(iov[0].iov_len == 5);
    CHECK(static_cast<uint8_t*>(iov[0].iov_base)[0] == 11);
    CHECK(r.remaining() == 1);
    CHECK_THROWS_AS(r.take_iovecs(2), QueueError);
    CHECK_THROWS_AS(r.skip(2), QueueError);
    CHECK(r.read_obj<uint8_t>() == uint8_t{16});
    CHECK_FALSE(r.read_obj<uint8_t>());
}

TEST_CASE("virtio queue: Reader::take_iovecs spans buffers", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t b1 = ram.alloc(10), b2 = ram.alloc(10), b3 = ram.alloc(10);
    ring.add_chain({{b1, 10, false}, {b2, 10, false}, {b3, 10, false}});
    auto c = q.pop();
    Reader r(ram.mem, *c);
    r.skip(4);
    auto iov = r.take_iovecs(20);
    REQUIRE(iov.size() == 3);
    CHECK(iov[0].iov_len == 6);
    CHECK(iov[1].iov_len == 10);
    CHECK(iov[2].iov_len == 4);
    CHECK(iov[0].iov_base == ram.mem.slice(b1 + 4, 6)->data());
    CHECK(iov[2].iov_base == ram.mem.slice(b3, 4)->data());
    CHECK(r.remaining() == 6);
    CHECK(r.take_iovecs(0).empty());
}

TEST_CASE("virtio queue: Writer writes exactly, split_tail carves the status byte", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t h = ram.alloc(4), d1 = ram.alloc(6), d2 = ram.alloc(6), st = ram.alloc(1);
    ring.add_chain({{h, 4, false}, {d1, 6, true}, {d2, 6, true}, {st, 1, true}});
    auto c = q.pop();
    REQUIRE(c);
    Writer w(ram.mem, *c);
    CHECK(w.remaining() == 13);
    auto status = w.split_tail(1);
    REQUIRE(status);
    CHECK(status->remaining() == 1);
    CHECK(w.remaining() == 12);
    CHECK_FALSE(w.split_tail(13));

    auto data = iota_bytes(8, 0x10);
    REQUIRE(w.write(data));  // 6 into d1, 2 into d2
    CHECK(w.written() == 8);
    CHECK(ram.bytes(d1, 6) == std::vector<uint8_t>(data.begin(), data.begin() + 6));
    CHECK(ram.bytes(d2, 2) == std::vector<uint8_t>(data.begin() + 6, data.end()));
    CHECK_FALSE(w.write(iota_bytes(5)));  // only 4 left in the data area
    CHECK(w.written() == 8);
    CHECK(ram.bytes(d2 + 2, 4) == std::vector<uint8_t>(4, 0));  // nothing written
    REQUIRE(status->write_obj<uint8_t>(0xAB));
    CHECK(ram.get<uint8_t>(st) == 0xAB);
    CHECK_FALSE(status->write_obj<uint8_t>(1));

    auto iov = w.take_iovecs(4);
    REQUIRE(iov.size() == 1);
    CHECK(iov[0].iov_base == ram.mem.slice(d2 + 2, 4)->data());
    CHECK(w.written() == 12);
    CHECK(w.remaining() == 0);
    CHECK_THROWS_AS(w.take_iovecs(1), QueueError);
}

TEST_CASE("virtio queue: split_tail across buffers and after partial writes", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t d1 = ram.alloc(8), d2 = ram.alloc(3);
    ring.add_chain({{d1, 8, true}, {d2, 3, true}});
    auto c = q.pop();
    Writer w(ram.mem, *c);
    REQUIRE(w.write(iota_bytes(2)));
    auto tail = w.split_tail(5);  // last 2 bytes of d1 + all of d2
    REQUIRE(tail);
    CHECK(w.remaining() == 4);
    REQUIRE(tail->write(std::vector<uint8_t>{9, 9, 8, 8, 8}));
    CHECK(ram.bytes(d1 + 6, 2) == std::vector<uint8_t>{9, 9});
    CHECK(ram.bytes(d2, 3) == std::vector<uint8_t>{8, 8, 8});
    // The rest of this writer now ends before the tail.
    auto rest = w.split_tail(4);  // everything up to the cursor
    REQUIRE(rest);
    CHECK(w.remaining() == 0);
    CHECK_FALSE(w.write(iota_bytes(1)));
    REQUIRE(rest->write(std::vector<uint8_t>{7, 7, 7, 7}));
    CHECK(ram.bytes(d1, 8) == std::vector<uint8_t>{1, 2, 7, 7, 7, 7, 9, 9});
    CHECK(w.split_tail(0));
}

TEST_CASE("virtio queue: Reader and Writer on a chain without that part", "[virtio][queue]") {
    FakeRam ram;
    SplitRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), 0);
    uint64_t a = ram.alloc(8);
    ring.add_chain({{a, 8, true}});
    auto c = q.pop();
    Reader r(ram.mem, *c);
    CHECK(r.remaining() == 0);
    CHECK_FALSE(r.read_obj<uint8_t>());
    CHECK(r.take_iovecs(0).empty());
    Writer w(ram.mem, *c);
    CHECK(w.remaining() == 8);
    CHECK_FALSE(w.split_tail(9));
}

// ------------------------------------------------------------ packed ring

TEST_CASE("virtio queue: packed ring configuration is validated", "[virtio][queue][packed]") {
    FakeRam ram;
    PackedRing ring(ram, 3);  // any size is fine for packed rings
    QueueConfig c = ring.config();
    Queue q(ram.mem, c, ring.features());
    CHECK(q.packed());
    CHECK(q.size() == 3);
    for (uint16_t bad : {0, 32769}) {
        QueueConfig b = c;
        b.size = bad;
        CHECK_THROWS_WITH(Queue(ram.mem, b, ring.features()), Contains("packed queue size"));
    }
    QueueConfig b = c;
    b.desc_addr += 4;
    CHECK_THROWS_WITH(Queue(ram.mem, b, ring.features()), Contains("descriptor ring") && Contains("aligned"));
    b = c;
    b.driver_addr += 2;
    CHECK_THROWS_WITH(Queue(ram.mem, b, ring.features()), Contains("driver event") && Contains("aligned"));
    b = c;
    b.device_addr = FakeRam::kHole;
    CHECK_THROWS_WITH(Queue(ram.mem, b, ring.features()), Contains("device event") && Contains("not inside"));
    b = c;
    b.desc_addr = FakeRam::kHighBase + FakeRam::kHighSize - 32;  // 48 bytes needed
    CHECK_THROWS_WITH(Queue(ram.mem, b, ring.features()), Contains("not inside guest RAM"));
}

TEST_CASE("virtio queue: packed ring pops chains and writes used descriptors", "[virtio][queue][packed]") {
    using test::virtq::kPackedAvail;
    using test::virtq::kPackedUsed;
    FakeRam ram;
    PackedRing ring(ram, 8);
    Queue q(ram.mem, ring.config(), ring.features());
    CHECK_FALSE(q.pop());
    uint64_t h = ram.alloc(16), d = ram.alloc(512), s = ram.alloc(1);
    ring.add_chain({{h, 16, false}, {d, 512, true}, {s, 1, true}}, 42);
    uint64_t x = ram.alloc(8);
    ring.add_chain({{x, 8, false}}, 43);
    auto a = q.pop();
    REQUIRE(a);
    CHECK(a->id == 42);
    CHECK(a->desc_count == 3);
    CHECK(a->readable_bytes() == 16);
    CHECK(a->writable_bytes() == 513);
    auto b = q.pop();
    REQUIRE(b);
    CHECK(b->id == 43);
    CHECK(b->desc_count == 1);
    CHECK_FALSE(q.pop());

    // Completed out of order: used elements go in completion order and each
    // skips its chain's descriptor count.
    q.push_used(*b, 8);
    CHECK(ring.desc_flags(0) == (kPackedAvail | kPackedUsed));
    q.push_used(*a, 100);
    auto u1 = ring.next_used();
    REQUIRE(u1);
    CHECK(u1->id == 43);
    CHECK(u1->len == 8);
    // The second used element sits at slot 1 (after b's one descriptor).
    auto u2 = ring.next_used();
    REQUIRE(u2);
    CHECK(u2->id == 42);
    CHECK(u2->len == 100);
    CHECK_FALSE(ring.next_used());
}

TEST_CASE("virtio queue: packed wrap counters flip after size descriptors", "[virtio][queue][packed]") {
    FakeRam ram;
    PackedRing ring(ram, 4);
    Queue q(ram.mem, ring.config(), ring.features());
    ring.cycle(q, 3);
    CHECK(ring.driver_pos() == 3);
    // A two-descriptor chain straddling the end of the ring (slots 3 and 0).
    uint64_t a = ram.alloc(8), w = ram.alloc(8);
    ring.add_chain({{a, 8, false}, {w, 8, true}}, 9);
    CHECK_FALSE(ring.driver_wrap());
    auto c = q.pop();
    REQUIRE(c);
    CHECK(c->id == 9);
    CHECK(c->desc_count == 2);
    CHECK(c->readable[0].addr == a);
    CHECK(c->writable[0].addr == w);
    // Slot 1 still holds lap-one flags: not available in lap two.
    CHECK_FALSE(q.pop());
    q.push_used(*c, 4);
    auto u = ring.next_used();
    REQUIRE(u);
    CHECK(u->id == 9);
    // The used element went to slot 3 with the lap-one bits; the next one
    // lands at slot 1 with lap-two bits (AVAIL = USED = 0).
    ring.add_chain({{a, 8, false}}, 10);
    auto c2 = q.pop();
    REQUIRE(c2);
    q.push_used(*c2, 0);
    CHECK(ring.desc_flags(1) == 0);
    REQUIRE(ring.next_used());
    // Many laps, with the ring size not a power of two.
    PackedRing odd(ram, 3);
    Queue q3(ram.mem, odd.config(), odd.features());
    odd.cycle(q3, 100);
    CHECK(odd.driver_pos() == 1);
    CHECK_FALSE(q3.pop());
}

TEST_CASE("virtio queue: packed indirect chains count one descriptor", "[virtio][queue][packed]") {
    FakeRam ram;
    PackedRing ring(ram, 4, kIndirect);
    Queue q(ram.mem, ring.config(), ring.features());
    uint64_t h = ram.alloc(16), d = ram.alloc(64);
    ring.add_indirect({{h, 16, false}, {d, 64, true}, {d, 0, true}}, 5);
    ring.add_chain({{h, 16, false}, {d, 64, true}}, 6);
    auto c = q.pop();
    REQUIRE(c);
    CHECK(c->id == 5);
    CHECK(c->desc_count == 1);
    CHECK(c->readable_bytes() == 16);
    CHECK(c->writable_bytes() == 64);
    auto c2 = q.pop();
    REQUIRE(c2);
    CHECK(c2->id == 6);
    CHECK(c2->desc_count == 2);
    q.push_used(*c, 1);
    q.push_used(*c2, 2);
    CHECK(ring.next_used()->id == 5);
    CHECK(ring.next_used()->id == 6);
    // Slots 0..2 are used: the next chain starts at slot 3 and wraps.
    ring.add_indirect({{h, 16, false}}, 7);
    ring.add_chain({{h, 16, false}}, 8);
    CHECK(q.pop()->id == 7);
    CHECK(q.pop()->id == 8);
}

TEST_CASE("virtio queue: malformed packed chains throw QueueError", "[virtio][queue][packed]") {
    using test::virtq::kDescIndirect;
    using test::virtq::kDescNext;
    FakeRam ram;
    PackedRing ring(ram, 4, kIndirect);
    Queue q(ram.mem, ring.config(), ring.features());
    uint64_t a = ram.alloc(64);

    SECTION("chain longer than the ring") {
        ring.add_chain({{a, 8, false}, {a, 8, false}, {a, 8, false}, {a, 8, false}}, 0, kDescNext);
        CHECK_THROWS_WITH(q.pop(), Contains("longer than the queue size 4"));
    }
    SECTION("buffer outside RAM") {
        ring.add_chain({{a, 8, false}, {FakeRam::kHole, 8, true}});
        CHECK_THROWS_WITH(q.pop(), Contains("descriptor 1: buffer") && Contains("not inside guest RAM"));
    }
    SECTION("addr + len overflows") {
        ring.add_chain({{~0ull - 1, 16, false}});
        CHECK_THROWS_WITH(q.pop(), Contains("not inside guest RAM"));
    }
    SECTION("readable after writable") {
        ring.add_chain({{a, 8, true}, {a, 8, false}});
        CHECK_THROWS_WITH(q.pop(), Contains("readable buffer after a writable one"));
    }
    SECTION("indirect inside a NEXT chain") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}});
        ring.add_chain({{t, 16, false}, {a, 8, false}}, 0, kDescIndirect);
        CHECK_THROWS_WITH(q.pop(), Contains("INDIRECT descriptor inside a NEXT chain"));
    }
    SECTION("indirect table length") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}, {a, 8, false}});
        ring.add_chain({{t, 24, false}}, 0, kDescIndirect);
        CHECK_THROWS_WITH(q.pop(), Contains("indirect table length 24"));
    }
    SECTION("indirect table outside RAM") {
        ring.add_chain({{FakeRam::kHole, 32, false}}, 0, kDescIndirect);
        CHECK_THROWS_WITH(q.pop(), Contains("indirect table") && Contains("not inside guest RAM"));
    }
    SECTION("nested indirect") {
        uint64_t t = ring.write_indirect_table({{a, 8, false}, {a, 16, false}});
        ram.put<uint16_t>(t + 16 + 14, kDescIndirect);
        ring.add_chain({{t, 32, false}}, 0, kDescIndirect);
        CHECK_THROWS_WITH(q.pop(), Contains("indirect entry 1: nested indirect"));
    }
    SECTION("readable after writable inside an indirect table") {
        ring.add_indirect({{a, 8, true}, {a, 8, false}});
        CHECK_THROWS_WITH(q.pop(), Contains("indirect entry 1: readable buffer after a writable one"));
    }
}

TEST_CASE("virtio queue: packed INDIRECT without the feature is an error", "[virtio][queue][packed]") {
    FakeRam ram;
    PackedRing ring(ram, 4);
    Queue q(ram.mem, ring.config(), ring.features());
    uint64_t a = ram.alloc(8);
    ring.add_indirect({{a, 8, false}});
    CHECK_THROWS_WITH(q.pop(), Contains("not negotiated"));
}

TEST_CASE("virtio queue: packed driver event suppression decides interrupts", "[virtio][queue][packed]") {
    FakeRam ram;
    uint64_t a = ram.alloc(8);
    auto complete = [&](PackedRing& ring, Queue& q, int n) {
        for (int i = 0; i < n; ++i) {
            ring.add_chain({{a, 8, false}});
            auto c = q.pop();
            REQUIRE(c);
            q.push_used(*c, 0);
            REQUIRE(ring.next_used());
        }
    };
    SECTION("enable / disable flags") {
        PackedRing ring(ram, 8);
        Queue q(ram.mem, ring.config(), ring.features());
        CHECK_FALSE(q.should_notify());  // nothing used
        complete(ring, q, 1);
        CHECK(q.should_notify());  // flags 0: enabled
        ring.set_driver_event(0, 1);
        complete(ring, q, 1);
        CHECK_FALSE(q.should_notify());
        // Descriptor-specific without EVENT_IDX is treated as enabled.
        ring.set_driver_event(0, 2);
        complete(ring, q, 1);
        CHECK(q.should_notify());
    }
    SECTION("descriptor-specific events with EVENT_IDX, across the wrap") {
        PackedRing ring(ram, 4, kEventIdx);
        Queue q(ram.mem, ring.config(), ring.features());
        ring.set_driver_event(0x8000 | 2, 2);  // slot 2, lap one
        complete(ring, q, 2);                  // used slots 0, 1
        CHECK_FALSE(q.should_notify());
        complete(ring, q, 1);  // slot 2 used
        CHECK(q.should_notify());
        ring.set_driver_event(0x0000 | 0, 2);  // slot 0 of lap two
        complete(ring, q, 1);                  // slot 3 (lap one)
        CHECK_FALSE(q.should_notify());
        complete(ring, q, 1);  // slot 0 of lap two
        CHECK(q.should_notify());
        ring.set_driver_event(0x8000 | 3, 2);  // lap one, long past
        complete(ring, q, 1);
        CHECK_FALSE(q.should_notify());
        // A batch that covers the event notifies once.
        ring.set_driver_event(0x0000 | 3, 2);
        complete(ring, q, 3);  // slots 2, 3, 0 (lap three)
        CHECK(q.should_notify());
        CHECK_FALSE(q.should_notify());
    }
}

TEST_CASE("virtio queue: packed device event suppression", "[virtio][queue][packed]") {
    FakeRam ram;
    uint64_t a = ram.alloc(8);
    SECTION("without EVENT_IDX") {
        PackedRing ring(ram, 4);
        Queue q(ram.mem, ring.config(), ring.features());
        q.disable_notifications();
        CHECK(ring.device_event_flags() == 1);
        CHECK_FALSE(q.enable_notifications());
        CHECK(ring.device_event_flags() == 0);
        q.disable_notifications();
        ring.add_chain({{a, 8, false}});
        CHECK(q.enable_notifications());  // raced: pop again
        CHECK(q.pop());
        CHECK_FALSE(q.enable_notifications());
    }
    SECTION("with EVENT_IDX the next position and wrap are published") {
        PackedRing ring(ram, 4, kEventIdx);
        Queue q(ram.mem, ring.config(), ring.features());
        ring.cycle(q, 5);  // avail position 1 of lap two
        CHECK_FALSE(q.enable_notifications());
        CHECK(ring.device_event_flags() == 2);
        CHECK(ring.device_event_off_wrap() == 1);  // wrap bit 0 in lap two
        ring.cycle(q, 3);  // position 0 of lap three
        CHECK_FALSE(q.enable_notifications());
        CHECK(ring.device_event_off_wrap() == 0x8000);
    }
}

TEST_CASE("virtio queue: push_used rejects a chain that is not from this ring", "[virtio][queue][packed]") {
    FakeRam ram;
    PackedRing ring(ram, 4);
    Queue q(ram.mem, ring.config(), ring.features());
    DescriptorChain bogus;
    bogus.desc_count = 5;
    CHECK_THROWS_AS(q.push_used(bogus, 0), QueueError);
    bogus.desc_count = 0;
    CHECK_THROWS_AS(q.push_used(bogus, 0), QueueError);
}

TEST_CASE("virtio queue: scatter copies into host iovecs from an offset, up to their end", "[virtio][queue]") {
    uint8_t a[4] = {}, b[8] = {}, c[3] = {};
    std::vector<iovec> iov{{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
    const uint8_t two[2] = {0xaa, 0xbb};
    // Offset 3: the last byte of a, then the first of b.
    CHECK(vmm::virtio::scatter(iov, 3, two) == 2);
    CHECK(a[3] == 0xaa);
    CHECK(b[0] == 0xbb);
    CHECK(a[2] == 0);
    CHECK(b[1] == 0);
    std::vector<uint8_t> many(20, 0x5c);
    CHECK(vmm::virtio::scatter(iov, 10, many) == 5);  // 2 bytes of b, all of c
    CHECK(b[5] == 0);
    CHECK(b[6] == 0x5c);
    CHECK(c[2] == 0x5c);
    CHECK(vmm::virtio::scatter(iov, 15, many) == 0);  // past the end
}

TEST_CASE("virtio queue: gather copies out of host iovecs from an offset, up to their end", "[virtio][queue]") {
    uint8_t a[4] = {1, 2, 3, 4}, b[8] = {5, 6, 7, 8, 9, 10, 11, 12}, c[3] = {13, 14, 15};
    std::vector<iovec> iov{{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
    std::array<uint8_t, 3> three{};
    // Offset 3: the last byte of a, then the first two of b.
    CHECK(vmm::virtio::gather(iov, 3, three) == 3);
    CHECK(three == std::array<uint8_t, 3>{4, 5, 6});
    std::vector<uint8_t> many(20, 0);
    CHECK(vmm::virtio::gather(iov, 10, many) == 5);  // 2 bytes of b, all of c
    CHECK(std::vector<uint8_t>(many.begin(), many.begin() + 6) == std::vector<uint8_t>{11, 12, 13, 14, 15, 0});
    CHECK(vmm::virtio::gather(iov, 15, many) == 0);  // past the end
}

TEST_CASE("virtio queue: a used ring laid over the avail index is an error, not an endless drain",
          "[virtio][queue]") {
    // Found by fuzz_virtqueue. A size-1 split ring whose used ring starts 2
    // bytes into the avail ring: the used flags the device writes on
    // disable/enable_notifications() are the avail index it reads, so
    // "buffers are available" flips on and off with its own writes and
    // drain() used to spin forever (a stuck I/O thread, a VMM that cannot
    // stop). Now the vanished buffers are a QueueError, like any other
    // malformed ring.
    FakeRam ram;
    const uint64_t desc = 0x1000, avail = 0x2002, buf = 0x3000;
    vmm::virtio::QueueConfig cfg{1, desc, avail, avail + 2};
    test::virtq::SplitRing::write_raw_desc(ram, desc, buf, 64, test::virtq::kDescWrite, 0);
    ram.put<uint16_t>(avail, 0);      // flags
    ram.put<uint16_t>(avail + 2, 0);  // idx: nothing yet; disable_notifications() makes it 1
    ram.put<uint16_t>(avail + 4, 0);  // ring[0]: head 0
    vmm::virtio::Queue q(ram.mem, cfg, feature(vmm::virtio::kFeatureVersion1));
    size_t served = 0;
    CHECK_THROWS_WITH(vmm::virtio::drain(q,
                                         [&](vmm::virtio::DescriptorChain& c) {
                                             ++served;
                                             q.push_used(c, 0);
                                         }),
                      Contains("available buffers vanished"));
    CHECK(served == 1);
}
