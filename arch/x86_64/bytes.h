// Table helpers used by every table builder in this directory, on top of
// the byte-order helpers of vmm/core/bytes.h. Tables are built byte by byte
// at explicit offsets (rather than by memcpy of host structs) so that the
// layout is the one written in the specs, independent of host padding rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

// Copies s into exactly `width` bytes, padding with `pad` (ACPI/MP ids are
// fixed-width, space padded, not NUL terminated). Out of range is a bug in
// our table code, as for the integer stores: throw.
inline void put_str(std::span<uint8_t> b, std::size_t off, std::string_view s, std::size_t width,
                    uint8_t pad = ' ') {
    if (!in_bounds(b.size(), off, width)) {
        fail("internal: table write of {} bytes at offset {:#x} overflows a {}-byte buffer", width,
             off, b.size());
    }
    for (std::size_t i = 0; i < width; ++i) {
        b[off + i] = i < s.size() ? static_cast<uint8_t>(s[i]) : pad;
    }
}

// 8-bit sum of a byte range; ACPI and MP tables store the value that makes
// the sum over the whole structure zero.
inline uint8_t sum8(std::span<const uint8_t> b) {
    uint8_t s = 0;
    for (uint8_t x : b) s = static_cast<uint8_t>(s + x);
    return s;
}
// Sets b[checksum_off] so that the bytes of b sum to zero mod 256.
inline void fix_checksum(std::span<uint8_t> b, std::size_t checksum_off) {
    store_u8(b, checksum_off, 0);
    store_u8(b, checksum_off, static_cast<uint8_t>(0x100 - sum8(b)));
}

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
inline uint64_t align_down(uint64_t v, uint64_t a) { return v / a * a; }

}  // namespace vmm::arch::x86
