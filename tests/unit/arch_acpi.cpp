// Unit tests: ACPI tables as a guest would walk them from the RSDP.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;

namespace {

// Guest memory as the blobs would make it, read by GPA.
class Mem {
public:
    explicit Mem(const std::vector<Blob>& blobs) : blobs_(blobs) {}
    // Returns the blob that starts exactly at gpa (tables are one blob each).
    const std::vector<uint8_t>& at(uint64_t gpa) const {
        for (const auto& b : blobs_) {
            if (b.gpa == gpa) return b.bytes;
        }
        FAIL("no table at " << std::hex << gpa);
        return blobs_.front().bytes;
    }

private:
    const std::vector<Blob>& blobs_;
};

using test::rd;

uint8_t sum(const std::vector<uint8_t>& b, std::size_t len) {
    REQUIRE(len <= b.size());
    uint8_t s = 0;
    for (std::size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + b[i]);
    return s;
}

std::string sig(const std::vector<uint8_t>& t) {
    return std::string(t.begin(), t.begin() + 4);
}

struct Walk {
    std::vector<uint8_t> rsdp, rsdt, xsdt, fadt, facs, dsdt, madt, mcfg;
    uint64_t facs_gpa = 0;
};

// Follows RSDP -> XSDT -> FADT -> DSDT/FACS and XSDT -> MADT, checking
// every signature, length and checksum on the way.
Walk walk(const AcpiTables& t) {
    Mem m(t.blobs);
    Walk w;
    w.rsdp = m.at(t.rsdp_gpa);
    REQUIRE(w.rsdp.size() == 36);
    REQUIRE(std::memcmp(w.rsdp.data(), "RSD PTR ", 8) == 0);
    CHECK(sum(w.rsdp, 20) == 0);
    CHECK(sum(w.rsdp, 36) == 0);
    CHECK(w.rsdp[15] == 2);
    CHECK(rd(w.rsdp, 20, 4) == 36);

    auto table = [&](uint64_t gpa, const char* want) {
        const auto& tb = m.at(gpa);
        INFO("table " << want);
        REQUIRE(tb.size() >= 36);
        CHECK(sig(tb) == want);
        CHECK(rd(tb, 4, 4) == tb.size());
        CHECK(sum(tb, tb.size()) == 0);
        return tb;
    };
    w.xsdt = table(rd(w.rsdp, 24, 8), "XSDT");
    w.rsdt = table(rd(w.rsdp, 16, 4), "RSDT");
    const std::size_t n = (w.xsdt.size() - 36) / 8;
    REQUIRE(n == (w.rsdt.size() - 36) / 4);
    for (std::size_t i = 0; i < n; ++i) {
        const uint64_t a = rd(w.xsdt, 36 + 8 * i, 8);
        CHECK(rd(w.rsdt, 36 + 4 * i, 4) == a);
        const auto& tb = m.at(a);
        if (sig(tb) == "FACP") w.fadt = table(a, "FACP");
        if (sig(tb) == "APIC") w.madt = table(a, "APIC");
        if (sig(tb) == "MCFG") w.mcfg = table(a, "MCFG");
    }
    REQUIRE_FALSE(w.fadt.empty());
    REQUIRE_FALSE(w.madt.empty());
    w.dsdt = table(rd(w.fadt, 140, 8), "DSDT");
    CHECK(rd(w.fadt, 40, 4) == rd(w.fadt, 140, 8));
    w.facs_gpa = rd(w.fadt, 36, 4);
    w.facs = m.at(w.facs_gpa);
    CHECK(sig(w.facs) == "FACS");
    CHECK(rd(w.facs, 4, 4) == 64);
    CHECK(w.facs.size() == 64);
    CHECK(rd(w.fadt, 132, 8) == 0);  // X_FIRMWARE_CTRL unused
    return w;
}

void check_gas(const std::vector<uint8_t>& f, std::size_t off, uint8_t space, uint8_t width,
               uint64_t addr) {
    INFO("GAS at " << off);
    CHECK(f[off] == space);
    CHECK(f[off + 1] == width);
    CHECK(f[off + 2] == 0);
    CHECK(f[off + 3] != 0);  // an access size is given
    CHECK(rd(f, off + 4, 8) == addr);
}

}  // namespace

TEST_CASE("arch: ACPI tables resolve from the RSDP with valid checksums", "[arch][acpi]") {
    const auto t = build_acpi({.ncpus = 4});
    CHECK(t.rsdp_gpa == 0xe0000);
    const Walk w = walk(t);
    CHECK(w.facs_gpa % 64 == 0);
    // Blobs lie inside the BIOS area, 16-byte aligned, without overlap.
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& b : t.blobs) {
        CHECK(b.gpa >= kBiosAreaStart);
        CHECK(b.gpa + b.bytes.size() <= 0x100000);
        CHECK(b.gpa % 16 == 0);
        ranges.emplace_back(b.gpa, b.gpa + b.bytes.size());
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i) CHECK(ranges[i].first >= ranges[i - 1].second);
    CHECK(t.blobs.size() == 10);  // RSDP, RSDT, XSDT, FADT, FACS, DSDT, MADT, MCFG, WAET, SPCR
}

