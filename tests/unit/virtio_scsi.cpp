// virtio-scsi device over real split rings in fake guest RAM: config space,
// request header parsing, data-in/data-out with residuals, disk I/O on temp
// images, hostile chains, the control queue and a broken ring.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "virtio/scsi.h"
#include "virtq_builder.h"
#include "vmm/core/bytes.h"

using namespace vmm::virtio;
using test::virtq::Desc;
using test::virtq::FakeRam;

namespace {

struct TempDir {
    std::string dir;
    TempDir() {
        char tmpl[] = "/tmp/vmm-scsi-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::string image(const std::string& name, uint64_t size, uint8_t seed = 0) const {
        std::string p = dir + "/" + name;
        int fd = ::open(p.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        REQUIRE(fd >= 0);
        std::vector<uint8_t> data(size);
        for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i / 512 + i + seed);
        REQUIRE(::pwrite(fd, data.data(), size, 0) == static_cast<ssize_t>(size));
        ::close(fd);
        return p;
    }
    static std::vector<uint8_t> read(const std::string& p, uint64_t off, size_t len) {
        std::vector<uint8_t> out(len);
        int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        REQUIRE(::pread(fd, out.data(), len, static_cast<off_t>(off)) == static_cast<ssize_t>(len));
        ::close(fd);
        return out;
    }
};

struct FakeInterrupt : VirtioInterrupt {
    std::mutex mu;
    std::condition_variable cv;
    void signal_queue(uint16_t) override {
        std::lock_guard lk(mu);
        cv.notify_all();
    }
    void signal_config() override {}
};

constexpr uint32_t kRespSize = 12 + 96;

// Plays the driver: control queue 0, event queue 1, one request queue 2.
struct Driver {
    FakeRam ram;
    test::virtq::SplitRing ctl{ram, 32}, evt{ram, 16}, req{ram, 32};
    std::shared_ptr<vmm::EventFd> ctl_kick = std::make_shared<vmm::EventFd>();
    std::shared_ptr<vmm::EventFd> evt_kick = std::make_shared<vmm::EventFd>();
    std::shared_ptr<vmm::EventFd> req_kick = std::make_shared<vmm::EventFd>();
    std::shared_ptr<FakeInterrupt> irq = std::make_shared<FakeInterrupt>();
    std::atomic<int> resets{0};

    void activate(ScsiDevice& dev) {
        ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.queues.push_back({0, Queue(ram.mem, ctl.config(), 0), ctl_kick});
        ctx.queues.push_back({1, Queue(ram.mem, evt.config(), 0), evt_kick});
        ctx.queues.push_back({2, Queue(ram.mem, req.config(), 0), req_kick});
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { resets++; };
        dev.activate(std::move(ctx));
    }

    static bool wait(test::virtq::SplitRing& ring, vmm::EventFd& kick, FakeInterrupt& irq, uint16_t want) {
        kick.signal();
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        std::unique_lock lk(irq.mu);
        while (ring.used_idx() != want)
            if (irq.cv.wait_until(lk, deadline) == std::cv_status::timeout) return ring.used_idx() == want;
        return true;
    }
    bool run_req(uint16_t want) { return wait(req, *req_kick, *irq, want); }
    bool run_ctl(uint16_t want) { return wait(ctl, *ctl_kick, *irq, want); }

    static std::vector<uint8_t> header(uint32_t lun, const std::vector<uint8_t>& cdb, uint8_t target = 0) {
        std::vector<uint8_t> h(19 + 32, 0);
        h[0] = 1;
        h[1] = target;
        h[2] = static_cast<uint8_t>(0x40 | (lun >> 8));
        h[3] = static_cast<uint8_t>(lun);
        std::copy(cdb.begin(), cdb.end(), h.begin() + 19);
        return h;
    }

