// A small builder for ACPI Machine Language (ACPI spec, chapter 20 "ACPI
// Machine Language Specification"), enough to hand-assemble a DSDT:
// names, integers, strings, buffers, packages, scopes, devices and methods.
// Each Aml value is one complete encoded term; composite terms take their
// children by value and compute the PkgLength around them.
//
//   Aml::name("_S5_", Aml::package({Aml::integer(5), Aml::integer(5),
//                                   Aml::zero(), Aml::zero()}))
//   Aml::scope("\\_SB_", {Aml::device("PCI0", {Aml::name("_HID",
//                                   Aml::eisa_id("PNP0A03"))})})
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace vmm::arch::x86 {

class Aml {
public:
    Aml() = default;
    explicit Aml(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}

    const std::vector<uint8_t>& bytes() const { return bytes_; }
    std::size_t size() const { return bytes_.size(); }
    // Appends another term (e.g. to build a TermList).
    Aml& append(const Aml& other);

    // ---- data objects
    static Aml zero();  // ZeroOp
    static Aml one();   // OneOp
    static Aml ones();  // OnesOp (all bits set)
    // Shortest encoding: ZeroOp, OneOp, BytePrefix, WordPrefix, DWordPrefix
    // or QWordPrefix.
    static Aml integer(uint64_t v);
    // Fixed-width encodings, for fields a later patch must find at a known
    // offset regardless of the value.
    static Aml byte(uint8_t v);
    static Aml word(uint16_t v);
    static Aml dword(uint32_t v);
    static Aml qword(uint64_t v);
    // StringPrefix + ASCII bytes + NUL; throws on NUL or non-ASCII.
    static Aml string(std::string_view s);
    // Compressed EISA ID ("PNP0A03" -> DWordPrefix 0x030ad041), as _HID
    // and _CID values use.
    static Aml eisa_id(std::string_view id);
    // BufferOp PkgLength BufferSize ByteList.
    static Aml buffer(std::span<const uint8_t> data);
    // PackageOp PkgLength NumElements elements (at most 255 elements).
    static Aml package(const std::vector<Aml>& elements);

    // ---- names: "ABCD", "\\_SB_.PCI0", "^PCI0", "_S5" (segments shorter
    // than 4 characters are padded with '_'). Throws on invalid names.
    static Aml name_string(std::string_view path);
    // NameOp NameString DataRefObject.
    static Aml name(std::string_view path, const Aml& value);

    // ---- namespace modifiers and named objects
    static Aml scope(std::string_view path, const std::vector<Aml>& body);
    static Aml device(std::string_view path, const std::vector<Aml>& body);
    // MethodOp PkgLength NameString MethodFlags TermList; nargs 0..7.
    static Aml method(std::string_view path, uint8_t nargs, bool serialized,
                      const std::vector<Aml>& body);
    // ReturnOp value.
    static Aml return_value(const Aml& value);

private:
    std::vector<uint8_t> bytes_;
};

// Encodes the PkgLength value `value` (which, per the spec, counts the
// PkgLength bytes themselves plus everything after them up to the end of
// the package): 1 byte up to 63, then 2, 3 or 4 bytes up to 2^28 - 1.
std::vector<uint8_t> aml_encode_pkg_length(uint32_t value);

// The PkgLength prefix for a package whose contents after the PkgLength
// are `payload` bytes: picks the smallest encoding whose value (payload +
// its own size) it can represent.
std::vector<uint8_t> aml_pkg_length(std::size_t payload);

}  // namespace vmm::arch::x86
