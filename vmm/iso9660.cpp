// ISO 9660 writer (see iso9660.h). Layout, in 2048-byte sectors:
//   0-15  system area (zeros)
//   16    primary volume descriptor
//   17    Joliet supplementary volume descriptor
//   18    volume descriptor set terminator
//   19-20 type L (little-endian) and M (big-endian) path tables
//   21-22 the same for the Joliet tree
//   23    SUSP continuation area: the Rock Ridge ER entry (too long for the
//         root's "." record, which points here with CE)
//   24..  root directory (level-1 names with Rock Ridge entries)
//   then  the Joliet root directory (UCS-2 names) over the same files
//   then  each file's data, from a sector boundary, in directory order
// Multi-byte fields are "both-byte orders" (little- then big-endian) where
// ECMA-119 says so (7.2.3, 7.3.3).
#include "vmm/iso9660.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string_view>
#include <tuple>

#include "vmm/core/error.h"

namespace vmm::iso9660 {

namespace {

constexpr uint32_t kPvdSector = 16;
constexpr uint32_t kSvdSector = 17;
constexpr uint32_t kTerminatorSector = 18;
constexpr uint32_t kLPathSector = 19;
constexpr uint32_t kMPathSector = 20;
constexpr uint32_t kJolietLPathSector = 21;
constexpr uint32_t kJolietMPathSector = 22;
constexpr uint32_t kContinuationSector = 23;
constexpr uint32_t kRootSector = 24;
constexpr size_t kJolietMaxName = 64;  // UCS-2 characters (Joliet's limit)

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

// A Joliet name: the UTF-8 name as UCS-2, with characters Joliet forbids
// (controls, * / : ; ? \\), invalid UTF-8 and characters outside the BMP
// as '_', cut to kJolietMaxName.
std::u16string joliet_name(const std::string& name) {
    std::u16string out;
    for (size_t i = 0; i < name.size() && out.size() < kJolietMaxName;) {
        const auto c = static_cast<unsigned char>(name[i]);
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        char32_t cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
        bool ok = n != 0 && n != 4 && i + n <= name.size();
        for (size_t k = 1; ok && k < n; ++k) {
            const auto b = static_cast<unsigned char>(name[i + k]);
            ok = (b & 0xc0) == 0x80;
            cp = cp << 6 | (b & 0x3f);
        }
        if (!ok || cp < 0x20 || (cp >= 0xd800 && cp <= 0xdfff) ||
            std::u32string_view(U"*/:;?\\").find(cp) != std::u32string_view::npos)
            cp = '_';
        out.push_back(static_cast<char16_t>(cp));
        i += n == 0 || (i + n > name.size()) ? 1 : n;
    }
    return out;
}

// UCS-2 big-endian bytes.
std::string ucs2be(std::u16string_view s) {
    std::string out;
    for (char16_t c : s) {
        out.push_back(static_cast<char>(c >> 8));
        out.push_back(static_cast<char>(c & 0xff));
    }
    return out;
}
// A text field of a Joliet descriptor: UCS-2 padded with UCS-2 spaces.
void put_ucs2_text(uint8_t* p, size_t width, std::string_view ascii) {
    std::fill(p, p + width, 0);
    for (size_t i = 0; i + 1 < width; i += 2) {
        p[i] = 0;
        p[i + 1] = i / 2 < ascii.size() ? static_cast<uint8_t>(ascii[i / 2]) : ' ';
    }
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

    // Joliet names, unique too ("name~1" when cutting made two alike), in
    // UCS-2 order (that of their big-endian bytes).
    struct JolietEntry {
        std::u16string name;
        const Entry* entry;
    };
    std::vector<JolietEntry> joliet;
    std::set<std::u16string> joliet_taken;
    for (auto& e : entries) {
        std::u16string name = joliet_name(e.file->name);
        for (unsigned n = 1; joliet_taken.count(name); ++n) {
            std::string suffix = "~" + std::to_string(n);
            name = joliet_name(e.file->name).substr(0, kJolietMaxName - suffix.size());
            for (char c : suffix) name.push_back(static_cast<char16_t>(c));
        }
        joliet_taken.insert(name);
        joliet.push_back({name, &e});
    }
    std::sort(joliet.begin(), joliet.end(), [](const JolietEntry& a, const JolietEntry& b) { return a.name < b.name; });

    // The two root directories' records, for given extents and sizes (the
    // sizes of the records do not depend on them).
    const Bytes er = susp_er();
    auto rr_records = [&](uint32_t root_size) {
        std::vector<Bytes> r;
        r.push_back(record(std::string(1, '\0'), kRootSector, root_size, true, t,
                           concat({susp_sp(), susp_ce(kContinuationSector, 0, static_cast<uint32_t>(er.size())),
                                   rrip_px(kDirMode, 2)})));
        r.push_back(record(std::string(1, '\1'), kRootSector, root_size, true, t, rrip_px(kDirMode, 2)));
        for (auto& e : entries)
            r.push_back(record(e.base + "." + e.ext + ";1", e.extent, static_cast<uint32_t>(e.file->data.size()), false,
                               t, concat({rrip_rr(), rrip_px(kFileMode, 1), rrip_nm(e.file->name)})));
        return r;
    };
    auto joliet_records = [&](uint32_t root, uint32_t root_size) {
        std::vector<Bytes> r;
        r.push_back(record(std::string(1, '\0'), root, root_size, true, t, {}));
        r.push_back(record(std::string(1, '\1'), root, root_size, true, t, {}));
        for (auto& j : joliet)
            r.push_back(record(ucs2be(j.name + u";1"), j.entry->extent,
                               static_cast<uint32_t>(j.entry->file->data.size()), false, t, {}));
        return r;
    };
    // Lays records out in sectors (a record never crosses one, 6.8.1.1);
    // returns the sector count and, given `out`, writes them there.
    auto layout = [](const std::vector<Bytes>& records, uint8_t* out) {
        uint64_t used = 0;
        for (auto& r : records) {
            if (used % kSectorSize + r.size() > kSectorSize) used = sectors_for(used) * kSectorSize;
            if (out) std::copy(r.begin(), r.end(), out + used);
            used += r.size();
        }
        return sectors_for(used);
    };
    const uint64_t root_sectors = layout(rr_records(0), nullptr);
    const uint32_t root_size = static_cast<uint32_t>(root_sectors * kSectorSize);
    const uint32_t joliet_root = static_cast<uint32_t>(kRootSector + root_sectors);
    const uint64_t joliet_sectors = layout(joliet_records(0, 0), nullptr);
    const uint32_t joliet_size = static_cast<uint32_t>(joliet_sectors * kSectorSize);

    uint64_t next = joliet_root + joliet_sectors;
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

    // Primary volume descriptor (8.4); the Joliet one (8.5) differs in type,
    // escape sequences, UCS-2 texts and where its tree is.
    auto descriptor = [&](uint8_t* d, bool joliet_tree) {
        d[0] = joliet_tree ? 2 : 1;
        std::copy_n("CD001", 5, d + 1);
        d[6] = 1;
        auto text = joliet_tree ? put_ucs2_text : put_text;
        text(d + 8, 32, "LINUX");  // system identifier
        text(d + 40, 32, label);
        put_both32(d + 80, static_cast<uint32_t>(total_sectors));
        if (joliet_tree) std::copy_n("%/E", 3, d + 88);  // UCS-2 level 3
        put_both16(d + 120, 1);  // volume set size
        put_both16(d + 124, 1);  // volume sequence number
        put_both16(d + 128, kSectorSize);
        put_both32(d + 132, 10);  // path table size: the root's entry
        put_le32(d + 140, joliet_tree ? kJolietLPathSector : kLPathSector);
        put_be32(d + 148, joliet_tree ? kJolietMPathSector : kMPathSector);
        // The descriptor's copy of the root record: no system use area.
        Bytes root = record(std::string(1, '\0'), joliet_tree ? joliet_root : kRootSector,
                            joliet_tree ? joliet_size : root_size, true, t, {});
        std::copy(root.begin(), root.end(), d + 156);
        text(d + 190, 128, "");  // volume set
        text(d + 318, 128, "");  // publisher
        text(d + 446, 128, "");  // data preparer
        text(d + 574, 128, "");  // application
        text(d + 702, 37, "");   // copyright file
        text(d + 739, 37, "");   // abstract file
        text(d + 776, 37, "");   // bibliographic file
        put_volume_date(d + 813, &t);        // creation
        put_volume_date(d + 830, &t);        // modification
        put_volume_date(d + 847, nullptr);  // expiration
        put_volume_date(d + 864, &t);        // effective
        d[881] = 1;                          // file structure version
    };
    descriptor(sector(kPvdSector), false);
    descriptor(sector(kSvdSector), true);

    uint8_t* term = sector(kTerminatorSector);
    term[0] = 255;
    std::copy_n("CD001", 5, term + 1);
    term[6] = 1;

    // Path tables (9.4): the root only, its parent itself (directory 1).
    for (auto [l, m, root] : {std::tuple{kLPathSector, kMPathSector, kRootSector},
                              std::tuple{kJolietLPathSector, kJolietMPathSector, joliet_root}}) {
        sector(l)[0] = 1;
        put_le32(sector(l) + 2, root);
        put_le16(sector(l) + 6, 1);
        sector(m)[0] = 1;
        put_be32(sector(m) + 2, root);
        put_be16(sector(m) + 6, 1);
    }

    std::copy(er.begin(), er.end(), sector(kContinuationSector));
    layout(rr_records(root_size), sector(kRootSector));
    layout(joliet_records(joliet_root, joliet_size), sector(joliet_root));
    for (auto& e : entries) std::copy(e.file->data.begin(), e.file->data.end(), sector(e.extent));
    return img;
}

}  // namespace vmm::iso9660
