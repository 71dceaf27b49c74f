// SMBIOS structures and entry points; field offsets are those of DSP0134
// 3.x for each structure type (see smbios.h for what is built).
#include "arch/x86_64/smbios.h"

#include <fmt/format.h>

#include "arch/x86_64/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

namespace {

// One structure: its formatted area, then its strings, each NUL terminated,
// and one more NUL (two when there are no strings).
class Structure {
public:
    Structure(uint8_t type, uint8_t length, uint16_t handle) : area_(length, 0) {
        store_u8(area_, 0, type);
        store_u8(area_, 1, length);
        store_le16(area_, 2, handle);
    }
    void u8(std::size_t off, uint8_t v) { store_u8(area_, off, v); }
    void u16(std::size_t off, uint16_t v) { store_le16(area_, off, v); }
    void u32(std::size_t off, uint32_t v) { store_le32(area_, off, v); }
    void u64(std::size_t off, uint64_t v) { store_le64(area_, off, v); }
    void bytes(std::size_t off, std::span<const uint8_t> b) {
        for (std::size_t i = 0; i < b.size(); ++i) store_u8(area_, off + i, b[i]);
    }
    // Stores the string's number at `off`; an empty string is number 0
    // ("none"), as the spec asks, and takes no room.
    void str(std::size_t off, const std::string& s) {
        if (s.empty()) return u8(off, 0);
        strings_.push_back(s);
        u8(off, static_cast<uint8_t>(strings_.size()));
    }
    void append_to(SmbiosTable& t) const {
        std::size_t start = t.bytes.size();
        t.bytes.insert(t.bytes.end(), area_.begin(), area_.end());
        for (auto& s : strings_) {
            t.bytes.insert(t.bytes.end(), s.begin(), s.end());
            t.bytes.push_back(0);
        }
        if (strings_.empty()) t.bytes.push_back(0);
        t.bytes.push_back(0);
        std::size_t size = t.bytes.size() - start;
        if (size > t.max_structure) t.max_structure = static_cast<uint16_t>(size);
        ++t.structures;
    }

private:
    std::vector<uint8_t> area_;
    std::vector<std::string> strings_;
};

void check_string(const std::string& s, const char* what) {
    switch (smbios_string_error(s)) {
        case SmbiosStringError::None: return;
        case SmbiosStringError::TooLong:
            fail("SMBIOS {}: {} characters; at most {}", what, s.size(), kSmbiosMaxString);
        case SmbiosStringError::NotPrintable:
            fail("SMBIOS {}: \"{}\" has a character that is not printable ASCII", what, s);
    }
}

uint16_t handle(uint8_t type, uint32_t index) { return static_cast<uint16_t>((type << 8) + index); }

constexpr uint8_t kEnd = 127;

}  // namespace

SmbiosStringError smbios_string_error(std::string_view s) {
    if (s.size() > kSmbiosMaxString) return SmbiosStringError::TooLong;
    for (char c : s)
        if (c < 0x20 || c > 0x7e) return SmbiosStringError::NotPrintable;
    return SmbiosStringError::None;
}

