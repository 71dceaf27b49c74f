// Unit tests: zero page (boot_params) and PVH hvm_start_info contents,
// checked field by field at the offsets the boot protocols define.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <algorithm>
#include <cstring>

#include "arch/x86_64/bootinfo.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;

namespace {

using test::rd;

// A bzImage layout as parse_kernel() would return it, with a recognisable
// setup header (byte i = i ^ 0x5a) except for the fields the test checks.
KernelLayout bz_layout(uint16_t protocol = 0x020f) {
    KernelLayout k{};
    k.format = KernelFormat::BzImage;
    k.entry = 0x1000200;
    k.kernel_end = 0x2000000;
    k.setup_header.resize(0x26c - 0x1f1);
    for (std::size_t i = 0; i < k.setup_header.size(); ++i) {
        k.setup_header[i] = static_cast<uint8_t>(i ^ 0x5a);
    }
    k.setup_header[0x211 - 0x1f1] = 0x01;  // loadflags: LOADED_HIGH
    k.cmdline_max = 2047;
    k.initrd_addr_max = 0x7fffffff;
    k.protocol_version = protocol;
    return k;
}

KernelLayout pvh_layout() {
    KernelLayout k{};
    k.format = KernelFormat::PvhElf;
    k.entry = 0x1000040;
    k.kernel_end = 0x2000000;
    k.cmdline_max = kCmdlineMaxBytes - 1;
    k.initrd_addr_max = 0xffffffff;
    return k;
}

}  // namespace

TEST_CASE("arch: zero page fields", "[arch][bootinfo]") {
    const auto ram = ram_layout(512 * MiB);
    BootInfoInputs in;
    in.ram = ram;
    in.cmdline = "console=ttyS0 quiet";
    in.initrd_gpa = 0x1e000000;
    in.initrd_size = 0x123456;
    in.rsdp_gpa = 0xe0000;
    const auto k = bz_layout();
    const auto blobs = build_boot_params(k, in);
    REQUIRE(blobs.size() == 2);
    const auto& zp = blobs[0].bytes;
    CHECK(blobs[0].gpa == kZeroPageAddr);
    REQUIRE(zp.size() == 4096);

    // The setup header is copied verbatim except the loader-written fields.
    const std::size_t written[] = {0x210, 0x211, 0x218, 0x219, 0x21a, 0x21b, 0x21c, 0x21d, 0x21e,
                                   0x21f, 0x224, 0x225, 0x228, 0x229, 0x22a, 0x22b};
    for (std::size_t i = 0; i < k.setup_header.size(); ++i) {
        const std::size_t off = 0x1f1 + i;
        if (std::find(std::begin(written), std::end(written), off) != std::end(written)) continue;
        INFO("offset " << off);
        CHECK(zp[off] == k.setup_header[i]);
    }
    CHECK(rd(zp, 0x210, 1) == 0xff);         // type_of_loader
    CHECK(rd(zp, 0x211, 1) == (0x01 | 0x80));  // loadflags | CAN_USE_HEAP
    CHECK(rd(zp, 0x224, 2) == 0xfe00);       // heap_end_ptr
    CHECK(rd(zp, 0x228, 4) == kCmdlineAddr);  // cmd_line_ptr
    CHECK(rd(zp, 0x0c8, 4) == 0);            // ext_cmd_line_ptr
    CHECK(rd(zp, 0x218, 4) == 0x1e000000);   // ramdisk_image
    CHECK(rd(zp, 0x21c, 4) == 0x123456);     // ramdisk_size
    CHECK(rd(zp, 0x0c0, 4) == 0);
    CHECK(rd(zp, 0x0c4, 4) == 0);
    CHECK(rd(zp, 0x070, 8) == 0xe0000);      // acpi_rsdp_addr

    // E820 table.
    const auto map = build_e820(ram);
    REQUIRE(rd(zp, 0x1e8, 1) == map.size());
    for (std::size_t i = 0; i < map.size(); ++i) {
        const std::size_t off = 0x2d0 + 20 * i;
        CHECK(rd(zp, off, 8) == map[i].addr);
        CHECK(rd(zp, off + 8, 8) == map[i].size);
        CHECK(rd(zp, off + 16, 4) == map[i].type);
    }
    // Nothing written past the used e820 entries.
    for (std::size_t off = 0x2d0 + 20 * map.size(); off < 4096; ++off) {
        REQUIRE(zp[off] == 0);
    }

    // Command line.
    CHECK(blobs[1].gpa == kCmdlineAddr);
    const std::string cmd(blobs[1].bytes.begin(), blobs[1].bytes.end());
    CHECK(cmd == std::string("console=ttyS0 quiet") + '\0');
}

