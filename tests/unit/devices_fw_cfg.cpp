// fw_cfg, driven only through the PIO bus at 0x510 and guest RAM.
#include <catch2/catch.hpp>

#include <array>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/fw_cfg.h"
#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/guest_memory.h"

namespace {

constexpr uint64_t kRamSize = 0x10000;
constexpr uint64_t kHighRam = 0x100000000ull;  // a second region above 4 GiB
constexpr uint64_t kPort = 0x510;

constexpr uint32_t kError = 0x01, kRead = 0x02, kSkip = 0x04, kSelect = 0x08, kWrite = 0x10;

struct Rig {
    vmm::GuestMemory mem;
    std::shared_ptr<vmm::devices::FwCfg> dev;
    vmm::Bus bus{"pio"};

    Rig() {
        const std::array<std::pair<uint64_t, uint64_t>, 2> ranges{{{0, kRamSize}, {kHighRam, kRamSize}}};
        mem = vmm::GuestMemory::create_anonymous(ranges, false);
        dev = std::make_shared<vmm::devices::FwCfg>(&mem);
        bus.add(kPort, vmm::devices::FwCfg::kLength, dev);
    }
    void select(uint16_t key) {
        REQUIRE(bus.write(kPort, vmm::le_bytes(2, key)));
    }
    std::vector<uint8_t> data(std::size_t n) {
        std::vector<uint8_t> out(n);
        for (auto& b : out) REQUIRE(bus.read(kPort + 1, std::span<uint8_t>(&b, 1)));
        return out;
    }
    std::vector<uint8_t> ram(uint64_t gpa, std::size_t n) {
        std::vector<uint8_t> out(n);
        REQUIRE(mem.read(gpa, out));
        return out;
    }
    void fill(uint64_t gpa, std::size_t n, uint8_t v) { REQUIRE(mem.write(gpa, std::vector<uint8_t>(n, v))); }
    void put_desc(uint64_t at, uint32_t control, uint32_t length, uint64_t addr) {
        auto d = vmm::be_bytes(8, uint64_t{control} << 32 | length);
        auto a = vmm::be_bytes(8, addr);
        d.insert(d.end(), a.begin(), a.end());
        REQUIRE(mem.write(at, d));
    }
    // 32-bit high half, then the low half that starts the transfer.
    void kick(uint64_t desc) {
        REQUIRE(bus.write(kPort + 4, vmm::be_bytes(4, desc >> 32)));
        REQUIRE(bus.write(kPort + 8, vmm::be_bytes(4, desc & 0xffffffff)));
    }
    // Runs one transfer with the descriptor at `desc`; returns the control
    // word written back.
    uint32_t dma(uint32_t control, uint32_t length, uint64_t addr, uint64_t desc = 0x100) {
        put_desc(desc, control, length, addr);
        kick(desc);
        return vmm::load_be32(ram(desc, 4), 0);
    }
};

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

uint32_t sel(uint16_t key) { return uint32_t{key} << 16 | kSelect; }

}  // namespace

TEST_CASE("fw_cfg: signature and ID through the data port", "[devices][fw_cfg]") {
    Rig r;
    r.select(0x0000);
    CHECK(r.data(4) == bytes("QEMU"));
    r.select(0x0001);
    CHECK(r.data(4) == std::vector<uint8_t>{3, 0, 0, 0});  // traditional + DMA
    // The write-channel bit does not change which item is read.
    r.select(0x4000);
    CHECK(r.data(4) == bytes("QEMU"));
}

