#include "arch/x86_64/acpi.h"

#include "arch/x86_64/aml.h"
#include "arch/x86_64/bytes.h"
#include "arch/x86_64/cpu.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

using namespace acpi;

namespace {

constexpr std::string_view kOemId = "VMM";          // 6 bytes, space padded
constexpr std::string_view kCreatorId = "VMM ";     // 4 bytes
constexpr uint32_t kOemRevision = 1;
constexpr uint32_t kCreatorRevision = 1;

// Standard 36-byte description header; the checksum is computed last by
// the caller (fix_checksum) once the body is complete.
std::vector<uint8_t> new_table(std::string_view sig, std::size_t size, uint8_t revision) {
    std::vector<uint8_t> t(size, 0);
    std::span<uint8_t> s(t);
    put_str(s, 0, sig, 4);
    store_le32(s, 4, static_cast<uint32_t>(size));
    store_u8(s, 8, revision);
    put_str(s, 10, kOemId, 6);
    // OEM table ID: "VMM" + signature, so each table is identifiable.
    put_str(s, 16, std::string(kOemId) + std::string(sig), 8);
    store_le32(s, 24, kOemRevision);
    put_str(s, 28, kCreatorId, 4);
    store_le32(s, 32, kCreatorRevision);
    return t;
}

void put_gas(std::span<uint8_t> t, std::size_t off, uint8_t space, uint8_t bit_width,
             uint8_t access_size, uint64_t addr) {
    store_u8(t, off, space);
    store_u8(t, off + 1, bit_width);
    store_u8(t, off + 2, 0);  // bit offset
    store_u8(t, off + 3, access_size);  // 1 byte, 2 word, 3 dword, 4 qword
    store_le64(t, off + 4, addr);
}

void check_ncpus(uint32_t ncpus) {
    if (ncpus == 0 || ncpus > kMaxCpus) {
        fail("acpi: {} vCPUs requested; 1..{} are supported", ncpus, kMaxCpus);
    }
}

}  // namespace

std::vector<uint8_t> build_fadt(const AcpiConfig& cfg) {
    auto t = new_table("FACP", kFadtSize, 6);
    std::span<uint8_t> s(t);
    // FIRMWARE_CTRL / DSDT / X_DSDT are pointers: filled in by layout_acpi().
    store_u8(s, 45, 0);  // Preferred_PM_Profile: unspecified
    store_le16(s, kFadtSciInt, cfg.sci_irq);
    // SMI_CMD = 0 with ACPI_ENABLE/ACPI_DISABLE = 0 declares a machine that
    // is always in ACPI mode: the PM device must report SCI_EN set in
    // PM1_CNT from reset.
    store_le32(s, kFadtSmiCmd, 0);
    const uint32_t pm1_evt = cfg.pm_io_base;
    const uint32_t pm1_cnt = cfg.pm_io_base + 4u;
    const uint32_t pm_tmr = cfg.pm_io_base + 8u;
    store_le32(s, kFadtPm1aEvtBlk, pm1_evt);
    store_le32(s, kFadtPm1aCntBlk, pm1_cnt);
    store_le32(s, kFadtPmTmrBlk, pm_tmr);
    store_u8(s, kFadtPm1EvtLen, 4);
    store_u8(s, kFadtPm1CntLen, 2);
    store_u8(s, kFadtPmTmrLen, 4);
    // Latencies above 100 / 1000 us mean "C2 / C3 not supported": there is
    // no P_BLK, so C1 (HLT) is the only idle state.
    store_le16(s, kFadtPLvl2Lat, 101);
    store_le16(s, kFadtPLvl3Lat, 1001);
    store_u8(s, kFadtCentury, cfg.rtc_century_index);
    store_le16(s, kFadtIapcBootArch, kBootArchLegacyDevices | kBootArch8042);
    store_le32(s, kFadtFlags,
               kFadtWbinvd | kFadtProcC1 | kFadtSlpButton | kFadtTmrValExt | kFadtResetRegSup);
    put_gas(s, kFadtResetReg, kGasSystemIo, 8, 1, cfg.reset_port);
    store_u8(s, kFadtResetValue, cfg.reset_value);
    store_u8(s, kFadtMinorVersion, 0);  // ACPI 6.0
    // The 64-bit GAS forms of the same blocks. PM1 event and control are
    // made of 16-bit registers (status/enable halves), the timer is 32-bit.
    put_gas(s, kFadtXPm1aEvtBlk, kGasSystemIo, 32, 2, pm1_evt);
    put_gas(s, kFadtXPm1aCntBlk, kGasSystemIo, 16, 2, pm1_cnt);
    put_gas(s, kFadtXPmTmrBlk, kGasSystemIo, 32, 3, pm_tmr);
    fix_checksum(s, kChecksumOff);
    return t;
}

