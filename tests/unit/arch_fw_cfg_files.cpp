// The fw_cfg ACPI files, checked by running the table-loader script the way
// firmware does and walking the result from the RSDP.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/fw_cfg_files.h"
#include "vmm/core/bytes.h"

using namespace vmm::arch::x86;
using namespace vmm::arch::x86::table_loader;
using test::rd;

namespace {

// Where the fake firmware puts the files: 64-byte but not 128-byte aligned,
// so a wrong alignment request shows.
constexpr uint64_t kHighBase = 0x7ffe0040;
constexpr uint64_t kFsegBase = 0xf5a10;

std::map<std::string, std::vector<uint8_t>> by_name(const std::vector<FwCfgFile>& files) {
    std::map<std::string, std::vector<uint8_t>> m;
    for (const auto& f : files) m[f.name] = f.bytes;
    return m;
}

std::string name_at(const std::vector<uint8_t>& c, std::size_t off) {
    std::string s(c.begin() + off, c.begin() + off + kNameSize);
    if (s.find('\0') == std::string::npos) throw std::runtime_error("file name not NUL terminated");
    return s.substr(0, s.find('\0'));
}

uint64_t get(const std::vector<uint8_t>& b, std::size_t off, std::size_t n) {
    if (!vmm::in_bounds(b.size(), off, n)) throw std::runtime_error("read past a file's end");
    return vmm::load_le(b, off, n);
}

uint8_t sum(const std::vector<uint8_t>& b, std::size_t off, std::size_t len) {
    uint8_t s = 0;
    for (std::size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + b.at(off + i));
    return s;
}

// Firmware's view: files loaded at addresses, pointers and checksums applied.
struct Guest {
    std::map<std::string, std::vector<uint8_t>> files;
    std::map<std::string, uint64_t> at;

    // Throws std::runtime_error on a command firmware would reject.
    void run(const std::vector<uint8_t>& script) {
        if (script.size() % kCommandSize != 0) throw std::runtime_error("script not in 128-byte commands");
        for (std::size_t off = 0; off < script.size(); off += kCommandSize) {
            const std::vector<uint8_t> c(script.begin() + off, script.begin() + off + kCommandSize);
            switch (get(c, 0, 4)) {
                case kAllocate: allocate(c); break;
                case kAddPointer: add_pointer(c); break;
                case kAddChecksum: add_checksum(c); break;
                default: throw std::runtime_error("unknown command");
            }
        }
    }
    std::vector<uint8_t>& loaded(const std::string& name) {
        if (!at.count(name)) throw std::runtime_error("file used before ALLOCATE: " + name);
        return files.at(name);
    }
    void allocate(const std::vector<uint8_t>& c) {
        const std::string name = name_at(c, kAllocFile);
        const uint64_t align = get(c, kAllocAlign, 4);
        const uint8_t zone = c[kAllocZone];
        if (!files.count(name) || at.count(name)) throw std::runtime_error("bad ALLOCATE of " + name);
        if (align == 0 || (align & (align - 1))) throw std::runtime_error("alignment not a power of 2");
        const uint64_t base = zone == kZoneHigh ? kHighBase : zone == kZoneFseg ? kFsegBase : 0;
        if (base == 0) throw std::runtime_error("bad zone");
        if (base % align) throw std::runtime_error("test base does not meet the alignment");
        at[name] = base;
    }
    void add_pointer(const std::vector<uint8_t>& c) {
        auto& dest = loaded(name_at(c, kPointerDest));
        const std::string src = name_at(c, kPointerSrc);
        const auto& src_bytes = loaded(src);
        const std::size_t off = get(c, kPointerOffset, 4), size = c[kPointerSize];
        if (size != 1 && size != 2 && size != 4 && size != 8) throw std::runtime_error("bad pointer size");
        const uint64_t v = get(dest, off, size);
        if (v >= src_bytes.size()) throw std::runtime_error("pointer outside its source file");
        const uint64_t p = v + at[src];
        vmm::store_le(dest, off, size, p);
    }
    void add_checksum(const std::vector<uint8_t>& c) {
        auto& f = loaded(name_at(c, kChecksumFile));
        const std::size_t result = get(c, kChecksumResult, 4), start = get(c, kChecksumStart, 4);
        const std::size_t len = get(c, kChecksumLength, 4);
        if (result >= f.size() || start > f.size() || len > f.size() - start) {
            throw std::runtime_error("checksum range outside the file");
        }
        // The files leave checksum fields 0, so subtracting the sum (SeaBIOS)
        // and storing the complement (OVMF) give the same byte.
        if (f[result] != 0) throw std::runtime_error("checksum field not 0 before ADD_CHECKSUM");
        f[result] = static_cast<uint8_t>(f[result] - sum(f, start, len));
    }