    struct Posted {
        uint16_t head;
        uint64_t resp;
        uint64_t data;  // data-in buffer
    };
    // Header (+ data-out) readable, response (+ data-in) writable.
    Posted post(const std::vector<uint8_t>& hdr, const std::vector<uint8_t>& out, uint32_t in_len,
                uint32_t resp_len = kRespSize) {
        uint64_t h = ram.alloc(hdr.size());
        ram.fill(h, hdr);
        std::vector<Desc> d{{h, static_cast<uint32_t>(hdr.size()), false}};
        if (!out.empty()) {
            uint64_t o = ram.alloc(out.size());
            ram.fill(o, out);
            d.push_back({o, static_cast<uint32_t>(out.size()), false});
        }
        uint64_t r = ram.alloc(resp_len);
        ram.fill(r, std::vector<uint8_t>(resp_len, 0xee));
        d.push_back({r, resp_len, true});
        uint64_t in = 0;
        if (in_len) {
            in = ram.alloc(in_len);
            d.push_back({in, in_len, true});
        }
        return {req.add_chain(d), r, in};
    }

    // Response fields.
    uint32_t sense_len(const Posted& p) { return ram.get<uint32_t>(p.resp); }
    uint32_t resid(const Posted& p) { return ram.get<uint32_t>(p.resp + 4); }
    uint8_t status(const Posted& p) { return ram.get<uint8_t>(p.resp + 10); }
    uint8_t response(const Posted& p) { return ram.get<uint8_t>(p.resp + 11); }
    uint8_t sense(const Posted& p, size_t i) { return ram.get<uint8_t>(p.resp + 12 + i); }
    uint32_t used_len(uint16_t head) {
        for (uint16_t i = 0; i < req.used_idx(); ++i)
            if (req.used(i).id == head) return req.used(i).len;
        FAIL("head not used");
        return 0;
    }
};

std::vector<uint8_t> rw10(uint8_t op, uint32_t lba, uint16_t blocks) {
    std::vector<uint8_t> c(10, 0);
    c[0] = op;
    vmm::store_be32(c, 2, lba);
    vmm::store_be16(c, 7, blocks);
    return c;
}

ScsiConfig config(std::vector<ScsiLunSpec> luns) {
    ScsiConfig c;
    c.luns = std::move(luns);
    c.queue_size = 32;
    return c;
}

ScsiLunSpec lun_spec(const std::string& path, uint32_t lun, bool ro = false, bool cd = false) {
    ScsiLunSpec s;
    s.disk.path = path;
    s.disk.readonly = ro;
    s.lun = lun;
    s.cdrom = cd;
    return s;
}

}  // namespace

TEST_CASE("scsi device: config space, queues, writable sense and cdb sizes", "[scsi]") {
    TempDir t;
    ScsiDevice dev(config({lun_spec(t.image("a.img", 1 << 20), 0)}));
    CHECK(dev.device_type() == 8);
    CHECK(dev.queue_max_sizes() == std::vector<uint16_t>{64, 64, 32});  // control, event, request
    CHECK(dev.device_features() == 0);
    std::vector<uint8_t> c(40, 0xaa);
    dev.read_config(0, c);
    CHECK(test::rd(c, 0, 4) == 1);       // num_queues
    CHECK(test::rd(c, 4, 4) == 30);      // seg_max
    CHECK(test::rd(c, 8, 4) == 0xffff);  // max_sectors
    CHECK(test::rd(c, 12, 4) == 32);     // cmd_per_lun
    CHECK(test::rd(c, 16, 4) == 16);     // event_info_size
    CHECK(test::rd(c, 20, 4) == 96);     // sense_size
    CHECK(test::rd(c, 24, 4) == 32);     // cdb_size
    CHECK(test::rd(c, 28, 2) == 0);      // max_channel
    CHECK(test::rd(c, 30, 2) == 0);      // max_target
    CHECK(test::rd(c, 32, 4) == 16383);  // max_lun
    CHECK(test::rd(c, 36, 4) == 0);      // past the end
    std::vector<uint8_t> one(4);
    dev.read_config(UINT64_MAX - 1, one);
    CHECK(test::rd(one, 0, 4) == 0);

    uint32_t v = 64;
    dev.write_config(20, {reinterpret_cast<uint8_t*>(&v), 4});
    v = 100000;  // absurd: ignored
    dev.write_config(24, {reinterpret_cast<uint8_t*>(&v), 4});
    dev.write_config(0, {reinterpret_cast<uint8_t*>(&v), 4});  // read-only field
    dev.read_config(0, c);
    CHECK(test::rd(c, 20, 4) == 64);
    CHECK(test::rd(c, 24, 4) == 32);
    CHECK(test::rd(c, 0, 4) == 1);
    dev.reset();  // back to the defaults
    dev.read_config(0, c);
    CHECK(test::rd(c, 20, 4) == 96);

    CHECK_THROWS_WITH(ScsiDevice(config({lun_spec(t.dir + "/missing.img", 0)})),
                      Catch::Contains("--scsi-disk") && Catch::Contains("no such file"));
    CHECK_THROWS_WITH(ScsiDevice(config({lun_spec(t.dir + "/missing.iso", 0, true, true)})),
                      Catch::Contains("--cdrom"));
    CHECK_THROWS_WITH(ScsiDevice(config({lun_spec(t.image("x.img", 4096), 0, true), lun_spec(t.image("y.img", 4096), 0, true)})),
                      Catch::Contains("twice"));
    CHECK_THROWS_WITH(ScsiDevice(config({lun_spec(t.image("s.iso", 1024), 0, true, true)})),
                      Catch::Contains("2048"));
}