std::vector<uint8_t> build_facs() {
    // Required whenever the FADT is not hardware-reduced (it holds the
    // global lock and waking vector). No checksum field.
    std::vector<uint8_t> t(kFacsSize, 0);
    std::span<uint8_t> s(t);
    put_str(s, 0, "FACS", 4);
    store_le32(s, 4, kFacsSize);
    store_le32(s, 8, 0);   // hardware signature
    store_le32(s, 12, 0);  // firmware waking vector: no S3
    store_le32(s, 16, 0);  // global lock
    store_le32(s, 20, 0);  // flags: no S4BIOS, no 64-bit wake
    store_u8(s, 32, 2);    // version
    return t;
}

namespace {

void check_pci(const AcpiConfig& cfg) {
    if (cfg.pci_ecam_base % kPciEcamSize != 0 || cfg.pci_ecam_base + kPciEcamSize < cfg.pci_ecam_base) {
        fail("acpi: PCI ECAM base {:#x} is not 1 MiB aligned", cfg.pci_ecam_base);
    }
    if (cfg.pci_mmio32_start >= cfg.pci_mmio32_end || cfg.pci_mmio32_end > (uint64_t{1} << 32)) {
        fail("acpi: bad 32-bit PCI window [{:#x}, {:#x})", cfg.pci_mmio32_start, cfg.pci_mmio32_end);
    }
    if (cfg.pci_mmio64_size != 0 &&
        (cfg.pci_mmio64_start + cfg.pci_mmio64_size < cfg.pci_mmio64_start || cfg.pci_mmio64_start < (uint64_t{1} << 32))) {
        fail("acpi: bad 64-bit PCI window at {:#x} ({} bytes)", cfg.pci_mmio64_start, cfg.pci_mmio64_size);
    }
}

}  // namespace

// _OSC's first dword (CDW1) error bits, and the control bits granted.
constexpr uint32_t kOscUnknownUuid = 1u << 2;
constexpr uint32_t kOscUnknownRevision = 1u << 3;
constexpr uint32_t kOscMasked = 1u << 4;
constexpr uint32_t kOscControlGranted = 0x1f;