TEST_CASE("arch: zero page high ramdisk bits and no initrd", "[arch][bootinfo]") {
    const auto ram = ram_layout(512 * MiB);
    BootInfoInputs in;
    in.ram = ram;
    auto k = bz_layout();
    k.initrd_addr_max = ~uint64_t{0};
    in.initrd_gpa = 0x1'2345'6000;
    in.initrd_size = 0x2'0000'1000;
    auto zp = build_boot_params(k, in)[0].bytes;
    CHECK(rd(zp, 0x218, 4) == 0x23456000);
    CHECK(rd(zp, 0x0c0, 4) == 0x1);
    CHECK(rd(zp, 0x21c, 4) == 0x1000);
    CHECK(rd(zp, 0x0c4, 4) == 0x2);

    in.initrd_gpa = 0x1000000;
    in.initrd_size = 0;
    zp = build_boot_params(k, in)[0].bytes;
    CHECK(rd(zp, 0x218, 4) == 0);
    CHECK(rd(zp, 0x21c, 4) == 0);
}

TEST_CASE("arch: zero page omits the RSDP for old protocols", "[arch][bootinfo]") {
    const auto ram = ram_layout(512 * MiB);
    BootInfoInputs in;
    in.ram = ram;
    in.rsdp_gpa = 0xe0000;
    auto zp = build_boot_params(bz_layout(0x020d), in)[0].bytes;
    CHECK(rd(zp, 0x070, 8) == 0);
    zp = build_boot_params(bz_layout(0x020e), in)[0].bytes;
    CHECK(rd(zp, 0x070, 8) == 0xe0000);
}

TEST_CASE("arch: cmdline limits", "[arch][bootinfo]") {
    const auto ram = ram_layout(512 * MiB);
    BootInfoInputs in;
    in.ram = ram;
    const auto k = bz_layout();
    in.cmdline = std::string(2047, 'x');
    CHECK(build_boot_params(k, in)[1].bytes.size() == 2048);
    in.cmdline = std::string(3000, 'x');
    CHECK_THROWS_WITH(build_boot_params(k, in), "cmdline is 3000 bytes; this kernel accepts at most 2047");
    in.cmdline = std::string("a\0b", 3);
    CHECK_THROWS_WITH(build_boot_params(k, in), Catch::Contains("NUL"));

    const auto p = pvh_layout();
    in.cmdline = std::string(kCmdlineMaxBytes - 1, 'y');
    const auto blobs = build_pvh_start_info(p, in);
    CHECK(blobs[1].bytes.size() == kCmdlineMaxBytes);
    CHECK(blobs[1].bytes.back() == 0);
    in.cmdline.push_back('y');
    CHECK_THROWS_AS(build_pvh_start_info(p, in), vmm::Error);
}

TEST_CASE("arch: boot info rejects an initramfs above the kernel's limit", "[arch][bootinfo]") {
    const auto ram = ram_layout(2 * GiB);
    BootInfoInputs in;
    in.ram = ram;
    auto k = bz_layout();
    k.initrd_addr_max = 0x37ffffff;
    in.initrd_gpa = 0x37fff000;
    in.initrd_size = 0x1000;
    CHECK_NOTHROW(build_boot_params(k, in));
    in.initrd_size = 0x1001;
    CHECK_THROWS_WITH(build_boot_params(k, in), Catch::Contains("initramfs"));
}

