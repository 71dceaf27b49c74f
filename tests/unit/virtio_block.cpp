// virtio-blk: the request parser on hand-made chains in fake guest RAM, and
// the device end to end (split ring, kick eventfd, disk on a temp file).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "virtio/block_request.h"
#include "virtq_builder.h"

using namespace vmm::virtio;
using namespace vmm::virtio::blk;
using test::virtq::FakeRam;

namespace {

constexpr uint64_t kCapacity = 2048;  // sectors (1 MiB)

Limits limits(bool ro = false) {
    Limits l;
    l.capacity = kCapacity;
    l.readonly = ro;
    l.max_discard_sectors = 1024;
    l.max_discard_seg = 4;
    l.max_write_zeroes_sectors = 1024;
    l.max_write_zeroes_seg = 2;
    return l;
}

// Builds a DescriptorChain directly (the parser never sees the ring).
struct ChainBuilder {
    FakeRam& ram;
    DescriptorChain chain;
    explicit ChainBuilder(FakeRam& r) : ram(r) {}

    uint64_t readable(const std::vector<uint8_t>& bytes) {
        uint64_t a = ram.alloc(bytes.size());
        ram.fill(a, bytes);
        chain.readable.push_back({a, static_cast<uint32_t>(bytes.size())});
        return a;
    }
    uint64_t header(uint32_t type, uint64_t sector) {
        RequestHeader h{type, 0, sector};
        std::vector<uint8_t> b(sizeof h);
        std::memcpy(b.data(), &h, sizeof h);
        return readable(b);
    }
    uint64_t segments(const std::vector<DiscardSegment>& segs) {
        std::vector<uint8_t> b(segs.size() * sizeof(DiscardSegment));
        std::memcpy(b.data(), segs.data(), b.size());
        return readable(b);
    }
    uint64_t writable(uint32_t len, uint8_t fill = 0xee) {
        uint64_t a = ram.alloc(len);
        ram.fill(a, std::vector<uint8_t>(len, fill));
        chain.writable.push_back({a, len});
        return a;
    }
};

uint8_t* host(FakeRam& ram, uint64_t gpa) { return ram.mem.slice(gpa, 1)->data(); }

// Parses, finishes with the parser's own status, returns {status byte, used len}.
std::pair<int, uint32_t> complete(FakeRam& ram, Request& r, uint64_t status_gpa) {
    REQUIRE(r.action == Action::Complete);
    uint32_t used = finish(r, r.status);
    return {ram.get<uint8_t>(status_gpa), used};
}

}  // namespace

TEST_CASE("blk parser: IN reads into the writable part before the status byte", "[blk]") {
    FakeRam ram;
    ChainBuilder b(ram);
    b.header(kTypeIn, 2);
    uint64_t d1 = b.writable(512);
    uint64_t d2 = b.writable(512);
    uint64_t st = b.writable(1);
    Request r = parse(ram.mem, b.chain, limits(), "");
    REQUIRE(r.action == Action::Read);
    CHECK(r.offset == 1024);
    CHECK(r.length == 1024);
    REQUIRE(r.iov.size() == 2);
    CHECK(r.iov[0].iov_base == host(ram, d1));
    CHECK(r.iov[1].iov_base == host(ram, d2));
    CHECK(r.iov[0].iov_len + r.iov[1].iov_len == 1024);
    CHECK(finish(r, kStatusOk) == 1025);
    CHECK(ram.get<uint8_t>(st) == kStatusOk);
    Request again = parse(ram.mem, b.chain, limits(), "");
    CHECK(finish(again, kStatusIoErr) == 1);  // no data counted on failure
    CHECK(ram.get<uint8_t>(st) == kStatusIoErr);
}

