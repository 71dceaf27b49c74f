// ISO 9660 writer (see iso9660.h). Layout, in 2048-byte sectors:
//   0-15  system area (zeros)
//   16    primary volume descriptor
//   17    volume descriptor set terminator
//   18    type L path table (little-endian)
//   19    type M path table (big-endian)
//   20    SUSP continuation area: the Rock Ridge ER entry (too long for the
//         root's "." record, which points here with CE)
//   21..  root directory
//   then  each file's data, from a sector boundary, in directory order
// Multi-byte fields are "both-byte orders" (little- then big-endian) where
// ECMA-119 says so (7.2.3, 7.3.3).
#include "vmm/iso9660.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "vmm/core/error.h"

namespace vmm::iso9660 {

namespace {

constexpr uint32_t kPvdSector = 16;
constexpr uint32_t kTerminatorSector = 17;
constexpr uint32_t kLPathSector = 18;
constexpr uint32_t kMPathSector = 19;
constexpr uint32_t kContinuationSector = 20;
constexpr uint32_t kRootSector = 21;

constexpr uint32_t kFileMode = 0100444;  // S_IFREG | r--r--r--
constexpr uint32_t kDirMode = 040555;    // S_IFDIR | r-xr-xr-x

// RRIP 1.10's extension identifier and the texts the specification gives
// for its ER entry (readers check the identifier only).
constexpr std::string_view kErId = "RRIP_1991A";
constexpr std::string_view kErDescriptor =
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
constexpr std::string_view kErSource =
    "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME "
    "DESCRIPTOR FOR CONTACT INFORMATION.";

using Bytes = std::vector<uint8_t>;

void put_le16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
void put_be16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
void put_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_be32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * (3 - i)));
}
void put_both16(uint8_t* p, uint16_t v) {
    put_le16(p, v);
    put_be16(p + 2, v);
}
void put_both32(uint8_t* p, uint32_t v) {
    put_le32(p, v);
    put_be32(p + 4, v);
}
// A text field padded with spaces (ECMA-119 7.4).
void put_text(uint8_t* p, size_t width, std::string_view s) {
    std::fill(p, p + width, ' ');
    std::copy_n(s.begin(), std::min(width, s.size()), p);
}

// SUSP entries: signature, length, version 1, then the fields. Built with
// push_back only: GCC 12 at -O2 reports bogus out-of-bounds copies for
// vector::insert after a braced initialiser (-Warray-bounds, -Wrestrict).
void append(Bytes& b, std::string_view s) {
    for (char c : s) b.push_back(static_cast<uint8_t>(c));
}
void append_both32(Bytes& b, uint32_t v) {
    uint8_t f[8];
    put_both32(f, v);
    for (uint8_t x : f) b.push_back(x);
}
// An entry's header; its length byte is filled in by finish().
Bytes entry(std::string_view sig) {
    Bytes b;
    append(b, sig);
    b.push_back(0);
    b.push_back(1);
    return b;
}
Bytes finish(Bytes b) {
    b[2] = static_cast<uint8_t>(b.size());
    return b;
}
Bytes susp_sp() {
    Bytes b = entry("SP");
    for (uint8_t x : {0xbe, 0xef, 0x00}) b.push_back(x);  // check bytes, no bytes skipped
    return finish(std::move(b));
}
Bytes susp_ce(uint32_t sector, uint32_t offset, uint32_t length) {
    Bytes b = entry("CE");
    append_both32(b, sector);
    append_both32(b, offset);
    append_both32(b, length);
    return finish(std::move(b));
}
Bytes susp_er() {
    Bytes b = entry("ER");
    for (size_t n : {kErId.size(), kErDescriptor.size(), kErSource.size()}) b.push_back(static_cast<uint8_t>(n));
    b.push_back(1);  // extension version
    append(b, kErId);
    append(b, kErDescriptor);
    append(b, kErSource);
    return finish(std::move(b));
}
Bytes rrip_rr() {
    Bytes b = entry("RR");
    b.push_back(0x01 | 0x08);  // this record has PX and NM
    return finish(std::move(b));
}
Bytes rrip_px(uint32_t mode, uint32_t nlink) {
    Bytes b = entry("PX");
    append_both32(b, mode);
    append_both32(b, nlink);
    append_both32(b, 0);  // uid
    append_both32(b, 0);  // gid
    return finish(std::move(b));
}
Bytes rrip_nm(const std::string& name) {
    Bytes b = entry("NM");
    b.push_back(0);  // flags
    append(b, name);
    return finish(std::move(b));
}

