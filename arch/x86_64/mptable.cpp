#include "arch/x86_64/mptable.h"

#include <algorithm>

#include "arch/x86_64/bytes.h"
#include "arch/x86_64/cpu.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

namespace {

using namespace mp;

constexpr uint8_t kIsaBusId = 0;
constexpr uint8_t kAllLapics = 0xff;  // destination "every local APIC"
constexpr uint8_t kCpuEnabled = 1 << 0;
constexpr uint8_t kCpuBsp = 1 << 1;
constexpr uint8_t kIoapicEnabled = 1 << 0;

// Number of fixed (non-processor) entries: bus, IOAPIC, 16 I/O interrupts,
// 2 local interrupts.
constexpr std::size_t kFixedEntries = 1 + 1 + kIsaIrqs + 2;

std::size_t table_size(uint32_t ncpus) {
    return kFloatingSize + kHeaderSize + ncpus * kProcessorEntrySize + kFixedEntries * kEntrySize;
}

}  // namespace

uint32_t mptable_max_cpus() {
    const std::size_t room = kMpTableEnd - kMpTableAddr;
    const std::size_t fixed = table_size(0);
    return static_cast<uint32_t>(std::min<std::size_t>((room - fixed) / kProcessorEntrySize, kMaxCpus));
}

Blob build_mptable(uint32_t ncpus) {
    if (ncpus == 0 || ncpus > kMaxCpus) {
        fail("mptable: {} vCPUs requested; 1..{} are supported", ncpus, kMaxCpus);
    }
    const std::size_t size = table_size(ncpus);
    if (kMpTableAddr + size > kMpTableEnd) {
        fail("mptable: {} vCPUs need {} bytes but the BIOS area has room for {} ({} vCPUs)", ncpus, size,
             kMpTableEnd - kMpTableAddr, mptable_max_cpus());
    }
    std::vector<uint8_t> buf(size, 0);
    std::span<uint8_t> all(buf);
    const uint64_t config_addr = kMpTableAddr + kFloatingSize;
    const uint8_t ioapic_id = static_cast<uint8_t>(ncpus);

    // Floating pointer structure.
    std::span<uint8_t> fp = all.subspan(0, kFloatingSize);
    put_str(fp, 0, "_MP_", 4);
    store_le32(fp, 4, static_cast<uint32_t>(config_addr));
    store_u8(fp, 8, 1);  // length in 16-byte paragraphs
    store_u8(fp, 9, kSpecRev);
    // 11: feature byte 1 = 0: a configuration table is present (no default
    // configuration). 12: bit 7 IMCRP = 0: virtual wire mode, no IMCR.
    fix_checksum(fp, 10);

    // Configuration table: header, then entries in the order the spec
    // recommends (processors, buses, IOAPICs, I/O ints, local ints).
    std::span<uint8_t> ct = all.subspan(kFloatingSize);
    std::size_t off = kHeaderSize;
    uint16_t count = 0;
    for (uint32_t i = 0; i < ncpus; ++i) {
        store_u8(ct, off, kEntryProcessor);
        store_u8(ct, off + 1, static_cast<uint8_t>(i));  // local APIC ID
        store_u8(ct, off + 2, kLapicVersion);
        store_u8(ct, off + 3, kCpuEnabled | (i == 0 ? kCpuBsp : 0));
        // CPU signature: family 6 (stepping/model 0); feature flags: FPU
        // (bit 0) and APIC (bit 9). Informational only; guests use CPUID.
        store_le32(ct, off + 4, 0x600);
        store_le32(ct, off + 8, (1u << 0) | (1u << 9));
        off += kProcessorEntrySize;
        ++count;
    }
    store_u8(ct, off, kEntryBus);
    store_u8(ct, off + 1, kIsaBusId);
    put_str(ct, off + 2, "ISA", 6);
    off += kEntrySize;
    ++count;

    store_u8(ct, off, kEntryIoapic);
    store_u8(ct, off + 1, ioapic_id);
    store_u8(ct, off + 2, kIoapicVersion);
    store_u8(ct, off + 3, kIoapicEnabled);
    store_le32(ct, off + 4, static_cast<uint32_t>(kIoapicAddr));
    off += kEntrySize;
    ++count;

    // ISA IRQ n is wired to IOAPIC pin n, matching KVM's default GSI
    // routing for the in-kernel IOAPIC. Flags 0: polarity and trigger
    // conform to the bus (ISA: edge, active high).
    for (int irq = 0; irq < kIsaIrqs; ++irq) {
        store_u8(ct, off, kEntryIoInterrupt);
        store_u8(ct, off + 1, kIntTypeInt);
        store_le16(ct, off + 2, 0);
        store_u8(ct, off + 4, kIsaBusId);
        store_u8(ct, off + 5, static_cast<uint8_t>(irq));
        store_u8(ct, off + 6, ioapic_id);
        store_u8(ct, off + 7, static_cast<uint8_t>(irq));
        off += kEntrySize;
        ++count;
    }
    const struct {
        uint8_t type;
        uint8_t lint;
    } locals[] = {{kIntTypeExtInt, 0}, {kIntTypeNmi, 1}};
    for (const auto& l : locals) {
        store_u8(ct, off, kEntryLocalInterrupt);
        store_u8(ct, off + 1, l.type);
        store_le16(ct, off + 2, 0);
        store_u8(ct, off + 4, kIsaBusId);
        store_u8(ct, off + 5, 0);
        store_u8(ct, off + 6, kAllLapics);
        store_u8(ct, off + 7, l.lint);
        off += kEntrySize;
        ++count;
    }
    if (off != ct.size()) fail("internal: mptable size mismatch ({} != {})", off, ct.size());

    put_str(ct, 0, "PCMP", 4);
    store_le16(ct, 4, static_cast<uint16_t>(ct.size()));  // base table length
    store_u8(ct, 6, kSpecRev);
    put_str(ct, 8, "VMM", 8);        // OEM ID
    put_str(ct, 16, "X86 VM", 12);   // product ID
    store_le32(ct, 28, 0);           // no OEM table
    store_le16(ct, 32, 0);
    store_le16(ct, 34, count);
    store_le32(ct, 36, static_cast<uint32_t>(kLapicAddr));
    store_le16(ct, 40, 0);  // no extended entries
    store_u8(ct, 42, 0);
    fix_checksum(ct, 7);

    return {kMpTableAddr, std::move(buf)};
}

}  // namespace vmm::arch::x86