TEST_CASE("fw_cfg: items read byte by byte, 0 past the end and for unknown keys", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_u16(0x05, 0x0102);
    r.dev->add_u32(0x0d, 0xa1b2c3d4);
    r.dev->add_u64(0x8001, 0x1122334455667788ull);
    r.select(0x05);
    CHECK(r.data(4) == std::vector<uint8_t>{0x02, 0x01, 0, 0});
    r.select(0x0d);
    CHECK(r.data(2) == std::vector<uint8_t>{0xd4, 0xc3});
    r.select(0x0d);  // selecting again restarts the item
    // A wide read streams as many bytes as it is wide.
    std::array<uint8_t, 4> wide{};
    REQUIRE(r.bus.read(kPort + 1, wide));
    CHECK(wide == std::array<uint8_t, 4>{0xd4, 0xc3, 0xb2, 0xa1});
    r.select(0x8001);
    CHECK(r.data(9) == std::vector<uint8_t>{0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0});
    for (uint16_t key : {0x02, 0x1f, 0x20, 0x3fff, 0x8000, 0xffff}) {
        r.select(key);
        CHECK(r.data(3) == std::vector<uint8_t>(3, 0));
    }
    // Data port writes change nothing.
    r.select(0x05);
    const uint8_t junk = 0x77;
    REQUIRE(r.bus.write(kPort + 1, std::span<const uint8_t>(&junk, 1)));
    CHECK(r.data(2) == std::vector<uint8_t>{0x02, 0x01});
    // Keys the device owns or that belong to files are refused.
    for (uint16_t key : {0x00, 0x01, 0x19, 0x20, 0x4005, 0xc000}) {
        CHECK_THROWS_AS(r.dev->add_item(key, {1}), vmm::Error);
    }
}

TEST_CASE("fw_cfg: an item served from the caller's memory, kept alive by its owner", "[devices][fw_cfg]") {
    Rig r;
    std::weak_ptr<std::vector<uint8_t>> watch;
    {
        auto big = std::make_shared<std::vector<uint8_t>>(100000, 0x5a);
        (*big)[99999] = 0x7e;
        watch = big;
        r.dev->add_item_view(0x11, std::span<const uint8_t>(*big).subspan(99990), big);
    }
    CHECK_FALSE(watch.expired());  // the device holds the owner
    r.select(0x11);
    auto got = r.data(12);
    CHECK(got == std::vector<uint8_t>{0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x7e, 0, 0});
    // DMA reads it too, and zero-fills past its end.
    r.fill(0x2000, 16, 0xee);
    CHECK(r.dma(sel(0x11) | kRead, 12, 0x2000) == 0);
    CHECK(r.ram(0x2000, 12) == got);
    CHECK_THROWS_AS(r.dev->add_item_view(0x19, {}, nullptr), vmm::Error);
    // Replacing the item lets the owner go.
    r.dev->add_item(0x11, {1});
    CHECK(watch.expired());
}

TEST_CASE("fw_cfg: file directory is sorted by name with big-endian fields", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_file("etc/b", {1, 2, 3});
    r.dev->add_file("etc/a", std::vector<uint8_t>(0x1234, 9));
    r.dev->add_file("z", {});
    r.select(0x19);
    const auto dir = r.data(4 + 3 * 64 + 1);
    CHECK(vmm::load_be32(dir, 0) == 3);
    struct Want {
        std::string name;
        uint32_t size;
        uint16_t key;
    };
    const Want want[] = {{"etc/a", 0x1234, 0x21}, {"etc/b", 3, 0x20}, {"z", 0, 0x22}};
    for (std::size_t i = 0; i < 3; ++i) {
        const std::size_t e = 4 + 64 * i;
        INFO(want[i].name);
        CHECK(vmm::load_be32(dir, e) == want[i].size);
        CHECK(vmm::load_be16(dir, e + 4) == want[i].key);
        CHECK(vmm::load_be16(dir, e + 6) == 0);
        std::string name(dir.begin() + e + 8, dir.begin() + e + 64);
        CHECK(name == want[i].name + std::string(56 - want[i].name.size(), '\0'));
    }
    CHECK(dir.back() == 0);  // read past the end
    r.select(0x20);
    CHECK(r.data(4) == std::vector<uint8_t>{1, 2, 3, 0});
}

TEST_CASE("fw_cfg: bad file names are rejected", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_file(std::string(55, 'n'), {1});
    CHECK_THROWS_AS(r.dev->add_file(std::string(56, 'n'), {1}), vmm::Error);
    CHECK_THROWS_AS(r.dev->add_file("", {1}), vmm::Error);
    CHECK_THROWS_AS(r.dev->add_file(std::string("a\0b", 3), {1}), vmm::Error);
    r.dev->add_file("etc/x", {1});
    CHECK_THROWS_AS(r.dev->add_file("etc/x", {2}), vmm::Error);
    r.select(0x19);
    CHECK(vmm::load_be32(r.data(4), 0) == 2);
}

