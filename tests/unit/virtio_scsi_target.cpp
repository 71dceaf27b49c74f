// virtio-scsi command layer: each command's data and sense, and hostile
// CDBs (short, huge lengths, LBA overflow, bad fields, bad LUN encodings).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "virtio/scsi_target.h"
#include "vmm/core/bytes.h"

using namespace vmm::virtio::scsi;
using vmm::load_be32;
using vmm::load_be64;
using vmm::store_be16;
using vmm::store_be32;
using vmm::store_be64;

namespace {

constexpr uint64_t kBlocks = 2048;  // 1 MiB of 512-byte blocks

LunInfo disk_info(bool ro = false) {
    LunInfo i;
    i.kind = Kind::Disk;
    i.block_size = 512;
    i.blocks = kBlocks;
    i.physical_block_size = 4096;
    i.readonly = ro;
    i.serial = "SER0";
    return i;
}

LunInfo cd_info() {
    LunInfo i;
    i.kind = Kind::Cdrom;
    i.block_size = 2048;
    i.blocks = 100;
    i.readonly = true;
    i.serial = "CD0";
    return i;
}

// A CDB of `len` bytes (zero-filled) with the given leading bytes.
std::vector<uint8_t> cdb(std::initializer_list<uint8_t> head, size_t len = 16) {
    std::vector<uint8_t> c(std::max(len, head.size()), 0);
    std::copy(head.begin(), head.end(), c.begin());
    return c;
}

void require_sense(const Outcome& o, const Sense& s) {
    REQUIRE(o.status == kStatusCheckCondition);
    CHECK(o.sense.key == s.key);
    CHECK(o.sense.asc == s.asc);
    CHECK(o.sense.ascq == s.ascq);
    CHECK(o.io == Io::None);
}

Outcome run(const Lun& l, std::vector<uint8_t> c, std::vector<uint8_t> params = {}) { return l.execute(c, params); }

}  // namespace

TEST_CASE("scsi lun field: peripheral and flat forms, everything else refused", "[scsi]") {
    auto dec = [](std::vector<uint8_t> f) {
        REQUIRE(f.size() == 8);
        return decode_lun(std::span<const uint8_t, 8>(f.data(), 8));
    };
    auto a = dec({1, 0, 0, 5, 0, 0, 0, 0});
    REQUIRE(a.ok);
    CHECK(a.addr.target == 0);
    CHECK(a.addr.lun == 5);
    a = dec({1, 3, 0x40 | 0x12, 0x34, 0, 0, 0, 0});  // flat: what Linux sends
    REQUIRE(a.ok);
    CHECK(a.addr.target == 3);
    CHECK(a.addr.lun == 0x1234);
    CHECK(!dec({0, 0, 0, 0, 0, 0, 0, 0}).ok);        // byte 0 must be 1
    CHECK(!dec({2, 0, 0, 0, 0, 0, 0, 0}).ok);
    CHECK(!dec({1, 0, 0x01, 0, 0, 0, 0, 0}).ok);     // peripheral form with bus 1
    CHECK(!dec({1, 0, 0x80, 0, 0, 0, 0, 0}).ok);     // logical unit addressing
    CHECK(!dec({1, 0, 0xc0, 0, 0, 0, 0, 0}).ok);     // extended addressing
    CHECK(!dec({1, 0, 0x40, 1, 0, 0, 0, 1}).ok);     // second level present
    // Round trip through REPORT LUNS' encoding.
    for (uint32_t lun : {0u, 1u, 255u, 256u, 4000u, kMaxLun}) {
        uint8_t e[8];
        encode_lun(lun, e);
        std::vector<uint8_t> f = {1, 0, e[0], e[1], 0, 0, 0, 0};
        auto d = dec(f);
        REQUIRE(d.ok);
        CHECK(d.addr.lun == lun);
    }
}

TEST_CASE("scsi: fixed-format sense data", "[scsi]") {
    auto s = fixed_sense(kLbaOutOfRange);
    REQUIRE(s.size() == 18);
    CHECK(s[0] == 0x70);
    CHECK(s[2] == 0x05);
    CHECK(s[7] == 10);
    CHECK(s[12] == 0x21);
    CHECK(s[13] == 0x00);
}