std::vector<uint8_t> build_pci_aml(const AcpiConfig& cfg) {
    check_pci(cfg);
    // The host bridge's decode: bus 0, all I/O ports except the
    // configuration mechanism's 0xCF8..0xCFF, and the two MMIO windows.
    ResourceTemplate crs;
    crs.word_bus_number(kPciBusFirst, kPciBusLast);
    crs.word_io(0x0000, 0x0cf7);
    crs.word_io(0x0d00, 0xffff);
    crs.dword_memory(static_cast<uint32_t>(cfg.pci_mmio32_start), static_cast<uint32_t>(cfg.pci_mmio32_end - 1),
                     false);
    if (cfg.pci_mmio64_size != 0) {
        crs.qword_memory(cfg.pci_mmio64_start, cfg.pci_mmio64_start + cfg.pci_mmio64_size - 1, true);
    }

    // _PRT: Package { Address (slot << 16 | 0xFFFF: any function), Pin
    // (0 = INTA), Source (0: the next field is a GSI), Source Index (GSI) }
    // for every slot but the host bridge's.
    std::vector<Aml> prt;
    for (unsigned slot = 1; slot < 32; ++slot) {
        for (unsigned pin = 0; pin < 4; ++pin) {
            prt.push_back(Aml::package({Aml::dword((slot << 16) | 0xffff), Aml::integer(pin), Aml::zero(),
                                        Aml::integer(pci_intx_gsi(slot, pin))}));
        }
    }

    // _OSC (ACPI 6.2.11, PCI Firmware 4.5): the OS asks to control PCIe
    // features. There is no firmware handler for any of them, so the OS
    // gets all it asks for among native hotplug, SHPC hotplug, PME, AER
    // and the capability structure (control bits 0-4); other bits are
    // masked and CDW1 says so, as are an unknown revision or UUID.
    const Aml cdw1 = Aml::name_string("CDW1"), cdw3 = Aml::name_string("CDW3");
    Aml osc = Aml::method(
        "_OSC", 4, false,
        {
            Aml::create_dword_field(Aml::arg(3), Aml::zero(), "CDW1"),
            Aml::if_then(Aml::lequal(Aml::arg(0), Aml::uuid("33DB4D5B-1FF7-401C-9657-7441C03DD766")),
                         {
                             Aml::create_dword_field(Aml::arg(3), Aml::integer(8), "CDW3"),
                             Aml::store(cdw3, Aml::local(0)),
                             Aml::and_to(Aml::local(0), Aml::integer(kOscControlGranted), cdw3),
                             Aml::if_then(Aml::lnot(Aml::lequal(Aml::arg(1), Aml::one())),
                                          {Aml::or_to(cdw1, Aml::integer(kOscUnknownRevision), cdw1)}),
                             Aml::if_then(Aml::lnot(Aml::lequal(cdw3, Aml::local(0))),
                                          {Aml::or_to(cdw1, Aml::integer(kOscMasked), cdw1)}),
                         }),
            Aml::else_then({Aml::or_to(cdw1, Aml::integer(kOscUnknownUuid), cdw1)}),
            Aml::return_value(Aml::arg(3)),
        });

    Aml pci0 = Aml::device("PCI0", {
                                       Aml::name("_HID", Aml::eisa_id("PNP0A08")),  // PCI Express root
                                       Aml::name("_CID", Aml::eisa_id("PNP0A03")),  // PCI root
                                       // no _ADR: a device has a _HID or an _ADR, not both (ACPI 6.x
                                       // 6.1; iasl warns), and a root bridge is found by its _HID
                                       Aml::name("_SEG", Aml::zero()),
                                       Aml::name("_BBN", Aml::integer(kPciBusFirst)),
                                       Aml::name("_UID", Aml::zero()),
                                       Aml::name("_CRS", crs.to_aml()),
                                       Aml::name("_PRT", Aml::package(prt)),
                                       osc,
                                   });

    // Motherboard resources: the configuration ports (outside PCI0's I/O
    // ranges) and the ECAM, so the OS knows both are in use.
    ResourceTemplate mb;
    mb.io(0x0cf8, 0x0cf8, 1, 8);
    if (cfg.pci_ecam_base + kPciEcamSize <= (uint64_t{1} << 32)) {
        mb.memory32_fixed(static_cast<uint32_t>(cfg.pci_ecam_base), static_cast<uint32_t>(kPciEcamSize));
    }
    Aml mres = Aml::device("MRES", {
                                       Aml::name("_HID", Aml::eisa_id("PNP0C02")),
                                       Aml::name("_UID", Aml::one()),
                                       Aml::name("_CRS", mb.to_aml()),
                                   });
    return Aml::scope("\\_SB", {pci0, mres}).bytes();
}

std::vector<uint8_t> build_mcfg(const AcpiConfig& cfg) {
    check_pci(cfg);
    auto t = new_table("MCFG", kMcfgAllocOff + kMcfgAllocSize, 1);
    std::span<uint8_t> s(t);
    // One allocation: segment 0, buses kPciBusFirst..kPciBusLast.
    store_le64(s, kMcfgAllocOff, cfg.pci_ecam_base);
    store_le16(s, kMcfgAllocOff + 8, 0);
    store_u8(s, kMcfgAllocOff + 10, kPciBusFirst);
    store_u8(s, kMcfgAllocOff + 11, kPciBusLast);
    fix_checksum(s, kChecksumOff);
    return t;
}

std::vector<uint8_t> build_waet() {
    auto t = new_table("WAET", kHeaderSize + 4, 1);
    // Bit 0: the RTC needs no "enlightened" access; bit 1: the ACPI PM timer
    // reads are reliable (one read, no repeat to catch a torn value).
    store_le32(t, kHeaderSize, (1u << 0) | (1u << 1));
    fix_checksum(t, kChecksumOff);
    return t;
}