SmbiosTable build_smbios_table(const SmbiosConfig& cfg) {
    const SmbiosStrings& s = cfg.strings;
    for (auto [v, what] : {std::pair{&s.bios_vendor, "bios vendor"}, {&s.bios_version, "bios version"},
                           {&s.bios_date, "bios date"}, {&s.manufacturer, "system manufacturer"},
                           {&s.product, "system product"}, {&s.version, "system version"},
                           {&s.serial, "system serial"}, {&s.sku, "system sku"}, {&s.family, "system family"},
                           {&s.chassis_manufacturer, "chassis manufacturer"}, {&s.chassis_version, "chassis version"},
                           {&s.chassis_serial, "chassis serial"}, {&s.chassis_asset, "chassis asset"},
                           {&s.chassis_sku, "chassis sku"}})
        check_string(*v, what);
    if (cfg.cpus == 0 || cfg.cpus > 255) fail("SMBIOS: {} vCPUs; 1..255 are described", cfg.cpus);
    if (cfg.ram.empty()) fail("internal: SMBIOS without RAM regions");

    SmbiosTable t;
    if (s.bios) {
        Structure b(0, 0x1a, handle(0, 0));
        b.str(0x04, s.bios_vendor);
        b.str(0x05, s.bios_version);
        b.u16(0x06, 0xe800);  // starting segment: a 96 KiB image ending at 1 MiB, as QEMU says
        b.str(0x08, s.bios_date);
        b.u8(0x09, 0);        // ROM size: 64 KiB
        b.u64(0x0a, 1u << 3);  // "BIOS characteristics are not supported"
        b.u8(0x12, 0);
        b.u8(0x13, (1u << 2) | (1u << 4));  // targeted content distribution; a virtual machine
        b.u8(0x14, 0);  // system BIOS release 0.0
        b.u8(0x15, 0);
        b.u8(0x16, 0xff);  // no embedded controller
        b.u8(0x17, 0xff);
        b.append_to(t);
    }

    Structure sys(1, 0x1b, handle(1, 0));
    sys.str(0x04, s.manufacturer);
    sys.str(0x05, s.product);
    sys.str(0x06, s.version);
    sys.str(0x07, s.serial);
    if (cfg.uuid) {
        // SMBIOS 2.6+: the first three fields little-endian, the rest as written.
        const auto& u = *cfg.uuid;
        const std::array<uint8_t, 16> wire = {u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6],
                                              u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]};
        sys.bytes(0x08, wire);
    }
    sys.u8(0x18, 0x06);  // wake-up type: power switch
    sys.str(0x19, s.sku);
    sys.str(0x1a, s.family);
    sys.append_to(t);

    Structure ch(3, 0x16, handle(3, 0));
    ch.str(0x04, s.chassis_manufacturer);
    ch.u8(0x05, 0x01);  // type: other
    ch.str(0x06, s.chassis_version);
    ch.str(0x07, s.chassis_serial);
    ch.str(0x08, s.chassis_asset);
    ch.u8(0x09, 0x03);  // boot-up, power supply, thermal state: safe
    ch.u8(0x0a, 0x03);
    ch.u8(0x0b, 0x03);
    ch.u8(0x0c, 0x02);  // security status: unknown
    // 0x0d OEM, 0x11 height, 0x12 power cords, 0x13/0x14 no contained elements
    ch.str(0x15, s.chassis_sku);
    ch.append_to(t);

    // One socket per vCPU, one core and thread each (the MADT and CPUID
    // tell the OS the topology; this is inventory).
    for (uint32_t i = 0; i < cfg.cpus; ++i) {
        Structure p(4, 0x30, handle(4, i));
        p.str(0x04, fmt::format("CPU {}", i));
        p.u8(0x05, 0x03);  // central processor
        p.u8(0x06, 0x01);  // family: other (the real one is in the processor ID)
        p.str(0x07, s.manufacturer);
        p.u32(0x08, cfg.cpuid_signature);
        p.u32(0x0c, cfg.cpuid_features);
        p.u8(0x11, 0);      // voltage: unknown
        p.u16(0x12, 0);     // external clock, max and current speed: unknown
        p.u16(0x14, 0);
        p.u16(0x16, 0);
        p.u8(0x18, 0x41);   // socket populated, CPU enabled
        p.u8(0x19, 0x01);   // upgrade: other
        p.u16(0x1a, 0xffff);  // no L1/L2/L3 cache structures
        p.u16(0x1c, 0xffff);
        p.u16(0x1e, 0xffff);
        p.u8(0x23, 1);  // cores, cores enabled, threads
        p.u8(0x24, 1);
        p.u8(0x25, 1);
        p.u16(0x26, 1u << 2);  // 64-bit capable
        p.u16(0x28, 0x01);     // family 2: other
        p.u16(0x2a, 1);
        p.u16(0x2c, 1);
        p.u16(0x2e, 1);
        p.append_to(t);
    }

    uint64_t total = 0;
    for (auto& r : cfg.ram) total += r.size;
    const uint16_t array = handle(16, 0);
    Structure arr(16, 0x17, array);
    arr.u8(0x04, 0x01);  // location: other
    arr.u8(0x05, 0x03);  // use: system memory
    arr.u8(0x06, 0x03);  // error correction: none
    if (total / KiB < 0x80000000ull) {
        arr.u32(0x07, static_cast<uint32_t>(total / KiB));
    } else {
        arr.u32(0x07, 0x80000000u);  // see the extended capacity, in bytes
        arr.u64(0x0f, total);
    }
    arr.u16(0x0b, 0xfffe);  // no error information structure
    arr.u16(0x0d, 1);       // one memory device
    arr.append_to(t);

    Structure dev(17, 0x28, handle(17, 0));
    dev.u16(0x04, array);
    dev.u16(0x06, 0xfffe);
    dev.u16(0x08, 0xffff);  // total and data width: unknown
    dev.u16(0x0a, 0xffff);
    const uint64_t mib = total / MiB;
    if (mib < 0x7fff) {
        dev.u16(0x0c, static_cast<uint16_t>(mib));
    } else {
        dev.u16(0x0c, 0x7fff);  // see the extended size, in MiB (31 bits)
        if (mib >= (1ull << 31)) fail("SMBIOS: {} of RAM cannot be described", human_size(total));
        dev.u32(0x1c, static_cast<uint32_t>(mib));
    }
    dev.u8(0x0e, 0x09);  // form factor: DIMM
    dev.str(0x10, "DIMM 0");
    dev.u8(0x12, 0x07);     // type: RAM
    dev.u16(0x13, 1u << 1);  // type detail: other
    dev.str(0x17, s.manufacturer);
    dev.append_to(t);

    for (std::size_t i = 0; i < cfg.ram.size(); ++i) {
        const RamRegion& r = cfg.ram[i];
        Structure m(19, 0x1f, handle(19, static_cast<uint32_t>(i)));
        const uint64_t last = r.gpa + r.size - 1;
        if (last / KiB < 0xffffffffull) {
            m.u32(0x04, static_cast<uint32_t>(r.gpa / KiB));
            m.u32(0x08, static_cast<uint32_t>(last / KiB));
        } else {
            m.u32(0x04, 0xffffffffu);  // see the extended addresses, in bytes
            m.u32(0x08, 0xffffffffu);
            m.u64(0x0f, r.gpa);
            m.u64(0x17, last);
        }
        m.u16(0x0c, array);
        m.u8(0x0e, 1);  // partition width: one device
        m.append_to(t);
    }

    Structure boot(32, 0x0b, handle(32, 0));  // boot status 0: no errors
    boot.append_to(t);
    Structure end(kEnd, 0x04, handle(kEnd, 0));
    end.append_to(t);

    if (t.bytes.size() > 0xffff) fail("SMBIOS: the table is {} bytes; at most 65535", t.bytes.size());
    return t;
}

