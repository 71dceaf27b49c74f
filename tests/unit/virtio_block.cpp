// virtio-blk: the request parser on hand-made chains in fake guest RAM, and
// the device end to end (split ring, kick eventfd, disk on a temp file).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "virtio/block.h"
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
        if (!b.empty()) std::memcpy(b.data(), segs.data(), b.size());  // memcpy(nullptr, ..., 0) is UB
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

// ---------------------------------------------------------------------------
// The device end to end: split ring in fake RAM, kick eventfd, temp image.

namespace {

struct TempImage {
    std::string dir, path;
    explicit TempImage(uint64_t size) {
        char tmpl[] = "/tmp/vmm-blk-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        path = dir + "/disk.img";
        int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        REQUIRE(fd >= 0);
        std::vector<uint8_t> data(size);
        for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i / 512 + i);
        REQUIRE(::pwrite(fd, data.data(), size, 0) == static_cast<ssize_t>(size));
        ::close(fd);
    }
    ~TempImage() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::vector<uint8_t> read(uint64_t off, size_t len) const {
        std::vector<uint8_t> out(len);
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        REQUIRE(::pread(fd, out.data(), len, static_cast<off_t>(off)) == static_cast<ssize_t>(len));
        ::close(fd);
        return out;
    }
};

BlockConfig bcfg(const std::string& path, bool ro = false, std::string serial = "", uint16_t nq = 1,
                 uint16_t qs = 256) {
    BlockConfig c;
    c.disk.path = path;
    c.disk.readonly = ro;
    c.serial = std::move(serial);
    c.num_queues = nq;
    c.queue_size = qs;
    return c;
}

struct FakeInterrupt : VirtioInterrupt {
    std::mutex mu;
    std::condition_variable cv;
    unsigned queue_signals = 0;
    void signal_queue(uint16_t) override {
        std::lock_guard lk(mu);
        ++queue_signals;
        cv.notify_all();
    }
    void signal_config() override {}
};

// Plays the driver for one split queue of a BlockDevice.
struct Driver {
    FakeRam ram;
    test::virtq::SplitRing ring{ram, 16};
    std::shared_ptr<vmm::EventFd> kick = std::make_shared<vmm::EventFd>();
    std::shared_ptr<FakeInterrupt> irq = std::make_shared<FakeInterrupt>();
    std::shared_ptr<QueueStats> stats = std::make_shared<QueueStats>();  // the transport's per-queue counters
    std::atomic<int> resets{0};

    void activate(BlockDevice& dev) {
        ActivationContext ctx;
        ctx.mem = &ram.mem;
        Queue q(ram.mem, ring.config(), ring.features());
        q.set_stats(stats);
        ctx.queues.push_back({0, std::move(q), kick});
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { resets++; };
        dev.activate(std::move(ctx));
    }

    // Kicks and waits (bounded) until the used index reaches `want`.
    bool kick_and_wait(uint16_t want) {
        kick->signal();
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        std::unique_lock lk(irq->mu);
        while (ring.used_idx() != want) {
            if (irq->cv.wait_until(lk, deadline) == std::cv_status::timeout) return ring.used_idx() == want;
        }
        return true;
    }

    // One request: header, optional readable payload, `in_len` writable bytes, status.
    struct Posted {
        uint16_t head;
        uint64_t data;
        uint64_t status;
    };
    Posted post(uint32_t type, uint64_t sector, const std::vector<uint8_t>& out, uint32_t in_len) {
        uint64_t hdr = ram.alloc(16);
        ram.put(hdr, RequestHeader{type, 0, sector});
        std::vector<test::virtq::Desc> d{{hdr, 16, false}};
        uint64_t data = 0;
        if (!out.empty()) {
            data = ram.alloc(out.size());
            ram.fill(data, out);
            d.push_back({data, static_cast<uint32_t>(out.size()), false});
        }
        if (in_len) {
            data = ram.alloc(in_len);
            d.push_back({data, in_len, true});
        }
        uint64_t st = ram.alloc(1);
        ram.put<uint8_t>(st, 0xff);
        d.push_back({st, 1, true});
        return {ring.add_chain(d), data, st};
    }
};

}  // namespace

