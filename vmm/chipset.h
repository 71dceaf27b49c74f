// The platform every VM has, whatever boots it and whatever devices the
// user adds: the PC legacy devices (COM1, i8042, CMOS/RTC, ACPI PM block,
// reset register, pvpanic, boot progress port) and the PCI root complex
// (host bridge, or under firmware a Q35 MCH with an ICH9 LPC bridge; the
// ECAM and BAR decode windows; MSI routing). The port numbers are in
// vmm/platform.h, the address map in arch/x86_64/layout.h.
//
// Also here: what the ACPI and SMBIOS tables say about this platform, for
// the boot source to place (direct boot) or hand to the firmware.
#pragma once

#include <linux/kvm.h>

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/smbios.h"
#include "vmm/config.h"
#include "vmm/core/bus.h"
#include "vmm/core/fd.h"
#include "vmm/core/kvm.h"
#include "vmm/exit_control.h"

namespace vmm {

namespace devices {
class Serial8250;
class AcpiPm;
class Cmos;
namespace pci {
class PciBus;
}
}  // namespace devices
class MsiRouter;
class ConsoleSocket;

class Chipset {
public:
    // The ICH9 LPC bridge's slot under firmware (00:1f.0, as on Q35).
    static constexpr unsigned kLpcSlot = 31;

    // Puts every platform device on `pio`/`mmio`. `serial_out` receives
    // COM1's output unless --serial socket= (then the socket does). Guest
    // resets, power-off and panics become exit requests on `exit`.
    Chipset(const VmConfig& cfg, Vm& vm, const arch::x86::PlatformLayout& layout, Bus& pio, Bus& mmio,
            ExitControl& exit, std::function<void(std::span<const uint8_t>)> serial_out);
    ~Chipset();
    Chipset(const Chipset&) = delete;
    Chipset& operator=(const Chipset&) = delete;

    devices::pci::PciBus& pci() { return *pci_; }
    MsiRouter& msi() { return *msi_; }
    devices::Serial8250& serial() { return *serial_; }
    ConsoleSocket* serial_socket() { return serial_sock_.get(); }  // --serial socket=, else null
    devices::AcpiPm& acpi_pm() { return *acpi_pm_; }
    // The RTC's timer (a timerfd, readable when due) for the main event
    // loop, and what the loop calls when it is.
    int rtc_timer_fd() const { return rtc_timer_.get(); }
    void rtc_timer_fired();

private:
    void add_legacy_devices(const VmConfig& cfg, Vm& vm, Bus& pio, ExitControl& exit,
                            std::function<void(std::span<const uint8_t>)> serial_out);
    void add_pci(Vm& vm, Bus& pio, Bus& mmio);

    const arch::x86::PlatformLayout& layout_;
    bool firmware_;
    std::unique_ptr<ConsoleSocket> serial_sock_;
    std::shared_ptr<devices::Serial8250> serial_;
    std::shared_ptr<devices::AcpiPm> acpi_pm_;
    std::shared_ptr<devices::Cmos> rtc_;
    Fd rtc_timer_;
    std::shared_ptr<BusDevice> reset_;
    std::unique_ptr<MsiRouter> msi_;
    std::shared_ptr<devices::pci::PciBus> pci_;
};

// The platform as the ACPI tables describe it.
arch::x86::AcpiConfig acpi_config(const VmConfig& cfg, const arch::x86::PlatformLayout& layout);

// What the SMBIOS tables say: the VMM's defaults, then the user's --smbios
// strings and --uuid. `cpuid` is KVM_GET_SUPPORTED_CPUID (for the processor
// signature), fetched once per VM by the caller.
arch::x86::SmbiosConfig smbios_config(const VmConfig& cfg, const arch::x86::PlatformLayout& layout,
                                      const std::vector<kvm_cpuid_entry2>& cpuid);

}  // namespace vmm