    // The table with a standard header at guest address gpa.
    std::vector<uint8_t> table(uint64_t gpa) {
        for (const auto& [name, base] : at) {
            const auto& f = files.at(name);
            if (gpa < base || gpa - base >= f.size()) continue;
            const std::size_t off = gpa - base;
            const std::size_t len = get(f, off + 4, 4);
            if (len < acpi::kHeaderSize || len > f.size() - off) throw std::runtime_error("bad table length");
            return {f.begin() + off, f.begin() + off + len};
        }
        throw std::runtime_error("no file at a table address");
    }
};

std::string sig(const std::vector<uint8_t>& t) { return std::string(t.begin(), t.begin() + 4); }

// Runs the loader and walks the result; returns what is wrong (empty: all
// good). A list instead of CHECKs so that broken scripts can be shown to
// fail.
std::vector<std::string> verify(const AcpiTableSet& t, const std::vector<FwCfgFile>& out) {
    std::vector<std::string> bad;
    auto expect = [&](bool ok, const std::string& what) {
        if (!ok) bad.push_back(what);
    };
    try {
        Guest g{by_name(out), {}};
        g.run(g.files.at(kFwCfgTableLoader));
        expect(g.at.size() == 2, "not every file allocated");
        const auto& rsdp = g.loaded(kFwCfgAcpiRsdp);
        expect(rsdp.size() == acpi::kRsdpSize && std::memcmp(rsdp.data(), "RSD PTR ", 8) == 0, "RSDP signature");
        expect(rsdp.at(15) == 2, "RSDP revision");
        expect(sum(rsdp, 0, 20) == 0, "RSDP checksum");
        expect(sum(rsdp, 0, 36) == 0, "RSDP extended checksum");

        auto checked = [&](uint64_t gpa, const std::string& want) {
            auto tb = g.table(gpa);
            expect(sig(tb) == want, "signature " + sig(tb) + " where " + want + " belongs");
            expect(sum(tb, 0, tb.size()) == 0, want + " checksum");
            return tb;
        };
        const auto rsdt = checked(get(rsdp, acpi::kRsdpRsdtOff, 4), "RSDT");
        const auto xsdt = checked(get(rsdp, acpi::kRsdpXsdtOff, 8), "XSDT");
        const std::size_t n = (xsdt.size() - acpi::kHeaderSize) / 8;
        expect(n == 1 + t.others.size() && n == (rsdt.size() - acpi::kHeaderSize) / 4, "entry counts");
        std::vector<uint64_t> entries;
        for (std::size_t i = 0; i < n; ++i) {
            entries.push_back(get(xsdt, acpi::kHeaderSize + 8 * i, 8));
            expect(get(rsdt, acpi::kHeaderSize + 4 * i, 4) == entries[i], "RSDT and XSDT entries differ");
        }
        const auto fadt = checked(entries.at(0), "FACP");
        for (std::size_t i = 0; i < t.others.size(); ++i) {
            expect(checked(entries.at(i + 1), sig(t.others[i])) == t.others[i], "table bytes changed");
        }
        const uint64_t dsdt_at = get(fadt, acpi::kFadtDsdt, 4);
        expect(get(fadt, acpi::kFadtXDsdt, 8) == dsdt_at, "X_DSDT differs from DSDT");
        expect(checked(dsdt_at, "DSDT") == t.dsdt, "DSDT bytes changed");
        expect(get(fadt, acpi::kFadtXFirmwareCtrl, 8) == 0, "X_FIRMWARE_CTRL set");
        // The FACS has no checksum, so look it up by its own file offset.
        const uint64_t facs_at = get(fadt, acpi::kFadtFirmwareCtrl, 4);
        expect(facs_at % 64 == 0, "FACS not 64-byte aligned");
        const auto& tables = g.files.at(kFwCfgAcpiTables);
        expect(facs_at >= kHighBase && facs_at - kHighBase + t.facs.size() <= tables.size() &&
                   std::equal(t.facs.begin(), t.facs.end(), tables.begin() + (facs_at - kHighBase)),
               "FIRMWARE_CTRL does not point at the FACS");
    } catch (const std::exception& e) {
        bad.push_back(e.what());
    }
    return bad;
}

std::vector<std::size_t> commands_of(const std::vector<uint8_t>& script, uint32_t type) {
    std::vector<std::size_t> offs;
    for (std::size_t off = 0; off < script.size(); off += kCommandSize) {
        if (rd(script, off, 4) == type) offs.push_back(off);
    }
    return offs;
}

AcpiConfig config(bool pci) {
    AcpiConfig cfg{.ncpus = 4};
    cfg.pci = pci;
    cfg.pvpanic_port = 0x505;
    return cfg;
}

}  // namespace