TEST_CASE("blk parser: the status byte is the last writable byte, even inside a data buffer", "[blk]") {
    FakeRam ram;
    ChainBuilder b(ram);
    b.header(kTypeIn, 0);
    uint64_t d = b.writable(513);
    Request r = parse(ram.mem, b.chain, limits(), "");
    REQUIRE(r.action == Action::Read);
    REQUIRE(r.iov.size() == 1);
    CHECK(r.iov[0].iov_base == host(ram, d));
    CHECK(r.iov[0].iov_len == 512);
    CHECK(finish(r, kStatusOk) == 513);
    CHECK(ram.get<uint8_t>(d + 512) == kStatusOk);
    CHECK(ram.get<uint8_t>(d + 511) == 0xee);  // data untouched by the parser
}

TEST_CASE("blk parser: OUT takes the readable data after the header", "[blk]") {
    FakeRam ram;
    ChainBuilder b(ram);
    b.header(kTypeOut, 10);
    uint64_t d = b.readable(std::vector<uint8_t>(1536, 7));
    uint64_t st = b.writable(1);
    Request r = parse(ram.mem, b.chain, limits(), "");
    REQUIRE(r.action == Action::Write);
    CHECK(r.offset == 10 * 512);
    CHECK(r.length == 1536);
    REQUIRE(r.iov.size() == 1);
    CHECK(r.iov[0].iov_base == host(ram, d));
    CHECK(finish(r, kStatusOk) == 1);
    CHECK(ram.get<uint8_t>(st) == kStatusOk);

    SECTION("header and data in one buffer") {
        ChainBuilder c(ram);
        std::vector<uint8_t> bytes(16 + 512, 9);
        RequestHeader h{kTypeOut, 0, 1};
        std::memcpy(bytes.data(), &h, sizeof h);
        uint64_t a = c.readable(bytes);
        c.writable(1);
        Request w = parse(ram.mem, c.chain, limits(), "");
        REQUIRE(w.action == Action::Write);
        REQUIRE(w.iov.size() == 1);
        CHECK(w.iov[0].iov_base == host(ram, a + 16));
        CHECK(w.iov[0].iov_len == 512);
    }
}