TEST_CASE("scsi: TEST UNIT READY, REQUEST SENSE, START STOP UNIT", "[scsi]") {
    Lun l(disk_info());
    CHECK(run(l, cdb({0x00}, 6)).status == kStatusGood);
    CHECK(run(l, cdb({0x1b, 0, 0, 0, 1}, 6)).status == kStatusGood);
    Outcome o = run(l, cdb({0x03, 0, 0, 0, 252}, 6));
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 18);
    CHECK(o.data[0] == 0x70);
    CHECK(o.data[2] == 0);  // NO SENSE
    CHECK(run(l, cdb({0x03, 0, 0, 0, 8}, 6)).data.size() == 8);  // allocation length
}

TEST_CASE("scsi: standard INQUIRY for disks and CD-ROMs", "[scsi]") {
    Lun d(disk_info());
    Outcome o = run(d, cdb({0x12, 0, 0, 0, 96}, 6));
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 36);
    CHECK(o.data[0] == 0x00);
    CHECK(o.data[1] == 0x00);
    CHECK(o.data[2] == 0x06);
    CHECK(o.data[4] == 31);
    CHECK(std::string(o.data.begin() + 8, o.data.begin() + 16) == "VMM     ");
    CHECK(run(d, cdb({0x12, 0, 0, 0, 5}, 6)).data.size() == 5);
    CHECK(run(d, cdb({0x12, 0, 0, 0, 0}, 6)).data.empty());

    Lun c(cd_info());
    o = run(c, cdb({0x12, 0, 0, 0, 36}, 6));
    REQUIRE(o.data.size() == 36);
    CHECK(o.data[0] == 0x05);
    CHECK(o.data[1] == 0x80);  // removable

    require_sense(run(d, cdb({0x12, 0, 0x80, 0, 36}, 6)), kInvalidField);  // page without EVPD
    require_sense(run(d, cdb({0x12, 0x02, 0, 0, 36}, 6)), kInvalidField);  // CMDDT
}

TEST_CASE("scsi: INQUIRY VPD pages", "[scsi]") {
    Lun d(disk_info());
    auto vpd = [&](uint8_t page) { return run(d, cdb({0x12, 0x01, page, 0x01, 0x00}, 6)); };
    Outcome o = vpd(0x00);
    REQUIRE(o.status == kStatusGood);
    CHECK(o.data == std::vector<uint8_t>{0, 0, 0, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2});
    o = vpd(0x80);
    REQUIRE(o.status == kStatusGood);
    CHECK(std::string(o.data.begin() + 4, o.data.end()) == "SER0");
    o = vpd(0x83);
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() >= 8);
    CHECK(o.data[4] == 0x02);        // ASCII
    CHECK((o.data[5] & 0x0f) == 1);  // T10 vendor ID
    CHECK(o.data[7] == 12);
    o = vpd(0xb0);
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 64);
    CHECK(load_be32(o.data, 8) == kMaxTransferBytes / 512);
    CHECK(load_be32(o.data, 20) == kMaxUnmapBlocksBytes / 512);
    CHECK(load_be32(o.data, 24) == kMaxUnmapDescriptors);
    CHECK(load_be32(o.data, 28) == 8);  // 4096 / 512
    o = vpd(0xb1);
    REQUIRE(o.status == kStatusGood);
    CHECK(o.data[5] == 1);  // non-rotating
    o = vpd(0xb2);
    REQUIRE(o.status == kStatusGood);
    CHECK((o.data[5] & 0xc4) == 0xc4);  // LBPU, LBPWS, LBPRZ
    require_sense(vpd(0x99), kInvalidField);

    Lun ro(disk_info(true));
    o = run(ro, cdb({0x12, 0x01, 0xb2, 0x00, 0xff}, 6));
    CHECK(o.data[5] == 0);  // no provisioning on a read-only disk

    Lun c(cd_info());
    o = run(c, cdb({0x12, 0x01, 0x00, 0x00, 0xff}, 6));
    CHECK(o.data == std::vector<uint8_t>{5, 0, 0, 3, 0x00, 0x80, 0x83});
    require_sense(run(c, cdb({0x12, 0x01, 0xb0, 0x00, 0xff}, 6)), kInvalidField);
}