TEST_CASE("arch: boot info checks the kernel format", "[arch][bootinfo]") {
    const auto ram = ram_layout(512 * MiB);
    BootInfoInputs in;
    in.ram = ram;
    CHECK_THROWS_AS(build_boot_params(pvh_layout(), in), vmm::Error);
    CHECK_THROWS_AS(build_pvh_start_info(bz_layout(), in), vmm::Error);
}

TEST_CASE("arch: PVH start info fields", "[arch][bootinfo]") {
    const auto ram = ram_layout(6 * GiB);
    BootInfoInputs in;
    in.ram = ram;
    in.cmdline = "console=hvc0";
    in.initrd_gpa = 0x8000000;
    in.initrd_size = 0x345000;
    in.rsdp_gpa = 0xe0000;
    const auto blobs = build_pvh_start_info(pvh_layout(), in);
    REQUIRE(blobs.size() == 2);
    CHECK(blobs[0].gpa == 0x6000);
    const auto& b = blobs[0].bytes;
    const auto map = build_e820(ram);

    CHECK(rd(b, 0x00, 4) == 0x336ec578);  // magic
    CHECK(rd(b, 0x04, 4) == 1);           // version
    CHECK(rd(b, 0x08, 4) == 0);           // flags
    CHECK(rd(b, 0x0c, 4) == 1);           // nr_modules
    CHECK(rd(b, 0x10, 8) == 0x6040);      // modlist_paddr
    CHECK(rd(b, 0x18, 8) == kCmdlineAddr);  // cmdline_paddr
    CHECK(rd(b, 0x20, 8) == 0xe0000);     // rsdp_paddr
    CHECK(rd(b, 0x28, 8) == 0x6080);      // memmap_paddr
    CHECK(rd(b, 0x30, 4) == map.size());  // memmap_entries
    CHECK(rd(b, 0x34, 4) == 0);           // reserved

    // hvm_modlist_entry at 0x6040
    CHECK(rd(b, 0x40, 8) == 0x8000000);
    CHECK(rd(b, 0x48, 8) == 0x345000);
    CHECK(rd(b, 0x50, 8) == 0);
    CHECK(rd(b, 0x58, 8) == 0);

    // hvm_memmap_table_entry array at 0x6080
    REQUIRE(b.size() == 0x80 + 24 * map.size());
    REQUIRE(0x6000 + b.size() <= 0x7000);
    for (std::size_t i = 0; i < map.size(); ++i) {
        const std::size_t off = 0x80 + 24 * i;
        CHECK(rd(b, off, 8) == map[i].addr);
        CHECK(rd(b, off + 8, 8) == map[i].size);
        CHECK(rd(b, off + 16, 4) == map[i].type);
        CHECK(rd(b, off + 20, 4) == 0);
    }
    CHECK(rd(b, 0x80 + 24 * (map.size() - 1), 8) == 4 * GiB);

    CHECK(blobs[1].gpa == kCmdlineAddr);
    CHECK(std::string(blobs[1].bytes.begin(), blobs[1].bytes.end()) == std::string("console=hvc0") + '\0');
}

TEST_CASE("arch: PVH start info without initramfs has no modules", "[arch][bootinfo]") {
    const auto ram = ram_layout(256 * MiB);
    BootInfoInputs in;
    in.ram = ram;
    const auto b = build_pvh_start_info(pvh_layout(), in)[0].bytes;
    CHECK(rd(b, 0x0c, 4) == 0);
    CHECK(rd(b, 0x10, 8) == 0);
    CHECK(rd(b, 0x40, 8) == 0);
    CHECK(rd(b, 0x20, 8) == 0);  // no RSDP given
}
