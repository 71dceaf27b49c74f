#include "arch/x86_64/aml.h"

#include <algorithm>
#include <iterator>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

namespace {

// Opcodes (ACPI spec 20.3 "AML Byte Stream Byte Values").
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after ExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kParentPrefixChar = '^';
constexpr uint8_t kReturnOp = 0xa4;
constexpr uint8_t kLocal0Op = 0x60;
constexpr uint8_t kArg0Op = 0x68;
constexpr uint8_t kStoreOp = 0x70;
constexpr uint8_t kAndOp = 0x7b;
constexpr uint8_t kOrOp = 0x7d;
constexpr uint8_t kCreateDWordFieldOp = 0x8a;
constexpr uint8_t kLNotOp = 0x92;
constexpr uint8_t kLEqualOp = 0x93;
constexpr uint8_t kIfOp = 0xa0;
constexpr uint8_t kElseOp = 0xa1;
constexpr uint8_t kOnesOp = 0xff;

bool lead_char(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool name_char(char c) { return lead_char(c) || (c >= '0' && c <= '9'); }

// opcode(s) PkgLength <contents>
Aml with_pkg_length(std::initializer_list<uint8_t> ops, const std::vector<uint8_t>& contents) {
    std::vector<uint8_t> out(ops);
    const auto len = aml_pkg_length(contents.size());
    out.insert(out.end(), len.begin(), len.end());
    out.insert(out.end(), contents.begin(), contents.end());
    return Aml(std::move(out));
}

std::vector<uint8_t> concat(std::initializer_list<const std::vector<uint8_t>*> parts,
                            const std::vector<Aml>& tail = {}) {
    std::vector<uint8_t> out;
    for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
    for (const auto& t : tail) out.insert(out.end(), t.bytes().begin(), t.bytes().end());
    return out;
}

}  // namespace

std::vector<uint8_t> aml_encode_pkg_length(uint32_t value) {
    // One byte: bits 7:6 = 0, bits 5:0 = value. Longer: bits 7:6 = number
    // of following bytes, bits 3:0 = low nibble, following bytes = the
    // remaining bits, least significant first.
    if (value < (1u << 6)) return {static_cast<uint8_t>(value)};
    int extra;
    if (value < (1u << 12)) {
        extra = 1;
    } else if (value < (1u << 20)) {
        extra = 2;
    } else if (value < (1u << 28)) {
        extra = 3;
    } else {
        fail("aml: package length {} exceeds the 28-bit PkgLength limit", value);
    }
    std::vector<uint8_t> out;
    out.push_back(static_cast<uint8_t>((extra << 6) | (value & 0xf)));
    for (int i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(value >> (4 + 8 * i)));
    return out;
}

std::vector<uint8_t> aml_pkg_length(std::size_t payload) {
    // The encoded value includes the encoding's own 1..4 bytes, so try each
    // width and keep the first whose maximum covers payload + width.
    static constexpr uint64_t kMax[] = {(1u << 6) - 1, (1u << 12) - 1, (1u << 20) - 1,
                                        (1u << 28) - 1};
    for (uint64_t width = 1; width <= 4; ++width) {
        if (payload + width <= kMax[width - 1]) {
            return aml_encode_pkg_length(static_cast<uint32_t>(payload + width));
        }
    }
    fail("aml: package of {} bytes exceeds the 28-bit PkgLength limit", payload);
}

Aml& Aml::append(const Aml& other) {
    bytes_.insert(bytes_.end(), other.bytes_.begin(), other.bytes_.end());
    return *this;
}

Aml Aml::zero() { return Aml(std::vector<uint8_t>{kZeroOp}); }
Aml Aml::one() { return Aml(std::vector<uint8_t>{kOneOp}); }
Aml Aml::ones() { return Aml(std::vector<uint8_t>{kOnesOp}); }

Aml Aml::byte(uint8_t v) { return Aml(std::vector<uint8_t>{kBytePrefix, v}); }
Aml Aml::word(uint16_t v) {
    std::vector<uint8_t> b{kWordPrefix};
    append_le(b, 2, v);
    return Aml(std::move(b));
}
Aml Aml::dword(uint32_t v) {
    std::vector<uint8_t> b{kDWordPrefix};
    append_le(b, 4, v);
    return Aml(std::move(b));
}
Aml Aml::qword(uint64_t v) {
    std::vector<uint8_t> b{kQWordPrefix};
    append_le(b, 8, v);
    return Aml(std::move(b));
}

Aml Aml::integer(uint64_t v) {
    if (v == 0) return zero();
    if (v == 1) return one();
    if (v <= 0xff) return byte(static_cast<uint8_t>(v));
    if (v <= 0xffff) return word(static_cast<uint16_t>(v));
    if (v <= 0xffffffff) return dword(static_cast<uint32_t>(v));
    return qword(v);
}

Aml Aml::string(std::string_view s) {
    std::vector<uint8_t> b{kStringPrefix};
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u == 0 || u > 0x7f) fail("aml: string \"{}\" must be ASCII without NUL", s);
        b.push_back(u);
    }
    b.push_back(0);
    return Aml(std::move(b));
}