TEST_CASE("scsi: READ CAPACITY (10) and (16)", "[scsi]") {
    Lun d(disk_info());
    Outcome o = run(d, cdb({0x25}, 10));
    REQUIRE(o.status == kStatusGood);
    CHECK(load_be32(o.data, 0) == kBlocks - 1);
    CHECK(load_be32(o.data, 4) == 512);
    auto c = cdb({0x25}, 10);
    store_be32(c, 2, 5);  // LBA without PMI
    require_sense(run(d, c), kInvalidField);

    c = cdb({0x9e, 0x10});
    store_be32(c, 10, 32);
    o = run(d, c);
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 32);
    CHECK(load_be64(o.data, 0) == kBlocks - 1);
    CHECK(load_be32(o.data, 8) == 512);
    CHECK(o.data[13] == 3);      // 8 logical blocks per physical block
    CHECK(o.data[14] == 0xc0);   // LBPME, LBPRZ
    store_be32(c, 10, 12);
    CHECK(run(d, c).data.size() == 12);
    require_sense(run(d, cdb({0x9e, 0x11})), kInvalidField);  // other service action

    LunInfo big = disk_info();
    big.blocks = 1ull << 40;
    Lun b(big);
    CHECK(load_be32(run(b, cdb({0x25}, 10)).data, 0) == 0xffffffffu);  // too big: use (16)

    Lun cd(cd_info());
    o = run(cd, cdb({0x25}, 10));
    CHECK(load_be32(o.data, 0) == 99);
    CHECK(load_be32(o.data, 4) == 2048);
}

TEST_CASE("scsi: READ and WRITE 6/10/12/16 become byte ranges", "[scsi]") {
    Lun d(disk_info());
    auto c = cdb({0x28}, 10);
    store_be32(c, 2, 100);
    store_be16(c, 7, 8);
    Outcome o = run(d, c);
    REQUIRE(o.status == kStatusGood);
    CHECK(o.io == Io::Read);
    CHECK(o.offset == 100 * 512);
    CHECK(o.length == 8 * 512);

    c = cdb({0x08, 0x01, 0x02, 0x03, 0}, 6);  // READ(6): 21-bit LBA, 0 means 256
    LunInfo big = disk_info();
    big.blocks = 1 << 22;
    o = run(Lun(big), c);
    REQUIRE(o.io == Io::Read);
    CHECK(o.offset == 0x010203ull * 512);
    CHECK(o.length == 256 * 512);

    c = cdb({0xaa});
    store_be32(c, 2, 7);
    store_be32(c, 6, 1);
    c.resize(12);
    o = run(d, c);
    CHECK(o.io == Io::Write);
    CHECK(o.offset == 7 * 512);
    CHECK(o.length == 512);
    CHECK(!o.fua);

    c = cdb({0x8a, 0x08});  // WRITE(16) with FUA
    store_be64(c, 2, kBlocks - 1);
    store_be32(c, 10, 1);
    o = run(d, c);
    CHECK(o.io == Io::Write);
    CHECK(o.fua);

    c = cdb({0x28}, 10);  // zero blocks: no transfer, LBA still checked
    store_be32(c, 2, kBlocks);
    o = run(d, c);
    CHECK(o.status == kStatusGood);
    CHECK(o.length == 0);
    store_be32(c, 2, kBlocks + 1);
    require_sense(run(d, c), kLbaOutOfRange);
}

TEST_CASE("scsi: READ/WRITE out of range, overflowing, too long, protected", "[scsi]") {
    Lun d(disk_info());
    auto c = cdb({0x88});
    store_be64(c, 2, kBlocks - 1);
    store_be32(c, 10, 2);
    require_sense(run(d, c), kLbaOutOfRange);
    store_be64(c, 2, ~0ull);  // LBA + count wraps around 2^64
    store_be32(c, 10, 2);
    require_sense(run(d, c), kLbaOutOfRange);
    store_be64(c, 2, 0);
    store_be32(c, 10, 0xffffffffu);  // huge transfer
    require_sense(run(d, c), kLbaOutOfRange);

    LunInfo big = disk_info();
    big.blocks = 1ull << 40;
    auto c2 = cdb({0x88});
    store_be32(c2, 10, 0xffffffffu);
    require_sense(run(Lun(big), c2), kInvalidField);  // in range, above the maximum transfer length

    auto p = cdb({0x28, 0x20}, 10);  // RDPROTECT
    store_be16(p, 7, 1);
    require_sense(run(d, p), kInvalidField);

    Lun ro(disk_info(true));
    auto w = cdb({0x2a}, 10);
    store_be16(w, 7, 1);
    require_sense(run(ro, w), kWriteProtected);
    Lun cd(cd_info());
    require_sense(run(cd, w), kWriteProtected);
    auto r = cdb({0x28}, 10);
    store_be32(r, 2, 99);
    store_be16(r, 7, 1);
    Outcome o = run(cd, r);
    CHECK(o.io == Io::Read);
    CHECK(o.offset == 99 * 2048);
    CHECK(o.length == 2048);
    store_be16(r, 7, 2);
    require_sense(run(cd, r), kLbaOutOfRange);
}

