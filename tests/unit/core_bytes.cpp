// vmm/core/bytes.h: exact layouts in both byte orders, round trips at every
// width, and out-of-range accesses refused before any byte is touched.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace {

using Bytes = std::vector<uint8_t>;
constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();

// The low `width` bytes of v.
uint64_t low_bytes(uint64_t v, std::size_t width) { return width >= 8 ? v : v & ((uint64_t{1} << (8 * width)) - 1); }

}  // namespace

TEST_CASE("core: bytes lays out fixed widths in the stated byte order", "[core][bytes]") {
    Bytes b(10, 0xee);
    vmm::store_u8(b, 0, 0x5a);
    vmm::store_le16(b, 1, 0x1122);
    vmm::store_be16(b, 3, 0x1122);
    vmm::store_le32(b, 5, 0x11223344);
    CHECK(b == Bytes{0x5a, 0x22, 0x11, 0x11, 0x22, 0x44, 0x33, 0x22, 0x11, 0xee});
    CHECK(vmm::load_u8(b, 0) == 0x5a);
    CHECK(vmm::load_le16(b, 1) == 0x1122);
    CHECK(vmm::load_be16(b, 1) == 0x2211);
    CHECK(vmm::load_le32(b, 5) == 0x11223344);
    CHECK(vmm::load_be32(b, 5) == 0x44332211);

    Bytes q(16, 0);
    vmm::store_be32(q, 0, 0x11223344);
    vmm::store_le64(q, 4, 0x0102030405060708ull);
    vmm::store_be64(q, 8, 0x0102030405060708ull);  // overwrites the le64's top half
    CHECK(q == Bytes{0x11, 0x22, 0x33, 0x44, 0x08, 0x07, 0x06, 0x05, 1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(vmm::load_be32(q, 0) == 0x11223344);
    CHECK(vmm::load_le64(q, 8) == 0x0807060504030201ull);
    CHECK(vmm::load_be64(q, 8) == 0x0102030405060708ull);
}

TEST_CASE("core: bytes variable widths round-trip in both byte orders", "[core][bytes]") {
    const uint64_t v = GENERATE(uint64_t{0}, uint64_t{1}, uint64_t{0x80}, 0x0123456789abcdefull, ~uint64_t{0});
    const std::size_t width = GENERATE(range<std::size_t>(0, 9));
    const std::size_t off = GENERATE(std::size_t{0}, std::size_t{3});
    CAPTURE(v, width, off);
    Bytes le(off + width + 2, 0xee), be = le;
    vmm::store_le(le, off, width, v);
    vmm::store_be(be, off, width, v);
    CHECK(vmm::load_le(le, off, width) == low_bytes(v, width));
    CHECK(vmm::load_be(be, off, width) == low_bytes(v, width));
    for (std::size_t i = 0; i < width; ++i) {
        CHECK(le[off + i] == uint8_t(v >> (8 * i)));  // least significant first
        CHECK(be[off + width - 1 - i] == le[off + i]);
    }
    for (std::size_t i = 0; i < off; ++i) CHECK(le[i] == 0xee);
    CHECK(le[off + width] == 0xee);
    CHECK(be[off + width] == 0xee);
}

TEST_CASE("core: bytes refuses out-of-range offsets without touching memory", "[core][bytes]") {
    // The span is the middle of a guarded buffer: any stray byte shows.
    std::array<uint8_t, 24> mem{};
    mem.fill(0xa5);
    const std::span<uint8_t> b(mem.data() + 8, 8);
    const std::size_t width = GENERATE(1u, 2u, 3u, 4u, 8u);
    const std::size_t off = GENERATE_COPY(9 - width, 8u, 9u, kMax, kMax - 1, kMax - width + 1);
    CAPTURE(width, off);
    CHECK_FALSE(vmm::in_bounds(b.size(), off, width));
    CHECK_THROWS_AS(vmm::store_le(b, off, width, ~uint64_t{0}), vmm::Error);
    CHECK_THROWS_AS(vmm::store_be(b, off, width, ~uint64_t{0}), vmm::Error);
    CHECK_THROWS_AS(vmm::load_le(b, off, width), vmm::Error);
    CHECK_THROWS_AS(vmm::load_be(b, off, width), vmm::Error);
    if (width == 8) {
        CHECK_THROWS_AS(vmm::store_le64(b, off, 0), vmm::Error);
        CHECK_THROWS_AS(vmm::store_be64(b, off, 0), vmm::Error);
        CHECK_THROWS_AS(vmm::load_le64(b, off), vmm::Error);
    }
    if (width == 2) {
        CHECK_THROWS_AS(vmm::store_le16(b, off, 0), vmm::Error);
        CHECK_THROWS_AS(vmm::load_be16(b, off), vmm::Error);
    }
    for (uint8_t x : mem) REQUIRE(x == 0xa5);
}

TEST_CASE("core: bytes bounds edge cases", "[core][bytes]") {
    Bytes b(8, 0);
    CHECK(vmm::in_bounds(8, 0, 8));
    CHECK(vmm::in_bounds(8, 8, 0));  // an empty access at the end
    CHECK_FALSE(vmm::in_bounds(8, 9, 0));
    CHECK_FALSE(vmm::in_bounds(8, 1, kMax));  // off + len wraps to 0
    CHECK(vmm::in_bounds(kMax, kMax - 1, 1));
    CHECK(vmm::load_le(b, 8, 0) == 0);
    vmm::store_le64(b, 0, 0x0807060504030201ull);  // the last byte is in range
    CHECK(vmm::load_u8(b, 7) == 0x08);
    CHECK_THROWS_AS(vmm::load_u8(b, 8), vmm::Error);
    CHECK_THROWS_AS(vmm::store_u8(b, 8, 0), vmm::Error);
    // Wider than any integer: refused even where the bytes exist.
    Bytes wide(16, 0);
    CHECK_THROWS_AS(vmm::load_le(wide, 0, 9), vmm::Error);
    CHECK_THROWS_AS(vmm::store_be(wide, 0, 9, 0), vmm::Error);
    CHECK(wide == Bytes(16, 0));
    // A const span of a const buffer reads.
    const Bytes c{0x34, 0x12};
    CHECK(vmm::load_le16(c, 0) == 0x1234);
}

TEST_CASE("core: bytes register accesses take the span's size as the width", "[core][bytes]") {
    for (std::size_t width : {1u, 2u, 4u, 8u}) {
        CAPTURE(width);
        Bytes d(width, 0xee);
        vmm::store_le(d, 0x1122334455667788ull);
        CHECK(d[0] == 0x88);
        CHECK(vmm::load_le(d) == low_bytes(0x1122334455667788ull, width));
    }
    CHECK(vmm::load_le(std::span<const uint8_t>{}) == 0);
    Bytes wide(12, 0xee);  // past eight bytes: zero on store, ignored on load
    vmm::store_le(wide, ~uint64_t{0});
    CHECK(wide == Bytes{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0});
    wide[10] = 0x77;
    CHECK(vmm::load_le(wide) == ~uint64_t{0});
}

TEST_CASE("core: bytes register windows read zero past the end", "[core][bytes]") {
    const Bytes regs{1, 2, 3, 4};
    Bytes out(4, 0xee);
    vmm::read_window(regs, 2, out);
    CHECK(out == Bytes{3, 4, 0, 0});
    vmm::read_window(regs, 0, out);
    CHECK(out == regs);
    for (uint64_t offset : {uint64_t{4}, uint64_t{5}, ~uint64_t{0}, ~uint64_t{0} - 1}) {
        out.assign(4, 0xee);
        vmm::read_window(regs, offset, out);  // offset + i would wrap: still zero
        CHECK(out == Bytes(4, 0));
    }
    vmm::read_window(regs, 3, std::span<uint8_t>{});  // an empty access touches nothing
}

TEST_CASE("core: bytes builders append in the stated byte order", "[core][bytes]") {
    Bytes out{0xaa};
    vmm::append_le(out, 2, 0x1234);
    vmm::append_be(out, 3, 0x123456);
    vmm::append_le(out, 0, 0xff);
    CHECK(out == Bytes{0xaa, 0x34, 0x12, 0x12, 0x34, 0x56});
    CHECK_THROWS_AS(vmm::append_le(out, 9, 0), vmm::Error);
    CHECK_THROWS_AS(vmm::append_be(out, 9, 0), vmm::Error);
    CHECK(out.size() == 6);  // unchanged by the refused appends
    CHECK(vmm::le_bytes(4, 0x11223344) == Bytes{0x44, 0x33, 0x22, 0x11});
    CHECK(vmm::be_bytes(4, 0x11223344) == Bytes{0x11, 0x22, 0x33, 0x44});
    CHECK(vmm::be_bytes(2, 0x11223344) == Bytes{0x33, 0x44});  // the low bytes
}