// The 7-byte date of a directory record (9.1.5): UTC, offset 0.
void put_record_date(uint8_t* p, const std::tm& t) {
    p[0] = static_cast<uint8_t>(t.tm_year);  // years since 1900
    p[1] = static_cast<uint8_t>(t.tm_mon + 1);
    p[2] = static_cast<uint8_t>(t.tm_mday);
    p[3] = static_cast<uint8_t>(t.tm_hour);
    p[4] = static_cast<uint8_t>(t.tm_min);
    p[5] = static_cast<uint8_t>(t.tm_sec);
    p[6] = 0;
}
// The 17-byte date of a volume descriptor (8.4.26.1); null: "not specified".
void put_volume_date(uint8_t* p, const std::tm* t) {
    std::string s = t ? fmt::format("{:04}{:02}{:02}{:02}{:02}{:02}00", t->tm_year + 1900, t->tm_mon + 1, t->tm_mday,
                                    t->tm_hour, t->tm_min, t->tm_sec)
                      : std::string(16, '0');
    std::copy_n(s.begin(), 16, p);
    p[16] = 0;
}

// One directory record (9.1): `id` is the file identifier (one byte 0 or 1
// for "." and ".."), `su` the system use area (Rock Ridge).
Bytes record(const std::string& id, uint32_t extent, uint32_t size, bool dir, const std::tm& t, const Bytes& su) {
    size_t len = 33 + id.size() + (id.size() % 2 == 0 ? 1 : 0);  // padding keeps the system use area even
    size_t total = len + su.size() + (su.size() % 2);
    Bytes r(total, 0);
    r[0] = static_cast<uint8_t>(total);
    put_both32(&r[2], extent);
    put_both32(&r[10], size);
    put_record_date(&r[18], t);
    r[25] = dir ? 0x02 : 0x00;
    put_both16(&r[28], 1);  // volume sequence number
    r[32] = static_cast<uint8_t>(id.size());
    std::copy(id.begin(), id.end(), r.begin() + 33);
    std::copy(su.begin(), su.end(), r.begin() + static_cast<long>(len));
    return r;
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

uint64_t sectors_for(uint64_t bytes) { return (bytes + kSectorSize - 1) / kSectorSize; }

bool d_char(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// Name and extension of a level-1 identifier, upper case, other characters
// as '_' (ECMA-119 7.4.1 d-characters).
std::pair<std::string, std::string> level1_parts(const std::string& name) {
    size_t dot = name.rfind('.');
    if (dot == 0) dot = std::string::npos;  // ".profile": all name, no extension
    const std::string_view n = name;
    auto clean = [](std::string_view s, size_t max) {
        std::string out;
        for (char c : s.substr(0, max)) {
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            out.push_back(d_char(c) ? c : '_');
        }
        return out;
    };
    std::string base = clean(n.substr(0, dot), 8);
    if (base.empty()) base.push_back('_');  // not base = "_": GCC 12 -Wrestrict false positive
    return {base, dot == std::string::npos ? std::string() : clean(n.substr(dot + 1), 3)};
}

void check_file(const File& f) {
    const std::string& n = f.name;
    if (n.empty() || n.size() > kMaxNameLength)
        fail("ISO 9660 image: file name \"{}\" must have 1..{} bytes", n, kMaxNameLength);
    if (n == "." || n == ".." || n.find('/') != std::string::npos || n.find('\0') != std::string::npos)
        fail("ISO 9660 image: \"{}\" is not a file name (no '/', NUL, \".\" or \"..\")", n);
    if (f.data.size() > kMaxFileSize)
        fail("ISO 9660 image: {}: {} bytes; a file must be smaller than 4 GiB", n, f.data.size());
}

}  // namespace

std::string level1_name(const std::string& name) {
    auto [base, ext] = level1_parts(name);
    return base + "." + ext + ";1";
}

std::vector<uint8_t> build(const std::string& label, const std::vector<File>& files, std::time_t mtime) {
    if (label.empty() || label.size() > kMaxLabelLength)
        fail("ISO 9660 image: volume label \"{}\" must have 1..{} characters", label, kMaxLabelLength);
    for (char c : label)
        if (c < 0x20 || c > 0x7e) fail("ISO 9660 image: volume label \"{}\" must be printable ASCII", label);
    if (files.size() > kMaxFiles) fail("ISO 9660 image: {} files; at most {}", files.size(), kMaxFiles);
    std::set<std::string> names;
    for (auto& f : files) {
        check_file(f);
        if (!names.insert(f.name).second) fail("ISO 9660 image: file \"{}\" is given twice", f.name);
    }
    std::tm t{};
    if (!gmtime_r(&mtime, &t) || t.tm_year < 0 || t.tm_year > 255)
        fail("ISO 9660 image: date {} is outside 1900..2155", static_cast<long long>(mtime));

    // Level-1 identifiers, unique ("USER_DAT", "USER_DA1", ...), in the
    // order the directory needs (9.3: by name, then extension; plain string
    // order is that, since d-characters sort after the padding space).
    struct Entry {
        std::string base, ext;
        const File* file;
        uint32_t extent = 0;
    };
    std::vector<Entry> entries;
    std::set<std::pair<std::string, std::string>> taken;
    for (auto& f : files) {
        auto [base, ext] = level1_parts(f.name);
        for (unsigned n = 1; taken.count({base, ext}); ++n) {
            std::string suffix = std::to_string(n);
            base = base.substr(0, 8 - suffix.size()) + suffix;
        }
        taken.insert({base, ext});
        entries.push_back({base, ext, &f});
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return std::tie(a.base, a.ext) < std::tie(b.base, b.ext); });

    // The root directory's records; a record never crosses a sector (6.8.1.1).
    const Bytes er = susp_er();
    auto dot = [&](uint32_t root_size) {
        return record(std::string(1, '\0'), kRootSector, root_size, true, t,
                      concat({susp_sp(), susp_ce(kContinuationSector, 0, static_cast<uint32_t>(er.size())),
                              rrip_px(kDirMode, 2)}));
    };
    auto dotdot = [&](uint32_t root_size) {
        return record(std::string(1, '\1'), kRootSector, root_size, true, t, rrip_px(kDirMode, 2));
    };
    auto file_record = [&](const Entry& e) {
        return record(e.base + "." + e.ext + ";1", e.extent, static_cast<uint32_t>(e.file->data.size()), false, t,
                      concat({rrip_rr(), rrip_px(kFileMode, 1), rrip_nm(e.file->name)}));
    };
    // Sizes do not depend on extents, so lay out once to count the sectors.
    auto layout = [&](uint32_t root_size, Bytes* out) {
        uint64_t used = 0;  // bytes of the directory so far
        auto add = [&](const Bytes& r) {
            if (used % kSectorSize + r.size() > kSectorSize) used = sectors_for(used) * kSectorSize;
            if (out) std::copy(r.begin(), r.end(), out->begin() + static_cast<long>(used));
            used += r.size();
        };
        add(dot(root_size));
        add(dotdot(root_size));
        for (auto& e : entries) add(file_record(e));
        return sectors_for(used);
    };
    const uint64_t root_sectors = layout(0, nullptr);
    const uint32_t root_size = static_cast<uint32_t>(root_sectors * kSectorSize);

    uint64_t next = kRootSector + root_sectors;
    for (auto& e : entries) {
        // Empty files own no sector; their extent is 0, as data length 0 allows.
        if (e.file->data.empty()) continue;
        e.extent = static_cast<uint32_t>(next);
        next += sectors_for(e.file->data.size());
        if (next > UINT32_MAX) fail("ISO 9660 image: the files are too large for one volume");
    }
    const uint64_t total_sectors = next;

    Bytes img(total_sectors * kSectorSize, 0);
    auto sector = [&](uint32_t s) { return img.data() + static_cast<size_t>(s) * kSectorSize; };

    // Primary volume descriptor (8.4).
    uint8_t* pvd = sector(kPvdSector);
    pvd[0] = 1;
    std::copy_n("CD001", 5, pvd + 1);
    pvd[6] = 1;
    put_text(pvd + 8, 32, "LINUX");  // system identifier
    put_text(pvd + 40, 32, label);
    put_both32(pvd + 80, static_cast<uint32_t>(total_sectors));
    put_both16(pvd + 120, 1);  // volume set size
    put_both16(pvd + 124, 1);  // volume sequence number
    put_both16(pvd + 128, kSectorSize);
    put_both32(pvd + 132, 10);  // path table size: the root's entry
    put_le32(pvd + 140, kLPathSector);
    put_be32(pvd + 148, kMPathSector);
    Bytes root = dot(root_size);
    // The PVD's copy of the root record has a 1-byte identifier and no system use area.
    root.resize(34);
    root[0] = 34;
    std::copy(root.begin(), root.end(), pvd + 156);
    put_text(pvd + 190, 128, "");  // volume set
    put_text(pvd + 318, 128, "");  // publisher
    put_text(pvd + 446, 128, "");  // data preparer
    put_text(pvd + 574, 128, "");  // application
    put_text(pvd + 702, 37, "");   // copyright file
    put_text(pvd + 739, 37, "");   // abstract file
    put_text(pvd + 776, 37, "");   // bibliographic file
    put_volume_date(pvd + 813, &t);      // creation
    put_volume_date(pvd + 830, &t);      // modification
    put_volume_date(pvd + 847, nullptr);  // expiration
    put_volume_date(pvd + 864, &t);      // effective
    pvd[881] = 1;                         // file structure version

    uint8_t* term = sector(kTerminatorSector);
    term[0] = 255;
    std::copy_n("CD001", 5, term + 1);
    term[6] = 1;

    // Path tables (9.4): the root only, its parent itself (directory 1).
    uint8_t* lpath = sector(kLPathSector);
    lpath[0] = 1;
    put_le32(lpath + 2, kRootSector);
    put_le16(lpath + 6, 1);
    uint8_t* mpath = sector(kMPathSector);
    mpath[0] = 1;
    put_be32(mpath + 2, kRootSector);
    put_be16(mpath + 6, 1);

    std::copy(er.begin(), er.end(), sector(kContinuationSector));

    Bytes dir(root_size, 0);
    layout(root_size, &dir);
    std::copy(dir.begin(), dir.end(), sector(kRootSector));
    for (auto& e : entries) std::copy(e.file->data.begin(), e.file->data.end(), sector(e.extent));
    return img;
}

}  // namespace vmm::iso9660
