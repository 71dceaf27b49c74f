// The VirtioDevice interface: what a device (blk, console, net, ...) offers
// to a transport. A device knows nothing about PCI; the transport
// (virtio/pci_transport.h) wraps any VirtioDevice, decodes the registers,
// negotiates features and calls activate()/reset().
//
// Lifecycle (one diagram, see docs/virtio.md):
//
//   created --activate(ctx)--> running --reset()--> created
//        ^                        |  guest error: ctx.needs_reset()
//        +------- reset() --------+  (device stops serving, status gets
//                                     DEVICE_NEEDS_RESET, the driver resets)
//
// activate() and reset() are called on the VMM's main thread, never on a
// vCPU thread, so a device may start or join its I/O threads there.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "virtio/queue.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/guest_memory.h"

namespace vmm::virtio {

// Device IDs (virtio 1.x, section 5).
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceConsole = 3;
inline constexpr uint32_t kDeviceRng = 4;
inline constexpr uint32_t kDeviceBalloon = 5;
inline constexpr uint32_t kDeviceScsi = 8;

// How a device raises interrupts without knowing the transport: the PCI
// transport maps a queue to its MSI-X vector's irqfd (or INTx + ISR bits).
// Safe to call from any thread.
class VirtioInterrupt {
public:
    virtual ~VirtioInterrupt() = default;
    virtual void signal_queue(uint16_t queue_index) = 0;
    virtual void signal_config() = 0;
};

// One enabled queue handed to the device at activation.
struct ActiveQueue {
    uint16_t index;                  // queue number in the device's numbering
    Queue queue;                     // moves into the device / its I/O thread
    std::shared_ptr<EventFd> kick;   // signalled by KVM (ioeventfd) on a driver notify
};

struct ActivationContext {
    const GuestMemory* mem = nullptr;
    uint64_t features = 0;  // negotiated
    std::vector<ActiveQueue> queues;
    std::shared_ptr<VirtioInterrupt> interrupt;
    // A device calls this (from any thread) when the guest broke the
    // protocol; the transport sets DEVICE_NEEDS_RESET and notifies the driver.
    std::function<void()> needs_reset;
};

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;
    virtual uint32_t device_type() const = 0;
    virtual std::string name() const = 0;  // e.g. "virtio-blk0", used in thread names and logs
    // Maximum size of each queue; the number of entries is the queue count.
    virtual std::vector<uint16_t> queue_max_sizes() const = 0;
    // Device-specific feature bits offered (the transport adds VERSION_1,
    // EVENT_IDX, INDIRECT_DESC and RING_PACKED itself).
    virtual uint64_t device_features() const = 0;
    // Device-specific configuration space (offset relative to its start).
    // Accesses outside the space read as zero and are ignored on write.
    virtual void read_config(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write_config(uint64_t offset, std::span<const uint8_t> data) { (void)offset, (void)data; }
    // Starts serving the queues (typically one I/O thread per queue or pair).
    // Throws vmm::Error on a host failure (the transport then reports
    // DEVICE_NEEDS_RESET).
    virtual void activate(ActivationContext ctx) = 0;
    // Stops all I/O threads (joining them) and forgets the queues. Called on
    // driver reset and on VM shutdown; must be safe when not active.
    virtual void reset() = 0;
    // Device-level counters for the control API ("read_bytes", ...), totals
    // since the VM started; callable from any thread. The transport adds
    // the per-queue ones (QueueStats).
    virtual std::map<std::string, uint64_t> counters() const { return {}; }
};

}  // namespace vmm::virtio
