// Unit tests: bzImage / PVH ELF parsing and initramfs placement. The kernel
// file is untrusted input, so besides the happy paths these feed truncated,
// corrupted and randomly mutated images and require a clean vmm::Error.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "fake_kernels.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;
using namespace test;

namespace {

std::string error_of(std::span<const uint8_t> f, std::span<const RamRegion> ram) {
    try {
        parse_kernel(f, ram);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

// What must hold for any KernelLayout parse_kernel() returns, however odd
// the input: spans inside the file, memory ranges inside the first region.
void check_invariants(const KernelLayout& k, std::span<const uint8_t> file,
                      std::span<const RamRegion> ram) {
    REQUIRE_FALSE(k.segments.empty());
    for (const auto& s : k.segments) {
        REQUIRE(s.data.data() >= file.data());
        REQUIRE(s.data.data() + s.data.size() <= file.data() + file.size());
        REQUIRE(s.mem_size >= s.data.size());
        REQUIRE(s.gpa >= kHighMemStart);
        REQUIRE(s.gpa + s.mem_size >= s.gpa);
        REQUIRE(s.gpa + s.mem_size <= ram[0].gpa + ram[0].size);
        REQUIRE(s.gpa + s.mem_size <= k.kernel_end);
    }
    REQUIRE(k.cmdline_max < kCmdlineMaxBytes);
}

}  // namespace

TEST_CASE("arch: bzImage parses with the preferred address", "[arch][kernel]") {
    const auto f = make_bzimage();
    const auto ram = ram_layout(256 * MiB);
    const auto k = parse_kernel(f, ram);
    CHECK(k.format == KernelFormat::BzImage);
    REQUIRE(k.segments.size() == 1);
    CHECK(k.segments[0].gpa == 16 * MiB);
    CHECK(k.segments[0].data.data() == f.data() + 5 * 512);
    CHECK(k.segments[0].data.size() == 64 * KiB);
    CHECK(k.segments[0].mem_size == 8 * MiB);  // init_size > code size
    CHECK(k.entry == 16 * MiB + 0x200);
    CHECK(k.kernel_end == 24 * MiB);
    CHECK(k.cmdline_max == 2047);
    CHECK(k.initrd_addr_max == 0x7fffffff);
    CHECK(k.protocol_version == 0x020f);
    // Setup header: 0x1f1 .. 0x202 + 0x6a
    REQUIRE(k.setup_header.size() == 0x26c - 0x1f1);
    CHECK(k.setup_header[0x202 - 0x1f1] == 'H');
    CHECK(k.setup_header[0] == 4);  // setup_sects
}

TEST_CASE("arch: bzImage falls back to a low aligned address when RAM is small", "[arch][kernel]") {
    BzOpts o;
    o.init_size = 40 * MiB;
    const auto f = make_bzimage(o);
    const auto ram = ram_layout(48 * MiB);  // 16 + 40 MiB does not fit
    const auto k = parse_kernel(f, ram);
    CHECK(k.segments[0].gpa == 2 * MiB);
    CHECK(k.entry == 2 * MiB + 0x200);
    CHECK(k.kernel_end == 42 * MiB);
}

TEST_CASE("arch: bzImage with unaligned pref_address uses kernel_alignment", "[arch][kernel]") {
    BzOpts o;
    o.pref_address = 0x1001000;
    const auto k = parse_kernel(make_bzimage(o), ram_layout(256 * MiB));
    CHECK(k.segments[0].gpa == 2 * MiB);
}

TEST_CASE("arch: bzImage code larger than init_size sets the size", "[arch][kernel]") {
    BzOpts o;
    o.init_size = 0x1000;
    o.code_size = 0x30000;
    const auto k = parse_kernel(make_bzimage(o), ram_layout(256 * MiB));
    CHECK(k.segments[0].mem_size == 0x30000);
    CHECK(k.kernel_end == 16 * MiB + 0x30000);
}

TEST_CASE("arch: bzImage setup_sects 0 means 4", "[arch][kernel]") {
    BzOpts o;
    o.setup_sects = 0;
    const auto f = make_bzimage(o);
    const auto k = parse_kernel(f, ram_layout(256 * MiB));
    CHECK(k.segments[0].data.data() == f.data() + 5 * 512);
}

TEST_CASE("arch: non-relocatable bzImage loads at pref_address or fails", "[arch][kernel]") {
    BzOpts o;
    o.relocatable = 0;
    o.pref_address = 0x100000;
    auto k = parse_kernel(make_bzimage(o), ram_layout(64 * MiB));
    CHECK(k.segments[0].gpa == 0x100000);

    o.pref_address = 0x100800;  // not aligned
    CHECK_THROWS_WITH(parse_kernel(make_bzimage(o), ram_layout(64 * MiB)),
                      Catch::Contains("not") && Catch::Contains("aligned"));
    o.pref_address = 62 * MiB;  // + 8 MiB init_size > 64 MiB
    CHECK_THROWS_WITH(parse_kernel(make_bzimage(o), ram_layout(64 * MiB)),
                      Catch::Contains("non-relocatable"));
}

TEST_CASE("arch: bzImage cmdline_size is capped to the cmdline area", "[arch][kernel]") {
    BzOpts o;
    o.cmdline_size = 0xffffffff;
    const auto k = parse_kernel(make_bzimage(o), ram_layout(256 * MiB));
    CHECK(k.cmdline_max == kCmdlineMaxBytes - 1);
}

TEST_CASE("arch: bzImage header validation errors", "[arch][kernel]") {
    const auto ram = ram_layout(256 * MiB);
    SECTION("not a kernel") {
        std::vector<uint8_t> junk(4096, 0x90);
        CHECK(error_of(junk, ram) == "kernel: not a bzImage or ELF (no HdrS magic at 0x202)");
        CHECK(error_of({}, ram) == "kernel: not a bzImage or ELF (no HdrS magic at 0x202)");
    }
    SECTION("bad boot flag") {
        auto f = make_bzimage();
        f[0x1fe] = 0;
        CHECK_THAT(error_of(f, ram), Catch::Contains("boot flag"));
    }
    SECTION("too old") {
        BzOpts o;
        o.version = 0x020a;
        CHECK(error_of(make_bzimage(o), ram) ==
              "kernel: boot protocol 2.10 is too old; 64-bit boot needs >= 2.12");
        o.version = 0x0206;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("2.06 is too old"));
    }
    SECTION("no 64-bit entry") {
        BzOpts o;
        o.xloadflags = 0x02;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("XLF_KERNEL_64"));
    }
    SECTION("not loaded high") {
        BzOpts o;
        o.loadflags = 0;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("LOADED_HIGH"));
    }
    SECTION("short header") {
        BzOpts o;
        o.jump = 0x20;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("setup header ends"));
    }
    SECTION("kernel_alignment not a power of two") {
        BzOpts o;
        o.kernel_alignment = 3 * MiB;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("power of two"));
        o.kernel_alignment = 0;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("power of two"));
    }
    SECTION("no protected-mode code") {
        BzOpts o;
        o.code_size = 0;
        CHECK_THAT(error_of(make_bzimage(o), ram), Catch::Contains("truncated"));
        o.setup_sects = 200;  // setup claims more than the file has
        o.code_size = 0;
        auto f = make_bzimage(o);
        f.resize(20 * 512);
        CHECK_THAT(error_of(f, ram), Catch::Contains("truncated"));
    }
    SECTION("shorter than its header's syssize (a partial copy)") {
        BzOpts o;
        o.code_size = 64 * 1024;
        auto f = make_bzimage(o);
        CHECK(error_of(f, ram).empty());
        f.resize(f.size() - 4096);
        CHECK_THAT(error_of(f, ram), Catch::Contains("truncated") && Catch::Contains("header says"));
    }
    SECTION("does not fit in RAM") {
        BzOpts o;
        o.init_size = 200 * MiB;
        CHECK_THAT(error_of(make_bzimage(o), ram_layout(64 * MiB)),
                   Catch::Contains("give the VM more memory"));
    }
    SECTION("huge pref_address cannot overflow the fit check") {
        BzOpts o;
        o.pref_address = ~uint64_t{0} & ~uint64_t{2 * MiB - 1};
        const auto k = parse_kernel(make_bzimage(o), ram);
        CHECK(k.segments[0].gpa == 2 * MiB);
    }
}