TEST_CASE("blk device: config space and features", "[blk]") {
    TempImage img(1 << 20);
    {  // the read-only device below would conflict with this writer's lock
        BlockDevice dev(bcfg(img.path, false, "sn", 2, 128));
        CHECK(dev.device_type() == 2);
        CHECK(dev.queue_max_sizes() == std::vector<uint16_t>{128, 128});
        uint64_t f = dev.device_features();
        CHECK(f & (1u << kBlkFeatureSegMax));
        CHECK(f & (1u << kBlkFeatureBlkSize));
        CHECK(f & (1u << kBlkFeatureFlush));
        CHECK(f & (1u << kBlkFeatureMq));
        CHECK(f & (1u << kBlkFeatureDiscard));
        CHECK(f & (1u << kBlkFeatureWriteZeroes));
        CHECK_FALSE(f & (1u << kBlkFeatureRo));
        std::vector<uint8_t> cfg(64, 0xaa);
        dev.read_config(0, cfg);
        CHECK(test::rd(cfg, 0, 8) == 2048);  // capacity
        CHECK(test::rd(cfg, 12, 4) == 126);  // seg_max
        CHECK(test::rd(cfg, 20, 4) == 512);  // blk_size
        CHECK(test::rd(cfg, 34, 2) == 2);    // num_queues
        CHECK(test::rd(cfg, 40, 4) > 0);     // max_discard_seg
        CHECK(test::rd(cfg, 56, 1) == 1);    // write_zeroes_may_unmap
        CHECK(test::rd(cfg, 60, 4) == 0);    // past the end reads zero
        std::vector<uint8_t> one(4);
        dev.read_config(UINT64_MAX - 1, one);  // offset overflow
        CHECK(test::rd(one, 0, 4) == 0);
    }

    auto rocfg = bcfg(img.path, true);
    rocfg.name = "virtio-blk1";
    BlockDevice ro(rocfg);
    uint64_t f = ro.device_features();
    CHECK(f & (1u << kBlkFeatureRo));
    CHECK_FALSE(f & (1u << kBlkFeatureFlush));
    CHECK_FALSE(f & (1u << kBlkFeatureDiscard));
    CHECK_FALSE(f & (1u << kBlkFeatureMq));

    CHECK_THROWS_WITH(BlockDevice(bcfg(img.path, true, std::string(21, 'x'))), Catch::Contains("serial"));
    CHECK_THROWS_WITH(BlockDevice(bcfg(img.path, true, "", 1, 100)), Catch::Contains("power of two"));
    CHECK_THROWS_WITH(BlockDevice(bcfg(img.path, true, "", 0)), Catch::Contains("num_queues"));
}

