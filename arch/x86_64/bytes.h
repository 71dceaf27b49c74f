// Little-endian byte writers/readers and checksums used by every table
// builder in this directory. Tables are built byte by byte at explicit
// offsets (rather than by memcpy of host structs) so that the layout is
// the one written in the specs, independent of host padding rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "vmm/core/error.h"

namespace vmm::arch::x86 {

// Writers into a buffer the caller has already sized. An out-of-range
// offset is a bug in our own table code, not bad input, but it still must
// not corrupt memory: throw.
inline void check_range(std::size_t buf, std::size_t off, std::size_t len) {
    if (off > buf || len > buf - off) {
        fail("internal: table write of {} bytes at offset {:#x} overflows a {}-byte buffer", len,
             off, buf);
    }
}

inline void put_u8(std::span<uint8_t> b, std::size_t off, uint8_t v) {
    check_range(b.size(), off, 1);
    b[off] = v;
}
inline void put_le16(std::span<uint8_t> b, std::size_t off, uint16_t v) {
    check_range(b.size(), off, 2);
    for (int i = 0; i < 2; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put_le32(std::span<uint8_t> b, std::size_t off, uint32_t v) {
    check_range(b.size(), off, 4);
    for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put_le64(std::span<uint8_t> b, std::size_t off, uint64_t v) {
    check_range(b.size(), off, 8);
    for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
// Copies s into exactly `width` bytes, padding with `pad` (ACPI/MP ids are
// fixed-width, space padded, not NUL terminated).
inline void put_str(std::span<uint8_t> b, std::size_t off, std::string_view s, std::size_t width,
                    uint8_t pad = ' ') {
    check_range(b.size(), off, width);
    for (std::size_t i = 0; i < width; ++i) {
        b[off + i] = i < s.size() ? static_cast<uint8_t>(s[i]) : pad;
    }
}

// Readers. `get_*` throw on out-of-range like the writers; for untrusted
// files use the named-field readers in kernel.cpp which produce a
// user-facing message instead.
inline uint64_t get_le(std::span<const uint8_t> b, std::size_t off, std::size_t n) {
    check_range(b.size(), off, n);
    uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= uint64_t{b[off + i]} << (8 * i);
    return v;
}
inline uint8_t get_u8(std::span<const uint8_t> b, std::size_t off) {
    return static_cast<uint8_t>(get_le(b, off, 1));
}
inline uint16_t get_le16(std::span<const uint8_t> b, std::size_t off) {
    return static_cast<uint16_t>(get_le(b, off, 2));
}
inline uint32_t get_le32(std::span<const uint8_t> b, std::size_t off) {
    return static_cast<uint32_t>(get_le(b, off, 4));
}
inline uint64_t get_le64(std::span<const uint8_t> b, std::size_t off) {
    return get_le(b, off, 8);
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
    put_u8(b, checksum_off, 0);
    put_u8(b, checksum_off, static_cast<uint8_t>(0x100 - sum8(b)));
}

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
inline uint64_t align_down(uint64_t v, uint64_t a) { return v / a * a; }

}  // namespace vmm::arch::x86