TEST_CASE("scsi: short and unknown CDBs", "[scsi]") {
    Lun d(disk_info());
    require_sense(d.execute({}, {}), kInvalidOpcode);
    std::vector<uint8_t> c = {0x88, 0, 0, 0, 0, 0};  // READ(16) cut to 6 bytes
    require_sense(d.execute(c, {}), kInvalidField);
    c = {0x28};
    require_sense(d.execute(c, {}), kInvalidField);
    require_sense(run(d, cdb({0xff})), kInvalidOpcode);  // vendor-specific group
    require_sense(run(d, cdb({0x7f})), kInvalidOpcode);  // variable length
    require_sense(run(d, cdb({0x55}, 10)), kInvalidOpcode);  // MODE SELECT(10): not supported
    require_sense(run(d, cdb({0x43}, 10)), kInvalidOpcode);  // READ TOC is for CD-ROMs
    require_sense(run(d, cdb({0x00, 0, 0, 0, 0, 0x04}, 6)), kInvalidField);  // NACA
    Lun cd(cd_info());
    require_sense(run(cd, cdb({0x42}, 10)), kInvalidOpcode);  // UNMAP is for disks
}

TEST_CASE("scsi: SYNCHRONIZE CACHE", "[scsi]") {
    Lun d(disk_info());
    CHECK(run(d, cdb({0x35}, 10)).io == Io::Flush);
    CHECK(run(d, cdb({0x91})).io == Io::Flush);
    auto c = cdb({0x91});
    store_be64(c, 2, kBlocks + 5);
    require_sense(run(d, c), kLbaOutOfRange);
    Outcome o = run(Lun(disk_info(true)), cdb({0x35}, 10));
    CHECK(o.status == kStatusGood);
    CHECK(o.io == Io::None);
}

TEST_CASE("scsi: MODE SENSE caching, control, all pages, write protect", "[scsi]") {
    Lun d(disk_info());
    Outcome o = run(d, cdb({0x1a, 0x08, 0x08, 0, 0xff}, 6));  // DBD, caching page
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 4 + 20);
    CHECK(o.data[0] == 23);
    CHECK(o.data[2] == 0);  // not write protected
    CHECK(o.data[3] == 0);  // no block descriptor
    CHECK(o.data[4] == 0x08);
    CHECK(o.data[6] & 0x04);  // WCE

    o = run(d, cdb({0x1a, 0, 0x3f, 0, 0xff}, 6));
    REQUIRE(o.data.size() == 4 + 8 + 20 + 12);
    CHECK(o.data[3] == 8);
    CHECK(o.data[12] == 0x08);
    CHECK(o.data[32] == 0x0a);
    CHECK(load_be32(o.data, 8) == 512);  // block length (the reserved byte 4 is 0)

    auto c = cdb({0x5a, 0, 0x0a}, 10);
    store_be16(c, 7, 100);
    o = run(d, c);
    REQUIRE(o.data.size() == 8 + 8 + 12);
    CHECK(o.data[1] == 26);
    CHECK(o.data[8 + 8] == 0x0a);

    o = run(Lun(disk_info(true)), cdb({0x1a, 0, 0x3f, 0, 0xff}, 6));
    CHECK(o.data[2] == 0x80);  // WP
    CHECK(run(d, cdb({0x1a, 0, 0x3f, 0, 4}, 6)).data.size() == 4);

    require_sense(run(d, cdb({0x1a, 0, 0xc8, 0, 0xff}, 6)), kSavingNotSupported);
    require_sense(run(d, cdb({0x1a, 0, 0x19, 0, 0xff}, 6)), kInvalidField);
    require_sense(run(d, cdb({0x1a, 0, 0x08, 1, 0xff}, 6)), kInvalidField);
}

