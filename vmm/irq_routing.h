// KVM interrupt routing for PCI devices: one GSI per MSI-X vector, each with
// an irqfd, so an I/O thread raises an interrupt by writing an eventfd and
// KVM injects it without a VMM exit. KVM_SET_GSI_ROUTING replaces the whole
// table, so this class keeps it (the default PIC/IOAPIC routes plus every
// MSI route) and re-installs it on each change.
#pragma once

#include <linux/kvm.h>

#include <memory>
#include <mutex>
#include <vector>

#include "devices/pci.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/irq.h"
#include "vmm/core/kvm.h"

namespace vmm {

// A legacy interrupt line (PIC/IOAPIC pin `irq`) driven through
// KVM_IRQ_LINE; failures are logged, rate-limited, never thrown at a device.
class KvmIrqLine : public IrqLine {
public:
    KvmIrqLine(Vm& vm, uint32_t irq) : vm_(vm), irq_(irq) {}
    void set_level(bool high) override;

private:
    Vm& vm_;
    uint32_t irq_;
};

class MsiRouter {
public:
    // IOAPIC pins 0..23 (and PIC lines 0..15) keep their identity routes;
    // MSI routes take GSIs from 24 up.
    static constexpr uint32_t kFirstMsiGsi = 24;

    explicit MsiRouter(Vm& vm);
    // A new vector: allocates a GSI, binds an irqfd to it. Its route stays
    // unprogrammed (the irqfd inert) until update() is called.
    std::unique_ptr<devices::pci::MsiVector> allocate();

    // The table as it would be installed (for tests and debugging).
    std::vector<kvm_irq_routing_entry> table() const;

private:
    class Vector;
    void set_route(uint32_t gsi, const devices::pci::MsiMessage* msg);  // null: remove
    void install_locked();
    std::vector<kvm_irq_routing_entry> table_locked() const;

    Vm& vm_;
    mutable std::mutex mu_;
    uint32_t next_gsi_ = kFirstMsiGsi;
    std::vector<std::pair<uint32_t, devices::pci::MsiMessage>> routes_;  // active MSI routes
};

}  // namespace vmm
