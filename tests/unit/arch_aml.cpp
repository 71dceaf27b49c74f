// Unit tests: the AML builder, especially PkgLength encoding at the width
// boundaries, checked against hand-assembled byte sequences.
#include <catch2/catch.hpp>

#include <algorithm>

#include "arch/x86_64/aml.h"
#include "vmm/core/error.h"

using namespace vmm::arch::x86;
using Bytes = std::vector<uint8_t>;

namespace {

// Independent PkgLength decoder (ACPI 20.2.4): returns {value, bytes used}.
std::pair<uint32_t, std::size_t> decode_pkg_length(const Bytes& b, std::size_t off = 0) {
    const uint8_t lead = b.at(off);
    const std::size_t follow = lead >> 6;
    if (follow == 0) return {lead & 0x3f, 1};
    REQUIRE((lead & 0x30) == 0);  // bits 5:4 reserved in multi-byte form
    uint32_t v = lead & 0x0f;
    for (std::size_t i = 0; i < follow; ++i) v |= uint32_t{b.at(off + 1 + i)} << (4 + 8 * i);
    return {v, 1 + follow};
}

}  // namespace

TEST_CASE("arch: AML PkgLength encodes boundary values", "[arch][aml]") {
    CHECK(aml_encode_pkg_length(0) == Bytes{0x00});
    CHECK(aml_encode_pkg_length(63) == Bytes{0x3f});
    CHECK(aml_encode_pkg_length(64) == Bytes{0x40, 0x04});
    CHECK(aml_encode_pkg_length(0x123) == Bytes{0x43, 0x12});
    CHECK(aml_encode_pkg_length(4095) == Bytes{0x4f, 0xff});
    CHECK(aml_encode_pkg_length(4096) == Bytes{0x80, 0x00, 0x01});
    CHECK(aml_encode_pkg_length(0xfffff) == Bytes{0x8f, 0xff, 0xff});
    CHECK(aml_encode_pkg_length(0x100000) == Bytes{0xc0, 0x00, 0x00, 0x01});
    CHECK(aml_encode_pkg_length(0xfffffff) == Bytes{0xcf, 0xff, 0xff, 0xff});
    CHECK_THROWS_AS(aml_encode_pkg_length(0x10000000), vmm::Error);
}

TEST_CASE("arch: AML PkgLength counts its own bytes", "[arch][aml]") {
    // payload 62 -> 63 fits one byte; payload 63 -> 64 does not, so two
    // bytes and the value becomes 65.
    CHECK(aml_pkg_length(62) == Bytes{63});
    CHECK(aml_pkg_length(63) == Bytes{0x41, 0x04});
    CHECK(aml_pkg_length(4093) == Bytes{0x4f, 0xff});        // 4095
    CHECK(aml_pkg_length(4094) == Bytes{0x81, 0x00, 0x01});  // 4097, 3 bytes
    for (std::size_t payload : {0ul, 1ul, 60ul, 61ul, 62ul, 63ul, 64ul, 4092ul, 4093ul, 4094ul,
                                4095ul, 4096ul, 0xffffcul, 0xffffdul, 0xffffeul, 0x1000000ul}) {
        const auto enc = aml_pkg_length(payload);
        const auto [value, used] = decode_pkg_length(enc);
        INFO("payload " << payload);
        CHECK(used == enc.size());
        CHECK(value == payload + enc.size());
    }
    CHECK_THROWS_AS(aml_pkg_length(0xffffffd), vmm::Error);
}

TEST_CASE("arch: AML integers use the shortest encoding", "[arch][aml]") {
    CHECK(Aml::integer(0).bytes() == Bytes{0x00});
    CHECK(Aml::integer(1).bytes() == Bytes{0x01});
    CHECK(Aml::integer(5).bytes() == Bytes{0x0a, 0x05});
    CHECK(Aml::integer(0xff).bytes() == Bytes{0x0a, 0xff});
    CHECK(Aml::integer(0x100).bytes() == Bytes{0x0b, 0x00, 0x01});
    CHECK(Aml::integer(0x12345678).bytes() == Bytes{0x0c, 0x78, 0x56, 0x34, 0x12});
    CHECK(Aml::integer(0x100000000).bytes() ==
          Bytes{0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00});
    CHECK(Aml::ones().bytes() == Bytes{0xff});
    CHECK(Aml::dword(1).bytes() == Bytes{0x0c, 0x01, 0x00, 0x00, 0x00});
}