TEST_CASE("scsi device: commands, disk I/O and residuals through a split ring", "[scsi]") {
    const char* engine = GENERATE("io_uring", "threads");
    INFO("engine " << engine);
    ::setenv("VMM_DISK_ENGINE", engine, 1);
    TempDir t;
    std::string a = t.image("a.img", 1 << 20, 1);
    std::string b = t.image("b.img", 1 << 20, 2);
    std::string cd = t.image("c.iso", 10 * 2048, 3);
    ScsiDevice dev(config({lun_spec(a, 0), lun_spec(b, 5, true), lun_spec(cd, 300, true, true)}));
    Driver drv;
    drv.activate(dev);

    // WRITE(10) 2 blocks at LBA 8 of LUN 0, then read back 3 blocks into a larger buffer.
    std::vector<uint8_t> data(1024);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
    auto w = drv.post(Driver::header(0, rw10(0x2a, 8, 2)), data, 0);
    REQUIRE(drv.run_req(1));
    CHECK(drv.used_len(w.head) == kRespSize);
    CHECK(drv.response(w) == scsi::kRespOk);
    CHECK(drv.status(w) == scsi::kStatusGood);
    CHECK(drv.resid(w) == 0);
    CHECK(drv.sense_len(w) == 0);
    CHECK(TempDir::read(a, 8 * 512, 1024) == data);

    auto r = drv.post(Driver::header(0, rw10(0x28, 8, 3)), {}, 2048);
    REQUIRE(drv.run_req(2));
    CHECK(drv.status(r) == scsi::kStatusGood);
    CHECK(drv.used_len(r.head) == kRespSize + 1536);
    CHECK(drv.resid(r) == 512);
    auto got = drv.ram.bytes(r.data, 1536);
    CHECK(std::vector<uint8_t>(got.begin(), got.begin() + 1024) == data);
    CHECK(std::vector<uint8_t>(got.begin() + 1024, got.end()) == TempDir::read(a, 10 * 512, 512));

    // INQUIRY into a buffer bigger than the data: residual counts the rest.
    auto inq = drv.post(Driver::header(0, {0x12, 0, 0, 0, 255, 0}), {}, 255);
    // READ from the CD-ROM at LUN 300 (flat addressing), 2048-byte blocks.
    auto rc = drv.post(Driver::header(300, rw10(0x28, 9, 1)), {}, 2048);
    // Read-only disk refuses a write: DATA PROTECT.
    auto wp = drv.post(Driver::header(5, rw10(0x2a, 0, 1)), std::vector<uint8_t>(512, 1), 0);
    // Out of range: ILLEGAL REQUEST / LBA OUT OF RANGE.
    auto oor = drv.post(Driver::header(0, rw10(0x28, 2047, 2)), {}, 1024);
    // Unknown opcode.
    auto bad = drv.post(Driver::header(0, {0xc7}), {}, 0);
    // READ bigger than the data-in buffer: OVERRUN, no data.
    auto over = drv.post(Driver::header(0, rw10(0x28, 0, 4)), {}, 1024);
    // WRITE with less data-out than the transfer length: OVERRUN, nothing written.
    auto wshort = drv.post(Driver::header(0, rw10(0x2a, 100, 2)), std::vector<uint8_t>(512, 9), 0);
    // Target 1 and an unencodable LUN field: BAD_TARGET.
    auto bt = drv.post(Driver::header(0, {0x00}, 1), {}, 0);
    auto h = Driver::header(0, {0x00});
    h[2] = 0xc0;
    auto bt2 = drv.post(h, {}, 0);
    // An absent LUN of target 0: INQUIRY says "no device here".
    auto absent = drv.post(Driver::header(7, {0x12, 0, 0, 0, 36, 0}), {}, 36);
    // SYNCHRONIZE CACHE(10).
    auto sync = drv.post(Driver::header(0, {0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}), {}, 0);
    REQUIRE(drv.run_req(13));

    CHECK(drv.status(inq) == scsi::kStatusGood);
    CHECK(drv.used_len(inq.head) == kRespSize + 36);
    CHECK(drv.resid(inq) == 255 - 36);
    CHECK(drv.ram.get<uint8_t>(inq.data) == 0);

    CHECK(drv.status(rc) == scsi::kStatusGood);
    CHECK(drv.ram.bytes(rc.data, 2048) == TempDir::read(cd, 9 * 2048, 2048));

    CHECK(drv.status(wp) == scsi::kStatusCheckCondition);
    CHECK(drv.sense_len(wp) == 18);
    CHECK(drv.sense(wp, 0) == 0x70);
    CHECK(drv.sense(wp, 2) == 0x07);
    CHECK(drv.sense(wp, 12) == 0x27);
    CHECK(drv.used_len(wp.head) == kRespSize);
    CHECK(drv.resid(wp) == 512);
    CHECK(TempDir::read(b, 0, 512) != std::vector<uint8_t>(512, 1));

    CHECK(drv.status(oor) == scsi::kStatusCheckCondition);
    CHECK(drv.sense(oor, 2) == 0x05);
    CHECK(drv.sense(oor, 12) == 0x21);
    CHECK(drv.resid(oor) == 1024);

    CHECK(drv.status(bad) == scsi::kStatusCheckCondition);
    CHECK(drv.sense(bad, 12) == 0x20);

    CHECK(drv.response(over) == scsi::kRespOverrun);
    CHECK(drv.used_len(over.head) == kRespSize);
    CHECK(drv.response(wshort) == scsi::kRespOverrun);
    CHECK(TempDir::read(a, 100 * 512, 512) != std::vector<uint8_t>(512, 9));

    CHECK(drv.response(bt) == scsi::kRespBadTarget);
    CHECK(drv.response(bt2) == scsi::kRespBadTarget);
    CHECK(drv.status(absent) == scsi::kStatusGood);
    CHECK(drv.ram.get<uint8_t>(absent.data) == 0x7f);
    CHECK(drv.status(sync) == scsi::kStatusGood);

    // UNMAP of LBA 8..9 punches a hole that reads as zeroes.
    std::vector<uint8_t> list(24, 0);
    list[1] = 22;
    list[3] = 16;
    list[15] = 8;  // LBA 8
    list[19] = 2;  // 2 blocks
    auto um = drv.post(Driver::header(0, {0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}), list, 0);
    // WRITE SAME(16) UNMAP of LBA 20..23 with a zero block.
    std::vector<uint8_t> ws = {0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 4, 0, 0};
    auto wsame = drv.post(Driver::header(0, ws), std::vector<uint8_t>(512, 0), 0);
    REQUIRE(drv.run_req(15));
    CHECK(drv.status(um) == scsi::kStatusGood);
    CHECK(drv.status(wsame) == scsi::kStatusGood);
    CHECK(TempDir::read(a, 8 * 512, 1024) == std::vector<uint8_t>(1024, 0));
    CHECK(TempDir::read(a, 20 * 512, 2048) == std::vector<uint8_t>(2048, 0));
    CHECK(TempDir::read(a, 24 * 512, 1) != std::vector<uint8_t>(1, 0));

    auto c = dev.counters();
    dev.reset();
    ::unsetenv("VMM_DISK_ENGINE");
    CHECK(c["requests"] == 15);
    CHECK(c["write_bytes"] == 1024);
    CHECK(c["read_bytes"] == 1536 + 2048);
    CHECK(c["check_conditions"] == 3);
    CHECK(c["bad_target"] == 2);
    CHECK(c["errors"] == 2);  // the two OVERRUNs
    CHECK(drv.resets == 0);
}