TEST_CASE("blk device: requests through a split ring", "[blk]") {
    const char* engine = GENERATE("io_uring", "threads");
    uint32_t poll_us = GENERATE(0u, 1000u);  // the I/O thread sleeps, or busy-polls the ring and the engine
    INFO("engine " << engine << ", poll_us " << poll_us);
    ::setenv("VMM_DISK_ENGINE", engine, 1);
    TempImage img(1 << 20);
    auto cfg = bcfg(img.path, false, "serial-42");
    cfg.poll_us = poll_us;
    BlockDevice dev(cfg);
    Driver drv;
    drv.activate(dev);  // engines are made here
    ::unsetenv("VMM_DISK_ENGINE");

    // Write two sectors, then read them back plus one untouched sector.
    std::vector<uint8_t> data(1024);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 3);
    auto w = drv.post(kTypeOut, 8, data, 0);
    REQUIRE(drv.kick_and_wait(1));
    CHECK(drv.ring.used(0).id == w.head);
    CHECK(drv.ring.used(0).len == 1);
    CHECK(drv.ram.get<uint8_t>(w.status) == kStatusOk);
    CHECK(img.read(8 * 512, 1024) == data);

    auto r = drv.post(kTypeIn, 8, {}, 1536);
    auto id = drv.post(kTypeGetId, 0, {}, 20);
    auto fl = drv.post(kTypeFlush, 0, {}, 0);
    auto bad = drv.post(kTypeIn, 2047, {}, 1024);  // crosses the end
    auto un = drv.post(77, 0, {}, 0);
    REQUIRE(drv.kick_and_wait(6));
    std::map<uint16_t, uint32_t> used;
    for (uint16_t i = 1; i < 6; ++i) used[static_cast<uint16_t>(drv.ring.used(i).id)] = drv.ring.used(i).len;
    CHECK(used[r.head] == 1537);
    CHECK(drv.ram.get<uint8_t>(r.status) == kStatusOk);
    auto got = drv.ram.bytes(r.data, 1536);
    CHECK(std::vector<uint8_t>(got.begin(), got.begin() + 1024) == data);
    CHECK(std::vector<uint8_t>(got.begin() + 1024, got.end()) == img.read(10 * 512, 512));
    CHECK(used[id.head] == 21);
    auto idb = drv.ram.bytes(id.data, 20);
    CHECK(std::string(idb.begin(), idb.begin() + 9) == "serial-42");
    CHECK(drv.ram.get<uint8_t>(fl.status) == kStatusOk);
    CHECK(used[bad.head] == 1);
    CHECK(drv.ram.get<uint8_t>(bad.status) == kStatusIoErr);
    CHECK(drv.ram.get<uint8_t>(un.status) == kStatusUnsupp);

    // Write-zeroes with unmap over the sectors written above.
    uint64_t seg = drv.ram.alloc(16);
    drv.ram.put(seg, DiscardSegment{8, 2, kWriteZeroesUnmap});
    uint64_t hdr = drv.ram.alloc(16);
    drv.ram.put(hdr, RequestHeader{kTypeWriteZeroes, 0, 0});
    uint64_t st = drv.ram.alloc(1);
    drv.ring.add_chain({{hdr, 16, false}, {seg, 16, false}, {st, 1, true}});
    REQUIRE(drv.kick_and_wait(7));
    CHECK(drv.ram.get<uint8_t>(st) == kStatusOk);
    CHECK(img.read(8 * 512, 1024) == std::vector<uint8_t>(1024, 0));

    dev.reset();
    auto s = dev.counters();
    CHECK(s.at("requests") == 7);
    CHECK(s.at("write_bytes") == 1024);
    CHECK(s.at("read_bytes") == 1536);
    CHECK(s.at("errors") == 2);
    // Kicks and interrupts are counted once, per queue, where the transport reads them.
    CHECK_FALSE(s.count("notifications"));
    CHECK_FALSE(s.count("interrupts"));
    // A polling I/O thread may find a batch before it reads the kick's
    // eventfd, and then the next kick and that one read as one.
    CHECK(drv.stats->notifications >= (poll_us ? 1u : 3u));
    CHECK(drv.stats->used == 7);
    CHECK(drv.irq->queue_signals >= 3);
    CHECK(drv.resets == 0);
}

