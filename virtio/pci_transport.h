// virtio-pci (virtio 1.x "modern") transport: wraps any VirtioDevice as a PCI
// function with the common, notify, ISR, device-specific and PCI-config-access
// capabilities and an MSI-X table, all in one 64-bit memory BAR (BAR 0):
//
//   0x0000  common configuration (0x38 bytes)
//   0x1000  ISR status (1 byte, read clears)
//   0x2000  device-specific configuration (up to 4 KiB)
//   0x3000  notify: queue i at 0x3000 + 4*i (multiplier 4); an ioeventfd each
//   0x4000  MSI-X table (16 bytes per vector)
//   0x6000  MSI-X PBA
//
// Register decoding lives here, apart from the devices, so a legacy (0.9.5)
// I/O BAR can be added beside it later for transitional devices.
//
// Threads: vCPU threads call config/BAR accesses (serialised by a mutex).
// Device activation (DRIVER_OK) and reset (status 0) are handed to the VMM
// main thread through Platform::defer, so a vCPU never waits for a device to
// start or stop its I/O threads; until the reset is done the status register
// keeps reading non-zero, which is what drivers poll for.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "devices/pci.h"
#include "virtio/device.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/irq.h"

namespace vmm::virtio {

// Device status bits (virtio 1.x §2.1).
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusNeedsReset = 0x40;
inline constexpr uint8_t kStatusFailed = 0x80;
inline constexpr uint16_t kNoVector = 0xffff;

class PciTransport : public devices::pci::PciDevice, public std::enable_shared_from_this<PciTransport> {
public:
    static constexpr uint64_t kBarSize = 0x8000;
    static constexpr uint64_t kCommonOffset = 0x0000;
    static constexpr uint64_t kIsrOffset = 0x1000;
    static constexpr uint64_t kDeviceCfgOffset = 0x2000;
    static constexpr uint64_t kNotifyOffset = 0x3000;
    static constexpr uint32_t kNotifyMultiplier = 4;
    static constexpr uint64_t kMsixTableOffset = 0x4000;
    static constexpr uint64_t kMsixPbaOffset = 0x6000;
    static constexpr size_t kMaxQueues = 256;  // notify area and MSI-X table bound it

    // What the VMM provides. All callbacks may be called from vCPU threads.
    struct Platform {
        const GuestMemory* mem = nullptr;
        // (Un)register `efd` as an MMIO ioeventfd at `addr`; may throw.
        std::function<void(int efd, uint64_t addr, bool assign)> ioeventfd;
        devices::pci::MsiVectorFactory msi;   // one call per MSI-X vector
        std::shared_ptr<IrqLine> intx;       // INTA# (level); may be null
        uint8_t intx_line = 0;               // reported in config space 0x3c
        // Runs `task` on the VMM main thread (or inline, in unit tests).
        std::function<void(std::function<void()>)> defer;
        // Offer VIRTIO_F_RING_PACKED. Off makes drivers use the split ring
        // (for old drivers, and to test the split ring with real guests).
        bool offer_packed = true;
        // The BAR starts at bar_addr with memory decoding on (direct kernel
        // boot); false: unassigned and off, for firmware to assign.
        bool assigned = true;
        // Expansion ROM image (iPXE for network boot); null: no ROM BAR.
        std::shared_ptr<const std::vector<uint8_t>> rom;
        // PCI class code (the VMM's device registry, vmm/virtio_devices.cpp).
        uint32_t class_code = 0x00ff00;  // "other"
    };

    PciTransport(std::shared_ptr<VirtioDevice> dev, Platform platform, uint64_t bar_addr);
    ~PciTransport() override;

    std::string name() const override;
    void config_read(uint16_t offset, std::span<uint8_t> data) override;
    void config_write(uint16_t offset, std::span<const uint8_t> data) override;
    std::vector<devices::pci::BarRegion> decoded_bars() const override;
    void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) override;
    void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) override;
    void bars_changed(const std::vector<devices::pci::BarRegion>& now) override;

    // Stops the device (joins its I/O threads). Called on VM shutdown.
    void shutdown();
    uint8_t status() const;
    VirtioDevice& device() { return *dev_; }
    // The device's counters plus, per queue N, "qN.notifications",
    // "qN.chains", "qN.used", "qN.interrupts" and "qN.errors" (totals since
    // the VM started); callable from any thread.
    std::map<std::string, uint64_t> counters() const;

private:
    struct QueueRegs {
        uint16_t size = 0;
        uint16_t max_size = 0;
        uint16_t msix_vector = kNoVector;
        bool enabled = false;
        uint64_t desc = 0, driver = 0, device = 0;
    };
    class Interrupt;

    void common_read(uint64_t offset, std::span<uint8_t> data);
    void common_write(uint64_t offset, std::span<const uint8_t> data);
    void write_status_locked(uint8_t v);
    void activate_on_main();
    void reset_on_main();
    void clear_registers_locked();  // every register back to its reset value; mu_ held
    void set_needs_reset();
    void raise_isr(uint8_t bits);
    void device_bar_read(uint64_t offset, std::span<uint8_t> data);
    void device_bar_write(uint64_t offset, std::span<const uint8_t> data);
    uint64_t offered_features() const;
    bool in_pcicfg_window(uint16_t offset) const;
    std::optional<std::pair<uint32_t, uint32_t>> pcicfg_target(uint16_t offset, size_t size) const;

    std::shared_ptr<VirtioDevice> dev_;
    Platform platform_;
    mutable std::mutex mu_;
    devices::pci::ConfigSpace cfg_;
    devices::pci::MsixTable msix_;
    uint8_t msix_cap_ = 0;
    uint8_t pcicfg_cap_ = 0;
    std::vector<QueueRegs> queues_;
    std::vector<std::shared_ptr<EventFd>> kicks_;
    std::vector<std::shared_ptr<QueueStats>> queue_stats_;  // fixed at construction
    std::vector<uint64_t> registered_notify_;  // ioeventfd addresses currently assigned (0: none)
    uint32_t device_feature_select_ = 0;
    uint32_t driver_feature_select_ = 0;
    uint64_t driver_features_ = 0;
    uint16_t msix_config_ = kNoVector;
    uint16_t queue_select_ = 0;
    uint8_t status_ = 0;
    uint8_t config_generation_ = 0;
    bool reset_pending_ = false;
    bool active_ = false;
    std::atomic<uint8_t> isr_{0};
    std::atomic<bool> intx_level_{false};
    std::shared_ptr<Interrupt> interrupt_;
};

}  // namespace vmm::virtio
