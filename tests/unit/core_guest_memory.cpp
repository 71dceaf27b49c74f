#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <vector>

#include "vmm/core/error.h"
#include "vmm/core/guest_memory.h"

TEST_CASE("core: guest memory accepts only ranges wholly inside one region") {
    std::vector<uint8_t> lo(0x1000), hi(0x1000);
    auto mem = vmm::GuestMemory::from_buffers({{0x0, lo.size(), lo.data()}, {0x10000, hi.size(), hi.data()}});
    CHECK(mem.total_size() == 0x2000);
    CHECK(mem.contains(0, 0x1000));
    CHECK_FALSE(mem.contains(0, 0x1001));
    CHECK_FALSE(mem.contains(0xfff, 2));          // runs off the end of region 0
    CHECK_FALSE(mem.contains(0x1000, 1));         // the gap
    CHECK(mem.contains(0x10ff0, 0x10));
    CHECK_FALSE(mem.contains(0x10ff0, 0x11));
    CHECK_FALSE(mem.contains(0x10000, ~0ull));    // length overflow
    CHECK_FALSE(mem.contains(~0ull, 2));          // address overflow
    CHECK(mem.contains(0x10000, 0));
    CHECK_FALSE(mem.contains(0x20000, 0));
}

TEST_CASE("core: guest memory typed access round trip") {
    std::vector<uint8_t> buf(0x100);
    auto mem = vmm::GuestMemory::from_buffers({{0x1000, buf.size(), buf.data()}});
    REQUIRE(mem.write_obj<uint32_t>(0x1010, 0xdeadbeef));
    CHECK(buf[0x10] == 0xef);
    auto v = mem.read_obj<uint32_t>(0x1010);
    REQUIRE(v);
    CHECK(*v == 0xdeadbeef);
    CHECK_FALSE(mem.read_obj<uint64_t>(0x10fc));
    CHECK_FALSE(mem.write_obj<uint64_t>(0x10fc, 1));
    CHECK(buf[0xfc] == 0);  // a refused write leaves memory untouched
}

TEST_CASE("core: anonymous guest memory is mapped, zeroed and validated") {
    std::array<std::pair<uint64_t, uint64_t>, 2> ranges{{{0, 0x200000}, {0x100000000ull, 0x100000}}};
    auto mem = vmm::GuestMemory::create_anonymous(ranges);
    REQUIRE(mem.regions().size() == 2);
    CHECK(mem.read_obj<uint64_t>(0x100000000ull + 0xff8).value() == 0);
    REQUIRE(mem.write_obj<uint8_t>(0x1fffff, 7));
    std::array<std::pair<uint64_t, uint64_t>, 1> bad{{{0x123, 0x1000}}};
    CHECK_THROWS_AS(vmm::GuestMemory::create_anonymous(bad), vmm::Error);
    std::array<std::pair<uint64_t, uint64_t>, 2> overlap{{{0, 0x2000}, {0x1000, 0x1000}}};
    CHECK_THROWS_AS(vmm::GuestMemory::create_anonymous(overlap), vmm::Error);
}