TEST_CASE("blk device: a broken ring asks for a reset and stops the queue", "[blk]") {
    TempImage img(1 << 16);
    BlockDevice dev(bcfg(img.path));
    Driver drv;
    drv.activate(dev);
    // An avail entry naming a descriptor outside the table.
    drv.ring.set_avail_entry(0, 999);
    drv.ring.set_avail_idx(1);
    drv.kick->signal();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (drv.resets == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(drv.resets == 1);
    // Later kicks are ignored, the used ring stays untouched.
    drv.post(kTypeFlush, 0, {}, 0);
    drv.kick->signal();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(drv.ring.used_idx() == 0);
    CHECK(drv.resets == 1);

    // After a reset the device serves a fresh queue again.
    dev.reset();
    Driver again;
    again.activate(dev);
    auto f = again.post(kTypeFlush, 0, {}, 0);
    REQUIRE(again.kick_and_wait(1));
    CHECK(again.ram.get<uint8_t>(f.status) == kStatusOk);
}

TEST_CASE("blk device: read-only disk answers writes with IOERR", "[blk]") {
    TempImage img(1 << 16);
    BlockDevice dev(bcfg(img.path, true));
    Driver drv;
    drv.activate(dev);
    auto w = drv.post(kTypeOut, 0, std::vector<uint8_t>(512, 1), 0);
    auto r = drv.post(kTypeIn, 0, {}, 512);
    REQUIRE(drv.kick_and_wait(2));
    CHECK(drv.ram.get<uint8_t>(w.status) == kStatusIoErr);
    CHECK(drv.ram.get<uint8_t>(r.status) == kStatusOk);
    CHECK(drv.ram.bytes(r.data, 512) == img.read(0, 512));
}

TEST_CASE("blk device: more requests than slots are served in rounds", "[blk]") {
    TempImage img(1 << 20);
    BlockDevice dev(bcfg(img.path, false, "", 1, 16));
    Driver drv;
    drv.activate(dev);
    // 3 rounds of 15 reads (the ring holds 16 descriptors: 3 per chain -> 5 chains at a time).
    uint16_t total = 0;
    for (int round = 0; round < 3; ++round) {
        std::vector<Driver::Posted> p;
        for (int i = 0; i < 5; ++i) p.push_back(drv.post(kTypeIn, uint64_t(round * 5 + i), {}, 512));
        total = static_cast<uint16_t>(total + 5);
        REQUIRE(drv.kick_and_wait(total));
        for (int i = 0; i < 5; ++i) {
            CHECK(drv.ram.get<uint8_t>(p[i].status) == kStatusOk);
            CHECK(drv.ram.bytes(p[i].data, 512) == img.read(uint64_t(round * 5 + i) * 512, 512));
        }
    }
    dev.reset();
    CHECK(dev.counters().at("read_bytes") == 15 * 512);
}

TEST_CASE("blk device: two queues served by their own threads", "[blk]") {
    TempImage img(1 << 20);
    BlockDevice dev(bcfg(img.path, false, "", 2, 16));
    Driver d0, d1;
    ActivationContext ctx;
    ctx.mem = &d0.ram.mem;
    // Both rings live in d0's RAM; d1 only lends its builder state.
    test::virtq::SplitRing ring1(d0.ram, 16);
    auto irq = std::make_shared<FakeInterrupt>();
    ctx.queues.push_back({0, Queue(d0.ram.mem, d0.ring.config(), 0), d0.kick});
    ctx.queues.push_back({1, Queue(d0.ram.mem, ring1.config(), 0), d1.kick});
    ctx.interrupt = irq;
    dev.activate(std::move(ctx));
    d0.irq = irq;
    auto a = d0.post(kTypeIn, 1, {}, 512);
    uint64_t hdr = d0.ram.alloc(16), buf = d0.ram.alloc(512), st = d0.ram.alloc(1);
    d0.ram.put(hdr, RequestHeader{kTypeIn, 0, 2});
    ring1.add_chain({{hdr, 16, false}, {buf, 512, true}, {st, 1, true}});
    d1.kick->signal();
    REQUIRE(d0.kick_and_wait(1));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (ring1.used_idx() != 1 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(ring1.used_idx() == 1);
    CHECK(d0.ram.get<uint8_t>(a.status) == kStatusOk);
    CHECK(d0.ram.get<uint8_t>(st) == kStatusOk);
    CHECK(d0.ram.bytes(a.data, 512) == img.read(512, 512));
    CHECK(d0.ram.bytes(buf, 512) == img.read(1024, 512));
    dev.reset();
    CHECK(dev.counters().at("requests") == 2);
}