TEST_CASE("fw_cfg: DMA select and read of a file, zero fill past the end", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_file("etc/one", bytes("first"));
    r.dev->add_file("etc/two", bytes("0123456789"));
    r.fill(0x2000, 32, 0xaa);
    CHECK(r.dma(sel(0x21) | kRead, 10, 0x2000) == 0);
    CHECK(r.ram(0x2000, 11) == bytes("0123456789\xaa"));

    // Past the end: the item's bytes, then zeros for the rest.
    CHECK(r.dma(sel(0x20) | kRead, 8, 0x2000) == 0);
    CHECK(r.ram(0x2000, 9) == std::vector<uint8_t>{'f', 'i', 'r', 's', 't', 0, 0, 0, '8'});
    // Without select the transfer continues where the last one stopped.
    r.fill(0x2000, 4, 0xaa);
    CHECK(r.dma(kRead, 4, 0x2000) == 0);
    CHECK(r.ram(0x2000, 4) == std::vector<uint8_t>(4, 0));
    // DMA and the data port share the offset.
    CHECK(r.dma(sel(0x21) | kRead, 3, 0x2000) == 0);
    CHECK(r.data(2) == bytes("34"));
    // An unknown key reads as zeros.
    r.fill(0x2000, 4, 0xaa);
    CHECK(r.dma(sel(0x3000) | kRead, 4, 0x2000) == 0);
    CHECK(r.ram(0x2000, 4) == std::vector<uint8_t>(4, 0));
}

TEST_CASE("fw_cfg: DMA skip and write", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_file("etc/f", bytes("abcdefgh"));
    CHECK(r.dma(sel(0x20) | kSkip, 3, 0) == 0);
    CHECK(r.dma(kRead, 2, 0x2000) == 0);
    CHECK(r.ram(0x2000, 2) == bytes("de"));
    // A huge skip stops at the end of the item.
    CHECK(r.dma(kSkip, 0xffffffff, 0) == 0);
    CHECK(r.data(1) == std::vector<uint8_t>{0});
    // Writes are not supported: error bit, RAM and item unchanged.
    r.fill(0x2000, 8, 0x55);
    CHECK(r.dma(sel(0x20) | kWrite, 8, 0x2000) == kError);
    CHECK(r.ram(0x2000, 8) == std::vector<uint8_t>(8, 0x55));
    r.select(0x20);
    CHECK(r.data(8) == bytes("abcdefgh"));
    // A selector-only transfer succeeds and resets the offset.
    CHECK(r.dma(sel(0x20), 0, 0) == 0);
    CHECK(r.data(1) == bytes("a"));
}

TEST_CASE("fw_cfg: hostile DMA descriptors and ranges", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_file("etc/f", bytes("abcdefgh"));
    const uint64_t end = kRamSize;

    SECTION("descriptor outside RAM or straddling its end: nothing written") {
        r.fill(end - 8, 8, 0x33);
        r.kick(0x20000000);
        r.kick(end - 8);
        r.kick(~0ull - 7);  // would wrap 2^64
        CHECK(r.ram(end - 8, 8) == std::vector<uint8_t>(8, 0x33));
        r.select(0x20);
        CHECK(r.data(1) == bytes("a"));
    }
    SECTION("data range straddling the end of RAM: error, RAM untouched") {
        r.fill(end - 4, 4, 0x33);
        CHECK(r.dma(sel(0x20) | kRead, 8, end - 4) == kError);
        CHECK(r.ram(end - 4, 4) == std::vector<uint8_t>(4, 0x33));
        // Nothing was consumed either.
        CHECK(r.data(1) == bytes("a"));
    }
    SECTION("data address in the hole between regions") {
        CHECK(r.dma(sel(0x20) | kRead, 8, 0x80000000) == kError);
    }
    SECTION("address + length wraps 2^64") {
        CHECK(r.dma(sel(0x20) | kRead, 0x20, ~0ull - 0xf) == kError);
    }
    SECTION("length 0xffffffff on a small item") {
        r.fill(0x2000, 16, 0x33);
        CHECK(r.dma(sel(0x20) | kRead, 0xffffffff, 0x2000) == kError);
        CHECK(r.ram(0x2000, 16) == std::vector<uint8_t>(16, 0x33));
        CHECK(r.dma(sel(0x20) | kRead, 0xffffffff, kHighRam) == kError);
    }
    SECTION("no guest memory: DMA is ignored") {
        vmm::Bus bus{"pio"};
        bus.add(kPort, vmm::devices::FwCfg::kLength, std::make_shared<vmm::devices::FwCfg>(nullptr));
        REQUIRE(bus.write(kPort + 4, vmm::be_bytes(8, 0x100)));
        const uint8_t key[2] = {0, 0};
        REQUIRE(bus.write(kPort, key));
        uint8_t q = 0;
        REQUIRE(bus.read(kPort + 1, std::span<uint8_t>(&q, 1)));
        CHECK(q == 'Q');
    }
}