TEST_CASE("scsi device: hostile chains get an error response or nothing, never a crash", "[scsi]") {
    TempDir t;
    ScsiDevice dev(config({lun_spec(t.image("a.img", 1 << 16), 0)}));
    Driver drv;
    drv.activate(dev);

    // Truncated request header: FAILURE.
    auto shortp = drv.post(std::vector<uint8_t>(10, 0), {}, 0);
    // Response area too small: used with 0 bytes, nothing written.
    auto tiny = drv.post(Driver::header(0, {0x00}), {}, 0, 20);
    // No writable part at all.
    uint64_t h = drv.ram.alloc(51);
    drv.ram.fill(h, Driver::header(0, {0x00}));
    uint16_t nowr = drv.req.add_chain({{h, 51, false}});
    // Huge READ(16) transfer length: LBA OUT OF RANGE before any buffer is looked at.
    std::vector<uint8_t> r16(16, 0);
    r16[0] = 0x88;
    r16[10] = r16[11] = r16[12] = r16[13] = 0xff;
    auto huge = drv.post(Driver::header(0, r16), {}, 512);
    // LBA + length wraps 2^64.
    std::vector<uint8_t> wrap(16, 0xff);
    wrap[0] = 0x88;
    wrap[1] = 0;
    wrap[14] = wrap[15] = 0;
    auto wr = drv.post(Driver::header(0, wrap), {}, 512);
    REQUIRE(drv.run_req(5));
    CHECK(drv.response(shortp) == scsi::kRespFailure);
    CHECK(drv.used_len(tiny.head) == 0);
    CHECK(drv.ram.get<uint8_t>(tiny.resp) == 0xee);
    CHECK(drv.used_len(nowr) == 0);
    CHECK(drv.status(huge) == scsi::kStatusCheckCondition);
    CHECK(drv.sense(huge, 12) == 0x21);
    CHECK(drv.status(wr) == scsi::kStatusCheckCondition);
    CHECK(drv.sense(wr, 12) == 0x21);

    // A driver-chosen cdb_size of 6 truncates a READ(10): INVALID FIELD; a
    // smaller sense_size truncates the sense.
    uint32_t v = 6;
    dev.write_config(24, {reinterpret_cast<uint8_t*>(&v), 4});
    v = 8;
    dev.write_config(20, {reinterpret_cast<uint8_t*>(&v), 4});
    auto hdr = Driver::header(0, rw10(0x28, 0, 1));
    hdr.resize(19 + 6);
    auto cut = drv.post(hdr, {}, 512, 12 + 8);
    REQUIRE(drv.run_req(6));
    CHECK(drv.status(cut) == scsi::kStatusCheckCondition);
    CHECK(drv.sense_len(cut) == 8);
    CHECK(drv.used_len(cut.head) == 20);

    // A broken ring: needs reset, the queue stops.
    drv.req.set_avail_idx(static_cast<uint16_t>(drv.req.avail_idx() + 100));
    drv.req_kick->signal();
    REQUIRE(test::wait_for([&] { return drv.resets.load() == 1; }));
    auto c = dev.counters();
    CHECK(c["errors"] >= 4);
    CHECK(c["requests"] == 6);
}

