// The virtio device registry: one entry per device kind, in PCI slot order,
// with the virtio ID and PCI class each kind's guest drivers expect.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "virtio/device.h"
#include "vmm/virtio_devices.h"

using vmm::virtio_kind;
using vmm::virtio_kinds;
namespace v = vmm::virtio;

TEST_CASE("virtio registry: every kind once, with its ID, PCI class and factory", "[vmm][virtio-registry]") {
    auto kinds = virtio_kinds();
    REQUIRE(kinds.size() == 6);
    std::set<uint32_t> ids;
    std::set<std::string> names;
    for (const auto& k : kinds) {
        INFO(k.name);
        CHECK(ids.insert(k.device_id).second);
        CHECK(names.insert(k.name).second);
        CHECK(std::string(k.name).rfind("virtio-", 0) == 0);
        CHECK(k.attach != nullptr);
        CHECK(virtio_kind(k.device_id) == &k);
    }
    // Disks take the lowest slots (guests name them vda, vdb, ... by slot);
    // the order of the others is what existing guests have seen.
    CHECK(std::string(kinds[0].name) == "virtio-blk");
    CHECK(std::string(kinds[5].name) == "virtio-scsi");

    CHECK(virtio_kind(v::kDeviceBlock)->pci_class == 0x010000);  // mass storage, SCSI
    CHECK(virtio_kind(v::kDeviceScsi)->pci_class == 0x010000);
    CHECK(virtio_kind(v::kDeviceNet)->pci_class == 0x020000);      // network, Ethernet
    CHECK(virtio_kind(v::kDeviceConsole)->pci_class == 0x078000);  // communication, other
    CHECK(virtio_kind(v::kDeviceRng)->pci_class == 0x00ff00);
    CHECK(virtio_kind(v::kDeviceBalloon)->pci_class == 0x00ff00);
    CHECK(virtio_kind(99) == nullptr);
}