TEST_CASE("blk parser: error statuses", "[blk]") {
    FakeRam ram;
    ChainBuilder b(ram);
    uint64_t st = 0;
    auto expect_in = [&](ChainBuilder& cb, uint8_t status) {
        Request r = parse(ram.mem, cb.chain, limits(), "");
        auto [s, used] = complete(ram, r, st);
        CHECK(s == status);
        CHECK(used == 1);
        CHECK(r.iov.empty());
        if (status != kStatusOk) CHECK(r.error != nullptr);
    };
    auto expect = [&](uint8_t status) { expect_in(b, status); };

    SECTION("unknown types") {
        for (uint32_t t : {2u, 3u, 7u, 99u, 0xffffffffu}) {
            ChainBuilder c(ram);
            c.header(t, 0);
            st = c.writable(1);
            expect_in(c, kStatusUnsupp);
        }
    }
    SECTION("header shorter than 16 bytes") {
        b.readable(std::vector<uint8_t>(15, 0));
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("no readable part at all") {
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("unaligned IN length") {
        b.header(kTypeIn, 0);
        b.writable(100);
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("unaligned OUT length") {
        b.header(kTypeOut, 0);
        b.readable(std::vector<uint8_t>(513, 0));
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("read crossing the end") {
        b.header(kTypeIn, kCapacity - 1);
        b.writable(1024);
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("write starting past the end") {
        b.header(kTypeOut, kCapacity);
        b.readable(std::vector<uint8_t>(512, 0));
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("sector whose byte offset overflows 64 bits") {
        b.header(kTypeIn, (UINT64_MAX >> 9) + 1);
        b.writable(512);
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("huge sector") {
        b.header(kTypeOut, UINT64_MAX);
        b.readable(std::vector<uint8_t>(512, 0));
        st = b.writable(1);
        expect(kStatusIoErr);
    }
    SECTION("last sector is fine") {
        b.header(kTypeIn, kCapacity - 1);
        b.writable(512);
        st = b.writable(1);
        Request r = parse(ram.mem, b.chain, limits(), "");
        CHECK(r.action == Action::Read);
    }
    SECTION("zero-length read at the end completes OK without I/O") {
        b.header(kTypeIn, kCapacity);
        st = b.writable(1);
        expect(kStatusOk);
    }
}

TEST_CASE("blk parser: read-only disks refuse writes, discard and write-zeroes", "[blk]") {
    FakeRam ram;
    for (uint32_t t : {kTypeOut, kTypeDiscard, kTypeWriteZeroes}) {
        ChainBuilder b(ram);
        b.header(t, 0);
        if (t == kTypeOut)
            b.readable(std::vector<uint8_t>(512, 0));
        else
            b.segments({{0, 8, 0}});
        uint64_t st = b.writable(1);
        Request r = parse(ram.mem, b.chain, limits(true), "");
        auto [s, used] = complete(ram, r, st);
        CHECK(s == kStatusIoErr);
        CHECK(used == 1);
    }
    ChainBuilder in(ram);
    in.header(kTypeIn, 0);
    in.writable(512);
    in.writable(1);
    CHECK(parse(ram.mem, in.chain, limits(true), "").action == Action::Read);
    ChainBuilder fl(ram);
    fl.header(kTypeFlush, 0);
    fl.writable(1);
    CHECK(parse(ram.mem, fl.chain, limits(true), "").action == Action::Flush);
}

TEST_CASE("blk parser: a chain without a status byte is dropped", "[blk]") {
    FakeRam ram;
    ChainBuilder b(ram);
    b.header(kTypeIn, 0);
    Request r = parse(ram.mem, b.chain, limits(), "");
    CHECK(r.action == Action::Drop);
    CHECK(r.error != nullptr);
    CHECK(finish(r, kStatusOk) == 0);
    ChainBuilder empty(ram);
    CHECK(parse(ram.mem, empty.chain, limits(), "").action == Action::Drop);
}

TEST_CASE("blk parser: GET_ID writes up to 20 bytes of the serial", "[blk]") {
    FakeRam ram;
    SECTION("short serial is NUL-padded") {
        ChainBuilder b(ram);
        b.header(kTypeGetId, 0);
        uint64_t id = b.writable(20);
        uint64_t st = b.writable(1);
        Request r = parse(ram.mem, b.chain, limits(), "disk-1");
        auto [s, used] = complete(ram, r, st);
        CHECK(s == kStatusOk);
        CHECK(used == 21);
        auto bytes = ram.bytes(id, 20);
        CHECK(std::string(bytes.begin(), bytes.begin() + 6) == "disk-1");
        CHECK(std::all_of(bytes.begin() + 6, bytes.end(), [](uint8_t c) { return c == 0; }));
    }
    SECTION("a small buffer truncates") {
        ChainBuilder b(ram);
        b.header(kTypeGetId, 0);
        uint64_t id = b.writable(8 + 1);  // 8 bytes of id, then the status
        Request r = parse(ram.mem, b.chain, limits(), "0123456789abcdefghijKLMN");
        auto [s, used] = complete(ram, r, id + 8);
        CHECK(s == kStatusOk);
        CHECK(used == 9);
        auto bytes = ram.bytes(id, 8);
        CHECK(std::string(bytes.begin(), bytes.end()) == "01234567");
    }
    SECTION("a big buffer gets only 20 bytes") {
        ChainBuilder b(ram);
        b.header(kTypeGetId, 0);
        uint64_t id = b.writable(64);
        uint64_t st = b.writable(1);
        Request r = parse(ram.mem, b.chain, limits(), "0123456789abcdefghijKLMN");
        auto [s, used] = complete(ram, r, st);
        CHECK(s == kStatusOk);
        CHECK(used == 21);
        auto bytes = ram.bytes(id, 21);
        CHECK(std::string(bytes.begin(), bytes.begin() + 20) == "0123456789abcdefghij");
        CHECK(bytes[20] == 0xee);
    }
}

TEST_CASE("blk parser: discard and write-zeroes segments", "[blk]") {
    FakeRam ram;
    auto run = [&](uint32_t type, const std::vector<DiscardSegment>& segs, uint8_t* status_out) {
        ChainBuilder b(ram);
        b.header(type, 0);
        b.segments(segs);
        uint64_t st = b.writable(1);
        Request r = parse(ram.mem, b.chain, limits(), "");
        if (r.action == Action::Complete) {
            finish(r, r.status);
            *status_out = ram.get<uint8_t>(st);
        }
        return r;
    };
    uint8_t s = 0xff;

    Request r = run(kTypeDiscard, {{8, 16, 0}, {100, 1, 0}}, &s);
    REQUIRE(r.action == Action::Discard);
    REQUIRE(r.ranges.size() == 2);
    CHECK(r.ranges[0].offset == 8 * 512);
    CHECK(r.ranges[0].length == 16 * 512);
    CHECK(r.ranges[1].offset == 100 * 512);
    CHECK(r.ranges[1].length == 512);

    r = run(kTypeWriteZeroes, {{0, 8, kWriteZeroesUnmap}, {16, 8, 0}}, &s);
    REQUIRE(r.action == Action::WriteZeroes);
    REQUIRE(r.ranges.size() == 2);
    CHECK(r.ranges[0].unmap);
    CHECK_FALSE(r.ranges[1].unmap);

    s = 0xff;
    run(kTypeDiscard, {{0, 8, kWriteZeroesUnmap}}, &s);  // no flags allowed on discard
    CHECK(s == kStatusUnsupp);
    s = 0xff;
    run(kTypeWriteZeroes, {{0, 8, 2}}, &s);
    CHECK(s == kStatusUnsupp);
    s = 0xff;
    run(kTypeDiscard, std::vector<DiscardSegment>(5, {0, 1, 0}), &s);  // max_discard_seg = 4
    CHECK(s == kStatusUnsupp);
    s = 0xff;
    run(kTypeWriteZeroes, std::vector<DiscardSegment>(3, {0, 1, 0}), &s);  // max_write_zeroes_seg = 2
    CHECK(s == kStatusUnsupp);
    s = 0xff;
    run(kTypeDiscard, {{kCapacity - 4, 8, 0}}, &s);
    CHECK(s == kStatusIoErr);
    s = 0xff;
    run(kTypeDiscard, {{UINT64_MAX, 1, 0}}, &s);
    CHECK(s == kStatusIoErr);
    s = 0xff;
    run(kTypeDiscard, {{0, 1025, 0}}, &s);  // over max_discard_sectors
    CHECK(s == kStatusIoErr);
    s = 0xff;
    run(kTypeDiscard, {{0, 0, 0}}, &s);  // nothing to do
    CHECK(s == kStatusOk);
    s = 0xff;
    run(kTypeDiscard, {}, &s);  // no segment at all
    CHECK(s == kStatusIoErr);

    // A trailing partial segment.
    ChainBuilder b(ram);
    b.header(kTypeDiscard, 0);
    b.readable(std::vector<uint8_t>(20, 0));
    uint64_t st = b.writable(1);
    Request p = parse(ram.mem, b.chain, limits(), "");
    REQUIRE(p.action == Action::Complete);
    finish(p, p.status);
    CHECK(ram.get<uint8_t>(st) == kStatusIoErr);
}

TEST_CASE("blk parser: in_capacity is overflow-safe", "[blk]") {
    CHECK(in_capacity(0, 0, 0));
    CHECK_FALSE(in_capacity(0, 512, 0));
    CHECK(in_capacity(10, 512, 11));
    CHECK_FALSE(in_capacity(10, 1024, 11));
    CHECK(in_capacity(11, 0, 11));
    CHECK_FALSE(in_capacity(12, 0, 11));
    uint64_t big = UINT64_MAX >> 9;
    CHECK(in_capacity(big - 1, 512, big));
    CHECK_FALSE(in_capacity(big - 1, UINT64_MAX, big));
    CHECK_FALSE(in_capacity(UINT64_MAX, 512, big));
}