TEST_CASE("fw_cfg files: the table loader yields a valid ACPI tree", "[arch][fw_cfg]") {
    for (bool pci : {true, false}) {
        INFO("pci " << pci);
        const auto t = generate_acpi_tables(config(pci));
        const auto out = acpi_loader_files(t);
        REQUIRE(out.size() == 3);
        CHECK(out[0].name == "etc/acpi/tables");
        CHECK(out[1].name == "etc/acpi/rsdp");
        CHECK(out[2].name == "etc/table-loader");
        CHECK(verify(t, out) == std::vector<std::string>{});
    }
}

TEST_CASE("fw_cfg files: table loader commands", "[arch][fw_cfg]") {
    const auto t = generate_acpi_tables(config(true));
    REQUIRE(t.others.size() == 4);  // MADT, MCFG, WAET, SPCR
    const auto out = acpi_loader_files(t);
    const auto& tables = out[0].bytes;
    const auto& script = out[2].bytes;
    REQUIRE(script.size() % kCommandSize == 0);
    // 2 allocations; pointers: 3 in the FADT, 5 + 5 root entries, 2 in the
    // RSDP; checksums: DSDT, FADT, 4 others, RSDT, XSDT, RSDP twice.
    CHECK(script.size() / kCommandSize == 2 + 15 + 10);

    // Allocations first, tables in high memory, the RSDP in the F segment.
    CHECK(rd(script, 0, 4) == kAllocate);
    CHECK(name_at(script, kAllocFile) == "etc/acpi/tables");
    CHECK(rd(script, kAllocAlign, 4) == 64);
    CHECK(script[kAllocZone] == kZoneHigh);
    CHECK(rd(script, 128, 4) == kAllocate);
    CHECK(name_at({script.begin() + 128, script.end()}, kAllocFile) == "etc/acpi/rsdp");
    CHECK(rd(script, 128 + kAllocAlign, 4) == 16);
    CHECK(script[128 + kAllocZone] == kZoneFseg);
    // Everything after a command's fields is zero padding.
    for (std::size_t i = kAllocZone + 1; i < kCommandSize; ++i) CHECK(script[i] == 0);

    // FACS at offset 0, then DSDT and the FADT; the FADT's pointer fields
    // hold the targets' offsets in the file.
    CHECK(std::equal(t.facs.begin(), t.facs.end(), tables.begin()));
    const std::size_t fadt = t.facs.size() + t.dsdt.size();
    CHECK(std::string(tables.begin() + fadt, tables.begin() + fadt + 4) == "FACP");
    CHECK(rd(tables, fadt + acpi::kFadtFirmwareCtrl, 4) == 0);
    CHECK(rd(tables, fadt + acpi::kFadtDsdt, 4) == t.facs.size());
    CHECK(rd(tables, fadt + acpi::kFadtXDsdt, 8) == t.facs.size());
    CHECK(tables[fadt + acpi::kChecksumOff] == 0);

    // The FADT's three pointers, then its checksum.
    const auto ptrs = commands_of(script, kAddPointer);
    REQUIRE(ptrs.size() == 15);
    CHECK(ptrs[0] == 3 * kCommandSize);  // after the DSDT's checksum
    const std::size_t want[] = {acpi::kFadtFirmwareCtrl, acpi::kFadtDsdt, acpi::kFadtXDsdt};
    const uint8_t size[] = {4, 4, 8};
    for (int i = 0; i < 3; ++i) {
        const std::vector<uint8_t> c(script.begin() + ptrs[i], script.begin() + ptrs[i] + kCommandSize);
        CHECK(name_at(c, kPointerDest) == "etc/acpi/tables");
        CHECK(name_at(c, kPointerSrc) == "etc/acpi/tables");
        CHECK(rd(c, kPointerOffset, 4) == fadt + want[i]);
        CHECK(c[kPointerSize] == size[i]);
    }
    const auto sums = commands_of(script, kAddChecksum);
    REQUIRE(sums.size() == 10);
    CHECK(sums[0] == 2 * kCommandSize);        // DSDT: no pointers
    CHECK(sums[1] == ptrs[2] + kCommandSize);  // FADT, right after its pointers
    CHECK(rd(script, sums[1] + kChecksumResult, 4) == fadt + acpi::kChecksumOff);
    CHECK(rd(script, sums[1] + kChecksumStart, 4) == fadt);
    CHECK(rd(script, sums[1] + kChecksumLength, 4) == t.fadt.size());
    // The RSDP's checksums close the script: 20 bytes, then all 36.
    CHECK(sums[9] == script.size() - kCommandSize);
    CHECK(rd(script, sums[8] + kChecksumResult, 4) == 8);
    CHECK(rd(script, sums[8] + kChecksumLength, 4) == 20);
    CHECK(rd(script, sums[9] + kChecksumResult, 4) == 32);
    CHECK(rd(script, sums[9] + kChecksumLength, 4) == 36);
}

