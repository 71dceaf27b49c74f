// Unit tests: SMBIOS structures and entry points (arch/x86_64/smbios.h),
// read back the way dmidecode and Linux's dmi_scan read them, and, where
// dmidecode is installed, by dmidecode itself.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/smbios.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;
using test::rd;

namespace {

struct Parsed {
    uint8_t type;
    uint16_t handle;
    std::vector<uint8_t> area;         // formatted area, header included
    std::vector<std::string> strings;  // string 1 is strings[0]
    std::size_t size;                  // with the strings and terminators
    std::string str(std::size_t off) const {
        uint8_t n = area.at(off);
        if (n == 0) return "";
        REQUIRE(n <= strings.size());
        return strings[n - 1];
    }
};

// Walks the table by each structure's length and its double-NUL-terminated
// string set; fails on anything a reader would trip over.
std::vector<Parsed> walk(const std::vector<uint8_t>& t) {
    std::vector<Parsed> out;
    std::size_t off = 0;
    while (off < t.size()) {
        REQUIRE(off + 4 <= t.size());
        Parsed p;
        p.type = t[off];
        uint8_t len = t[off + 1];
        REQUIRE(len >= 4);
        REQUIRE(off + len + 2 <= t.size());
        p.handle = static_cast<uint16_t>(rd(t, off + 2, 2));
        p.area.assign(t.begin() + off, t.begin() + off + len);
        std::size_t s = off + len;
        if (t[s] == 0 && t[s + 1] == 0) {
            s += 2;
        } else {
            while (true) {
                std::string str;
                while (s < t.size() && t[s] != 0) str += static_cast<char>(t[s++]);
                REQUIRE(s < t.size());
                p.strings.push_back(str);
                ++s;
                REQUIRE(s < t.size());
                if (t[s] == 0) {
                    ++s;
                    break;
                }
            }
        }
        p.size = s - off;
        off = s;
        out.push_back(p);
    }
    REQUIRE(off == t.size());
    return out;
}

SmbiosConfig config(uint32_t cpus, uint64_t mem) {
    SmbiosConfig c;
    c.cpus = cpus;
    c.ram = ram_layout(mem);
    c.cpuid_signature = 0x000a0f11;
    c.cpuid_features = 0x178bfbff;
    return c;
}

std::vector<uint8_t> types(const std::vector<Parsed>& ps) {
    std::vector<uint8_t> v;
    for (auto& p : ps) v.push_back(p.type);
    return v;
}

const Parsed& first(const std::vector<Parsed>& ps, uint8_t type) {
    for (auto& p : ps)
        if (p.type == type) return p;
    FAIL("no type " << int(type));
    return ps.front();
}

uint8_t sum(const std::vector<uint8_t>& b, std::size_t off, std::size_t len) {
    uint8_t s = 0;
    for (std::size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + b.at(off + i));
    return s;
}

}  // namespace