Aml Aml::eisa_id(std::string_view id) {
    auto hex = [&](char c) -> uint32_t {
        if (c >= '0' && c <= '9') return static_cast<uint32_t>(c - '0');
        if (c >= 'A' && c <= 'F') return static_cast<uint32_t>(c - 'A' + 10);
        fail("aml: invalid EISA ID \"{}\"", id);
    };
    if (id.size() != 7) fail("aml: invalid EISA ID \"{}\"", id);
    for (int i = 0; i < 3; ++i) {
        if (id[i] < 'A' || id[i] > 'Z') fail("aml: invalid EISA ID \"{}\"", id);
    }
    // Three letters as 5-bit values (A = 1) and four hex digits, stored
    // most significant byte first.
    const uint32_t vendor = (uint32_t(id[0] - 0x40) << 10) | (uint32_t(id[1] - 0x40) << 5) |
                            uint32_t(id[2] - 0x40);
    const uint32_t product = (hex(id[3]) << 12) | (hex(id[4]) << 8) | (hex(id[5]) << 4) | hex(id[6]);
    std::vector<uint8_t> b{kDWordPrefix};
    append_be(b, 4, (vendor << 16) | product);
    return Aml(std::move(b));
}

Aml Aml::buffer(std::span<const uint8_t> data) {
    const auto size = integer(data.size()).bytes();
    std::vector<uint8_t> contents(size);
    contents.insert(contents.end(), data.begin(), data.end());
    return with_pkg_length({kBufferOp}, contents);
}

Aml Aml::package(const std::vector<Aml>& elements) {
    if (elements.size() > 255) fail("aml: package of {} elements exceeds 255", elements.size());
    std::vector<uint8_t> contents{static_cast<uint8_t>(elements.size())};
    for (const auto& e : elements) contents.insert(contents.end(), e.bytes().begin(), e.bytes().end());
    return with_pkg_length({kPackageOp}, contents);
}

Aml Aml::name_string(std::string_view path) {
    std::vector<uint8_t> out;
    std::size_t i = 0;
    if (i < path.size() && path[i] == '\\') {
        out.push_back(kRootChar);
        ++i;
    } else {
        while (i < path.size() && path[i] == '^') {
            out.push_back(kParentPrefixChar);
            ++i;
        }
    }
    std::vector<std::string_view> segs;
    std::string_view rest = path.substr(i);
    while (!rest.empty()) {
        const auto dot = rest.find('.');
        segs.push_back(rest.substr(0, dot));
        if (dot == std::string_view::npos) break;
        rest = rest.substr(dot + 1);
        if (rest.empty()) fail("aml: invalid name \"{}\"", path);
    }
    if (segs.size() > 255) fail("aml: name \"{}\" has too many segments", path);
    if (segs.empty()) {
        out.push_back(0);  // NullName, e.g. "\" alone
        return Aml(std::move(out));
    }
    if (segs.size() == 2) out.push_back(kDualNamePrefix);
    if (segs.size() > 2) {
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segs.size()));
    }
    for (auto seg : segs) {
        if (seg.empty() || seg.size() > 4 || !lead_char(seg[0])) {
            fail("aml: invalid name segment \"{}\" in \"{}\"", seg, path);
        }
        for (std::size_t k = 0; k < 4; ++k) {
            const char c = k < seg.size() ? seg[k] : '_';
            if (!name_char(c)) fail("aml: invalid name segment \"{}\" in \"{}\"", seg, path);
            out.push_back(static_cast<uint8_t>(c));
        }
    }
    return Aml(std::move(out));
}

Aml Aml::name(std::string_view path, const Aml& value) {
    const auto n = name_string(path).bytes();
    std::vector<uint8_t> out{kNameOp};
    out.insert(out.end(), n.begin(), n.end());
    out.insert(out.end(), value.bytes().begin(), value.bytes().end());
    return Aml(std::move(out));
}

