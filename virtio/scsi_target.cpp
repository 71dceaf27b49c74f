// SCSI commands of the virtio-scsi target (see scsi_target.h). Field
// offsets follow SPC-4 / SBC-3 / MMC-6; every multi-byte field is big-endian.
#include "virtio/scsi_target.h"

#include <algorithm>
#include <bit>

#include "vmm/core/bytes.h"

namespace vmm::virtio::scsi {

namespace {

// Operation codes.
enum : uint8_t {
    kTestUnitReady = 0x00,
    kRequestSense = 0x03,
    kRead6 = 0x08,
    kWrite6 = 0x0a,
    kInquiry = 0x12,
    kModeSense6 = 0x1a,
    kStartStopUnit = 0x1b,
    kPreventAllow = 0x1e,
    kReadCapacity10 = 0x25,
    kRead10 = 0x28,
    kWrite10 = 0x2a,
    kVerify10 = 0x2f,
    kSyncCache10 = 0x35,
    kUnmap = 0x42,
    kReadToc = 0x43,
    kGetConfiguration = 0x46,
    kGetEventStatus = 0x4a,
    kReadDiscInfo = 0x51,
    kModeSense10 = 0x5a,
    kRead16 = 0x88,
    kWrite16 = 0x8a,
    kSyncCache16 = 0x91,
    kWriteSame16 = 0x93,
    kServiceActionIn16 = 0x9e,
    kReportLuns = 0xa0,
    kRead12 = 0xa8,
    kWrite12 = 0xaa,
    kMechanismStatus = 0xbd,
};
constexpr uint8_t kSaReadCapacity16 = 0x10;

void put_text(std::vector<uint8_t>& v, size_t o, size_t n, const std::string& s) {
    for (size_t i = 0; i < n; ++i) v[o + i] = i < s.size() ? static_cast<uint8_t>(s[i]) : ' ';
}

// CDB length by the group code in the opcode's top 3 bits (SPC-4 4.2.5.1);
// 0 for groups this target has no commands in (variable length, vendor).
size_t cdb_length(uint8_t opcode) {
    switch (opcode >> 5) {
    case 0: return 6;
    case 1:
    case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;
    }
}

// Data-in cut to the allocation length (SPC-4 4.2.5.6: never an error).
Outcome data_in(std::vector<uint8_t> data, uint64_t alloc) {
    Outcome o;
    if (data.size() > alloc) data.resize(static_cast<size_t>(alloc));
    o.data = std::move(data);
    return o;
}

Outcome good() { return Outcome{}; }

std::string serial_text(const LunInfo& info) { return info.serial.substr(0, 32); }

// Standard INQUIRY data (SPC-4 6.4.2): 36 bytes.
std::vector<uint8_t> standard_inquiry(uint8_t peripheral, bool removable, const char* product) {
    std::vector<uint8_t> d(36, 0);
    d[0] = peripheral;
    d[1] = removable ? 0x80 : 0;
    d[2] = 0x06;         // SPC-4
    d[3] = 0x12;         // HISUP, response data format 2
    d[4] = static_cast<uint8_t>(d.size() - 5);
    d[7] = 0x02;         // CMDQUE: tagged queueing
    put_text(d, 8, 8, "VMM");
    put_text(d, 16, 16, product);
    put_text(d, 32, 4, "1.0");
    return d;
}

}  // namespace

std::vector<uint8_t> fixed_sense(const Sense& s) {
    std::vector<uint8_t> d(kFixedSenseSize, 0);
    d[0] = 0x70;  // current error, fixed format
    d[2] = s.key & 0x0f;
    d[7] = kFixedSenseSize - 8;  // additional sense length
    d[12] = s.asc;
    d[13] = s.ascq;
    return d;
}

Outcome check_condition(const Sense& s) {
    Outcome o;
    o.status = kStatusCheckCondition;
    o.sense = s;
    return o;
}

DecodedAddress decode_lun(std::span<const uint8_t, 8> f) {
    DecodedAddress r;
    if (f[0] != 1) return r;
    for (size_t i = 4; i < 8; ++i)
        if (f[i]) return r;
    uint8_t method = f[2] >> 6;
    uint32_t lun;
    if (method == 0) {  // peripheral device addressing: bus (6 bits) must be 0
        if (f[2] & 0x3f) return r;
        lun = f[3];
    } else if (method == 1) {  // flat space addressing
        lun = uint32_t{f[2] & 0x3fu} << 8 | f[3];
    } else {
        return r;  // logical unit / extended addressing: not used by this target
    }
    r.ok = true;
    r.addr = {f[1], lun};
    return r;
}

void encode_lun(uint32_t lun, uint8_t out[8]) {
    std::fill(out, out + 8, 0);
    if (lun < 256) {
        out[1] = static_cast<uint8_t>(lun);
    } else {
        out[0] = static_cast<uint8_t>(0x40 | ((lun >> 8) & 0x3f));
        out[1] = static_cast<uint8_t>(lun);
    }
}

size_t parameter_length(std::span<const uint8_t> cdb, uint32_t block_size) {
    if (cdb.empty()) return 0;
    if (cdb[0] == kUnmap && cdb.size() >= 10) return std::min<size_t>(load_be16(cdb, 7), kMaxParameterList);
    if (cdb[0] == kWriteSame16 && cdb.size() >= 16 && !(cdb[1] & 0x01))  // NDOB: no data-out
        return std::min<size_t>(block_size, kMaxParameterList);
    return 0;
}

Lun::Lun(LunInfo info) : info_(std::move(info)) {
    if (info_.kind == Kind::Cdrom) info_.readonly = true;
}

bool Lun::in_range(uint64_t lba, uint64_t count) const {
    return lba <= info_.blocks && count <= info_.blocks - lba;  // no overflow: lba <= blocks
}

Outcome Lun::execute(std::span<const uint8_t> cdb, std::span<const uint8_t> params) const {
    if (cdb.empty()) return check_condition(kInvalidOpcode);
    uint8_t op = cdb[0];
    size_t need = cdb_length(op);
    if (need == 0) return check_condition(kInvalidOpcode);
    if (cdb.size() < need) return check_condition(kInvalidField);  // the driver's cdb_size cut it short
    if (cdb[need - 1] & 0x04) return check_condition(kInvalidField);  // NACA: no ACA support
    bool disk = info_.kind == Kind::Disk;
    switch (op) {
    case kTestUnitReady:
    case kStartStopUnit:     // no medium to spin or eject: nothing to do
    case kPreventAllow:
        return good();
    case kRequestSense:      // autosense: no sense is ever pending
        return data_in(fixed_sense({}), cdb[4]);
    case kInquiry:
        return inquiry(cdb);
    case kModeSense6:
        return mode_sense(cdb, false);
    case kModeSense10:
        return mode_sense(cdb, true);
    case kReadCapacity10:
        return read_capacity10(cdb);
    case kServiceActionIn16:
        if ((cdb[1] & 0x1f) == kSaReadCapacity16) return read_capacity16(cdb);
        return check_condition(kInvalidField);
    case kRead6:
    case kRead10:
    case kRead12:
    case kRead16:
        return rw(cdb, false);
    case kWrite6:
    case kWrite10:
    case kWrite12:
    case kWrite16:
        return rw(cdb, true);
    case kSyncCache10:
    case kSyncCache16:
        return sync_cache(cdb);
    case kVerify10:  // BYTCHK=0: the medium is always readable
        if (cdb[1] & 0x06) return check_condition(kInvalidField);
        return in_range(load_be32(cdb, 2), load_be16(cdb, 7)) ? good() : check_condition(kLbaOutOfRange);
    default:
        break;
    }
    if (disk) {
        if (op == kUnmap) return unmap(cdb, params);
        if (op == kWriteSame16) return write_same16(cdb, params);
    } else {
        switch (op) {
        case kGetConfiguration: return get_configuration(cdb);
        case kReadToc: return read_toc(cdb);
        case kGetEventStatus: return event_status(cdb);
        case kMechanismStatus: return mechanism_status(cdb);
        case kReadDiscInfo: return read_disc_info(cdb);
        default: break;
        }
    }
    return check_condition(kInvalidOpcode);
}

Outcome Lun::inquiry(std::span<const uint8_t> cdb) const {
    uint16_t alloc = load_be16(cdb, 3);
    if (cdb[1] & 0x02) return check_condition(kInvalidField);  // CMDDT (obsolete)
    if (cdb[1] & 0x01) {
        Outcome o = vpd(cdb[2]);
        if (!o.check() && o.data.size() > alloc) o.data.resize(alloc);
        return o;
    }
    if (cdb[2]) return check_condition(kInvalidField);  // page code without EVPD
    bool cd = info_.kind == Kind::Cdrom;
    return data_in(standard_inquiry(cd ? 0x05 : 0x00, cd, cd ? "VIRTUAL CDROM" : "VIRTUAL DISK"), alloc);
}

Outcome Lun::vpd(uint8_t page) const {
    bool disk = info_.kind == Kind::Disk;
    std::vector<uint8_t> d(4, 0);
    d[0] = disk ? 0x00 : 0x05;
    d[1] = page;
    std::string serial = serial_text(info_);
    switch (page) {
    case 0x00:  // supported pages, ascending
        d.insert(d.end(), {0x00, 0x80, 0x83});
        if (disk) d.insert(d.end(), {0xb0, 0xb1, 0xb2});
        break;
    case 0x80:  // unit serial number
        d.insert(d.end(), serial.begin(), serial.end());
        break;
    case 0x83: {  // device identification: one T10 vendor ID designator
        std::string id = "VMM     " + serial;
        d.insert(d.end(), {0x02, 0x01, 0x00, static_cast<uint8_t>(id.size())});  // ASCII, LU, T10 vendor ID
        d.insert(d.end(), id.begin(), id.end());
        break;
    }
    case 0xb0: {  // block limits (SBC-3 6.5.3)
        if (!disk) return check_condition(kInvalidField);
        d.resize(64, 0);
        uint32_t bs = info_.block_size;
        d[4] = 0x01;  // WSNZ: WRITE SAME with 0 blocks is refused
        store_be32(d, 8, kMaxTransferBytes / bs);   // maximum transfer length
        store_be32(d, 12, kMaxTransferBytes / bs);  // optimal transfer length
        if (!info_.readonly) {
            store_be32(d, 20, kMaxUnmapBlocksBytes / bs);  // maximum unmap LBA count
            store_be32(d, 24, kMaxUnmapDescriptors);       // maximum unmap block descriptor count
            store_be32(d, 28, std::max<uint32_t>(1, info_.physical_block_size / bs));  // optimal unmap granularity
            store_be64(d, 36, kMaxUnmapBlocksBytes / bs);  // maximum WRITE SAME length
        }
        break;
    }
    case 0xb1:  // block device characteristics
        if (!disk) return check_condition(kInvalidField);
        d.resize(64, 0);
        store_be16(d, 4, 1);  // medium rotation rate: non-rotating
        break;
    case 0xb2:  // logical block provisioning
        if (!disk) return check_condition(kInvalidField);
        d.resize(8, 0);
        if (!info_.readonly) {
            d[5] = 0x80 | 0x40;  // LBPU (UNMAP), LBPWS (WRITE SAME(16) with UNMAP)
            if (info_.unmap_reads_zeroes) d[5] |= 0x04;  // LBPRZ
            d[6] = 0x02;  // provisioning type: thin
        }
        break;
    default:
        return check_condition(kInvalidField);
    }
    store_be16(d, 2, static_cast<uint16_t>(d.size() - 4));
    Outcome o;
    o.data = std::move(d);
    return o;
}

Outcome Lun::mode_sense(std::span<const uint8_t> cdb, bool ten) const {
    bool dbd = cdb[1] & 0x08;
    uint8_t pc = cdb[2] >> 6;  // 0 current, 1 changeable, 2 default, 3 saved
    uint8_t page = cdb[2] & 0x3f;
    uint8_t subpage = cdb[3];
    uint32_t alloc = ten ? load_be16(cdb, 7) : cdb[4];
    if (pc == 3) return check_condition(kSavingNotSupported);
    if (subpage != 0 && subpage != 0xff) return check_condition(kInvalidField);
    bool disk = info_.kind == Kind::Disk;

    std::vector<uint8_t> pages;
    auto caching = [&] {  // SBC-3 6.4.5: write cache enabled (the host page cache)
        std::vector<uint8_t> p(20, 0);
        p[0] = 0x08;
        p[1] = 0x12;
        if (pc != 1 && !info_.readonly) p[2] = 0x04;  // WCE
        pages.insert(pages.end(), p.begin(), p.end());
    };
    auto control = [&] {  // SPC-4 7.5.7, all defaults
        std::vector<uint8_t> p(12, 0);
        p[0] = 0x0a;
        p[1] = 0x0a;
        if (pc != 1) store_be16(p, 10, 0xffff);  // busy timeout period: unlimited
        pages.insert(pages.end(), p.begin(), p.end());
    };
    if (page == 0x3f) {
        if (disk) caching();
        control();
    } else if (page == 0x08 && disk) {
        caching();
    } else if (page == 0x0a) {
        control();
    } else {
        return check_condition(kInvalidField);
    }

    // Block descriptor: short form, 8 bytes (disks only).
    std::vector<uint8_t> desc;
    if (!dbd && disk) {
        desc.assign(8, 0);
        uint64_t n = std::min<uint64_t>(info_.blocks, 0xffffff);
        store_be(desc, 1, 3, n);                 // number of blocks
        store_be(desc, 5, 3, info_.block_size);  // block length
    }
    uint8_t dev_specific = (disk && info_.readonly) ? 0x80 : 0;  // WP
    std::vector<uint8_t> d(ten ? 8 : 4, 0);
    if (ten) {
        d[3] = dev_specific;
        store_be16(d, 6, static_cast<uint16_t>(desc.size()));
    } else {
        d[2] = dev_specific;
        d[3] = static_cast<uint8_t>(desc.size());
    }
    d.insert(d.end(), desc.begin(), desc.end());
    d.insert(d.end(), pages.begin(), pages.end());
    if (ten) store_be16(d, 0, static_cast<uint16_t>(d.size() - 2));
    else d[0] = static_cast<uint8_t>(d.size() - 1);
    return data_in(std::move(d), alloc);
}

Outcome Lun::read_capacity10(std::span<const uint8_t> cdb) const {
    if (!(cdb[8] & 0x01) && load_be32(cdb, 2)) return check_condition(kInvalidField);  // LBA without PMI
    std::vector<uint8_t> d(8, 0);
    uint64_t last = info_.blocks ? info_.blocks - 1 : 0;
    store_be32(d, 0, last > 0xffffffffu ? 0xffffffffu : static_cast<uint32_t>(last));  // >2^32: use (16)
    store_be32(d, 4, info_.block_size);
    Outcome o;
    o.data = std::move(d);
    return o;
}

Outcome Lun::read_capacity16(std::span<const uint8_t> cdb) const {
    if (!(cdb[14] & 0x01) && load_be64(cdb, 2)) return check_condition(kInvalidField);
    std::vector<uint8_t> d(32, 0);
    store_be64(d, 0, info_.blocks ? info_.blocks - 1 : 0);
    store_be32(d, 8, info_.block_size);
    uint32_t ratio = std::max<uint32_t>(1, info_.physical_block_size / info_.block_size);
    d[13] = static_cast<uint8_t>(std::countr_zero(ratio) & 0x0f);  // logical blocks per physical block exponent
    if (info_.kind == Kind::Disk && !info_.readonly) {
        d[14] = 0x80;  // LBPME: UNMAP / WRITE SAME deallocate
        if (info_.unmap_reads_zeroes) d[14] |= 0x40;  // LBPRZ
    }
    return data_in(std::move(d), load_be32(cdb, 10));
}

Outcome Lun::rw(std::span<const uint8_t> cdb, bool write) const {
    uint64_t lba;
    uint64_t count;
    bool fua = false;
    switch (cdb[0]) {
    case kRead6:
    case kWrite6:
        lba = load_be(cdb, 1, 3) & 0x1fffff;  // 21 bits
        count = cdb[4] ? cdb[4] : 256;  // 0 means 256 blocks here
        break;
    case kRead10:
    case kWrite10:
        lba = load_be32(cdb, 2);
        count = load_be16(cdb, 7);
        break;
    case kRead12:
    case kWrite12:
        lba = load_be32(cdb, 2);
        count = load_be32(cdb, 6);
        break;
    default:  // 16
        lba = load_be64(cdb, 2);
        count = load_be32(cdb, 10);
        break;
    }
    if (cdb[0] != kRead6 && cdb[0] != kWrite6) {
        if (cdb[1] & 0xe0) return check_condition(kInvalidField);  // RD/WRPROTECT: no protection information
        fua = cdb[1] & 0x08;
    }
    if (write && info_.readonly) return check_condition(kWriteProtected);
    if (!in_range(lba, count)) return check_condition(kLbaOutOfRange);
    // count < 2^32 and block_size <= 2^16: the product fits in 64 bits.
    uint64_t bytes = count * info_.block_size;
    if (bytes > kMaxTransferBytes) return check_condition(kInvalidField);
    Outcome o;
    o.io = write ? Io::Write : Io::Read;
    o.offset = lba * info_.block_size;  // lba <= blocks, so the image size bounds it
    o.length = bytes;
    o.fua = write && fua;
    return o;
}

Outcome Lun::sync_cache(std::span<const uint8_t> cdb) const {
    uint64_t lba = cdb[0] == kSyncCache10 ? load_be32(cdb, 2) : load_be64(cdb, 2);
    uint64_t count = cdb[0] == kSyncCache10 ? load_be16(cdb, 7) : load_be32(cdb, 10);
    if (!in_range(lba, count)) return check_condition(kLbaOutOfRange);
    if (info_.readonly) return good();  // nothing was written
    Outcome o;
    o.io = Io::Flush;  // the whole image: fdatasync has no range
    return o;
}

Outcome Lun::unmap(std::span<const uint8_t> cdb, std::span<const uint8_t> params) const {
    if (cdb[1] & 0x01) return check_condition(kInvalidField);  // ANCHOR
    if (info_.readonly) return check_condition(kWriteProtected);
    size_t len = std::min<size_t>(load_be16(cdb, 7), params.size());
    if (load_be16(cdb, 7) == 0) return good();
    if (len < 8) return check_condition(kParamListLength);
    size_t desc_len = std::min<size_t>(load_be16(params, 2), len - 8);
    size_t n = desc_len / 16;  // a partial last descriptor is ignored (SBC-3 5.28.2)
    if (n > kMaxUnmapDescriptors) return check_condition(kInvalidParamField);
    Outcome o;
    o.io = Io::Unmap;
    const uint64_t max_blocks = kMaxUnmapBlocksBytes / info_.block_size;
    for (size_t i = 0; i < n; ++i) {
        size_t at = 8 + 16 * i;
        uint64_t lba = load_be64(params, at);
        uint32_t blocks = load_be32(params, at + 8);
        if (!in_range(lba, blocks)) return check_condition(kLbaOutOfRange);
        if (blocks > max_blocks) return check_condition(kInvalidParamField);
        if (blocks) o.ranges.push_back({lba * info_.block_size, uint64_t{blocks} * info_.block_size});
    }
    if (o.ranges.empty()) o.io = Io::None;
    return o;
}

Outcome Lun::write_same16(std::span<const uint8_t> cdb, std::span<const uint8_t> params) const {
    bool unmap_bit = cdb[1] & 0x08;
    bool ndob = cdb[1] & 0x01;
    if (cdb[1] & 0xf0 || cdb[1] & 0x06) return check_condition(kInvalidField);  // WRPROTECT, ANCHOR, obsolete
    if (info_.readonly) return check_condition(kWriteProtected);
    uint64_t lba = load_be64(cdb, 2);
    uint32_t blocks = load_be32(cdb, 10);
    if (blocks == 0) return check_condition(kInvalidField);  // WSNZ
    if (!in_range(lba, blocks)) return check_condition(kLbaOutOfRange);
    if (blocks > kMaxUnmapBlocksBytes / info_.block_size) return check_condition(kInvalidField);
    if (!ndob) {
        // Only a block of zeroes can be written without writing it N times;
        // that is what guests use WRITE SAME for (zeroing, deallocation).
        if (params.size() < info_.block_size) return check_condition(kParamListLength);
        if (std::any_of(params.begin(), params.begin() + info_.block_size, [](uint8_t b) { return b != 0; }))
            return check_condition(kInvalidField);
    }
    Outcome o;
    o.io = Io::WriteZeroes;
    o.unmap = unmap_bit;
    o.ranges.push_back({lba * info_.block_size, uint64_t{blocks} * info_.block_size});
    return o;
}

// MMC: profile CD-ROM (0x0008) for CD-sized images, DVD-ROM (0x0010) above.
Outcome Lun::get_configuration(std::span<const uint8_t> cdb) const {
    uint8_t rt = cdb[1] & 0x03;
    uint16_t start = load_be16(cdb, 2);
    uint16_t alloc = load_be16(cdb, 7);
    if (rt == 3) return check_condition(kInvalidField);
    uint16_t profile = info_.blocks * 2048ull > 800ull * 1024 * 1024 ? 0x0010 : 0x0008;
    struct Feature {
        uint16_t code;
        std::vector<uint8_t> body;  // after the 4-byte feature header
    };
    std::vector<uint8_t> profile_list = {0x00, 0x00, 0x01, 0x00};  // one descriptor: number, CurrentP
    store_be16(profile_list, 0, profile);
    std::vector<Feature> features = {
        {0x0000, profile_list},  // profile list
        {0x0001, {0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}},  // core: SCSI physical interface
        {0x0003, {0x29, 0x00, 0x00, 0x00}},  // removable medium: tray, eject, lock
        {0x0010, {0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00}},  // random readable: 2048-byte blocks
    };
    std::vector<uint8_t> d(8, 0);
    store_be16(d, 6, profile);
    for (auto& f : features) {
        if (rt == 2 ? f.code != start : f.code < start) continue;
        uint8_t flags = 0x03;  // persistent, current: the medium never changes
        append_be(d, 2, f.code);
        d.insert(d.end(), {flags, static_cast<uint8_t>(f.body.size())});
        d.insert(d.end(), f.body.begin(), f.body.end());
    }
    store_be32(d, 0, static_cast<uint32_t>(d.size() - 4));
    return data_in(std::move(d), alloc);
}

// READ TOC/PMA/ATIP: one data track (1) from LBA 0, lead-out at the end.
Outcome Lun::read_toc(std::span<const uint8_t> cdb) const {
    bool msf = cdb[1] & 0x02;
    uint8_t format = cdb[2] & 0x0f;
    if (format == 0 && (cdb[9] >> 6)) format = cdb[9] >> 6;  // old (SFF-8020) format field
    uint8_t track = cdb[6];
    uint16_t alloc = load_be16(cdb, 7);
    auto address = [&](uint64_t lba, std::vector<uint8_t>& d) {
        if (msf) {
            uint64_t f = lba + 150;  // MSF counts the 2-second pregap
            uint64_t m = std::min<uint64_t>(f / (60 * 75), 255);
            d.insert(d.end(), {0, static_cast<uint8_t>(m), static_cast<uint8_t>(f / 75 % 60), static_cast<uint8_t>(f % 75)});
        } else {
            append_be(d, 4, std::min<uint64_t>(lba, 0xffffffffu));
        }
    };
    std::vector<uint8_t> d = {0, 0, 1, 1};  // length, first and last track (or session)
    if (format == 0) {
        if (track > 1 && track != 0xaa) return check_condition(kInvalidField);
        if (track <= 1) {
            d.insert(d.end(), {0, 0x14, 1, 0});  // ADR 1, control 4 (data track), track 1
            address(0, d);
        }
        d.insert(d.end(), {0, 0x14, 0xaa, 0});  // lead-out
        address(info_.blocks, d);
    } else if (format == 1) {  // session info: first track of the last session
        d.insert(d.end(), {0, 0x14, 1, 0});
        address(0, d);
    } else {
        return check_condition(kInvalidField);
    }
    store_be16(d, 0, static_cast<uint16_t>(d.size() - 2));
    return data_in(std::move(d), alloc);
}

// GET EVENT STATUS NOTIFICATION, polled only: the medium is always present
// and never changes.
Outcome Lun::event_status(std::span<const uint8_t> cdb) const {
    if (!(cdb[1] & 0x01)) return check_condition(kInvalidField);  // asynchronous mode unsupported
    uint8_t request = cdb[4];
    uint16_t alloc = load_be16(cdb, 7);
    std::vector<uint8_t> d(4, 0);
    d[3] = 0x10;  // supported classes: media
    if (request & 0x10) {
        d[2] = 0x04;  // class: media
        d.insert(d.end(), {0x00, 0x02, 0x00, 0x00});  // no change, media present, door closed
    } else {
        d[2] = 0x80;  // NEA: no event of the requested classes
    }
    store_be16(d, 0, static_cast<uint16_t>(d.size() - 2));
    return data_in(std::move(d), alloc);
}

Outcome Lun::mechanism_status(std::span<const uint8_t> cdb) const {
    std::vector<uint8_t> d(8, 0);  // idle, no changer, no slot table
    return data_in(std::move(d), load_be16(cdb, 8));
}

Outcome Lun::read_disc_info(std::span<const uint8_t> cdb) const {
    if (cdb[1] & 0x07) return check_condition(kInvalidField);  // only the standard disc information
    std::vector<uint8_t> d(34, 0);
    store_be16(d, 0, 32);
    d[2] = 0x0e;  // last session complete, disc finalized
    d[3] = 1;     // first track
    d[4] = 1;     // sessions
    d[5] = 1;     // first track in last session
    d[6] = 1;     // last track in last session
    d[8] = 0x00;  // disc type: CD-DA / CD-ROM
    store_be32(d, 16, 0xffffffff);  // last session lead-in: none
    store_be32(d, 20, 0xffffffff);  // last possible lead-out: none
    return data_in(std::move(d), load_be16(cdb, 7));
}

void Target::add(uint32_t lun, LunInfo info) { luns_.emplace(lun, Lun(std::move(info))); }

const Lun* Target::find(uint32_t lun) const {
    auto it = luns_.find(lun);
    return it == luns_.end() ? nullptr : &it->second;
}

Outcome Target::report_luns(std::span<const uint8_t> cdb) const {
    if (cdb.size() < 12) return check_condition(kInvalidField);
    uint8_t select = cdb[2];
    uint32_t alloc = load_be32(cdb, 6);
    if (select > 2) return check_condition(kInvalidField);
    if (alloc < 16) return check_condition(kInvalidField);  // SPC-4 6.33
    std::vector<uint8_t> d(8, 0);
    if (select != 1) {  // 1: well-known LUNs only (none)
        for (auto& [n, lun] : luns_) {
            uint8_t e[8];
            encode_lun(n, e);
            d.insert(d.end(), e, e + 8);
        }
    }
    store_be32(d, 0, static_cast<uint32_t>(d.size() - 8));
    return data_in(std::move(d), alloc);
}

Outcome Target::execute(uint32_t lun, std::span<const uint8_t> cdb, std::span<const uint8_t> params) const {
    if (!cdb.empty() && cdb[0] == kReportLuns) return report_luns(cdb);
    if (const Lun* l = find(lun)) return l->execute(cdb, params);
    // SPC-4 3.1.67 / 6.4.2: an absent LUN of a present target.
    if (!cdb.empty() && cdb[0] == kInquiry && cdb.size() >= 6) {
        if (cdb[1] & 0x03 || cdb[2]) return check_condition(kInvalidField);
        return data_in(standard_inquiry(0x7f, false, "NO LUN"), load_be16(cdb, 3));  // qualifier 3, type 1Fh
    }
    if (!cdb.empty() && cdb[0] == kRequestSense && cdb.size() >= 6) return data_in(fixed_sense(kLunNotSupported), cdb[4]);
    return check_condition(kLunNotSupported);
}

}  // namespace vmm::virtio::scsi