TEST_CASE("smbios: the default table has the documented structures in order") {
    auto t = build_smbios_table(config(2, 512 * MiB));
    auto ps = walk(t.bytes);
    CHECK(types(ps) == std::vector<uint8_t>{1, 3, 4, 4, 16, 17, 19, 32, 127});
    CHECK(t.structures == ps.size());
    std::size_t largest = 0;
    std::set<uint16_t> handles;
    for (auto& p : ps) {
        largest = std::max(largest, p.size);
        CHECK(handles.insert(p.handle).second);
        CHECK(p.handle < 0xfffe);
    }
    CHECK(t.max_structure == largest);
    CHECK(handles.count(0) == 0);  // the firmware's own type 0 takes handle 0

    auto& sys = first(ps, 1);
    CHECK(sys.area.size() == 0x1b);
    CHECK(sys.str(0x04) == "vmm");
    CHECK(sys.str(0x05) == "KVM Virtual Machine");
    CHECK(sys.area[0x07] == 0);  // no serial unless given
    for (int i = 0; i < 16; ++i) CHECK(sys.area[0x08 + i] == 0);  // UUID not set
    CHECK(sys.str(0x1a) == "Virtual Machine");

    auto& cpu = first(ps, 4);
    CHECK(cpu.area.size() == 0x30);
    CHECK(cpu.str(0x04) == "CPU 0");
    CHECK(rd(cpu.area, 0x08, 4) == 0x000a0f11);
    CHECK(rd(cpu.area, 0x0c, 4) == 0x178bfbff);
    CHECK(cpu.area[0x18] == 0x41);
    CHECK(ps[3].str(0x04) == "CPU 1");

    auto& arr = first(ps, 16);
    CHECK(rd(arr.area, 0x07, 4) == 512 * 1024);  // KiB
    CHECK(rd(arr.area, 0x0d, 2) == 1);
    auto& dev = first(ps, 17);
    CHECK(rd(dev.area, 0x04, 2) == arr.handle);
    CHECK(rd(dev.area, 0x0c, 2) == 512);  // MiB
    auto& map = first(ps, 19);
    CHECK(rd(map.area, 0x04, 4) == 0);
    CHECK(rd(map.area, 0x08, 4) == 512 * 1024 - 1);
    CHECK(rd(map.area, 0x0c, 2) == arr.handle);
    CHECK(ps.back().size == 6);  // type 127: header and two NULs
}

TEST_CASE("smbios: type 0 only when asked for, with handle 0") {
    auto c = config(1, 256 * MiB);
    c.strings.bios = true;
    c.strings.bios_vendor = "Acme";
    auto ps = walk(build_smbios_table(c).bytes);
    REQUIRE(ps.front().type == 0);
    CHECK(ps.front().handle == 0);
    CHECK(ps.front().area.size() == 0x1a);
    CHECK(ps.front().str(0x04) == "Acme");
    CHECK(ps.front().str(0x08) == "01/01/2026");
    CHECK((ps.front().area[0x13] & 0x10) != 0);  // "a virtual machine"
}