TEST_CASE("arch: bzImage for real-mode entry accepts protocols from 2.02", "[arch][kernel]") {
    const auto ram = ram_layout(256 * MiB);
    auto parse = [&](const BzOpts& o) {
        return parse_kernel(make_bzimage(o), ram, BzImageEntry::RealMode);
    };
    SECTION("a 32-bit kernel: no XLF_KERNEL_64 needed") {
        BzOpts o;
        o.xloadflags = 0;
        const auto k = parse(o);
        CHECK(k.segments[0].gpa == 16 * MiB);
        CHECK(k.entry == 16 * MiB);
        CHECK(k.kernel_end == 24 * MiB);
    }
    SECTION("it decompresses at pref_address or above, never lower") {
        BzOpts o;
        CHECK_THROWS_WITH(parse_kernel(make_bzimage(o), ram_layout(20 * MiB),
                                       BzImageEntry::RealMode),
                          Catch::Contains("give the VM more memory"));
        o.kernel_alignment = 32 * MiB;  // 1 MiB rounded up passes pref_address
        CHECK(parse(o).segments[0].gpa == 32 * MiB);
    }
    SECTION("2.02: boot.rst's defaults for the missing fields") {
        BzOpts o;
        o.version = 0x0202;
        o.jump = 0x2a;  // header ends at 0x22c, after cmd_line_ptr
        const auto k = parse(o);
        CHECK(k.protocol_version == 0x0202);
        CHECK(k.cmdline_max == 255);
        CHECK(k.initrd_addr_max == 0x37ffffff);
        CHECK(k.segments[0].gpa == kHighMemStart);  // no pref_address before 2.10
        CHECK(k.kernel_end == kHighMemStart + 64 * KiB);  // no init_size either
    }
    SECTION("2.06 has cmdline_size and initrd_addr_max") {
        BzOpts o;
        o.version = 0x0206;
        o.jump = 0x3a;
        const auto k = parse(o);
        CHECK(k.cmdline_max == 2047);
        CHECK(k.initrd_addr_max == 0x7fffffff);
    }
    SECTION("too old or too short") {
        BzOpts o;
        o.version = 0x0201;
        CHECK_THROWS_WITH(parse(o), "kernel: boot protocol 2.01 is too old; booting it through "
                                    "firmware needs >= 2.02");
        o.version = 0x0206;
        o.jump = 0x30;  // ends at 0x232, before cmdline_size
        CHECK_THROWS_WITH(parse(o), Catch::Contains("setup header ends"));
        o.version = 0x020f;
        o.loadflags = 0;
        o.jump = 0x6a;
        CHECK_THROWS_WITH(parse(o), Catch::Contains("LOADED_HIGH"));
    }
}