TEST_CASE("fw_cfg: DMA address register", "[devices][fw_cfg]") {
    Rig r;
    r.dev->add_file("etc/f", bytes("abcdefgh"));

    SECTION("reads return the signature") {
        std::vector<uint8_t> sig(8);
        REQUIRE(r.bus.read(kPort + 4, sig));
        CHECK(vmm::load_be64(sig, 0) == 0x51454d5520434647ull);
        std::vector<uint8_t> lo(4);
        REQUIRE(r.bus.read(kPort + 8, lo));
        CHECK(lo == bytes(" CFG"));
    }
    SECTION("32-bit high then low; the high half alone does not start") {
        const uint64_t desc = kHighRam + 0x100;
        r.put_desc(desc, sel(0x20) | kRead, 3, kHighRam + 0x800);
        REQUIRE(r.bus.write(kPort + 4, vmm::be_bytes(4, desc >> 32)));
        CHECK(r.ram(kHighRam + 0x800, 3) == std::vector<uint8_t>(3, 0));
        REQUIRE(r.bus.write(kPort + 8, vmm::be_bytes(4, desc & 0xffffffff)));
        CHECK(r.ram(kHighRam + 0x800, 3) == bytes("abc"));
        CHECK(vmm::load_be32(r.ram(desc, 4), 0) == 0);
        // The high half is cleared by the transfer: a low-only write now
        // names a descriptor below 4 GiB.
        r.put_desc(0x100, kRead, 2, 0x900);
        REQUIRE(r.bus.write(kPort + 8, vmm::be_bytes(4, 0x100)));
        CHECK(r.ram(0x900, 2) == bytes("de"));
    }
    SECTION("one 64-bit write") {
        const uint64_t desc = kHighRam + 0x200;
        r.put_desc(desc, sel(0x20) | kSkip | kRead, 4, 0x900);  // read wins over skip
        REQUIRE(r.bus.write(kPort + 4, vmm::be_bytes(8, desc)));
        CHECK(r.ram(0x900, 4) == bytes("abcd"));
        CHECK(vmm::load_be32(r.ram(desc, 4), 0) == 0);
    }
}

TEST_CASE("fw_cfg: DMA transfers from several vCPUs do not interleave", "[devices][fw_cfg]") {
    Rig r;
    constexpr int kThreads = 4, kRounds = 500;
    for (int i = 0; i < kThreads; ++i) {
        r.dev->add_file("etc/f" + std::to_string(i), std::vector<uint8_t>(64, uint8_t(i + 1)));
    }
    std::vector<std::thread> threads;
    std::vector<int> bad(kThreads, 0);
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            const uint64_t desc = 0x1000 + 0x100 * i, buf = 0x4000 + 0x100 * i;
            std::vector<uint8_t> d = vmm::be_bytes(8, uint64_t{sel(uint16_t(0x20 + i)) | kRead} << 32 | 64);
            const auto a = vmm::be_bytes(8, buf);
            d.insert(d.end(), a.begin(), a.end());
            for (int n = 0; n < kRounds; ++n) {
                std::vector<uint8_t> got(64);
                if (!r.mem.write(desc, d) || !r.bus.write(kPort + 4, vmm::be_bytes(8, desc)) || !r.mem.read(buf, got) ||
                    got != std::vector<uint8_t>(64, uint8_t(i + 1))) {
                    ++bad[i];
                }
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(bad == std::vector<int>(kThreads, 0));
}