TEST_CASE("fw_cfg files: a broken loader script fails the walk", "[arch][fw_cfg]") {
    const auto t = generate_acpi_tables(config(true));
    const auto good = acpi_loader_files(t);
    const auto& script = good[2].bytes;
    auto with_script = [&](std::vector<uint8_t> s) {
        auto out = good;
        out[2].bytes = std::move(s);
        return out;
    };
    // A checksum that comes out as 0 is the byte already in the file, so
    // dropping its command changes nothing (WAET's does, by chance).
    Guest loaded{by_name(good), {}};
    loaded.run(script);
    auto noop_checksum = [&](std::size_t off) {
        const std::vector<uint8_t> c(script.begin() + off, script.begin() + off + kCommandSize);
        return loaded.files.at(name_at(c, kChecksumFile)).at(get(c, kChecksumResult, 4)) == 0;
    };
    for (uint32_t type : {kAddPointer, kAddChecksum}) {
        for (std::size_t off : commands_of(script, type)) {
            INFO("command at " << off);
            auto dropped = script;
            dropped.erase(dropped.begin() + off, dropped.begin() + off + kCommandSize);
            if (!(type == kAddChecksum && noop_checksum(off))) CHECK_FALSE(verify(t, with_script(dropped)).empty());
            // Moved by one field width (4 bytes).
            auto moved = script;
            const std::size_t field = type == kAddPointer ? kPointerOffset : kChecksumResult;
            const uint32_t v = static_cast<uint32_t>(rd(moved, off + field, 4)) + 4;
            vmm::store_le32(moved, off + field, v);
            CHECK_FALSE(verify(t, with_script(moved)).empty());
        }
    }
}

TEST_CASE("fw_cfg files: etc/e820 entries", "[arch][fw_cfg]") {
    const E820Entry e[] = {{0, 0x9fc00, kE820Ram}, {0x100000000ull, 0x123456789ull, kE820Reserved}};
    const auto b = fw_cfg_e820(e);
    REQUIRE(b.size() == 40);
    CHECK(rd(b, 0, 8) == 0);
    CHECK(rd(b, 8, 8) == 0x9fc00);
    CHECK(rd(b, 16, 4) == 1);
    CHECK(rd(b, 20, 8) == 0x100000000ull);
    CHECK(rd(b, 28, 8) == 0x123456789ull);
    CHECK(rd(b, 36, 4) == 2);
    CHECK(fw_cfg_e820({}).empty());
}

TEST_CASE("fw_cfg files: bootorder lists device paths by boot index", "[arch][fw_cfg]") {
    using K = BootDevice::Kind;
    auto text = [](std::vector<BootDevice> d) {
        auto b = fw_cfg_bootorder(std::move(d));
        return std::string(b.begin(), b.end());
    };
    CHECK(text({}).empty());
    CHECK(text({{K::VirtioBlk, 12, 0, 5}, {K::VirtioScsiLun, 3, 0x1a, 0}, {K::VirtioNet, 4, 0, 2}}) ==
          "/pci@i0cf8/scsi@3/channel@0/disk@0,1a\n"
          "/pci@i0cf8/ethernet@4\n"
          "/pci@i0cf8/scsi@c/disk@0,0\n");
}

// SeaBIOS takes the tables only when the anchor's size and signature match
// and its table length equals the tables file's size; OVMF reads the version
// from it. The address is the firmware's to fill.
TEST_CASE("fw_cfg files: SMBIOS tables and their 3.0 anchor", "[arch][fw_cfg]") {
    SmbiosConfig c;
    c.cpus = 2;
    c.ram = ram_layout(512ull << 20);
    auto t = build_smbios_table(c);
    auto files = smbios_files(t);
    REQUIRE(files.size() == 2);
    CHECK(files[0].name == "etc/smbios/smbios-tables");
    CHECK(files[0].bytes == t.bytes);
    CHECK(files[1].name == "etc/smbios/smbios-anchor");
    const auto& a = files[1].bytes;
    REQUIRE(a.size() == 24);
    CHECK(std::memcmp(a.data(), "_SM3_", 5) == 0);
    uint8_t sum = 0;
    for (uint8_t b : a) sum = static_cast<uint8_t>(sum + b);
    CHECK(sum == 0);
    CHECK(rd(a, 12, 4) == files[0].bytes.size());
    CHECK(rd(a, 16, 8) == 0);
    CHECK(files[0].bytes.front() == 1);  // no type 0 of ours: the firmware adds its own
}