TEST_CASE("smbios: user strings and the UUID reach type 1 and 3") {
    auto c = config(1, 256 * MiB);
    c.strings.serial = "ds=nocloud;h=ci-7";
    c.strings.manufacturer = "Example Corp";
    c.strings.chassis_asset = "rack 4";
    c.uuid = parse_uuid("00112233-4455-6677-8899-AABBCCDDEEFF");
    REQUIRE(c.uuid);
    auto ps = walk(build_smbios_table(c).bytes);
    auto& sys = first(ps, 1);
    CHECK(sys.str(0x07) == "ds=nocloud;h=ci-7");
    CHECK(sys.str(0x04) == "Example Corp");
    // Little-endian first three fields (SMBIOS 2.6+), so readers print the text back.
    const uint8_t want[16] = {0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
                              0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    for (int i = 0; i < 16; ++i) CHECK(sys.area[0x08 + i] == want[i]);
    CHECK(first(ps, 3).str(0x08) == "rack 4");
    CHECK(first(ps, 4).str(0x07) == "Example Corp");
}

TEST_CASE("smbios: parse_uuid takes exactly the 8-4-4-4-12 hex form") {
    auto u = parse_uuid("0123abcd-0000-ffff-8000-0123456789ab");
    REQUIRE(u);
    CHECK((*u)[0] == 0x01);
    CHECK((*u)[15] == 0xab);
    for (const char* bad : {"", "0123abcd-0000-ffff-8000-0123456789a", "0123abcd-0000-ffff-8000-0123456789abc",
                            "0123abcd00000-ffff-8000-0123456789ab", "0123abcg-0000-ffff-8000-0123456789ab",
                            "0123abcd-0000-ffff-8000-0123456789a-", "{0123abcd-0000-ffff-8000-0123456789}",
                            "0123abcd-0000-ffff-8000+0123456789ab"})
        CHECK_FALSE(parse_uuid(bad));
}

TEST_CASE("smbios: memory above 4 GiB and large sizes use the extended fields") {
    auto ps = walk(build_smbios_table(config(1, 6 * GiB)).bytes);
    std::vector<const Parsed*> maps;
    for (auto& p : ps)
        if (p.type == 19) maps.push_back(&p);
    REQUIRE(maps.size() == 2);  // below the 3 GiB hole and from 4 GiB up
    CHECK(rd(maps[0]->area, 0x08, 4) == 3 * GiB / KiB - 1);
    CHECK(rd(maps[1]->area, 0x04, 4) == 4 * GiB / KiB);
    CHECK(rd(maps[1]->area, 0x08, 4) == 7 * GiB / KiB - 1);
    CHECK(rd(first(ps, 17).area, 0x0c, 2) == 6 * 1024);

    // 64 GiB: the device size no longer fits the 15-bit MiB field.
    auto big = walk(build_smbios_table(config(1, 64 * GiB)).bytes);
    auto& dev = first(big, 17);
    CHECK(rd(dev.area, 0x0c, 2) == 0x7fff);
    CHECK(rd(dev.area, 0x1c, 4) == 64 * 1024);

    // A region past 4 TiB: addresses in bytes in the extended fields.
    SmbiosConfig c = config(1, 512 * MiB);
    c.ram.push_back({8ull << 40, 4 * GiB});
    auto far = walk(build_smbios_table(c).bytes);
    const Parsed* last = nullptr;
    for (auto& p : far)
        if (p.type == 19) last = &p;
    REQUIRE(last);
    CHECK(rd(last->area, 0x04, 4) == 0xffffffff);
    CHECK(rd(last->area, 0x0f, 8) == (8ull << 40));
    CHECK(rd(last->area, 0x17, 8) == (8ull << 40) + 4 * GiB - 1);
}

TEST_CASE("smbios: both entry points are checksummed and point at the table") {
    auto t = build_smbios_table(config(4, 1 * GiB));
    auto ep3 = smbios3_entry_point(t, 0x123456789ull);
    REQUIRE(ep3.size() == 0x18);
    CHECK(std::string(ep3.begin(), ep3.begin() + 5) == "_SM3_");
    CHECK(sum(ep3, 0, ep3.size()) == 0);
    CHECK(ep3[6] == 0x18);
    CHECK(ep3[7] == 3);
    CHECK(rd(ep3, 12, 4) == t.bytes.size());
    CHECK(rd(ep3, 16, 8) == 0x123456789ull);

    auto ep2 = smbios21_entry_point(t, 0xf8040);
    REQUIRE(ep2.size() == 0x1f);
    CHECK(std::string(ep2.begin(), ep2.begin() + 4) == "_SM_");
    CHECK(std::string(ep2.begin() + 0x10, ep2.begin() + 0x15) == "_DMI_");
    CHECK(sum(ep2, 0, ep2.size()) == 0);
    CHECK(sum(ep2, 0x10, 0x0f) == 0);
    CHECK(rd(ep2, 8, 2) == t.max_structure);
    CHECK(rd(ep2, 0x16, 2) == t.bytes.size());
    CHECK(rd(ep2, 0x18, 4) == 0xf8040);
    CHECK(rd(ep2, 0x1c, 2) == t.structures);
}

TEST_CASE("smbios: direct boot's blob sits in the F segment, 16-byte aligned, for the most vCPUs") {
    for (uint32_t cpus : {1u, 254u}) {
        auto t = build_smbios_table(config(cpus, 512 * MiB));
        auto blobs = smbios_blobs(t);
        REQUIRE(blobs.size() == 1);
        const Blob& b = blobs[0];
        CHECK(b.gpa == kSmbiosAddr);
        CHECK(b.gpa % 16 == 0);
        CHECK(b.gpa >= 0xf0000);
        CHECK(b.gpa + b.bytes.size() <= kSmbiosEnd);
        CHECK(std::string(b.bytes.begin(), b.bytes.begin() + 5) == "_SM3_");
        CHECK(std::string(b.bytes.begin() + 0x20, b.bytes.begin() + 0x24) == "_SM_");
        const uint64_t table = rd(b.bytes, 16, 8);
        REQUIRE(table >= b.gpa);
        std::vector<uint8_t> at(b.bytes.begin() + static_cast<long>(table - b.gpa), b.bytes.end());
        CHECK(at == t.bytes);
        CHECK(walk(at).size() == 7 + cpus);
    }
    CHECK(kMpTableEnd <= kSmbiosAddr);
}

TEST_CASE("smbios: strings that are not printable ASCII or too long are refused by name") {
    auto c = config(1, 256 * MiB);
    c.strings.serial = std::string("a\nb");
    CHECK_THROWS_WITH(build_smbios_table(c), Catch::Contains("system serial") && Catch::Contains("printable"));
    c = config(1, 256 * MiB);
    c.strings.chassis_asset = std::string(kSmbiosMaxString + 1, 'x');
    CHECK_THROWS_WITH(build_smbios_table(c), Catch::Contains("chassis asset") && Catch::Contains("at most 64"));
    c = config(1, 256 * MiB);
    c.strings.product = std::string("caf\xc3\xa9");
    CHECK_THROWS_AS(build_smbios_table(c), vmm::Error);
}

// dmidecode reads a dump in its --dump-bin layout: the entry point at 0,
// its table address rewritten to 32, the table at 32.
TEST_CASE("smbios: dmidecode decodes the table without complaint") {
    if (std::system("command -v dmidecode >/dev/null 2>&1") != 0) {
        WARN("SKIP: dmidecode is not installed (Debian package dmidecode; tests/install-deps.sh installs it)");
        return;
    }
    test::TempDir dir;
    auto c = config(2, 6 * GiB);
    c.strings.serial = "SER-42";
    c.strings.bios = true;
    c.uuid = parse_uuid("00112233-4455-6677-8899-aabbccddeeff");
    auto t = build_smbios_table(c);
    for (bool v3 : {true, false}) {
        auto ep = v3 ? smbios3_entry_point(t, 32) : smbios21_entry_point(t, 32);
        ep.resize(32, 0);
        ep.insert(ep.end(), t.bytes.begin(), t.bytes.end());
        const std::string dump = dir / "dump.bin", out = dir / "out.txt", err = dir / "err.txt";
        std::ofstream(dump, std::ios::binary).write(reinterpret_cast<const char*>(ep.data()),
                                                    static_cast<std::streamsize>(ep.size()));
        int st = std::system(("dmidecode --from-dump " + dump + " >" + out + " 2>" + err).c_str());
        std::ifstream o(out), e(err);
        std::string text((std::istreambuf_iterator<char>(o)), {}), errors((std::istreambuf_iterator<char>(e)), {});
        INFO("entry point " << (v3 ? "3.0" : "2.1") << "\n" << text << errors);
        CHECK(st == 0);
        CHECK(errors.empty());
        CHECK(text.find(v3 ? "SMBIOS 3.0.0 present." : "SMBIOS 2.8 present.") != std::string::npos);
        if (!v3)  // the 3.0 entry point has no structure count to print
            CHECK(text.find(fmt::format("{} structures occupying {} bytes.", t.structures, t.bytes.size())) !=
                  std::string::npos);
        CHECK(text.find("Serial Number: SER-42") != std::string::npos);
        CHECK(text.find("UUID: 00112233-4455-6677-8899-aabbccddeeff") != std::string::npos);
        CHECK(text.find("Size: 6 GB") != std::string::npos);
        CHECK(text.find("Socket Designation: CPU 1") != std::string::npos);
        CHECK(text.find("Vendor: vmm") != std::string::npos);
        for (const char* bad : {"Invalid", "invalid", "Wrong", "wrong", "Unknown Type", "<BAD INDEX>",
                                "<OUT OF SPEC>", "truncated"})
            CHECK(text.find(bad) == std::string::npos);
    }
}
