// One VM instance, assembled from four pieces:
//   - the chipset (vmm/chipset.h): legacy PC devices and the PCI root complex;
//   - the device manager (vmm/device_manager.h): the virtio devices on PCI;
//   - the boot source (vmm/boot_source.h): a kernel loaded directly, or firmware;
//   - the vCPUs (vmm/vcpus.h): one thread each, dispatching exits to the buses.
// The Machine owns KVM, guest RAM and the two buses they share, builds the
// pieces in that order from a VmConfig, and runs the main thread's event
// loop (exit requests, signals, console input, deferred device work, the
// RTC's timer).
// run() blocks until the guest powers off, reboots or fails, or a signal
// ends it.
#pragma once

#include <signal.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "arch/x86_64/layout.h"
#include "vmm/boot_source.h"
#include "vmm/chipset.h"
#include "vmm/config.h"
#include "vmm/core/bus.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/device_manager.h"
#include "vmm/exit_control.h"
#include "vmm/vcpus.h"
#include "vmm/vm_control.h"

namespace vmm {

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
    void load_boot_source(const std::vector<kvm_cpuid_entry2>& cpuid);
    // Runs `task` on the main thread (device activation and reset).
    void defer(std::function<void()> task);
    void run_deferred();
    void event_loop();

    // Declared in build order; destroyed in reverse, so the vCPUs stop
    // before the devices, and the devices before guest memory goes.
    VmConfig cfg_;
    int console_in_;
    int console_out_;
    double created_ms_ = 0;
    Kvm kvm_;
    Vm vm_;
    arch::x86::PlatformLayout layout_;
    GuestMemory mem_;
    Bus pio_{"pio"};
    Bus mmio_{"mmio"};
    ExitControl exit_;
    std::mutex tasks_mu_;
    std::deque<std::function<void()>> tasks_;
    EventFd tasks_ready_;
    std::unique_ptr<BootSource> boot_;
    std::unique_ptr<Chipset> chipset_;
    std::unique_ptr<DeviceManager> devices_;
    std::unique_ptr<VcpuSet> vcpus_;
    std::unique_ptr<ApiServer> api_;
};


// The signals that stop the VM cleanly (exit status 128+N, terminal
// restored, sockets removed): SIGINT, SIGTERM, SIGHUP, and SIGQUIT,
// SIGUSR2 and SIGALRM, whose default action would otherwise kill the
// process with the terminal left raw. main() blocks them in every thread;
// the event loop reads them from a signalfd. (SIGUSR1 kicks vCPUs.)
sigset_t stop_signals();

}  // namespace vmm
