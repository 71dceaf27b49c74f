// The virtio device registry: every kind of virtio device the VMM can
// attach, in the order the kinds take PCI slots, with what the PCI side
// needs to know about each. The DeviceManager (vmm/device_manager.h) walks
// it; each entry's `attach` turns the VmConfig into devices of that kind
// (the factories are DeviceManager members in vmm/virtio_devices.cpp, the
// one place that names concrete virtio devices). Adding a device kind: one entry here and its
// attach function (docs/architecture.md, "Adding a virtio device").
#pragma once

#include <cstdint>
#include <span>

namespace vmm {

class DeviceManager;

struct VirtioKind {
    const char* name;    // "virtio-blk": each device is named this plus an index
    uint32_t device_id;  // virtio device ID (virtio/device.h)
    uint32_t pci_class;  // PCI class code the guest's drivers expect (QEMU's choices)
    // Adds every device of this kind that the configuration asks for.
    void (DeviceManager::*attach)(const VirtioKind& kind);
};

// All kinds, in PCI slot order: guests probe by slot, so an existing kind
// keeps its place and a new one goes at the end.
std::span<const VirtioKind> virtio_kinds();
// The kind with this virtio device ID, or nullptr.
const VirtioKind* virtio_kind(uint32_t device_id);

}  // namespace vmm