TEST_CASE("arch: FADT fields at their spec offsets", "[arch][acpi]") {
    const Walk w = walk(build_acpi({.ncpus = 2}));
    const auto& f = w.fadt;
    REQUIRE(f.size() == 276);
    CHECK(f[8] == 6);                      // revision
    CHECK(rd(f, 46, 2) == 9);              // SCI_INT
    CHECK(rd(f, 48, 4) == 0);              // SMI_CMD: always in ACPI mode
    CHECK(f[52] == 0);                     // ACPI_ENABLE
    CHECK(f[53] == 0);                     // ACPI_DISABLE
    CHECK(rd(f, 56, 4) == 0x600);          // PM1a_EVT_BLK
    CHECK(rd(f, 60, 4) == 0);              // PM1b_EVT_BLK
    CHECK(rd(f, 64, 4) == 0x604);          // PM1a_CNT_BLK
    CHECK(rd(f, 76, 4) == 0x608);          // PM_TMR_BLK
    CHECK(f[88] == 4);                     // PM1_EVT_LEN
    CHECK(f[89] == 2);                     // PM1_CNT_LEN
    CHECK(f[91] == 4);                     // PM_TMR_LEN
    CHECK(rd(f, 96, 2) > 100);             // no C2
    CHECK(rd(f, 98, 2) > 1000);            // no C3
    CHECK(f[108] == 0x32);                 // CENTURY
    CHECK(rd(f, 109, 2) == 0x3);           // LEGACY_DEVICES | 8042
    const uint32_t flags = static_cast<uint32_t>(rd(f, 112, 4));
    CHECK(flags == ((1u << 0) | (1u << 2) | (1u << 5) | (1u << 8) | (1u << 10)));
    CHECK((flags & (1u << 20)) == 0);      // not hardware-reduced
    check_gas(f, 116, 1, 8, 0xcf9);        // RESET_REG
    CHECK(f[119] == 1);                    // byte access
    CHECK(f[128] == 0x06);                 // RESET_VALUE
    check_gas(f, 148, 1, 32, 0x600);       // X_PM1a_EVT_BLK
    check_gas(f, 172, 1, 16, 0x604);       // X_PM1a_CNT_BLK
    check_gas(f, 208, 1, 32, 0x608);       // X_PM_TMR_BLK
    for (std::size_t off : {160u, 184u, 196u, 220u, 232u, 244u, 256u}) {
        CHECK(rd(f, off + 4, 8) == 0);     // unused blocks
    }
}

TEST_CASE("arch: FADT follows the configuration", "[arch][acpi]") {
    AcpiConfig cfg{.ncpus = 1};
    cfg.pm_io_base = 0xb000;
    cfg.sci_irq = 10;
    cfg.reset_port = 0x64;
    cfg.reset_value = 0xfe;
    cfg.rtc_century_index = 0x48;
    cfg.s5_sleep_type = 7;
    const Walk w = walk(build_acpi(cfg));
    CHECK(rd(w.fadt, 46, 2) == 10);
    CHECK(rd(w.fadt, 56, 4) == 0xb000);
    CHECK(rd(w.fadt, 64, 4) == 0xb004);
    CHECK(rd(w.fadt, 76, 4) == 0xb008);
    CHECK(rd(w.fadt, 208 + 4, 8) == 0xb008);
    CHECK(rd(w.fadt, 116 + 4, 8) == 0x64);
    CHECK(w.fadt[128] == 0xfe);
    CHECK(w.fadt[108] == 0x48);
    // SCI override follows the SCI.
    const auto& m = w.madt;
    bool found = false;
    for (std::size_t off = 44; off < m.size(); off += m[off + 1]) {
        if (m[off] == 2) {
            found = true;
            CHECK(m[off + 3] == 10);
            CHECK(rd(m, off + 4, 4) == 10);
        }
    }
    CHECK(found);
    // _S5 package carries the configured SLP_TYP.
    const std::vector<uint8_t> s5 = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
                                     0x0a, 0x07, 0x0a, 0x07, 0x00, 0x00};
    CHECK(std::search(w.dsdt.begin(), w.dsdt.end(), s5.begin(), s5.end()) != w.dsdt.end());
}

