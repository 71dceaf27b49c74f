#include "vmm/device_manager.h"

#include "devices/pci.h"
#include "virtio/balloon.h"
#include "virtio/console.h"
#include "virtio/pci_transport.h"
#include "vmm/console_socket.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/irq_routing.h"
#include "vmm/serial_ports.h"

namespace vmm {

namespace x86 = arch::x86;

DeviceManager::DeviceManager(Host host) : host_(std::move(host)), cfg_(host_.cfg) {
    next_bar_ = host_.layout.pci_mmio32.start;
    for (const VirtioKind& kind : virtio_kinds()) (this->*kind.attach)(kind);
}

DeviceManager::~DeviceManager() {
    for (auto& t : virtio_) t->shutdown();
}

std::vector<DeviceCounters> DeviceManager::counters() const {
    std::vector<DeviceCounters> out;
    for (auto& t : virtio_) out.push_back({t->device().name(), t->counters()});
    return out;
}

unsigned DeviceManager::add_virtio(const VirtioKind& kind, std::shared_ptr<virtio::VirtioDevice> dev, int slot,
                             bool packed, std::shared_ptr<const std::vector<uint8_t>> rom) {
    if (dev->device_type() != kind.device_id)
        fail("{}: virtio device ID {} registered as {} ({})", dev->name(), dev->device_type(), kind.name,
             kind.device_id);
    unsigned s = slot >= 0 ? static_cast<unsigned>(slot) : host_.pci.free_slot();
    // Under firmware the BAR starts unassigned (0) and the firmware assigns it.
    uint64_t bar = firmware() ? 0 : next_bar_;
    if (!firmware()) {
        if (bar + virtio::PciTransport::kBarSize > host_.layout.pci_mmio32.end())
            fail("{}: the 32-bit PCI window is full", dev->name());
        next_bar_ += virtio::PciTransport::kBarSize;
    }
    virtio::PciTransport::Platform p;
    p.mem = &host_.mem;
    p.ioeventfd = [&vm = host_.vm](int efd, uint64_t addr, bool assign) { vm.ioeventfd(efd, addr, 0, false, !assign); };
    p.msi = [&msi = host_.msi] { return msi.allocate(); };
    uint32_t gsi = x86::pci_intx_gsi(s, 0);  // INTA#
    p.intx = std::make_shared<KvmIrqLine>(host_.vm, gsi);
    p.intx_line = static_cast<uint8_t>(gsi);
    p.defer = host_.defer;
    p.offer_packed = packed;
    p.assigned = !firmware();
    p.rom = std::move(rom);
    p.class_code = kind.pci_class;
    auto t = std::make_shared<virtio::PciTransport>(dev, std::move(p), bar);
    host_.pci.add(s, t);
    // The BAR decodes from the start (as firmware would leave it), so the
    // queue notify ioeventfds are registered now.
    t->bars_changed(t->decoded_bars());
    virtio_.push_back(t);
    log::info("{} at PCI 00:{:02x}.0, BAR0 {:#x}, INTx GSI {}", dev->name(), s, bar, gsi);
    return s;
}

}  // namespace vmm