Aml Aml::scope(std::string_view path, const std::vector<Aml>& body) {
    const auto n = name_string(path).bytes();
    return with_pkg_length({kScopeOp}, concat({&n}, body));
}

Aml Aml::device(std::string_view path, const std::vector<Aml>& body) {
    const auto n = name_string(path).bytes();
    return with_pkg_length({kExtOpPrefix, kDeviceOp}, concat({&n}, body));
}

Aml Aml::method(std::string_view path, uint8_t nargs, bool serialized,
                const std::vector<Aml>& body) {
    if (nargs > 7) fail("aml: method {} has {} arguments; at most 7", path, nargs);
    const auto n = name_string(path).bytes();
    // MethodFlags: bits 2:0 ArgCount, bit 3 SerializeFlag, bits 7:4 SyncLevel (0).
    const std::vector<uint8_t> flags{static_cast<uint8_t>(nargs | (serialized ? 0x08 : 0))};
    return with_pkg_length({kMethodOp}, concat({&n, &flags}, body));
}

Aml Aml::return_value(const Aml& value) {
    std::vector<uint8_t> out{kReturnOp};
    out.insert(out.end(), value.bytes().begin(), value.bytes().end());
    return Aml(std::move(out));
}

namespace {

// opcode followed by its operands, no PkgLength.
Aml op_with(uint8_t op, std::initializer_list<const Aml*> operands) {
    std::vector<uint8_t> out{op};
    for (const Aml* a : operands) out.insert(out.end(), a->bytes().begin(), a->bytes().end());
    return Aml(std::move(out));
}

}  // namespace

Aml Aml::arg(unsigned n) {
    if (n > 6) fail("aml: Arg{} does not exist (Arg0..Arg6)", n);
    return Aml(std::vector<uint8_t>{static_cast<uint8_t>(kArg0Op + n)});
}

Aml Aml::local(unsigned n) {
    if (n > 7) fail("aml: Local{} does not exist (Local0..Local7)", n);
    return Aml(std::vector<uint8_t>{static_cast<uint8_t>(kLocal0Op + n)});
}

Aml Aml::null_target() { return Aml(std::vector<uint8_t>{0}); }

Aml Aml::create_dword_field(const Aml& buffer, const Aml& byte_index, std::string_view name) {
    const Aml n = name_string(name);
    return op_with(kCreateDWordFieldOp, {&buffer, &byte_index, &n});
}

Aml Aml::if_then(const Aml& predicate, const std::vector<Aml>& body) {
    return with_pkg_length({kIfOp}, concat({&predicate.bytes()}, body));
}

Aml Aml::else_then(const std::vector<Aml>& body) { return with_pkg_length({kElseOp}, concat({}, body)); }

Aml Aml::lequal(const Aml& a, const Aml& b) { return op_with(kLEqualOp, {&a, &b}); }
Aml Aml::lnot(const Aml& a) { return op_with(kLNotOp, {&a}); }
Aml Aml::and_to(const Aml& a, const Aml& b, const Aml& target) { return op_with(kAndOp, {&a, &b, &target}); }
Aml Aml::or_to(const Aml& a, const Aml& b, const Aml& target) { return op_with(kOrOp, {&a, &b, &target}); }
Aml Aml::store(const Aml& value, const Aml& target) { return op_with(kStoreOp, {&value, &target}); }

Aml Aml::uuid(std::string_view text) {
    // 8-4-4-4-12 hex digits.
    static constexpr size_t kDashes[] = {8, 13, 18, 23};
    auto bad = [&] { fail("aml: invalid UUID \"{}\"", text); };
    if (text.size() != 36) bad();
    std::vector<uint8_t> digits;  // the 16 bytes in string order
    for (size_t i = 0; i < text.size();) {
        if (std::find(std::begin(kDashes), std::end(kDashes), i) != std::end(kDashes)) {
            if (text[i] != '-') bad();
            ++i;
            continue;
        }
        auto nib = [&](char c) -> uint8_t {
            if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
            if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
            if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(c - 'A' + 10);
            bad();
            return 0;
        };
        if (i + 1 >= text.size()) bad();
        digits.push_back(static_cast<uint8_t>(nib(text[i]) << 4 | nib(text[i + 1])));
        i += 2;
    }
    if (digits.size() != 16) bad();
    // Fields 1-3 (4, 2 and 2 bytes) are stored little-endian.
    std::reverse(digits.begin(), digits.begin() + 4);
    std::reverse(digits.begin() + 4, digits.begin() + 6);
    std::reverse(digits.begin() + 6, digits.begin() + 8);
    return buffer(digits);
}