TEST_CASE("arch: AML strings and EISA IDs", "[arch][aml]") {
    CHECK(Aml::string("abc").bytes() == Bytes{0x0d, 'a', 'b', 'c', 0x00});
    CHECK_THROWS_AS(Aml::string(std::string("a\0b", 3)), vmm::Error);
    CHECK_THROWS_AS(Aml::string("\xc3\xa9"), vmm::Error);
    CHECK(Aml::eisa_id("PNP0A03").bytes() == Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03});
    CHECK(Aml::eisa_id("PNP0C0F").bytes() == Bytes{0x0c, 0x41, 0xd0, 0x0c, 0x0f});
    CHECK_THROWS_AS(Aml::eisa_id("PNP0A0"), vmm::Error);
    CHECK_THROWS_AS(Aml::eisa_id("pnp0A03"), vmm::Error);
    CHECK_THROWS_AS(Aml::eisa_id("PNP0G03"), vmm::Error);
}

TEST_CASE("arch: AML name strings", "[arch][aml]") {
    CHECK(Aml::name_string("_S5").bytes() == Bytes{'_', 'S', '5', '_'});
    CHECK(Aml::name_string("_S5_").bytes() == Bytes{'_', 'S', '5', '_'});
    CHECK(Aml::name_string("\\_SB_.PCI0").bytes() ==
          Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'});
    CHECK(Aml::name_string("\\_SB.PCI0.ISA").bytes() ==
          Bytes{'\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S', 'A', '_'});
    CHECK(Aml::name_string("^^FOO").bytes() == Bytes{'^', '^', 'F', 'O', 'O', '_'});
    CHECK(Aml::name_string("\\").bytes() == Bytes{'\\', 0x00});
    for (const char* bad : {"1ABC", "ABCDE", "a", "A..B", "A.", "A-B", ""}) {
        INFO(bad);
        if (std::string_view(bad).empty()) {
            CHECK(Aml::name_string(bad).bytes() == Bytes{0x00});
        } else {
            CHECK_THROWS_AS(Aml::name_string(bad), vmm::Error);
        }
    }
}

TEST_CASE("arch: AML package, name, method, device, scope", "[arch][aml]") {
    const Aml s5 = Aml::name("_S5_", Aml::package({Aml::integer(5), Aml::integer(5), Aml::zero(),
                                                    Aml::zero()}));
    CHECK(s5.bytes() ==
          Bytes{0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00});

    // Method (_STA, 0, NotSerialized) { Return (0x0F) }
    CHECK(Aml::method("_STA", 0, false, {Aml::return_value(Aml::integer(0x0f))}).bytes() ==
          Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f});
    CHECK(Aml::method("_CRS", 2, true, {}).bytes() ==
          Bytes{0x14, 0x06, '_', 'C', 'R', 'S', 0x0a});
    CHECK_THROWS_AS(Aml::method("FOO", 8, false, {}), vmm::Error);

    // Device (PCI0) { Name (_HID, EisaId ("PNP0A03")) }
    const Aml dev = Aml::device("PCI0", {Aml::name("_HID", Aml::eisa_id("PNP0A03"))});
    CHECK(dev.bytes() == Bytes{0x5b, 0x82, 0x0f, 'P', 'C', 'I', '0', 0x08, '_', 'H', 'I', 'D', 0x0c,
                               0x41, 0xd0, 0x0a, 0x03});

    // Scope (\_SB) { <dev> }
    const Aml sc = Aml::scope("\\_SB_", {dev});
    REQUIRE(sc.bytes().size() == 1 + 1 + 5 + dev.size());
    CHECK(sc.bytes()[0] == 0x10);
    CHECK(decode_pkg_length(sc.bytes(), 1).first == sc.size() - 1);

    Aml list;
    list.append(Aml::zero()).append(Aml::one());
    CHECK(list.bytes() == Bytes{0x00, 0x01});
}

TEST_CASE("arch: AML lengths stay consistent across width boundaries", "[arch][aml]") {
    // Buffers of growing size: the PkgLength must always equal the number
    // of bytes from itself to the end of the object.
    for (std::size_t n : {0ul, 55ul, 56ul, 57ul, 58ul, 59ul, 60ul, 61ul, 62ul, 4080ul, 4086ul,
                          4087ul, 4088ul, 4089ul, 4090ul, 5000ul}) {
        const Bytes data(n, 0xab);
        const Aml b = Aml::buffer(data);
        INFO("buffer of " << n);
        REQUIRE(b.bytes()[0] == 0x11);
        const auto [value, used] = decode_pkg_length(b.bytes(), 1);
        CHECK(value == b.size() - 1);
        // BufferOp, PkgLength, BufferSize (an integer term), then the data.
        const auto size_term = Aml::integer(n).bytes();
        CHECK(b.size() == 1 + used + size_term.size() + n);
        CHECK(std::equal(size_term.begin(), size_term.end(), b.bytes().begin() + 1 + used));
    }
    // A package of 255 elements is fine; 256 is not encodable with PackageOp.
    std::vector<Aml> many(255, Aml::integer(0x1234));
    const Aml p = Aml::package(many);
    CHECK(decode_pkg_length(p.bytes(), 1).first == p.size() - 1);
    many.push_back(Aml::zero());
    CHECK_THROWS_AS(Aml::package(many), vmm::Error);
}