std::vector<uint8_t> build_spcr(const AcpiConfig& cfg) {
    auto t = new_table("SPCR", 80, 2);
    std::span<uint8_t> s(t);
    store_u8(s, 36, 0);  // interface type: full 16550
    // Base address, a Generic Address Structure: system I/O, 8-bit
    // register width, byte access.
    store_u8(s, 40, 1);
    store_u8(s, 41, 8);
    store_u8(s, 42, 0);
    store_u8(s, 43, 1);
    store_le64(s, 44, cfg.serial_port);
    store_u8(s, 52, (1 << 0) | (1 << 1));  // interrupt type: PC-AT (8259) IRQ and IOAPIC GSI
    store_u8(s, 53, cfg.serial_irq);
    store_le32(s, 54, cfg.serial_irq);  // global system interrupt
    store_u8(s, 58, 7);                 // 115200 baud
    store_u8(s, 59, 0);                 // no parity
    store_u8(s, 60, 1);                 // one stop bit
    store_u8(s, 61, 0);                 // no flow control
    store_u8(s, 62, 0);                 // terminal: VT100
    store_le16(s, 64, 0xffff);          // not a PCI device
    store_le16(s, 66, 0xffff);
    fix_checksum(s, kChecksumOff);
    return t;
}

std::vector<uint8_t> build_dsdt(const AcpiConfig& cfg) {
    // \_S5: the SLP_TYP values OSPM writes to PM1a_CNT / PM1b_CNT to power
    // off; the last two elements are reserved.
    Aml body = Aml::name("_S5_", Aml::package({Aml::integer(cfg.s5_sleep_type),
                                               Aml::integer(cfg.s5_sleep_type), Aml::zero(),
                                               Aml::zero()}));
    // One processor device per vCPU, its _UID the ACPI processor UID of
    // the vCPU's MADT entry: Windows looks for these (ACPI 6.x: the
    // Processor() object is deprecated for ACPI0007 devices), Linux binds
    // its processor driver to them.
    std::vector<Aml> cpus;
    for (uint32_t i = 0; i < cfg.ncpus; ++i)
        cpus.push_back(Aml::device(fmt::format("C{:03X}", i), {Aml::name("_HID", Aml::string("ACPI0007")),
                                                             Aml::name("_UID", Aml::integer(i))}));
    // The CMOS RTC, with the IRQ its alarm and periodic interrupts use;
    // in the processors' scope to keep the PCI scope last.
    if (cfg.rtc_port) {
        ResourceTemplate rtc;
        rtc.io(cfg.rtc_port, cfg.rtc_port, 1, 2);
        rtc.irq_no_flags(cfg.rtc_irq);
        cpus.push_back(Aml::device("RTC_", {Aml::name("_HID", Aml::eisa_id("PNP0B00")),
                                            Aml::name("_CRS", rtc.to_aml())}));
    }
    body.append(Aml::scope("\\_SB", cpus));
    if (cfg.pci) body.append(Aml(build_pci_aml(cfg)));
    if (cfg.pvpanic_port) {
        ResourceTemplate io;
        io.io(cfg.pvpanic_port, cfg.pvpanic_port, 1, 1);
        body.append(Aml::scope("\\_SB", {Aml::device("PEVT", {
                                                          Aml::name("_HID", Aml::string("QEMU0001")),
                                                          Aml::name("_UID", Aml::zero()),
                                                          Aml::name("_CRS", io.to_aml()),
                                                          Aml::name("_STA", Aml::integer(0xf)),
                                                      })}));
    }
    // Revision 2: integers are 64-bit in this definition block.
    auto t = new_table("DSDT", kHeaderSize + body.size(), 2);
    std::copy(body.bytes().begin(), body.bytes().end(), t.begin() + kHeaderSize);
    fix_checksum(t, kChecksumOff);
    return t;
}

