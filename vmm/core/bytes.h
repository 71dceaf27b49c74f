// Integers as bytes in a stated byte order, and back. Everything the VMM
// lays out or parses byte by byte (ACPI/MP tables, boot structures, PCI and
// virtio registers, fw_cfg, SCSI CDBs) goes through these instead of memcpy
// of host integers or hand-written shifts, so that the layout is the one in
// the spec whatever the host, and so that every access is bounds-checked.
//
// Bounds policy: every load/store at an offset checks that [off, off+width)
// lies inside the span, overflow-safely, before touching a byte. A miss is a
// bug in the caller, not bad input, so it throws vmm::Error and leaves memory
// alone. Code parsing untrusted data (guest buffers, files) checks lengths
// first, with in_bounds() where a failed check needs its own message.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vmm/core/error.h"

namespace vmm {

// True if [off, off+len) lies inside a buffer of `size` bytes; no overflow
// for any arguments.
constexpr bool in_bounds(std::size_t size, std::size_t off, std::size_t len) noexcept {
    return off <= size && len <= size - off;
}

namespace bytes_detail {
inline void check_access(std::size_t size, std::size_t off, std::size_t width) {
    if (width > 8) fail("internal: {}-byte integer access (at most 8)", width);
    if (!in_bounds(size, off, width)) {
        fail("internal: {}-byte access at offset {:#x} overflows a {}-byte buffer", width, off, size);
    }
}
}  // namespace bytes_detail

// `width`-byte (0 to 8) integers at `off`: the variable-width forms serve
// fields whose size is a parameter (3-byte PCI class codes, AML address
// descriptors, fw_cfg items). Stores keep the low `width` bytes of v.
inline uint64_t load_le(std::span<const uint8_t> b, std::size_t off, std::size_t width) {
    bytes_detail::check_access(b.size(), off, width);
    uint64_t v = 0;
    for (std::size_t i = width; i-- > 0;) v = v << 8 | b[off + i];
    return v;
}
inline uint64_t load_be(std::span<const uint8_t> b, std::size_t off, std::size_t width) {
    bytes_detail::check_access(b.size(), off, width);
    uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v = v << 8 | b[off + i];
    return v;
}
inline void store_le(std::span<uint8_t> b, std::size_t off, std::size_t width, uint64_t v) {
    bytes_detail::check_access(b.size(), off, width);
    for (std::size_t i = 0; i < width; ++i, v >>= 8) b[off + i] = static_cast<uint8_t>(v);
}
inline void store_be(std::span<uint8_t> b, std::size_t off, std::size_t width, uint64_t v) {
    bytes_detail::check_access(b.size(), off, width);
    for (std::size_t i = width; i-- > 0; v >>= 8) b[off + i] = static_cast<uint8_t>(v);
}

// Fixed widths, typed so that a field's size shows at the call.
inline uint8_t load_u8(std::span<const uint8_t> b, std::size_t off) { return static_cast<uint8_t>(load_le(b, off, 1)); }
inline void store_u8(std::span<uint8_t> b, std::size_t off, uint8_t v) { store_le(b, off, 1, v); }

inline uint16_t load_le16(std::span<const uint8_t> b, std::size_t off) { return static_cast<uint16_t>(load_le(b, off, 2)); }
inline uint32_t load_le32(std::span<const uint8_t> b, std::size_t off) { return static_cast<uint32_t>(load_le(b, off, 4)); }
inline uint64_t load_le64(std::span<const uint8_t> b, std::size_t off) { return load_le(b, off, 8); }
inline void store_le16(std::span<uint8_t> b, std::size_t off, uint16_t v) { store_le(b, off, 2, v); }
inline void store_le32(std::span<uint8_t> b, std::size_t off, uint32_t v) { store_le(b, off, 4, v); }
inline void store_le64(std::span<uint8_t> b, std::size_t off, uint64_t v) { store_le(b, off, 8, v); }

inline uint16_t load_be16(std::span<const uint8_t> b, std::size_t off) { return static_cast<uint16_t>(load_be(b, off, 2)); }
inline uint32_t load_be32(std::span<const uint8_t> b, std::size_t off) { return static_cast<uint32_t>(load_be(b, off, 4)); }
inline uint64_t load_be64(std::span<const uint8_t> b, std::size_t off) { return load_be(b, off, 8); }
inline void store_be16(std::span<uint8_t> b, std::size_t off, uint16_t v) { store_be(b, off, 2, v); }
inline void store_be32(std::span<uint8_t> b, std::size_t off, uint32_t v) { store_be(b, off, 4, v); }
inline void store_be64(std::span<uint8_t> b, std::size_t off, uint64_t v) { store_be(b, off, 8, v); }

// Register emulation: a PIO, MMIO or config-space access arrives as a span
// whose size is the access width (1, 2, 4 or 8 bytes), and registers are
// little-endian. A span wider than 8 bytes is never out of range here: a
// load ignores the bytes past the eighth, a store zeroes them, so a read
// never returns stale bytes.
inline uint64_t load_le(std::span<const uint8_t> d) { return load_le(d, 0, std::min<std::size_t>(d.size(), 8)); }
inline void store_le(std::span<uint8_t> d, uint64_t v) {
    const std::size_t n = std::min<std::size_t>(d.size(), 8);
    store_le(d, 0, n, v);
    std::fill(d.begin() + static_cast<std::ptrdiff_t>(n), d.end(), uint8_t{0});
}
// A read of `out` at `offset` in a register file laid out in bytes (a
// config space): bytes past the end of `regs` read as zero. Overflow-safe
// for any offset the guest can produce.
inline void read_window(std::span<const uint8_t> regs, uint64_t offset, std::span<uint8_t> out) {
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = offset < regs.size() && i < regs.size() - offset ? regs[offset + i] : 0;
    }
}

// Builders that grow a byte string (AML, SCSI data-in, fw_cfg items): the
// low `width` bytes of v appended, or as a new vector.
inline void append_le(std::vector<uint8_t>& out, std::size_t width, uint64_t v) {
    uint8_t b[8];
    store_le(b, 0, width, v);  // throws before `out` changes
    out.insert(out.end(), b, b + width);
}
inline void append_be(std::vector<uint8_t>& out, std::size_t width, uint64_t v) {
    uint8_t b[8];
    store_be(b, 0, width, v);
    out.insert(out.end(), b, b + width);
}
inline std::vector<uint8_t> le_bytes(std::size_t width, uint64_t v) {
    std::vector<uint8_t> out;
    append_le(out, width, v);
    return out;
}
inline std::vector<uint8_t> be_bytes(std::size_t width, uint64_t v) {
    std::vector<uint8_t> out;
    append_be(out, width, v);
    return out;
}

}  // namespace vmm