TEST_CASE("arch: AML resource templates", "[arch][aml]") {
    ResourceTemplate rt;
    rt.word_io(0x10, 0x1f);
    rt.io(0xcf8, 0xcf8, 1, 8);
    CHECK(rt.descriptors() == std::vector<uint8_t>{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x10, 0x00,
                                                   0x1f, 0x00, 0x00, 0x00, 0x10, 0x00,  // WordIO 0x10..0x1f
                                                   0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08});
    const Aml buf = rt.to_aml();
    const auto& b = buf.bytes();
    // BufferOp, PkgLength, BufferSize (byte), descriptors, end tag + checksum 0.
    REQUIRE(b.size() == 1 + 1 + 2 + 24 + 2);
    CHECK(b[0] == 0x11);
    CHECK(b[1] == 29);
    CHECK(b[2] == 0x0a);
    CHECK(b[3] == 26);
    CHECK(b[b.size() - 2] == 0x79);
    CHECK(b[b.size() - 1] == 0);

    ResourceTemplate q;
    q.qword_memory(0x100000000, 0x1ffffffff, true);
    const auto& d = q.descriptors();
    REQUIRE(d.size() == 46);
    CHECK(d[0] == 0x8a);
    CHECK(d[1] == 43);
    CHECK(d[5] == 0x03);  // ReadWrite, Cacheable
    CHECK(d[38] == 0x00);  // length 0x100000000: low bytes zero...
    CHECK(d[42] == 0x01);  // ...and bit 32 set

    CHECK_THROWS_AS(ResourceTemplate().word_io(0x20, 0x10), vmm::Error);
    CHECK_THROWS_AS(ResourceTemplate().word_io(0, 0xffff), vmm::Error);  // length 0x10000 does not fit 16 bits
    CHECK_THROWS_AS(ResourceTemplate().qword_memory(0, ~uint64_t{0}, false), vmm::Error);
    CHECK_THROWS_AS(ResourceTemplate().io(2, 1, 1, 1), vmm::Error);
}

TEST_CASE("arch: AML method bodies: args, locals, fields, If/Else, operators, ToUUID", "[arch][aml]") {
    CHECK(Aml::arg(0).bytes() == Bytes{0x68});
    CHECK(Aml::arg(6).bytes() == Bytes{0x6e});
    CHECK(Aml::local(7).bytes() == Bytes{0x67});
    CHECK_THROWS_AS(Aml::arg(7), vmm::Error);
    CHECK_THROWS_AS(Aml::local(8), vmm::Error);
    // CreateDWordField (Arg3, Zero, CDW1)
    CHECK(Aml::create_dword_field(Aml::arg(3), Aml::zero(), "CDW1").bytes() ==
          Bytes{0x8a, 0x6b, 0x00, 'C', 'D', 'W', '1'});
    // If (LNot (LEqual (Arg1, One))) { Or (Local0, 8, Local0) } Else { Store (Zero, Local1) }
    auto if_ = Aml::if_then(Aml::lnot(Aml::lequal(Aml::arg(1), Aml::one())),
                            {Aml::or_to(Aml::local(0), Aml::integer(8), Aml::local(0))});
    CHECK(if_.bytes() == Bytes{0xa0, 0x0a, 0x92, 0x93, 0x69, 0x01, 0x7d, 0x60, 0x0a, 0x08, 0x60});
    CHECK(Aml::else_then({Aml::store(Aml::zero(), Aml::local(1))}).bytes() == Bytes{0xa1, 0x04, 0x70, 0x00, 0x61});
    CHECK(Aml::and_to(Aml::arg(0), Aml::integer(0x1f), Aml::null_target()).bytes() ==
          Bytes{0x7b, 0x68, 0x0a, 0x1f, 0x00});
    // ToUUID: the first three fields little-endian, the rest in order.
    CHECK(Aml::uuid("33DB4D5B-1FF7-401C-9657-7441C03DD766").bytes() ==
          Bytes{0x11, 0x13, 0x0a, 0x10, 0x5b, 0x4d, 0xdb, 0x33, 0xf7, 0x1f, 0x1c, 0x40, 0x96, 0x57, 0x74, 0x41,
                0xc0, 0x3d, 0xd7, 0x66});
    CHECK(Aml::uuid("33db4d5b-1ff7-401c-9657-7441c03dd766").bytes() ==
          Aml::uuid("33DB4D5B-1FF7-401C-9657-7441C03DD766").bytes());
    for (const char* bad : {"", "33DB4D5B1FF7401C96577441C03DD766", "33DB4D5B-1FF7-401C-9657-7441C03DD76G",
                            "33DB4D5B-1FF7-401C-9657_7441C03DD766", "33DB4D5B-1FF7-401C-9657-7441C03DD7666"})
        CHECK_THROWS_AS(Aml::uuid(bad), vmm::Error);
}