std::vector<uint8_t> build_madt(const AcpiConfig& cfg) {
    check_ncpus(cfg.ncpus);
    constexpr std::size_t kLapicLen = 8, kIoapicLen = 12, kIsoLen = 10, kNmiLen = 6;
    const std::size_t size = kHeaderSize + 8 + cfg.ncpus * kLapicLen + kIoapicLen + kIsoLen + kNmiLen;
    auto t = new_table("APIC", size, 4);
    std::span<uint8_t> s(t);
    store_le32(s, 36, static_cast<uint32_t>(kLapicAddr));
    // PCAT_COMPAT: dual 8259s are present too (the OS must mask them).
    store_le32(s, 40, kMadtPcatCompat);
    std::size_t off = kHeaderSize + 8;
    for (uint32_t i = 0; i < cfg.ncpus; ++i) {
        store_u8(s, off, kMadtLocalApic);
        store_u8(s, off + 1, kLapicLen);
        store_u8(s, off + 2, static_cast<uint8_t>(i));  // ACPI processor UID
        store_u8(s, off + 3, static_cast<uint8_t>(i));  // APIC ID
        store_le32(s, off + 4, 1);                      // enabled
        off += kLapicLen;
    }
    store_u8(s, off, kMadtIoApic);
    store_u8(s, off + 1, kIoapicLen);
    store_u8(s, off + 2, static_cast<uint8_t>(cfg.ncpus));  // IOAPIC ID after the LAPIC IDs
    store_u8(s, off + 3, 0);
    store_le32(s, off + 4, static_cast<uint32_t>(kIoapicAddr));
    store_le32(s, off + 8, 0);  // GSI base
    off += kIoapicLen;

    // The SCI is level-triggered; ISA IRQs default to edge, so say so.
    // Flags: polarity [1:0] = 01 active high, trigger [3:2] = 11 level.
    store_u8(s, off, kMadtIntSrcOverride);
    store_u8(s, off + 1, kIsoLen);
    store_u8(s, off + 2, 0);  // bus: ISA
    store_u8(s, off + 3, cfg.sci_irq);
    store_le32(s, off + 4, cfg.sci_irq);
    store_le16(s, off + 8, 0x1 | (0x3 << 2));
    off += kIsoLen;

    store_u8(s, off, kMadtLocalApicNmi);
    store_u8(s, off + 1, kNmiLen);
    store_u8(s, off + 2, 0xff);  // all processors
    store_le16(s, off + 3, 0);   // conforming polarity/trigger
    store_u8(s, off + 5, 1);     // LINT1
    off += kNmiLen;
    if (off != size) fail("internal: MADT size mismatch ({} != {})", off, size);
    fix_checksum(s, kChecksumOff);
    return t;
}

AcpiTableSet generate_acpi_tables(const AcpiConfig& cfg) {
    check_ncpus(cfg.ncpus);
    AcpiTableSet t;
    t.fadt = build_fadt(cfg);
    t.facs = build_facs();
    t.dsdt = build_dsdt(cfg);
    t.others.push_back(build_madt(cfg));
    if (cfg.pci) t.others.push_back(build_mcfg(cfg));
    t.others.push_back(build_waet());
    if (cfg.serial_port) t.others.push_back(build_spcr(cfg));
    return t;
}

void set_fadt_pointers(std::span<uint8_t> fadt, uint64_t facs, uint64_t dsdt) {
    if (facs > UINT32_MAX || dsdt > UINT32_MAX) fail("acpi: FACS/DSDT at {:#x}/{:#x} above 4 GiB", facs, dsdt);
    store_le32(fadt, kFadtFirmwareCtrl, static_cast<uint32_t>(facs));
    // X_FIRMWARE_CTRL must stay zero when FIRMWARE_CTRL is used.
    store_le64(fadt, kFadtXFirmwareCtrl, 0);
    store_le32(fadt, kFadtDsdt, static_cast<uint32_t>(dsdt));
    store_le64(fadt, kFadtXDsdt, dsdt);
    fix_checksum(fadt, kChecksumOff);
}

// RSDT (32-bit entries, for ACPI 1.0 guests) and XSDT (64-bit).
std::vector<uint8_t> build_rsdt(std::span<const uint64_t> entries) {
    auto rsdt = new_table("RSDT", kHeaderSize + 4 * entries.size(), 1);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i] > UINT32_MAX) fail("acpi: RSDT entry {:#x} above 4 GiB", entries[i]);
        store_le32(rsdt, kHeaderSize + 4 * i, static_cast<uint32_t>(entries[i]));
    }
    fix_checksum(rsdt, kChecksumOff);
    return rsdt;
}

std::vector<uint8_t> build_xsdt(std::span<const uint64_t> entries) {
    auto xsdt = new_table("XSDT", kHeaderSize + 8 * entries.size(), 1);
    for (std::size_t i = 0; i < entries.size(); ++i) store_le64(xsdt, kHeaderSize + 8 * i, entries[i]);
    fix_checksum(xsdt, kChecksumOff);
    return xsdt;
}