// ---- resource descriptors

namespace {

// General flags of an address-space descriptor: bit 3 _MAF (max fixed),
// bit 2 _MIF (min fixed), bit 1 _DEC = 0 (positive decode), bit 0 = 0
// (producer: a bridge window).
constexpr uint8_t kAddrFlagsWindow = 0x0c;
constexpr uint8_t kIoRangeEntire = 0x03;     // _RNG: ISA and non-ISA ports
constexpr uint8_t kMemReadWrite = 0x01;      // _RW
constexpr uint8_t kMemCacheable = 0x01 << 1;  // _MEM = 1

// Large descriptor header: tag, then a 16-bit length of what follows.
void large_header(std::vector<uint8_t>& out, uint8_t tag, uint16_t len) {
    out.push_back(tag);
    append_le(out, 2, len);
}

// Address-space descriptor with fields of `width` bytes: type, general
// flags, type-specific flags, then granularity, min, max, translation
// offset and length.
void address_space(std::vector<uint8_t>& out, uint8_t tag, int width, uint8_t type, uint8_t type_flags,
                   uint64_t min, uint64_t max) {
    if (max < min) fail("aml: resource range [{:#x}, {:#x}] is empty", min, max);
    const uint64_t len = max - min + 1;
    if (width < 8 && len >> (8 * width) != 0) fail("aml: resource range [{:#x}, {:#x}] too long", min, max);
    if (width == 8 && len == 0) fail("aml: resource range covers the whole 64-bit space");
    large_header(out, tag, static_cast<uint16_t>(3 + 5 * width));
    out.push_back(type);
    out.push_back(kAddrFlagsWindow);
    out.push_back(type_flags);
    append_le(out, width, 0);  // granularity (0: no alignment constraint given)
    append_le(out, width, min);
    append_le(out, width, max);
    append_le(out, width, 0);  // translation offset
    append_le(out, width, len);
}

}  // namespace

ResourceTemplate& ResourceTemplate::word_bus_number(uint16_t min, uint16_t max) {
    address_space(bytes_, aml_rd::kWordAddress, 2, aml_rd::kTypeBus, 0, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::word_io(uint16_t min, uint16_t max) {
    address_space(bytes_, aml_rd::kWordAddress, 2, aml_rd::kTypeIo, kIoRangeEntire, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::io(uint16_t min, uint16_t max, uint8_t align, uint8_t length) {
    if (max < min) fail("aml: I/O descriptor [{:#x}, {:#x}] is empty", min, max);
    bytes_.push_back(aml_rd::kIoPort);
    bytes_.push_back(0x01);  // decodes 16 address bits
    append_le(bytes_, 2, min);
    append_le(bytes_, 2, max);
    bytes_.push_back(align);
    bytes_.push_back(length);
    return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(uint8_t irq) {
    if (irq > 15) fail("aml: ISA IRQ {} is not 0..15", irq);
    bytes_.push_back(aml_rd::kIrqNoFlags);
    append_le(bytes_, 2, uint64_t{1} << irq);  // the IRQ mask
    return *this;
}

ResourceTemplate& ResourceTemplate::dword_memory(uint32_t min, uint32_t max, bool cacheable) {
    address_space(bytes_, aml_rd::kDWordAddress, 4, aml_rd::kTypeMemory,
                  static_cast<uint8_t>(kMemReadWrite | (cacheable ? kMemCacheable : 0)), min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::qword_memory(uint64_t min, uint64_t max, bool cacheable) {
    address_space(bytes_, aml_rd::kQWordAddress, 8, aml_rd::kTypeMemory,
                  static_cast<uint8_t>(kMemReadWrite | (cacheable ? kMemCacheable : 0)), min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::memory32_fixed(uint32_t base, uint32_t length) {
    large_header(bytes_, aml_rd::kMemory32Fixed, 9);
    bytes_.push_back(kMemReadWrite);
    append_le(bytes_, 4, base);
    append_le(bytes_, 4, length);
    return *this;
}

Aml ResourceTemplate::to_aml() const {
    std::vector<uint8_t> b = bytes_;
    b.push_back(aml_rd::kEndTag);
    b.push_back(0);  // checksum 0: "treat as valid"
    return Aml::buffer(b);
}

}  // namespace vmm::arch::x86