TEST_CASE("scsi device: control queue answers TMFs and AN queries", "[scsi]") {
    TempDir t;
    ScsiDevice dev(config({lun_spec(t.image("a.img", 1 << 16), 3)}));
    Driver drv;
    drv.activate(dev);
    auto tmf = [&](uint32_t subtype, uint32_t lun) {
        std::vector<uint8_t> b(24, 0);
        vmm::store_le32(b, 0, scsi::kCtrlTmf);
        vmm::store_le32(b, 4, subtype);
        b[8] = 1;
        b[10] = static_cast<uint8_t>(0x40 | (lun >> 8));
        b[11] = static_cast<uint8_t>(lun);
        uint64_t rq = drv.ram.alloc(b.size());
        drv.ram.fill(rq, b);
        uint64_t rs = drv.ram.alloc(1);
        drv.ram.put<uint8_t>(rs, 0xee);
        drv.ctl.add_chain({{rq, 24, false}, {rs, 1, true}});
        return rs;
    };
    auto abort = tmf(scsi::kTmfAbortTask, 3);
    auto reset = tmf(scsi::kTmfLunReset, 3);
    auto query = tmf(scsi::kTmfQueryTask, 3);
    auto aca = tmf(scsi::kTmfClearAca, 3);
    auto unknown = tmf(99, 3);
    auto nolun = tmf(scsi::kTmfLunReset, 4);
    // AN query: 16-byte request, 5-byte response.
    std::vector<uint8_t> an(16, 0);
    an[0] = scsi::kCtrlAnQuery;
    an[4] = 1;
    an[6] = 0x40;
    an[7] = 3;
    an[12] = 0xff;
    uint64_t anq = drv.ram.alloc(16);
    drv.ram.fill(anq, an);
    uint64_t anr = drv.ram.alloc(5);
    drv.ram.fill(anr, std::vector<uint8_t>(5, 0xee));
    drv.ctl.add_chain({{anq, 16, false}, {anr, 5, true}});
    // Truncated TMF, unknown type.
    uint64_t trq = drv.ram.alloc(8);
    drv.ram.fill(trq, std::vector<uint8_t>(8, 0));
    uint64_t trs = drv.ram.alloc(1);
    drv.ctl.add_chain({{trq, 8, false}, {trs, 1, true}});
    uint64_t urq = drv.ram.alloc(4);
    drv.ram.put<uint32_t>(urq, 42);
    uint64_t urs = drv.ram.alloc(8);
    drv.ctl.add_chain({{urq, 4, false}, {urs, 8, true}});
    REQUIRE(drv.run_ctl(9));

    CHECK(drv.ram.get<uint8_t>(abort) == scsi::kRespFunctionComplete);
    CHECK(drv.ram.get<uint8_t>(reset) == scsi::kRespFunctionComplete);
    CHECK(drv.ram.get<uint8_t>(query) == scsi::kRespFunctionComplete);  // nothing in flight
    CHECK(drv.ram.get<uint8_t>(aca) == scsi::kRespFunctionRejected);
    CHECK(drv.ram.get<uint8_t>(unknown) == scsi::kRespFunctionRejected);
    CHECK(drv.ram.get<uint8_t>(nolun) == scsi::kRespBadTarget);
    CHECK(drv.ram.get<uint32_t>(anr) == 0);  // event_actual
    CHECK(drv.ram.get<uint8_t>(anr + 4) == scsi::kRespOk);
    CHECK(drv.ram.get<uint8_t>(trs) == scsi::kRespFailure);
    CHECK(drv.ctl.used(0).len == 1);
    CHECK(drv.ctl.used(6).len == 5);
    CHECK(drv.ctl.used(8).len == 0);
    CHECK(dev.counters()["tmf"] == 7);
    // The event queue's buffers are held, not returned.
    uint64_t ev = drv.ram.alloc(16);
    drv.evt.add_chain({{ev, 16, true}});
    drv.evt_kick->signal();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(drv.evt.used_idx() == 0);
    CHECK(drv.resets == 0);
}