std::vector<uint8_t> build_rsdp(uint64_t rsdt, uint64_t xsdt) {
    if (rsdt > UINT32_MAX) fail("acpi: RSDT at {:#x} above 4 GiB", rsdt);
    std::vector<uint8_t> rsdp(kRsdpSize, 0);
    put_str(rsdp, 0, "RSD PTR ", 8);
    put_str(rsdp, 9, kOemId, 6);
    store_u8(rsdp, 15, 2);  // revision 2: ACPI 2.0+ with XSDT
    store_le32(rsdp, kRsdpRsdtOff, static_cast<uint32_t>(rsdt));
    store_le32(rsdp, 20, kRsdpSize);
    store_le64(rsdp, kRsdpXsdtOff, xsdt);
    // The first checksum covers the ACPI 1.0 part (bytes 0..19) and must be
    // fixed before the extended one, which covers all 36 bytes.
    fix_checksum(std::span<uint8_t>(rsdp).subspan(0, kRsdpV1Size), kRsdpChecksumOff);
    fix_checksum(rsdp, kRsdpExtChecksumOff);
    return rsdp;
}

AcpiTables layout_acpi(const AcpiTableSet& tables, uint64_t base) {
    if (base % 16 != 0) fail("acpi: RSDP address {:#x} is not 16-byte aligned", base);
    if (base >= (uint64_t{1} << 32)) fail("acpi: tables at {:#x} must lie below 4 GiB", base);
    const std::size_t nentries = 1 + tables.others.size();  // FADT + others
    const std::size_t rsdt_size = kHeaderSize + 4 * nentries;
    const std::size_t xsdt_size = kHeaderSize + 8 * nentries;

    // Assign addresses: 16-byte alignment for every table, 64 for the FACS
    // as the spec requires.
    uint64_t cur = base;
    auto place = [&](std::size_t size, uint64_t align) {
        cur = align_up(cur, align);
        const uint64_t at = cur;
        cur += size;
        return at;
    };
    const uint64_t rsdp_at = place(kRsdpSize, 16);
    const uint64_t rsdt_at = place(rsdt_size, 16);
    const uint64_t xsdt_at = place(xsdt_size, 16);
    const uint64_t fadt_at = place(tables.fadt.size(), 16);
    const uint64_t facs_at = place(tables.facs.size(), 64);
    const uint64_t dsdt_at = place(tables.dsdt.size(), 16);
    std::vector<uint64_t> other_at;
    for (const auto& o : tables.others) other_at.push_back(place(o.size(), 16));
    const uint64_t end = cur;
    if (base < kMpTableAddr && end > kMpTableAddr) {
        fail("acpi: tables need {} bytes from {:#x} and would overlap the MP table at {:#x}", end - base, base,
             kMpTableAddr);
    }
    if (base < kHighMemStart && end > kHighMemStart) {
        fail("acpi: tables need {} bytes from {:#x} and cross 1 MiB (end {:#x})", end - base, base,
             end);
    }
    if (end > (uint64_t{1} << 32)) fail("acpi: tables at {:#x} must end below 4 GiB", base);

    std::vector<uint8_t> fadt = tables.fadt;
    set_fadt_pointers(fadt, facs_at, dsdt_at);
    std::vector<uint64_t> entries{fadt_at};
    entries.insert(entries.end(), other_at.begin(), other_at.end());
    auto rsdt = build_rsdt(entries);
    auto xsdt = build_xsdt(entries);
    auto rsdp = build_rsdp(rsdt_at, xsdt_at);

    AcpiTables out;
    out.rsdp_gpa = rsdp_at;
    out.blobs.push_back({rsdp_at, std::move(rsdp)});
    out.blobs.push_back({rsdt_at, std::move(rsdt)});
    out.blobs.push_back({xsdt_at, std::move(xsdt)});
    out.blobs.push_back({fadt_at, std::move(fadt)});
    out.blobs.push_back({facs_at, tables.facs});
    out.blobs.push_back({dsdt_at, tables.dsdt});
    for (std::size_t i = 0; i < tables.others.size(); ++i) {
        out.blobs.push_back({other_at[i], tables.others[i]});
    }
    return out;
}

AcpiTables build_acpi(const AcpiConfig& cfg, uint64_t base) {
    return layout_acpi(generate_acpi_tables(cfg), base);
}

}  // namespace vmm::arch::x86