TEST_CASE("arch: MADT entries for 1, 4 and 64 vCPUs", "[arch][acpi]") {
    for (uint32_t n : {1u, 4u, 64u}) {
        INFO("ncpus " << n);
        const Walk w = walk(build_acpi({.ncpus = n}));
        const auto& m = w.madt;
        CHECK(rd(m, 36, 4) == kLapicAddr);
        CHECK(rd(m, 40, 4) == 1);  // PCAT_COMPAT
        uint32_t lapics = 0, ioapics = 0, isos = 0, nmis = 0;
        std::size_t off = 44;
        while (off < m.size()) {
            const uint8_t type = m[off], len = m[off + 1];
            REQUIRE(len >= 2);
            REQUIRE(off + len <= m.size());
            switch (type) {
            case 0:
                CHECK(len == 8);
                CHECK(m[off + 2] == lapics);  // processor UID
                CHECK(m[off + 3] == lapics);  // APIC ID
                CHECK(rd(m, off + 4, 4) == 1);
                ++lapics;
                break;
            case 1:
                CHECK(len == 12);
                CHECK(m[off + 2] == n);
                CHECK(rd(m, off + 4, 4) == kIoapicAddr);
                CHECK(rd(m, off + 8, 4) == 0);
                ++ioapics;
                break;
            case 2:
                CHECK(len == 10);
                CHECK(m[off + 2] == 0);
                CHECK(m[off + 3] == 9);
                CHECK(rd(m, off + 4, 4) == 9);
                CHECK(rd(m, off + 8, 2) == 0xd);  // level, active high
                ++isos;
                break;
            case 4:
                CHECK(len == 6);
                CHECK(m[off + 2] == 0xff);
                CHECK(m[off + 5] == 1);  // LINT1
                ++nmis;
                break;
            default:
                FAIL("unexpected MADT entry type " << int(type));
            }
            off += len;
        }
        CHECK(off == m.size());
        CHECK(lapics == n);
        CHECK(ioapics == 1);
        CHECK(isos == 1);
        CHECK(nmis == 1);
    }
}

TEST_CASE("arch: DSDT contains _S5_", "[arch][acpi]") {
    const Walk w = walk(build_acpi({.ncpus = 1}));
    CHECK(w.dsdt[8] == 2);  // revision 2: 64-bit integers
    const std::vector<uint8_t> s5 = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
                                     0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
    CHECK(std::search(w.dsdt.begin(), w.dsdt.end(), s5.begin(), s5.end()) != w.dsdt.end());
}

TEST_CASE("arch: ACPI fits 254 vCPUs below 1 MiB and rejects more", "[arch][acpi]") {
    const auto t = build_acpi({.ncpus = 254});
    const Walk w = walk(t);
    CHECK(w.madt.size() == 44 + 254 * 8 + 12 + 10 + 6);
    for (const auto& b : t.blobs) CHECK(b.gpa + b.bytes.size() <= 0x100000);
    CHECK_THROWS_AS(build_acpi({.ncpus = 255}), vmm::Error);
    CHECK_THROWS_AS(build_acpi({.ncpus = 0}), vmm::Error);
}

TEST_CASE("arch: ACPI layout checks its base address", "[arch][acpi]") {
    CHECK_THROWS_WITH(build_acpi({.ncpus = 1}, 0xe0008), Catch::Contains("aligned"));
    CHECK_THROWS_WITH(build_acpi({.ncpus = 1}, 0xfff00), Catch::Contains("1 MiB"));
    CHECK_NOTHROW(build_acpi({.ncpus = 1}, 0xff000));  // about 2.5 KiB: still fits
    CHECK_THROWS_AS(build_acpi({.ncpus = 1}, 0xfffffff0), vmm::Error);
    CHECK_THROWS_AS(build_acpi({.ncpus = 1}, uint64_t{1} << 40), vmm::Error);
}

TEST_CASE("arch: ACPI generation is independent of placement", "[arch][acpi]") {
    const auto set = generate_acpi_tables({.ncpus = 4});
    // Unplaced FADT: pointers zero, checksum valid.
    CHECK(rd(set.fadt, acpi::kFadtDsdt, 4) == 0);
    CHECK(rd(set.fadt, acpi::kFadtXDsdt, 8) == 0);
    CHECK(rd(set.fadt, acpi::kFadtFirmwareCtrl, 4) == 0);
    CHECK(sum(set.fadt, set.fadt.size()) == 0);
    CHECK(sum(set.dsdt, set.dsdt.size()) == 0);
    REQUIRE(set.others.size() == 4);
    CHECK(sig(set.others[0]) == "APIC");
    CHECK(sig(set.others[1]) == "MCFG");
    CHECK(sig(set.others[2]) == "WAET");
    CHECK(sig(set.others[3]) == "SPCR");

    // The same tables placed elsewhere: identical bodies, pointers moved.
    const auto a = layout_acpi(set, 0xe0000);
    const auto b = layout_acpi(set, 0x10000000);
    CHECK(b.rsdp_gpa == 0x10000000);
    const Walk wa = walk(a), wb = walk(b);
    CHECK(wa.dsdt == wb.dsdt);
    CHECK(wa.madt == wb.madt);
    CHECK(rd(wb.fadt, 140, 8) - rd(wa.fadt, 140, 8) == 0x10000000 - 0xe0000);
    CHECK(wa.dsdt == set.dsdt);
    CHECK(wa.madt == set.others[0]);
}

TEST_CASE("arch: a corrupted ACPI table fails its checksum", "[arch][acpi]") {
    auto t = build_acpi({.ncpus = 2});
    for (auto& b : t.blobs) {
        if (sig(b.bytes) == "APIC") {
            b.bytes[44 + 3] ^= 0x40;  // first LAPIC's APIC ID
            CHECK(sum(b.bytes, b.bytes.size()) != 0);
        }
    }
}

namespace {

// A minimal AML reader for the DSDT checks: PkgLength, integers, names.
struct AmlReader {
    const std::vector<uint8_t>& b;
    std::size_t pos;