TEST_CASE("scsi: UNMAP parameter lists", "[scsi]") {
    Lun d(disk_info());
    auto list = [](std::vector<std::pair<uint64_t, uint32_t>> ds) {
        std::vector<uint8_t> p(8 + 16 * ds.size(), 0);
        store_be16(p, 0, static_cast<uint16_t>(p.size() - 2));
        store_be16(p, 2, static_cast<uint16_t>(16 * ds.size()));
        for (size_t i = 0; i < ds.size(); ++i) {
            store_be64(p, 8 + 16 * i, ds[i].first);
            store_be32(p, 16 + 16 * i, ds[i].second);
        }
        return p;
    };
    auto unmap = [&](const std::vector<uint8_t>& p, size_t declared) {
        auto c = cdb({0x42}, 10);
        store_be16(c, 7, static_cast<uint16_t>(declared));
        CHECK(parameter_length(c, 512) == declared);
        return d.execute(c, p);
    };
    auto p = list({{8, 16}, {100, 1}, {50, 0}});
    Outcome o = unmap(p, p.size());
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.io == Io::Unmap);
    REQUIRE(o.ranges.size() == 2);  // the 0-block descriptor is skipped
    CHECK(o.ranges[0].offset == 8 * 512);
    CHECK(o.ranges[0].length == 16 * 512);
    CHECK(o.ranges[1].offset == 100 * 512);

    CHECK(unmap({}, 0).status == kStatusGood);                      // nothing to do
    require_sense(unmap({0, 6, 0, 0}, 4), kParamListLength);        // shorter than the header
    require_sense(unmap(p, 4), kParamListLength);
    o = unmap(std::vector<uint8_t>(p.begin(), p.begin() + 30), p.size());  // data-out shorter: partial descriptor ignored
    REQUIRE(o.status == kStatusGood);
    CHECK(o.ranges.size() == 1);
    auto bad = list({{kBlocks - 1, 2}});
    require_sense(unmap(bad, bad.size()), kLbaOutOfRange);
    bad = list({{~0ull, 2}});
    require_sense(unmap(bad, bad.size()), kLbaOutOfRange);
    std::vector<std::pair<uint64_t, uint32_t>> many(kMaxUnmapDescriptors + 1, {0, 1});
    bad = list(many);
    require_sense(unmap(bad, bad.size()), kInvalidParamField);
    auto anchor = cdb({0x42, 0x01}, 10);
    require_sense(d.execute(anchor, {}), kInvalidField);
    Lun ro(disk_info(true));
    auto c = cdb({0x42}, 10);
    store_be16(c, 7, static_cast<uint16_t>(p.size()));
    require_sense(ro.execute(c, p), kWriteProtected);
}

TEST_CASE("scsi: WRITE SAME(16) of zeroes, with and without UNMAP", "[scsi]") {
    Lun d(disk_info());
    auto c = cdb({0x93, 0x08});
    store_be64(c, 2, 16);
    store_be32(c, 10, 32);
    CHECK(parameter_length(c, 512) == 512);
    std::vector<uint8_t> zero(512, 0);
    Outcome o = d.execute(c, zero);
    REQUIRE(o.status == kStatusGood);
    CHECK(o.io == Io::WriteZeroes);
    CHECK(o.unmap);
    REQUIRE(o.ranges.size() == 1);
    CHECK(o.ranges[0].offset == 16 * 512);
    CHECK(o.ranges[0].length == 32 * 512);

    c[1] = 0x00;
    o = d.execute(c, zero);
    CHECK(o.io == Io::WriteZeroes);
    CHECK(!o.unmap);

    c[1] = 0x09;  // NDOB: no data-out at all
    CHECK(parameter_length(c, 512) == 0);
    CHECK(d.execute(c, {}).io == Io::WriteZeroes);

    c[1] = 0x08;
    std::vector<uint8_t> pattern(512, 0);
    pattern[7] = 1;
    require_sense(d.execute(c, pattern), kInvalidField);  // a non-zero pattern is not supported
    require_sense(d.execute(c, std::vector<uint8_t>(100, 0)), kParamListLength);
    store_be32(c, 10, 0);
    require_sense(d.execute(c, zero), kInvalidField);  // WSNZ
    store_be64(c, 2, kBlocks);
    store_be32(c, 10, 1);
    require_sense(d.execute(c, zero), kLbaOutOfRange);
    require_sense(Lun(disk_info(true)).execute(c, zero), kWriteProtected);
}