TEST_CASE("arch: bzImage truncated at every header length fails cleanly", "[arch][kernel]") {
    const auto f = make_bzimage();
    const auto ram = ram_layout(256 * MiB);
    for (std::size_t len = 0; len <= 5 * 512; ++len) {
        const std::string e = error_of(std::span(f).first(len), ram);
        INFO("length " << len);
        CHECK_FALSE(e.empty());
    }
    // Past the setup sectors, anything shorter than syssize says is cut short too.
    CHECK_THAT(error_of(std::span(f).first(5 * 512 + 1), ram), Catch::Contains("header says"));
    CHECK_THAT(error_of(std::span(f).first(f.size() - 1), ram), Catch::Contains("header says"));
    CHECK(error_of(f, ram).empty());
}

TEST_CASE("arch: PVH ELF parses", "[arch][kernel]") {
    const auto f = make_elf();
    const auto ram = ram_layout(256 * MiB);
    const auto k = parse_kernel(f, ram);
    CHECK(k.format == KernelFormat::PvhElf);
    CHECK(k.entry == kLoadPaddr + 0x40);
    REQUIRE(k.segments.size() == 1);
    CHECK(k.segments[0].gpa == kLoadPaddr);
    CHECK(k.segments[0].data.data() == f.data() + kLoadOff);
    CHECK(k.segments[0].data.size() == kLoadFilesz);
    CHECK(k.segments[0].mem_size == kLoadMemsz);
    CHECK(k.kernel_end == kLoadPaddr + kLoadMemsz);
    CHECK(k.cmdline_max == kCmdlineMaxBytes - 1);
    CHECK(k.initrd_addr_max == 256 * MiB - 1);
    CHECK(k.setup_header.empty());
    CHECK(k.protocol_version == 0);

    const auto big = parse_kernel(f, ram_layout(8 * GiB));
    CHECK(big.initrd_addr_max == kMmioHoleStart - 1);
}

