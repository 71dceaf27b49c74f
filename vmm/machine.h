// One VM instance: KVM objects, guest RAM, the legacy platform devices, the
// PCI bus with the virtio devices, the boot source (kernel or firmware) and
// one thread per vCPU. Built from a VmConfig; run() blocks
// until the guest powers off, reboots or fails, or a signal ends it.
#pragma once

#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <memory>
#include <thread>
#include <vector>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/smbios.h"
#include "arch/x86_64/fw_cfg_files.h"
#include "arch/x86_64/layout.h"
#include "vmm/boot_source.h"
#include "vmm/config.h"
#include "vmm/core/bus.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/exit_control.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_control.h"

namespace vmm {

namespace devices {
class Serial8250;
class AcpiPm;
namespace pci {
class PciBus;
}
}  // namespace devices
namespace virtio {
class PciTransport;
class BalloonDevice;
class ConsoleDevice;
class VirtioDevice;
}  // namespace virtio
class MsiRouter;
class ConsoleSocket;
class SerialPortHost;
class ApiServer;

class Machine : public VmControl {
public:
    // Builds the whole VM; throws vmm::Error with a user-facing message.
    // `console_in` is the fd whose bytes go to the serial port (-1: none);
    // `console_out` receives the guest's serial output (-1: discard).
    Machine(const VmConfig& cfg, int console_in, int console_out);
    ~Machine();
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;

    // Runs the vCPUs and the main event loop; returns how the VM ended.
    // The message (if any) explains a non-clean end.
    ExitReason run();
    const ExitControl& exit_control() const { return exit_; }

    // VmControl (the control API); thread-safe.
    VmInfo info() override;
    void pause() override;
    void resume() override;
    void power_button() override;
    void stop() override;
    void reboot() override;
    std::vector<DeviceCounters> counters() override;
    void set_balloon_target(uint64_t bytes) override;

private:
    void setup_memory();
    bool firmware() const { return !cfg_.firmware.empty(); }
    // The ICH9 LPC bridge's slot under firmware (00:1f.0, as on Q35).
    static constexpr unsigned kLpcSlot = 31;
    arch::x86::AcpiConfig acpi_config() const;
    arch::x86::SmbiosConfig smbios_config() const;
    void load_boot_source();
    void setup_devices();
    void setup_pci();
    // The virtio device registry's factories (vmm/virtio_devices.cpp): each
    // adds every device of its kind the configuration asks for.
    friend std::span<const VirtioKind> virtio_kinds();
    void attach_disks(const VirtioKind& kind);
    void attach_console(const VirtioKind& kind);
    void attach_nets(const VirtioKind& kind);
    void attach_rng(const VirtioKind& kind);
    void attach_balloon(const VirtioKind& kind);
    void attach_scsi(const VirtioKind& kind);
    // Puts `dev` (of `kind`) on the PCI bus behind a virtio-pci transport;
    // returns the slot it got (`slot` < 0: the next free one).
    // `rom`: the device's expansion ROM image (null: none).
    unsigned add_virtio(const VirtioKind& kind, std::shared_ptr<virtio::VirtioDevice> dev, int slot,
                        bool packed = true, std::shared_ptr<const std::vector<uint8_t>> rom = nullptr);
    // Runs `task` on the main thread (device activation and reset).
    void defer(std::function<void()> task);
    void run_deferred();
    void setup_vcpus();
    void vcpu_loop(size_t index);
    bool handle_exit(size_t index);
    void crash(size_t index, const std::string& what);
    void stop_vcpus();
    void event_loop();

    VmConfig cfg_;
    int console_in_;
    int console_out_;
    Kvm kvm_;
    Vm vm_;
    GuestMemory mem_;
    Bus pio_{"pio"};
    Bus mmio_{"mmio"};
    std::shared_ptr<devices::Serial8250> serial_;
    std::shared_ptr<devices::AcpiPm> acpi_pm_;
    std::shared_ptr<BusDevice> reset_;
    std::unique_ptr<MsiRouter> msi_;
    std::shared_ptr<devices::pci::PciBus> pci_;
    std::vector<std::shared_ptr<virtio::PciTransport>> virtio_;
    std::shared_ptr<virtio::ConsoleDevice> console_;
    std::shared_ptr<virtio::BalloonDevice> balloon_;
    uint64_t next_bar_ = 0;  // next free address in the 32-bit PCI window
    std::mutex tasks_mu_;
    std::deque<std::function<void()>> tasks_;
    EventFd tasks_ready_;
    Fd console_file_;
    std::unique_ptr<ConsoleSocket> serial_sock_, console_sock_;
    std::unique_ptr<SerialPortHost> serial_ports_;  // --serial-port host sides
    std::unique_ptr<ApiServer> api_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::thread> threads_;
    ExitControl exit_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> first_run_reported_{false};
    // Pause: vCPU threads park on pause_cv_ while paused_ is set.
    std::mutex pause_mu_;
    std::condition_variable pause_cv_;
    bool paused_ = false;
    size_t parked_ = 0;
    void park_if_paused(size_t index);
    double created_ms_ = 0;
    arch::x86::PlatformLayout layout_;
    std::unique_ptr<BootSource> boot_;
    std::vector<arch::x86::BootDevice> boot_devices_;  // bootindex= devices, for the firmware
};

// An output sink for a console: the VMM's stdout (tty) or a file; output
// to a console that went away is dropped.
std::function<void(std::span<const uint8_t>)> fd_writer(int fd);

// Installs the no-op signal handler used to kick vCPU threads out of KVM_RUN.
void install_vcpu_kick_handler();

// The signals that stop the VM cleanly (exit status 128+N, terminal
// restored, sockets removed): SIGINT, SIGTERM, SIGHUP, and SIGQUIT,
// SIGUSR2 and SIGALRM, whose default action would otherwise kill the
// process with the terminal left raw. main() blocks them in every thread;
// the event loop reads them from a signalfd. (SIGUSR1 kicks vCPUs.)
sigset_t stop_signals();

}  // namespace vmm