    uint8_t u8() {
        REQUIRE(pos < b.size());
        return b[pos++];
    }
    // Returns the end offset of the package whose PkgLength starts here.
    std::size_t pkg_end() {
        const std::size_t start = pos;
        const uint8_t lead = u8();
        const int extra = lead >> 6;
        uint32_t len = extra == 0 ? (lead & 0x3f) : (lead & 0x0f);
        for (int i = 0; i < extra; ++i) len |= uint32_t{u8()} << (4 + 8 * i);
        if (extra != 0) CHECK((lead & 0x30) == 0);
        const std::size_t end = start + len;
        REQUIRE(end <= b.size());
        return end;
    }
    uint64_t integer() {
        const uint8_t op = u8();
        int n = 0;
        switch (op) {
            case 0x00: return 0;
            case 0x01: return 1;
            case 0xff: return ~uint64_t{0};
            case 0x0a: n = 1; break;
            case 0x0b: n = 2; break;
            case 0x0c: n = 4; break;
            case 0x0e: n = 8; break;
            default: FAIL("not an integer opcode: " << int(op));
        }
        const uint64_t v = rd(b, pos, n);
        pos += static_cast<std::size_t>(n);
        return v;
    }
    std::string nameseg() {
        REQUIRE(pos + 4 <= b.size());
        std::string s(b.begin() + static_cast<std::ptrdiff_t>(pos), b.begin() + static_cast<std::ptrdiff_t>(pos + 4));
        pos += 4;
        return s;
    }
};

// Offset just after `NameOp <seg>` inside [from, to), or 0.
std::size_t find_name(const std::vector<uint8_t>& b, std::size_t from, std::size_t to, const char* seg) {
    const std::vector<uint8_t> pat{0x08, uint8_t(seg[0]), uint8_t(seg[1]), uint8_t(seg[2]), uint8_t(seg[3])};
    auto it = std::search(b.begin() + static_cast<std::ptrdiff_t>(from), b.begin() + static_cast<std::ptrdiff_t>(to),
                          pat.begin(), pat.end());
    if (it == b.begin() + static_cast<std::ptrdiff_t>(to)) return 0;
    return static_cast<std::size_t>(it - b.begin()) + pat.size();
}

struct PciAml {
    std::size_t pci0_begin = 0, pci0_end = 0, mres_begin = 0, mres_end = 0;
};

// Walks the DSDT body: Name(_S5_), Scope(\_SB_) { the processors }, then
// Scope(\_SB_) { Device(PCI0), Device(MRES) }, checking that every
// PkgLength ends exactly where the next term starts.
PciAml parse_dsdt(const std::vector<uint8_t>& dsdt) {
    PciAml out;
    AmlReader r{dsdt, 36};
    REQUIRE(r.u8() == 0x08);
    CHECK(r.nameseg() == "_S5_");
    REQUIRE(r.u8() == 0x12);
    r.pos = r.pkg_end();
    REQUIRE(r.u8() == 0x10);  // the processors' ScopeOp
    r.pos = r.pkg_end();
    REQUIRE(r.u8() == 0x10);  // ScopeOp
    const std::size_t scope_end = r.pkg_end();
    CHECK(scope_end == dsdt.size());
    REQUIRE(r.u8() == '\\');
    CHECK(r.nameseg() == "_SB_");
    for (const char* want : {"PCI0", "MRES"}) {
        REQUIRE(r.u8() == 0x5b);
        REQUIRE(r.u8() == 0x82);  // DeviceOp
        const std::size_t end = r.pkg_end();
        CHECK(r.nameseg() == want);
        if (std::string(want) == "PCI0") {
            out.pci0_begin = r.pos;
            out.pci0_end = end;
        } else {
            out.mres_begin = r.pos;
            out.mres_end = end;
        }
        r.pos = end;
    }
    CHECK(r.pos == scope_end);
    return out;
}

struct Desc {
    uint8_t tag;
    std::vector<uint8_t> body;  // after the tag/length header
};

// Reads `Name(<seg>, Buffer)` as a resource template and splits it into
// descriptors, checking the buffer size and the end tag.
std::vector<Desc> resource_template(const std::vector<uint8_t>& b, std::size_t from, std::size_t to) {
    AmlReader r{b, find_name(b, from, to, "_CRS")};
    REQUIRE(r.pos != 0);
    REQUIRE(r.u8() == 0x11);  // BufferOp
    const std::size_t end = r.pkg_end();
    REQUIRE(end <= to);
    const uint64_t size = r.integer();
    REQUIRE(r.pos + size == end);
    std::vector<Desc> out;
    while (true) {
        const uint8_t tag = r.u8();
        if (tag & 0x80) {
            const std::size_t len = rd(b, r.pos, 2);
            r.pos += 2;
            REQUIRE(r.pos + len <= end);
            out.push_back({tag, {b.begin() + static_cast<std::ptrdiff_t>(r.pos),
                                 b.begin() + static_cast<std::ptrdiff_t>(r.pos + len)}});
            r.pos += len;
        } else {
            const std::size_t len = tag & 7;
            REQUIRE(r.pos + len <= end);
            if (tag == 0x79) {
                CHECK(len == 1);
                r.pos += len;
                break;
            }
            out.push_back({tag, {b.begin() + static_cast<std::ptrdiff_t>(r.pos),
                                 b.begin() + static_cast<std::ptrdiff_t>(r.pos + len)}});
            r.pos += len;
        }
    }
    CHECK(r.pos == end);
    return out;
}

// Checks an address-space descriptor: type, producer window flags and
// [min, max] with length max - min + 1.
void check_window(const Desc& d, uint8_t tag, uint8_t type, uint8_t type_flags, uint64_t min, uint64_t max) {
    const int w = tag == 0x88 ? 2 : tag == 0x87 ? 4 : 8;
    INFO("window " << std::hex << min << ".." << max);
    CHECK(d.tag == tag);
    REQUIRE(d.body.size() == static_cast<std::size_t>(3 + 5 * w));
    CHECK(d.body[0] == type);
    CHECK(d.body[1] == 0x0c);  // MinFixed, MaxFixed, PosDecode, producer
    CHECK(d.body[2] == type_flags);
    CHECK(rd(d.body, 3, w) == 0);                   // granularity
    CHECK(rd(d.body, 3 + w, w) == min);
    CHECK(rd(d.body, 3 + 2 * w, w) == max);
    CHECK(rd(d.body, 3 + 3 * w, w) == 0);           // translation
    CHECK(rd(d.body, 3 + 4 * w, w) == max - min + 1);  // length
}

}  // namespace

