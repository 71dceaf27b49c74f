#include "arch/x86_64/fw_cfg_files.h"

#include "arch/x86_64/bytes.h"

#include <algorithm>

#include <fmt/format.h>

namespace vmm::arch::x86 {

using namespace acpi;
using namespace table_loader;

namespace {

class LoaderScript {
public:
    void allocate(std::string_view file, uint32_t align, uint8_t zone) {
        auto c = next(kAllocate);
        put_str(c, kAllocFile, file, kNameSize, 0);
        store_le32(c, kAllocAlign, align);
        store_u8(c, kAllocZone, zone);
    }
    void add_pointer(std::string_view dest, std::string_view src, std::size_t offset, uint8_t size) {
        auto c = next(kAddPointer);
        put_str(c, kPointerDest, dest, kNameSize, 0);
        put_str(c, kPointerSrc, src, kNameSize, 0);
        store_le32(c, kPointerOffset, static_cast<uint32_t>(offset));
        store_u8(c, kPointerSize, size);
    }
    void add_checksum(std::string_view file, std::size_t result, std::size_t start, std::size_t length) {
        auto c = next(kAddChecksum);
        put_str(c, kChecksumFile, file, kNameSize, 0);
        store_le32(c, kChecksumResult, static_cast<uint32_t>(result));
        store_le32(c, kChecksumStart, static_cast<uint32_t>(start));
        store_le32(c, kChecksumLength, static_cast<uint32_t>(length));
    }
    std::vector<uint8_t> take() { return std::move(bytes_); }

private:
    std::span<uint8_t> next(uint32_t command) {
        bytes_.resize(bytes_.size() + kCommandSize, 0);
        auto c = std::span<uint8_t>(bytes_).last(kCommandSize);
        store_le32(c, 0, command);
        return c;
    }
    std::vector<uint8_t> bytes_;
};

// etc/acpi/tables under construction; records where each table starts.
struct TablesFile {
    std::vector<uint8_t> bytes;
    std::size_t append(std::span<const uint8_t> t) {
        const std::size_t at = bytes.size();
        bytes.insert(bytes.end(), t.begin(), t.end());
        return at;
    }
};

}  // namespace

std::vector<FwCfgFile> acpi_loader_files(const AcpiTableSet& t) {
    TablesFile f;
    // First, so that the file's 64-byte alignment is the FACS's.
    const std::size_t facs = f.append(t.facs);
    const std::size_t dsdt = f.append(t.dsdt);
    std::vector<uint8_t> fadt_bytes = t.fadt;
    set_fadt_pointers(fadt_bytes, facs, dsdt);
    const std::size_t fadt = f.append(fadt_bytes);
    std::vector<uint64_t> entries{fadt};
    for (const auto& o : t.others) entries.push_back(f.append(o));
    const std::size_t rsdt = f.append(build_rsdt(entries));
    const std::size_t xsdt = f.append(build_xsdt(entries));
    std::vector<uint8_t> rsdp = build_rsdp(rsdt, xsdt);

    LoaderScript s;
    s.allocate(kFwCfgAcpiTables, 64, kZoneHigh);
    s.allocate(kFwCfgAcpiRsdp, 16, kZoneFseg);
    // Checksum fields start at 0 so that firmware that computes the sum
    // including the field and firmware that subtracts agree.
    auto checksum = [&](std::size_t at, std::size_t len) {
        store_u8(f.bytes, at + kChecksumOff, 0);
        s.add_checksum(kFwCfgAcpiTables, at + kChecksumOff, at, len);
    };
    auto pointer = [&](std::size_t field, uint8_t size) {
        s.add_pointer(kFwCfgAcpiTables, kFwCfgAcpiTables, field, size);
    };
    checksum(dsdt, t.dsdt.size());
    pointer(fadt + kFadtFirmwareCtrl, 4);
    pointer(fadt + kFadtDsdt, 4);
    pointer(fadt + kFadtXDsdt, 8);
    checksum(fadt, t.fadt.size());
    for (std::size_t i = 0; i < t.others.size(); ++i) checksum(entries[i + 1], t.others[i].size());
    for (std::size_t i = 0; i < entries.size(); ++i) pointer(rsdt + kHeaderSize + 4 * i, 4);
    checksum(rsdt, xsdt - rsdt);
    for (std::size_t i = 0; i < entries.size(); ++i) pointer(xsdt + kHeaderSize + 8 * i, 8);
    checksum(xsdt, f.bytes.size() - xsdt);

    s.add_pointer(kFwCfgAcpiRsdp, kFwCfgAcpiTables, kRsdpRsdtOff, 4);
    s.add_pointer(kFwCfgAcpiRsdp, kFwCfgAcpiTables, kRsdpXsdtOff, 8);
    store_u8(rsdp, kRsdpChecksumOff, 0);
    store_u8(rsdp, kRsdpExtChecksumOff, 0);
    // The 1.0 checksum first: the extended one covers it.
    s.add_checksum(kFwCfgAcpiRsdp, kRsdpChecksumOff, 0, kRsdpV1Size);
    s.add_checksum(kFwCfgAcpiRsdp, kRsdpExtChecksumOff, 0, kRsdpSize);

    std::vector<FwCfgFile> out;
    out.push_back({kFwCfgAcpiTables, std::move(f.bytes)});
    out.push_back({kFwCfgAcpiRsdp, std::move(rsdp)});
    out.push_back({kFwCfgTableLoader, s.take()});
    return out;
}

std::vector<uint8_t> fw_cfg_e820(std::span<const E820Entry> entries) {
    constexpr std::size_t kEntrySize = 20;
    std::vector<uint8_t> out(entries.size() * kEntrySize, 0);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        store_le64(out, i * kEntrySize, entries[i].addr);
        store_le64(out, i * kEntrySize + 8, entries[i].size);
        store_le32(out, i * kEntrySize + 16, entries[i].type);
    }
    return out;
}

std::vector<uint8_t> fw_cfg_bootorder(std::vector<BootDevice> devices) {
    std::stable_sort(devices.begin(), devices.end(),
                     [](const BootDevice& a, const BootDevice& b) { return a.index < b.index; });
    std::string text;
    for (const BootDevice& d : devices) {
        switch (d.kind) {
            case BootDevice::Kind::VirtioBlk: text += fmt::format("/pci@i0cf8/scsi@{:x}/disk@0,0\n", d.slot); break;
            case BootDevice::Kind::VirtioScsiLun:
                text += fmt::format("/pci@i0cf8/scsi@{:x}/channel@0/disk@0,{:x}\n", d.slot, d.lun);
                break;
            case BootDevice::Kind::VirtioNet: text += fmt::format("/pci@i0cf8/ethernet@{:x}\n", d.slot); break;
        }
    }
    return {text.begin(), text.end()};
}

std::vector<FwCfgFile> smbios_files(const SmbiosTable& t) {
    return {{kFwCfgSmbiosTables, t.bytes}, {kFwCfgSmbiosAnchor, smbios3_entry_point(t, 0)}};
}

}  // namespace vmm::arch::x86