TEST_CASE("arch: PVH note with a 32-bit address", "[arch][kernel]") {
    ElfOpts o;
    o.desc_size = 4;
    o.entry = kLoadPaddr + 0x80;
    const auto k = parse_kernel(make_elf(o), ram_layout(256 * MiB));
    CHECK(k.entry == kLoadPaddr + 0x80);
}

TEST_CASE("arch: ELF validation errors", "[arch][kernel]") {
    const auto ram = ram_layout(256 * MiB);
    SECTION("no PVH note") {
        ElfOpts o;
        o.with_note = false;
        CHECK(error_of(make_elf(o), ram) ==
              "kernel: ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); use the bzImage");
        o.with_note = true;
        o.note_type = 17;  // another Xen note
        CHECK_THAT(error_of(make_elf(o), ram), Catch::Contains("no PVH entry note"));
    }
    SECTION("bad note descriptor size") {
        ElfOpts o;
        o.desc_size = 2;
        CHECK_THAT(error_of(make_elf(o), ram), Catch::Contains("expected 4 or 8"));
    }
    SECTION("entry above 4 GiB or outside the image") {
        ElfOpts o;
        o.entry = uint64_t{1} << 33;
        CHECK_THAT(error_of(make_elf(o), ram), Catch::Contains("above 4 GiB"));
        o.entry = kLoadPaddr + kLoadFilesz;  // in bss, not loaded code
        CHECK_THAT(error_of(make_elf(o), ram), Catch::Contains("not inside any loaded"));
    }
    SECTION("wrong class, machine, type") {
        auto f = make_elf();
        f[4] = 1;
        CHECK_THAT(error_of(f, ram), Catch::Contains("64-bit"));
        f = make_elf();
        store_le16(f, 0x12, 3);
        CHECK_THAT(error_of(f, ram), Catch::Contains("not x86-64"));
        f = make_elf();
        store_le16(f, 0x10, 3);  // ET_DYN
        CHECK_THAT(error_of(f, ram), Catch::Contains("ET_EXEC"));
    }
    SECTION("huge phnum") {
        auto f = make_elf();
        store_le16(f, 0x38, 0xfffe);
        CHECK_THAT(error_of(f, ram), Catch::Contains("program header table"));
        store_le16(f, 0x38, 0xffff);
        CHECK_THAT(error_of(f, ram), Catch::Contains("PN_XNUM"));
        store_le16(f, 0x38, 0);
        CHECK_THAT(error_of(f, ram), Catch::Contains("no program headers"));
    }
    SECTION("phoff overflow") {
        auto f = make_elf();
        store_le64(f, 0x20, ~uint64_t{0} - 8);
        CHECK_THAT(error_of(f, ram), Catch::Contains("program header table"));
    }
    SECTION("small phentsize") {
        auto f = make_elf();
        store_le16(f, 0x36, 32);
        CHECK_THAT(error_of(f, ram), Catch::Contains("program header size"));
    }
    SECTION("segment past EOF") {
        auto f = make_elf();
        store_le64(f, kPh1 + 32, kLoadFilesz + 1);
        CHECK_THAT(error_of(f, ram), Catch::Contains("past the end of the file"));
        f = make_elf();
        store_le64(f, kPh1 + 8, ~uint64_t{0} - 0x10);  // p_offset + p_filesz overflows
        CHECK_THAT(error_of(f, ram), Catch::Contains("past the end of the file"));
    }
    SECTION("filesz > memsz") {
        auto f = make_elf();
        store_le64(f, kPh1 + 40, kLoadFilesz - 1);
        CHECK_THAT(error_of(f, ram), Catch::Contains("p_filesz"));
    }
    SECTION("segment past RAM") {
        auto f = make_elf();
        CHECK_THAT(error_of(f, ram_layout(16 * MiB)), Catch::Contains("outside guest RAM"));
        store_le64(f, kPh1 + 40, ~uint64_t{0} - 0x100);  // paddr + memsz overflows
        CHECK_THAT(error_of(f, ram), Catch::Contains("outside guest RAM"));
        f = make_elf();
        store_le64(f, kPh1 + 24, uint64_t{5} << 30);  // in the high region: not allowed
        CHECK_THAT(error_of(f, ram_layout(8 * GiB)), Catch::Contains("outside guest RAM"));
    }
    SECTION("segment in the low 1 MiB") {
        auto f = make_elf();
        store_le64(f, kPh1 + 24, 0x8000);
        CHECK_THAT(error_of(f, ram), Catch::Contains("low 1 MiB"));
    }
    SECTION("note runs past its segment") {
        auto f = make_elf();
        store_le32(f, kNoteOff + 4, 0x1000);  // descsz larger than the PT_NOTE
        CHECK_THAT(error_of(f, ram), Catch::Contains("runs past"));
        f = make_elf();
        store_le32(f, kNoteOff, 0xffffffff);  // namesz huge
        CHECK_THAT(error_of(f, ram), Catch::Contains("runs past"));
    }
    SECTION("truncated at every length") {
        const auto f = make_elf();
        for (std::size_t len = 0; len < f.size(); ++len) {
            INFO("length " << len);
            CHECK_FALSE(error_of(std::span(f).first(len), ram).empty());
        }
    }
}

