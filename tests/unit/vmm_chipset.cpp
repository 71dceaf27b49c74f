// What the chipset tells the ACPI and SMBIOS builders about the platform:
// the fixed ports, the address map of the machine shape in use, and the
// user's --smbios strings over the defaults.
#include <catch2/catch.hpp>

#include "vmm/chipset.h"
#include "vmm/platform.h"

namespace x86 = vmm::arch::x86;

TEST_CASE("chipset: the ACPI description follows the layout and pvpanic", "[vmm][chipset]") {
    for (bool firmware : {false, true}) {
        INFO("firmware " << firmware);
        vmm::VmConfig cfg;
        cfg.cpus = 3;
        cfg.memory = 8ull << 30;
        cfg.pvpanic = !firmware;
        if (firmware) cfg.firmware = "bios";
        auto layout = x86::platform_layout(cfg.memory, firmware);
        auto a = vmm::acpi_config(cfg, layout);
        CHECK(a.ncpus == 3);
        CHECK(a.pm_io_base == vmm::platform::kAcpiPmPort);
        CHECK(a.sci_irq == vmm::platform::kAcpiSciIrq);
        CHECK(a.reset_port == 0xcf9);
        CHECK(a.serial_port == 0x3f8);
        CHECK(a.pvpanic_port == (firmware ? 0 : vmm::platform::kPvPanicPort));
        CHECK(a.pci_ecam_base == layout.ecam_base);
        CHECK(a.pci_mmio32_start == layout.pci_mmio32.start);
        CHECK(a.pci_mmio32_end == layout.pci_mmio32.end());
        CHECK(a.pci_mmio64_start == layout.pci_mmio64.start);
        CHECK(a.pci_mmio64_size == layout.pci_mmio64.size);
    }
}

TEST_CASE("chipset: SMBIOS takes the CPU signature, the RAM map and the user's strings", "[vmm][chipset]") {
    vmm::VmConfig cfg;
    cfg.cpus = 2;
    cfg.memory = 1ull << 30;
    auto layout = x86::platform_layout(cfg.memory, false);
    std::vector<kvm_cpuid_entry2> cpuid(3);
    cpuid[0].function = 0;
    cpuid[0].eax = 0xd;
    cpuid[1].function = 1;
    cpuid[1].eax = 0x000806f8;
    cpuid[1].edx = 0x0789abcd;
    cpuid[2].function = 1;  // another index of leaf 1 must not win
    cpuid[2].index = 1;
    cpuid[2].eax = 0xdead;

    auto s = vmm::smbios_config(cfg, layout, cpuid);
    CHECK(s.cpus == 2);
    CHECK(s.cpuid_signature == 0x000806f8);
    CHECK(s.cpuid_features == 0x0789abcd);
    CHECK(s.ram.size() == layout.ram.size());
    CHECK_FALSE(s.uuid);
    CHECK(s.strings.bios);  // direct boot: nothing else describes the BIOS
    CHECK(s.strings.product == "KVM Virtual Machine");

    cfg.firmware = "uefi";
    cfg.uuid = "00112233-4455-6677-8899-aabbccddeeff";
    vmm::SmbiosTypeConfig t1;
    t1.type = 1;
    t1.product = "CI runner";
    t1.serial = "S-1";
    vmm::SmbiosTypeConfig t3;
    t3.type = 3;
    t3.asset = "A-7";
    cfg.smbios = {t1, t3};
    s = vmm::smbios_config(cfg, layout, cpuid);
    CHECK_FALSE(s.strings.bios);  // the firmware adds its own type 0
    CHECK(s.strings.product == "CI runner");
    CHECK(s.strings.serial == "S-1");
    CHECK(s.strings.manufacturer == "vmm");  // not given: the default stays
    CHECK(s.strings.chassis_asset == "A-7");
    REQUIRE(s.uuid);
    CHECK((*s.uuid)[0] == 0x00);
    CHECK((*s.uuid)[15] == 0xff);

    vmm::SmbiosTypeConfig t0;
    t0.type = 0;
    t0.vendor = "Example BIOS";
    cfg.smbios.push_back(t0);
    s = vmm::smbios_config(cfg, layout, cpuid);
    CHECK(s.strings.bios);  // a user's type 0 makes one under firmware too
    CHECK(s.strings.bios_vendor == "Example BIOS");
    CHECK(s.strings.bios_version == "1.0");
}
