// How the guest starts: the seam between the machine (memory, chipset,
// devices, vCPUs) and what runs first. Two sources exist:
//   - direct kernel boot (vmm/direct_boot.cpp): the VMM loads a bzImage or
//     PVH ELF, writes boot_params/start info, ACPI, MP and SMBIOS tables into RAM and
//     starts the boot vCPU at the kernel's 64-bit or PVH entry;
//   - firmware boot (vmm/firmware_boot.cpp): the VMM maps a BIOS/UEFI image
//     below 4 GiB, hands the firmware the memory map, ACPI and SMBIOS tables through
//     fw_cfg, and the boot vCPU starts at the reset vector.
// The Machine builds memory and devices first, then calls load(), then
// creates the vCPUs and calls setup_boot_cpu() on vCPU 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/fw_cfg_files.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/smbios.h"
#include "vmm/config.h"
#include "vmm/core/bus.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/exit_control.h"

namespace vmm {

// What a boot source may use while the VM is built.
struct BootContext {
    const VmConfig& cfg;
    Vm& vm;
    const GuestMemory& mem;
    const arch::x86::PlatformLayout& layout;
    const arch::x86::AcpiConfig& acpi;  // the platform as the ACPI tables describe it
    const arch::x86::SmbiosConfig& smbios;  // what the SMBIOS tables say about the machine
    const std::vector<arch::x86::BootDevice>& boot_devices;  // bootindex= devices, for the firmware
    Bus& pio;
    Bus& mmio;
    uint32_t first_free_memslot;  // KVM memory slots from here on are the boot source's
    ExitControl& exit;
};

class BootSource {
public:
    virtual ~BootSource() = default;
    // Puts images and tables in place; throws vmm::Error with a message
    // naming the option at fault.
    virtual void load(BootContext& ctx) = 0;
    // The boot vCPU's entry state (after CPUID, MSRs and LAPIC are set).
    // Application processors always wait for INIT/SIPI.
    virtual void setup_boot_cpu(Vcpu& bsp) = 0;
};

std::unique_ptr<BootSource> make_direct_kernel_boot();
std::unique_ptr<BootSource> make_firmware_boot();

}  // namespace vmm