TEST_CASE("arch: kernel parser survives random mutations", "[arch][kernel][fuzz]") {
    const auto ram = ram_layout(256 * MiB);
    std::mt19937_64 rng(12345);
    const std::vector<std::vector<uint8_t>> seeds = {make_bzimage(), make_elf()};
    int parsed = 0, rejected = 0;
    for (int iter = 0; iter < 4000; ++iter) {
        auto f = seeds[iter % 2];
        // Mutate a few bytes in the header-ish area, where the parser reads.
        const std::size_t hot = iter % 2 == 0 ? 0x300 : 0x220;
        const int n = 1 + static_cast<int>(rng() % 6);
        for (int m = 0; m < n; ++m) {
            const std::size_t off = rng() % hot;
            f[off] = static_cast<uint8_t>(rng());
        }
        if (rng() % 4 == 0) f.resize(rng() % f.size());
        try {
            const auto k = parse_kernel(f, ram);
            check_invariants(k, f, ram);
            ++parsed;
        } catch (const vmm::Error& e) {
            REQUIRE(std::string(e.what()).rfind("kernel: ", 0) == 0);
            ++rejected;
        }
    }
    // Both outcomes occur, so the mutations neither always break nor never
    // touch the fields that matter.
    CHECK(parsed > 0);
    CHECK(rejected > 0);
}

TEST_CASE("arch: place_initrd picks the highest fitting page", "[arch][kernel]") {
    const auto ram = ram_layout(256 * MiB);
    const auto k = parse_kernel(make_bzimage(), ram);
    const uint64_t a = place_initrd(k, 10 * MiB + 123, ram);
    CHECK(a % 4096 == 0);
    CHECK(a + 10 * MiB + 123 <= 256 * MiB);
    CHECK(a + 4096 + 10 * MiB + 123 > 256 * MiB);  // highest such page
    CHECK(a >= k.kernel_end);
}

TEST_CASE("arch: place_initrd respects initrd_addr_max", "[arch][kernel]") {
    BzOpts o;
    o.initrd_addr_max = 0x37ffffff;
    const auto ram = ram_layout(2 * GiB);
    const auto k = parse_kernel(make_bzimage(o), ram);
    const uint64_t a = place_initrd(k, 40 * MiB, ram);
    CHECK(a + 40 * MiB <= 0x38000000);
    CHECK(a == 0x38000000 - 40 * MiB);
}

TEST_CASE("arch: place_initrd with RAM above 4 GiB stays in the first region", "[arch][kernel]") {
    const auto ram = ram_layout(8 * GiB);
    const auto k = parse_kernel(make_elf(), ram);
    const uint64_t a = place_initrd(k, 100 * MiB, ram);
    CHECK(a + 100 * MiB <= kMmioHoleStart);
    CHECK(a == kMmioHoleStart - 100 * MiB);
}

TEST_CASE("arch: place_initrd reports when it does not fit", "[arch][kernel]") {
    const auto ram = ram_layout(64 * MiB);
    const auto k = parse_kernel(make_bzimage(), ram);  // kernel ends at 24 MiB
    CHECK_NOTHROW(place_initrd(k, 40 * MiB, ram));
    CHECK_THROWS_WITH(place_initrd(k, 41 * MiB, ram),
                      Catch::StartsWith("initramfs (41 MiB) does not fit") &&
                          Catch::Contains("64 MiB of RAM"));
    CHECK_THROWS_AS(place_initrd(k, ~uint64_t{0}, ram), vmm::Error);
}