TEST_CASE("arch: MCFG describes the ECAM of bus 0", "[arch][acpi][pci]") {
    const Walk w = walk(build_acpi({.ncpus = 2}));
    REQUIRE(w.mcfg.size() == 60);
    CHECK(w.mcfg[8] == 1);  // revision
    CHECK(rd(w.mcfg, 36, 8) == 0);  // reserved
    CHECK(rd(w.mcfg, 44, 8) == 0xe0000000);
    CHECK(rd(w.mcfg, 52, 2) == 0);  // segment
    CHECK(w.mcfg[54] == 0);         // start bus
    CHECK(w.mcfg[55] == 0);         // end bus
    CHECK(rd(w.mcfg, 56, 4) == 0);

    // Without PCI: no MCFG and no PCI0.
    const auto set = generate_acpi_tables({.ncpus = 2, .pci = false});
    REQUIRE(set.others.size() == 3);
    CHECK(sig(set.others[0]) == "APIC");
    CHECK(sig(set.others[1]) == "WAET");
    const std::string pci0 = "PCI0";
    CHECK(std::search(set.dsdt.begin(), set.dsdt.end(), pci0.begin(), pci0.end()) == set.dsdt.end());
}

TEST_CASE("arch: DSDT describes the PCI host bridge", "[arch][acpi][pci]") {
    AcpiConfig cfg{.ncpus = 2};
    const AddrRange w64 = pci_mmio64_window(ram_layout(6 * GiB));
    cfg.pci_mmio64_start = w64.start;
    cfg.pci_mmio64_size = w64.size;
    const Walk w = walk(build_acpi(cfg));
    const auto& d = w.dsdt;
    const PciAml p = parse_dsdt(d);

    auto name_int = [&](std::size_t from, std::size_t to, const char* seg) {
        AmlReader r{d, find_name(d, from, to, seg)};
        REQUIRE(r.pos != 0);
        return r.integer();
    };
    // EISAID("PNP0A08") = 0x080ad041, "PNP0A03" = 0x030ad041, "PNP0C02" = 0x020cd041.
    CHECK(name_int(p.pci0_begin, p.pci0_end, "_HID") == 0x080ad041);
    CHECK(name_int(p.pci0_begin, p.pci0_end, "_CID") == 0x030ad041);
    for (const char* z : {"_SEG", "_BBN", "_UID"}) CHECK(name_int(p.pci0_begin, p.pci0_end, z) == 0);
    CHECK(name_int(p.mres_begin, p.mres_end, "_HID") == 0x020cd041);

    const auto crs = resource_template(d, p.pci0_begin, p.pci0_end);
    REQUIRE(crs.size() == 5);
    check_window(crs[0], 0x88, 2, 0, 0, 0);
    check_window(crs[1], 0x88, 1, 3, 0, 0xcf7);
    check_window(crs[2], 0x88, 1, 3, 0xd00, 0xffff);
    check_window(crs[3], 0x87, 0, 1, 0xc0000000, 0xdfffffff);
    check_window(crs[4], 0x8a, 0, 3, 7 * GiB, 7 * GiB + 64 * GiB - 1);
    // The windows contain the ranges the VMM assigns BARs from.
    CHECK(kPciIoStart >= 0xd00);
    CHECK(kPciMmio32Start >= rd(crs[3].body, 7, 4));
    CHECK(kPciMmio32End - 1 <= rd(crs[3].body, 11, 4));

    const auto mb = resource_template(d, p.mres_begin, p.mres_end);
    REQUIRE(mb.size() == 2);
    CHECK(mb[0].tag == 0x47);
    CHECK(mb[0].body == std::vector<uint8_t>{0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08});
    CHECK(mb[1].tag == 0x86);
    REQUIRE(mb[1].body.size() == 9);
    CHECK(rd(mb[1].body, 1, 4) == 0xe0000000);
    CHECK(rd(mb[1].body, 5, 4) == 0x100000);

    // _PRT: slots 1..31 x INTA..INTD, GSI = 16 + (slot + pin) % 8.
    AmlReader r{d, find_name(d, p.pci0_begin, p.pci0_end, "_PRT")};
    REQUIRE(r.pos != 0);
    REQUIRE(r.u8() == 0x12);
    const std::size_t prt_end = r.pkg_end();
    CHECK(prt_end <= p.pci0_end);
    REQUIRE(r.u8() == 124);
    std::map<std::pair<unsigned, unsigned>, uint64_t> seen;
    for (int i = 0; i < 124; ++i) {
        REQUIRE(r.u8() == 0x12);
        const std::size_t end = r.pkg_end();
        REQUIRE(r.u8() == 4);
        const uint64_t addr = r.integer();
        const uint64_t pin = r.integer();
        const uint64_t source = r.integer();
        const uint64_t gsi = r.integer();
        CHECK(r.pos == end);
        CHECK((addr & 0xffff) == 0xffff);
        const unsigned slot = static_cast<unsigned>(addr >> 16);
        CHECK(source == 0);
        CHECK(gsi == pci_intx_gsi(slot, static_cast<unsigned>(pin)));
        CHECK(gsi == 16 + (slot + pin) % 8);
        seen[{slot, static_cast<unsigned>(pin)}] = gsi;
    }
    CHECK(r.pos == prt_end);
    CHECK(seen.size() == 124);
    CHECK(seen.begin()->first == std::pair<unsigned, unsigned>{1, 0});
    CHECK(seen.rbegin()->first == std::pair<unsigned, unsigned>{31, 3});
}