TEST_CASE("scsi: CD-ROM MMC commands", "[scsi]") {
    Lun cd(cd_info());
    auto c = cdb({0x46, 0x00}, 10);  // GET CONFIGURATION, all features
    store_be16(c, 7, 512);
    Outcome o = run(cd, c);
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() >= 8);
    CHECK(load_be32(o.data, 0) == o.data.size() - 4);
    CHECK(o.data[6] == 0x00);
    CHECK(o.data[7] == 0x08);  // current profile: CD-ROM
    CHECK(o.data[8] == 0x00);  // first feature: profile list
    CHECK(o.data[9] == 0x00);
    c[1] = 0x02;  // just one feature
    store_be16(c, 2, 0x0010);
    o = run(cd, c);
    REQUIRE(o.data.size() == 8 + 4 + 8);
    CHECK(o.data[9] == 0x10);
    store_be16(c, 7, 4);
    CHECK(run(cd, c).data.size() == 4);
    c[1] = 0x03;
    require_sense(run(cd, c), kInvalidField);

    auto t = cdb({0x43, 0, 0}, 10);  // READ TOC format 0, LBA
    store_be16(t, 7, 100);
    o = run(cd, t);
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 4 + 16);
    CHECK(o.data[1] == 18);
    CHECK(o.data[2] == 1);
    CHECK(o.data[3] == 1);
    CHECK(o.data[6] == 1);
    CHECK(o.data[14] == 0xaa);
    CHECK(load_be32(o.data, 16) == 100);  // lead-out at the end
    t[1] = 0x02;  // MSF
    o = run(cd, t);
    CHECK(o.data[8 + 9] == 0);  // 100 + 150 = 250 frames = 0:03:25
    CHECK(o.data[8 + 10] == 3);
    CHECK(o.data[8 + 11] == 25);
    t[1] = 0;
    t[6] = 0xaa;
    CHECK(run(cd, t).data.size() == 4 + 8);
    t[6] = 2;
    require_sense(run(cd, t), kInvalidField);
    t[6] = 0;
    t[2] = 1;  // session info
    CHECK(run(cd, t).data.size() == 12);
    t[2] = 2;
    require_sense(run(cd, t), kInvalidField);

    auto g = cdb({0x4a, 0x01, 0, 0, 0x10}, 10);  // GET EVENT STATUS NOTIFICATION, polled, media class
    store_be16(g, 7, 8);
    o = run(cd, g);
    REQUIRE(o.data.size() == 8);
    CHECK(o.data[2] == 0x04);
    CHECK(o.data[5] == 0x02);  // media present
    g[4] = 0x02;
    o = run(cd, g);
    CHECK(o.data[2] == 0x80);  // NEA
    g[1] = 0;
    require_sense(run(cd, g), kInvalidField);  // asynchronous

    auto m = cdb({0xbd}, 12);
    store_be16(m, 8, 8);
    CHECK(run(cd, m).data.size() == 8);
    CHECK(run(cd, cdb({0x1e, 0, 0, 0, 1}, 6)).status == kStatusGood);  // PREVENT ALLOW MEDIUM REMOVAL
    o = run(cd, cdb({0x1a, 0, 0x3f, 0, 0xff}, 6));
    REQUIRE(o.status == kStatusGood);
    CHECK(o.data[3] == 0);  // no block descriptor for MMC
}

TEST_CASE("scsi target: REPORT LUNS and absent LUNs", "[scsi]") {
    Target t;
    t.add(1, disk_info());
    t.add(300, cd_info());
    auto c = cdb({0xa0}, 12);
    store_be32(c, 6, 4096);
    Outcome o = t.execute(7, c, {});
    REQUIRE(o.status == kStatusGood);
    REQUIRE(o.data.size() == 8 + 16);
    CHECK(load_be32(o.data, 0) == 16);
    CHECK(o.data[8 + 1] == 1);
    CHECK(o.data[16] == (0x40 | 1));
    CHECK(o.data[17] == (300 & 0xff));
    store_be32(c, 6, 16);
    CHECK(t.execute(1, c, {}).data.size() == 16);
    store_be32(c, 6, 8);
    require_sense(t.execute(1, c, {}), kInvalidField);
    store_be32(c, 6, 64);
    c[2] = 1;  // well-known LUNs only
    CHECK(t.execute(1, c, {}).data.size() == 8);
    c[2] = 3;
    require_sense(t.execute(1, c, {}), kInvalidField);

    o = t.execute(0, cdb({0x12, 0, 0, 0, 36}, 6), {});
    REQUIRE(o.status == kStatusGood);
    CHECK(o.data[0] == 0x7f);  // qualifier 3, type 1Fh: no LUN here
    require_sense(t.execute(0, cdb({0x00}, 6), {}), kLunNotSupported);
    o = t.execute(0, cdb({0x03, 0, 0, 0, 18}, 6), {});
    REQUIRE(o.status == kStatusGood);
    CHECK(o.data[12] == 0x25);
    CHECK(t.execute(1, cdb({0x00}, 6), {}).status == kStatusGood);
}