TEST_CASE("scsi device: FUA writes and SYNCHRONIZE CACHE(16) complete after the flush", "[scsi]") {
    const char* engine = GENERATE("io_uring", "threads");
    INFO("engine " << engine);
    ::setenv("VMM_DISK_ENGINE", engine, 1);
    TempDir t;
    std::string a = t.image("a.img", 1 << 20);
    ScsiDevice dev(config({lun_spec(a, 0)}));
    Driver drv;
    drv.activate(dev);
    std::vector<uint8_t> data(4096, 0x5a);
    auto cdb = rw10(0x2a, 64, 8);
    cdb[1] = 0x08;  // FUA: the write, then a flush, then the response
    auto w = drv.post(Driver::header(0, cdb), data, 0);
    std::vector<uint8_t> s16(16, 0);
    s16[0] = 0x91;
    auto s = drv.post(Driver::header(0, s16), {}, 0);
    REQUIRE(drv.run_req(2));
    CHECK(drv.status(w) == scsi::kStatusGood);
    CHECK(drv.response(w) == scsi::kRespOk);
    CHECK(drv.status(s) == scsi::kStatusGood);
    CHECK(TempDir::read(a, 64 * 512, 4096) == data);
    dev.reset();
    ::unsetenv("VMM_DISK_ENGINE");
    CHECK(dev.counters()["write_bytes"] == 4096);
    CHECK(dev.counters()["errors"] == 0);
}