std::vector<uint8_t> smbios3_entry_point(const SmbiosTable& t, uint64_t table_addr) {
    std::vector<uint8_t> ep(0x18, 0);
    put_str(ep, 0, "_SM3_", 5);
    store_u8(ep, 6, 0x18);  // length
    store_u8(ep, 7, 3);     // SMBIOS 3.0
    store_u8(ep, 8, 0);
    store_u8(ep, 9, 0);     // docrev
    store_u8(ep, 10, 1);    // entry point revision: 3.0
    store_le32(ep, 12, static_cast<uint32_t>(t.bytes.size()));  // table maximum size
    store_le64(ep, 16, table_addr);
    fix_checksum(ep, 5);
    return ep;
}

std::vector<uint8_t> smbios21_entry_point(const SmbiosTable& t, uint32_t table_addr) {
    std::vector<uint8_t> ep(0x1f, 0);
    put_str(ep, 0, "_SM_", 4);
    store_u8(ep, 5, 0x1f);  // length
    store_u8(ep, 6, 2);     // SMBIOS 2.8
    store_u8(ep, 7, 8);
    store_le16(ep, 8, t.max_structure);
    put_str(ep, 0x10, "_DMI_", 5);
    store_le16(ep, 0x16, static_cast<uint16_t>(t.bytes.size()));
    store_le32(ep, 0x18, table_addr);
    store_le16(ep, 0x1c, t.structures);
    store_u8(ep, 0x1e, 0x28);  // BCD revision 2.8
    // The intermediate checksum covers 0x10..0x1e; the outer one all of it.
    std::span<uint8_t> dmi(ep.data() + 0x10, 0x0f);
    fix_checksum(dmi, 5);
    fix_checksum(ep, 4);
    return ep;
}

std::vector<Blob> smbios_blobs(const SmbiosTable& t) {
    constexpr uint64_t kEp21Offset = 0x20, kTableOffset = 0x40;
    if (t.bytes.size() > kSmbiosEnd - kSmbiosAddr - kTableOffset)
        fail("SMBIOS: the table ({} bytes) does not fit in the BIOS area ({} bytes)", t.bytes.size(),
             kSmbiosEnd - kSmbiosAddr - kTableOffset);
    Blob b{kSmbiosAddr, std::vector<uint8_t>(kTableOffset, 0)};
    auto ep3 = smbios3_entry_point(t, kSmbiosAddr + kTableOffset);
    auto ep21 = smbios21_entry_point(t, static_cast<uint32_t>(kSmbiosAddr + kTableOffset));
    std::copy(ep3.begin(), ep3.end(), b.bytes.begin());
    std::copy(ep21.begin(), ep21.end(), b.bytes.begin() + kEp21Offset);
    b.bytes.insert(b.bytes.end(), t.bytes.begin(), t.bytes.end());
    return {std::move(b)};
}

std::optional<std::array<uint8_t, 16>> parse_uuid(const std::string& s) {
    if (s.size() != 36) return std::nullopt;
    std::array<uint8_t, 16> out{};
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return std::nullopt;
            ++i;
            continue;
        }
        auto nib = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        int hi = nib(s[i]), lo = i + 1 < s.size() ? nib(s[i + 1]) : -1;
        if (hi < 0 || lo < 0 || n >= out.size()) return std::nullopt;
        out[n++] = static_cast<uint8_t>(hi << 4 | lo);
        i += 2;
    }
    if (n != out.size()) return std::nullopt;
    return out;
}

}  // namespace vmm::arch::x86