TEST_CASE("arch: ACPI PCI configuration is checked", "[arch][acpi][pci]") {
    AcpiConfig cfg{.ncpus = 1};
    cfg.pci_mmio64_size = 0;  // no 64-bit window: four windows only
    const auto dsdt = build_dsdt(cfg);
    const PciAml p = parse_dsdt(dsdt);
    CHECK(resource_template(dsdt, p.pci0_begin, p.pci0_end).size() == 4);

    AcpiConfig bad{.ncpus = 1};
    bad.pci_ecam_base = 0xe0080000;
    CHECK_THROWS_AS(build_mcfg(bad), vmm::Error);
    bad = {.ncpus = 1};
    bad.pci_mmio32_end = bad.pci_mmio32_start;
    CHECK_THROWS_AS(build_dsdt(bad), vmm::Error);
    bad = {.ncpus = 1};
    bad.pci_mmio64_start = 0x80000000;
    CHECK_THROWS_AS(build_dsdt(bad), vmm::Error);
    bad = {.ncpus = 1};
    bad.pci_mmio64_start = ~uint64_t{0} - GiB;
    CHECK_THROWS_AS(build_dsdt(bad), vmm::Error);
    // A different ECAM base reaches both the MCFG and the motherboard resources.
    AcpiConfig moved{.ncpus = 1};
    moved.pci_ecam_base = 0xb0000000;
    CHECK(rd(build_mcfg(moved), 44, 8) == 0xb0000000);
}

TEST_CASE("arch: DSDT describes pvpanic as QEMU0001 only when asked", "[arch][acpi]") {
    auto find = [](const std::vector<uint8_t>& d, const std::vector<uint8_t>& pat) {
        return std::search(d.begin(), d.end(), pat.begin(), pat.end()) != d.end();
    };
    const std::string hid = "QEMU0001";
    const std::vector<uint8_t> hid_bytes(hid.begin(), hid.end());
    CHECK_FALSE(find(walk(build_acpi({.ncpus = 1})).dsdt, hid_bytes));
    AcpiConfig cfg{.ncpus = 1};
    cfg.pvpanic_port = 0x505;
    const Walk w = walk(build_acpi(cfg));
    CHECK(find(w.dsdt, hid_bytes));
    // IO(Decode16, 0x505, 0x505, 1, 1): tag 0x47, decode 1, min, max, align, length.
    CHECK(find(w.dsdt, {0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01}));
    CHECK(find(w.dsdt, {'P', 'E', 'V', 'T'}));
}

