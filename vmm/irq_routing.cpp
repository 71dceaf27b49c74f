#include "vmm/irq_routing.h"

#include <algorithm>

#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm {

void KvmIrqLine::set_level(bool high) {
    try {
        vm_.irq_line(irq_, high);
    } catch (const Error& e) {
        static log::RateLimit rl;
        if (rl.allow()) log::error("irq {}: {}", irq_, e.what());
    }
}

class MsiRouter::Vector : public devices::pci::MsiVector {
public:
    Vector(MsiRouter& r, uint32_t gsi) : router_(r), gsi_(gsi) { router_.vm_.irqfd(efd_.fd(), gsi_); }
    ~Vector() override {
        try {
            router_.vm_.irqfd(efd_.fd(), gsi_, true);
            router_.set_route(gsi_, nullptr);
        } catch (const Error& e) {
            log::warn("MSI GSI {}: {}", gsi_, e.what());
        }
    }
    void update(const devices::pci::MsiMessage& msg) override {
        if (programmed_ && msg == last_) return;
        router_.set_route(gsi_, &msg);
        last_ = msg;
        programmed_ = true;
    }
    void trigger() override { efd_.signal(); }

private:
    MsiRouter& router_;
    uint32_t gsi_;
    EventFd efd_;
    devices::pci::MsiMessage last_;
    bool programmed_ = false;
};

MsiRouter::MsiRouter(Vm& vm) : vm_(vm) {}

std::unique_ptr<devices::pci::MsiVector> MsiRouter::allocate() {
    uint32_t gsi;
    {
        std::lock_guard lk(mu_);
        // KVM's default routing table size bounds GSIs (KVM_MAX_IRQ_ROUTES
        // is 4096 on x86); one GSI per vector is plenty for 31 devices.
        if (next_gsi_ >= 4096) fail("out of interrupt routes (GSIs) for MSI-X vectors");
        gsi = next_gsi_++;
    }
    return std::make_unique<Vector>(*this, gsi);
}

std::vector<kvm_irq_routing_entry> MsiRouter::table() const {
    std::lock_guard lk(mu_);
    return table_locked();
}

std::vector<kvm_irq_routing_entry> MsiRouter::table_locked() const {
    std::vector<kvm_irq_routing_entry> t;
    // The default routes KVM sets up with its in-kernel irqchip: GSI n goes
    // to IOAPIC pin n, and GSIs 0..15 also to the PIC (master 0-7, slave 8-15).
    for (uint32_t gsi = 0; gsi < 24; ++gsi) {
        if (gsi < 16) {
            kvm_irq_routing_entry e{};
            e.gsi = gsi;
            e.type = KVM_IRQ_ROUTING_IRQCHIP;
            e.u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
            e.u.irqchip.pin = gsi % 8;
            t.push_back(e);
        }
        kvm_irq_routing_entry e{};
        e.gsi = gsi;
        e.type = KVM_IRQ_ROUTING_IRQCHIP;
        e.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        e.u.irqchip.pin = gsi;
        t.push_back(e);
    }
    for (auto& [gsi, msg] : routes_) {
        kvm_irq_routing_entry e{};
        e.gsi = gsi;
        e.type = KVM_IRQ_ROUTING_MSI;
        e.u.msi.address_lo = static_cast<uint32_t>(msg.address);
        e.u.msi.address_hi = static_cast<uint32_t>(msg.address >> 32);
        e.u.msi.data = msg.data;
        t.push_back(e);
    }
    return t;
}

void MsiRouter::set_route(uint32_t gsi, const devices::pci::MsiMessage* msg) {
    std::lock_guard lk(mu_);
    auto it = std::find_if(routes_.begin(), routes_.end(), [&](auto& r) { return r.first == gsi; });
    if (msg) {
        if (it != routes_.end()) it->second = *msg;
        else routes_.emplace_back(gsi, *msg);
    } else {
        if (it == routes_.end()) return;
        routes_.erase(it);
    }
    install_locked();
}

void MsiRouter::install_locked() {
    vm_.set_gsi_routing(table_locked());
}

}  // namespace vmm
