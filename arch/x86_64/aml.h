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

    // ---- method bodies: arguments, locals, fields, control flow, operators.
    // Operands are any terms (integers, names, Arg/Local, operator results);
    // a `target` is a name, Arg or Local (or Aml::null_target()).
    static Aml arg(unsigned n);    // Arg0..Arg6
    static Aml local(unsigned n);  // Local0..Local7
    static Aml null_target();      // NullName: the result is not stored
    // CreateDWordField (buffer, byte_index, name).
    static Aml create_dword_field(const Aml& buffer, const Aml& byte_index, std::string_view name);
    // If (predicate) { body } and the Else that may follow it.
    static Aml if_then(const Aml& predicate, const std::vector<Aml>& body);
    static Aml else_then(const std::vector<Aml>& body);
    static Aml lequal(const Aml& a, const Aml& b);
    static Aml lnot(const Aml& a);
    static Aml and_to(const Aml& a, const Aml& b, const Aml& target);
    static Aml or_to(const Aml& a, const Aml& b, const Aml& target);
    static Aml store(const Aml& value, const Aml& target);
    // ToUUID ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"): a 16-byte buffer, the
    // first three fields little-endian, the last two in string order.
    static Aml uuid(std::string_view text);

private:
    std::vector<uint8_t> bytes_;
};

// The resource descriptors of a ResourceTemplate (ACPI spec 6.4 "Resource
// Data Types for ACPI"), as _CRS returns them. Address-space descriptors are
// written the way iasl writes ResourceProducer, PosDecode, MinFixed,
// MaxFixed windows of a host bridge: granularity 0, no translation, length
// max - min + 1. Throws if max < min.
class ResourceTemplate {
public:
    // WordBusNumber: bus numbers [min, max].
    ResourceTemplate& word_bus_number(uint16_t min, uint16_t max);
    // WordIO, EntireRange: I/O ports [min, max].
    ResourceTemplate& word_io(uint16_t min, uint16_t max);
    // IO (Decode16): a small fixed I/O descriptor for a consumer.
    ResourceTemplate& io(uint16_t min, uint16_t max, uint8_t align, uint8_t length);
    // IRQNoFlags: ISA IRQ `irq` (0..15), edge-triggered, active high.
    ResourceTemplate& irq_no_flags(uint8_t irq);
    // DWordMemory / QWordMemory, ReadWrite; `cacheable` selects Cacheable
    // over NonCacheable (prefetchable windows are not offered: Linux will
    // not claim a non-prefetchable BAR inside a prefetchable window).
    ResourceTemplate& dword_memory(uint32_t min, uint32_t max, bool cacheable);
    ResourceTemplate& qword_memory(uint64_t min, uint64_t max, bool cacheable);
    // Memory32Fixed, ReadWrite.
    ResourceTemplate& memory32_fixed(uint32_t base, uint32_t length);

    // The descriptors so far, without the end tag.
    const std::vector<uint8_t>& descriptors() const { return bytes_; }
    // Buffer holding the descriptors and the end tag (checksum 0: "treat
    // as valid").
    Aml to_aml() const;

private:
    std::vector<uint8_t> bytes_;
};

// Large resource descriptor tags (byte 0 of each descriptor).
namespace aml_rd {
inline constexpr uint8_t kMemory32Fixed = 0x86;
inline constexpr uint8_t kDWordAddress = 0x87;
inline constexpr uint8_t kWordAddress = 0x88;
inline constexpr uint8_t kQWordAddress = 0x8a;
inline constexpr uint8_t kIoPort = 0x47;  // small item 0x08, length 7
inline constexpr uint8_t kIrqNoFlags = 0x22;  // small item 0x04, length 2 (no flags byte)
inline constexpr uint8_t kEndTag = 0x79;  // small item 0x0f, length 1
// Resource Type byte of the address-space descriptors.
inline constexpr uint8_t kTypeMemory = 0;
inline constexpr uint8_t kTypeIo = 1;
inline constexpr uint8_t kTypeBus = 2;
}  // namespace aml_rd

// Encodes the PkgLength value `value` (which, per the spec, counts the
// PkgLength bytes themselves plus everything after them up to the end of
// the package): 1 byte up to 63, then 2, 3 or 4 bytes up to 2^28 - 1.
std::vector<uint8_t> aml_encode_pkg_length(uint32_t value);

// The PkgLength prefix for a package whose contents after the PkgLength
// are `payload` bytes: picks the smallest encoding whose value (payload +
// its own size) it can represent.
std::vector<uint8_t> aml_pkg_length(std::size_t payload);

}  // namespace vmm::arch::x86