TEST_CASE("arch: DSDT describes the CMOS RTC as PNP0B00 on ports 0x70-0x71 and IRQ 8", "[arch][acpi]") {
    auto find = [](const std::vector<uint8_t>& d, const std::vector<uint8_t>& pat) {
        return std::search(d.begin(), d.end(), pat.begin(), pat.end()) != d.end();
    };
    const auto dsdt = build_dsdt({.ncpus = 1});
    CHECK(find(dsdt, {'R', 'T', 'C', '_'}));
    // _HID EisaId("PNP0B00"): DWordPrefix, 0x0b00d041.
    CHECK(find(dsdt, {'_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0b, 0x00}));
    // IO(Decode16, 0x70, 0x70, 1, 2), then IRQNoFlags() {8}, then the end tag.
    CHECK(find(dsdt, {0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, 0x22, 0x00, 0x01, 0x79}));
    AcpiConfig none{.ncpus = 1};
    none.rtc_port = 0;
    CHECK_FALSE(find(build_dsdt(none), {'R', 'T', 'C', '_'}));
    none.rtc_port = 0x70;
    none.rtc_irq = 16;  // not an ISA IRQ
    CHECK_THROWS_AS(build_dsdt(none), vmm::Error);
}

namespace {
std::string run_in(const std::string& dir, const std::string& cmd) {
    std::string out = dir + "/out.txt";
    int st = std::system(("cd " + dir + " && " + cmd + " >" + out + " 2>&1").c_str());
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    return "exit " + std::to_string(st) + "\n" + ss.str();
}
}  // namespace

// ACPICA, the reference implementation Linux and the BSDs use: every table
// disassembles, the DSDT recompiles with no error, warning or remark, and
// acpiexec loads it (the way an OS would) without a complaint.
TEST_CASE("acpi: ACPICA's iasl and acpiexec read the tables without error or warning", "[arch][acpi]") {
    if (std::system("command -v iasl >/dev/null 2>&1 && command -v acpiexec >/dev/null 2>&1") != 0) {
        WARN("SKIP: iasl/acpiexec are not installed (Debian package acpica-tools; tests/install-deps.sh installs it)");
        return;
    }
    AcpiConfig direct;
    direct.ncpus = 4;
    direct.pvpanic_port = 0x505;
    AcpiConfig firmware;  // the Q35 map a firmware boot describes, more vCPUs, no pvpanic
    firmware.ncpus = 64;
    firmware.pci_ecam_base = kQ35EcamBase;
    firmware.pci_mmio32_start = 0xC0000000;
    firmware.pci_mmio32_end = kQ35PciMmio32End;
    for (const AcpiConfig& cfg : {direct, firmware}) {
        test::TempDir dir;
        auto t = generate_acpi_tables(cfg);
        std::vector<std::pair<std::string, std::vector<uint8_t>>> files = {{"dsdt", t.dsdt}, {"facp", t.fadt}};
        for (size_t i = 0; i < t.others.size(); ++i) files.push_back({"table" + std::to_string(i), t.others[i]});
        for (auto& [name, bytes] : files) {
            std::ofstream(dir / (name + ".dat"), std::ios::binary)
                .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
            std::string out = run_in(dir.path, "iasl -d " + name + ".dat");
            INFO(name << " (" << cfg.ncpus << " vCPUs): " << out);
            CHECK(out.rfind("exit 0\n", 0) == 0);
            CHECK((out.find("Disassembly completed") != std::string::npos || out.find("decoded") != std::string::npos));
            for (const char* bad : {"Error", "Warning", "Unknown", "Invalid"}) CHECK(out.find(bad) == std::string::npos);
        }
        std::string out = run_in(dir.path, "iasl dsdt.dsl");
        INFO("recompiling the disassembled DSDT: " << out);
        CHECK(out.find("Compilation successful. 0 Errors, 0 Warnings, 0 Remarks") != std::string::npos);
        out = run_in(dir.path, "acpiexec -b quit dsdt.dat");
        INFO("acpiexec: " << out);
        CHECK(out.rfind("exit 0\n", 0) == 0);
        CHECK(out.find("1 ACPI AML tables successfully acquired and loaded") != std::string::npos);
        CHECK(out.find("No outstanding allocations") != std::string::npos);
        for (const char* bad : {"Error", "Warning", "Exception", "AE_"}) CHECK(out.find(bad) == std::string::npos);
    }
}

// The PCI root's _OSC, run by ACPICA's interpreter the way an OS calls it:
// Arg3 is the capabilities buffer (CDW1 status, CDW2 support, CDW3 control).
TEST_CASE("acpi: _OSC grants PCIe control and reports masks, bad revisions and UUIDs", "[arch][acpi]") {
    if (std::system("command -v acpiexec >/dev/null 2>&1") != 0) {
        WARN("SKIP: acpiexec is not installed (Debian package acpica-tools; tests/install-deps.sh installs it)");
        return;
    }
    test::TempDir dir;
    auto dsdt = build_dsdt({.ncpus = 1, .pci_ecam_base = kQ35EcamBase});
    std::ofstream(dir / "dsdt.dat", std::ios::binary)
        .write(reinterpret_cast<const char*>(dsdt.data()), static_cast<std::streamsize>(dsdt.size()));
    const std::string pci_uuid = "(5b 4d db 33 f7 1f 1c 40 96 57 74 41 c0 3d d7 66)";  // 33DB4D5B-1FF7-...
    const std::string other_uuid = "(00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff)";
    struct Case {
        std::string uuid;
        int revision;
        std::string control;   // CDW3 asked for, as buffer bytes
        std::string returned;  // the 12 bytes acpiexec prints
    };
    for (const Case& c : {
             Case{pci_uuid, 1, "1f 00 00 00", "00 00 00 00 1F 00 00 00 1F 00 00 00"},  // all granted
             Case{pci_uuid, 1, "ff 00 00 00", "10 00 00 00 1F 00 00 00 1F 00 00 00"},  // masked
             Case{pci_uuid, 1, "05 00 00 00", "00 00 00 00 1F 00 00 00 05 00 00 00"},  // a subset
             Case{pci_uuid, 2, "1f 00 00 00", "08 00 00 00 1F 00 00 00 1F 00 00 00"},  // unknown revision
             Case{other_uuid, 1, "1f 00 00 00", "04 00 00 00 1F 00 00 00 1F 00 00 00"},  // unknown UUID
         }) {
        std::string cmd = "acpiexec -b \"execute \\_SB.PCI0._OSC " + c.uuid + " " + std::to_string(c.revision) +
                          " 3 (00 00 00 00 1f 00 00 00 " + c.control + ")\" dsdt.dat";
        std::string out = run_in(dir.path, cmd);
        INFO(cmd << "\n" << out);
        CHECK(out.find("[Buffer] Length 0C =     0000: " + c.returned) != std::string::npos);
        for (const char* bad : {"Error", "Warning", "AE_"}) CHECK(out.find(bad) == std::string::npos);
    }
}

TEST_CASE("acpi: WAET says RTC and PM timer are good; SPCR names COM1", "[arch][acpi]") {
    auto w = build_waet();
    REQUIRE(w.size() == 40);
    CHECK(sig(w) == "WAET");
    CHECK(sum(w, w.size()) == 0);
    CHECK(rd(w, 36, 4) == 3);

    AcpiConfig c{.ncpus = 1};
    auto s = build_spcr(c);
    REQUIRE(s.size() == 80);
    CHECK(sig(s) == "SPCR");
    CHECK(s[8] == 2);  // revision
    CHECK(sum(s, s.size()) == 0);
    CHECK(s[36] == 0);           // 16550
    CHECK(s[40] == 1);           // system I/O
    CHECK(rd(s, 44, 8) == 0x3f8);
    CHECK(s[53] == 4);           // IRQ 4
    CHECK(rd(s, 54, 4) == 4);    // GSI 4
    CHECK(s[58] == 7);           // 115200
    CHECK(rd(s, 64, 2) == 0xffff);
    c.serial_port = 0;
    auto set = generate_acpi_tables(c);
    for (auto& t : set.others) CHECK(sig(t) != "SPCR");
}

TEST_CASE("acpi: one ACPI0007 processor device per vCPU, named and numbered like the MADT", "[arch][acpi]") {
    for (uint32_t n : {1u, 3u, 254u}) {
        auto dsdt = build_dsdt({.ncpus = n});
        auto count = [&](const std::string& what) {
            std::size_t c = 0;
            for (auto it = dsdt.begin(); (it = std::search(it, dsdt.end(), what.begin(), what.end())) != dsdt.end(); ++it)
                ++c;
            return c;
        };
        CHECK(count("ACPI0007") == n);
        char last[8];
        std::snprintf(last, sizeof last, "C%03X", n - 1);
        CHECK(count(last) == 1);
        std::snprintf(last, sizeof last, "C%03X", n);
        CHECK(count(last) == 0);
    }
}

namespace {
// The tables as reviewable text: per table its signature and size, then
// the bytes in hex, 32 per line.
std::string golden_text(const AcpiTableSet& t) {
    std::string out;
    auto add = [&](const std::vector<uint8_t>& b) {
        out += fmt::format("# {} ({} bytes)\n", std::string(b.begin(), b.begin() + 4), b.size());
        for (std::size_t i = 0; i < b.size(); i += 32) {
            for (std::size_t j = i; j < std::min(b.size(), i + 32); ++j) out += fmt::format("{:02x}", b[j]);
            out += "\n";
        }
    };
    add(t.fadt);
    add(t.facs);
    add(t.dsdt);
    for (auto& o : t.others) add(o);
    return out;
}
}  // namespace

// Golden tables: any change to what the guest gets shows up as a diff of
// tests/unit/golden/acpi-*.hex in review. After an intended change:
//   VMM_UPDATE_GOLDEN=1 build/unit_tests '[golden]'
// and commit the new files (disassemble with `iasl -d` to read them).
TEST_CASE("acpi: the tables are the reviewed golden ones", "[arch][acpi][golden]") {
    AcpiConfig direct;
    direct.ncpus = 2;
    direct.pvpanic_port = 0x505;
    direct.pci_mmio64_start = 4ull << 30;
    AcpiConfig q35;
    q35.ncpus = 2;
    q35.pci_ecam_base = kQ35EcamBase;
    q35.pci_mmio32_start = 0xC0000000;
    q35.pci_mmio32_end = kQ35PciMmio32End;
    for (auto [name, cfg] : {std::pair{"direct", direct}, {"q35", q35}}) {
        const std::string path = std::string(VMM_SOURCE_DIR) + "/tests/unit/golden/acpi-" + name + ".hex";
        const std::string now = golden_text(generate_acpi_tables(cfg));
        if (std::getenv("VMM_UPDATE_GOLDEN")) {
            std::ofstream(path) << now;
            WARN("wrote " << path);
            continue;
        }
        std::ifstream in(path);
        std::stringstream was;
        was << in.rdbuf();
        INFO(path << " differs from the tables built now; if the change is intended, run "
                     "VMM_UPDATE_GOLDEN=1 build/unit_tests '[golden]' and commit the file");
        CHECK(was.str() == now);
    }
}
