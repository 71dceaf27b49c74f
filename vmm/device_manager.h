// The devices the user asked for: every virtio device, each behind a
// virtio-pci transport in its own PCI slot. It places them (slots, and
// BAR addresses in the 32-bit window under direct boot; firmware assigns
// its own), wires them to KVM (ioeventfds, MSI-X vectors, INTx lines),
// keeps the host sides of the virtio console, and collects the boot devices
// (bootindex=) for the firmware. The factories that name concrete devices
// are in vmm/virtio_devices.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "arch/x86_64/fw_cfg_files.h"
#include "arch/x86_64/layout.h"
#include "vmm/config.h"
#include "vmm/core/fd.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/virtio_devices.h"
#include "vmm/vm_control.h"

namespace vmm {

namespace devices::pci {
class PciBus;
}
namespace virtio {
class PciTransport;
class BalloonDevice;
class ConsoleDevice;
class VirtioDevice;
}  // namespace virtio
class MsiRouter;
class ConsoleSocket;
class SerialPortHost;

class DeviceManager {
public:
    // What the devices need from the machine.
    struct Host {
        const VmConfig& cfg;
        Vm& vm;
        const GuestMemory& mem;
        const arch::x86::PlatformLayout& layout;
        devices::pci::PciBus& pci;
        MsiRouter& msi;
        // Runs a task on the main thread (device activation and reset).
        std::function<void(std::function<void()>)> defer;
    };

    // Adds every virtio device the configuration asks for, kind by kind in
    // the registry's order; throws vmm::Error naming the option at fault.
    explicit DeviceManager(Host host);
    // Stops the devices' I/O threads (before guest memory goes away).
    ~DeviceManager();
    DeviceManager(const DeviceManager&) = delete;
    DeviceManager& operator=(const DeviceManager&) = delete;

    // bootindex= devices, for the firmware.
    const std::vector<arch::x86::BootDevice>& boot_devices() const { return boot_devices_; }
    // virtio-console port 0 and its --console socket (null when absent).
    virtio::ConsoleDevice* console() { return console_.get(); }
    ConsoleSocket* console_socket() { return console_sock_.get(); }
    virtio::BalloonDevice* balloon() { return balloon_.get(); }
    std::vector<DeviceCounters> counters() const;

private:
    // The registry's factories (vmm/virtio_devices.cpp): each adds every
    // device of its kind the configuration asks for.
    friend std::span<const VirtioKind> virtio_kinds();
    void attach_disks(const VirtioKind& kind);
    void attach_console(const VirtioKind& kind);
    void attach_nets(const VirtioKind& kind);
    void attach_rng(const VirtioKind& kind);
    void attach_balloon(const VirtioKind& kind);
    void attach_scsi(const VirtioKind& kind);
    bool firmware() const { return !host_.cfg.firmware.empty(); }
    // Puts `dev` (of `kind`) on the PCI bus behind a virtio-pci transport;
    // returns the slot it got (`slot` < 0: the next free one).
    // `rom`: the device's expansion ROM image (null: none).
    unsigned add_virtio(const VirtioKind& kind, std::shared_ptr<virtio::VirtioDevice> dev, int slot,
                        bool packed = true, std::shared_ptr<const std::vector<uint8_t>> rom = nullptr);

    Host host_;
    const VmConfig& cfg_;
    uint64_t next_bar_ = 0;  // next free address in the 32-bit PCI window
    std::vector<std::shared_ptr<virtio::PciTransport>> virtio_;
    std::shared_ptr<virtio::ConsoleDevice> console_;
    std::shared_ptr<virtio::BalloonDevice> balloon_;
    Fd console_file_;
    std::unique_ptr<ConsoleSocket> console_sock_;
    std::unique_ptr<SerialPortHost> serial_ports_;  // --serial-port host sides
    std::vector<arch::x86::BootDevice> boot_devices_;
};

}  // namespace vmm
