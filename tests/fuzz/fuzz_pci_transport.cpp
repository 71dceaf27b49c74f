// The virtio-pci transport (virtio/pci_transport.h) under any sequence of
// guest register accesses: PCI config space reads and writes of any size
// and offset (BAR sizing and moving, the command register, capabilities,
// the PCI-config-access window, MSI-X control), BAR 0 reads and writes
// (common config: feature words, queue selection and addresses, status
// including DRIVER_OK and reset; ISR; device config; notify; the MSI-X
// table and PBA), with the deferred activation/reset tasks run in between
// as the main thread would. The device behind it is a fake that records
// activations. A bug is a crash, a sanitizer report or an exception out of
// a register access (a guest access must never throw).
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "fuzz_ram.h"
#include "test_util.h"
#include "virtio/pci_transport.h"

using vmm::virtio::PciTransport;
namespace pci = vmm::devices::pci;

namespace {

struct FakeDevice : vmm::virtio::VirtioDevice {
    uint32_t device_type() const override { return vmm::virtio::kDeviceBlock; }
    std::string name() const override { return "fuzz0"; }
    std::vector<uint16_t> queue_max_sizes() const override { return {256, 8, 1}; }
    uint64_t device_features() const override { return 1ull << 5 | 1ull << 28 | 1ull << 29; }
    void read_config(uint64_t offset, std::span<uint8_t> data) override {
        for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(offset + i);
    }
    void write_config(uint64_t, std::span<const uint8_t>) override {}
    void activate(vmm::virtio::ActivationContext c) override {
        // What a device does first: check the queues it was handed.
        if (c.queues.size() > queue_max_sizes().size()) __builtin_trap();
        ctx = std::move(c);
        if (ctx.interrupt) ctx.interrupt->signal_config();
    }
    void reset() override { ctx.queues.clear(); }
    vmm::virtio::ActivationContext ctx;
};

struct FakeVector : pci::MsiVector {
    void update(const pci::MsiMessage&) override {}
    void trigger() override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    fuzz::Ram ram;
    std::vector<std::function<void()>> tasks;
    PciTransport::Platform p;
    p.mem = &ram.mem;
    p.offer_packed = in.ConsumeBool();
    p.assigned = in.ConsumeBool();
    p.ioeventfd = [](int, uint64_t, bool) {};
    p.msi = [] { return std::make_unique<FakeVector>(); };
    p.intx = std::make_shared<test::FakeIrq>();
    p.intx_line = 11;
    p.defer = [&](std::function<void()> f) { tasks.push_back(std::move(f)); };
    if (in.ConsumeBool()) {
        // A valid 3000-byte legacy image for 1af4:1042 (the fake is a
        // block device), as tests/unit/virtio_pci_transport.cpp builds it.
        auto rom = std::make_shared<std::vector<uint8_t>>(3000, 0x5a);
        auto& r = *rom;
        r[0] = 0x55, r[1] = 0xaa, r[0x18] = 0x40, r[0x19] = 0;
        const uint8_t pcir[] = {'P', 'C', 'I', 'R', 0xf4, 0x1a, 0x42, 0x10};
        std::copy(std::begin(pcir), std::end(pcir), r.begin() + 0x40);
        r[0x40 + 0x10] = 5, r[0x40 + 0x11] = 0;
        r[0x40 + 0x14] = 0, r[0x40 + 0x15] = 0x80;
        p.rom = std::move(rom);
    }
    auto dev = std::make_shared<FakeDevice>();
    auto t = std::make_shared<PciTransport>(dev, std::move(p), 0xc0000000);
    t->bars_changed(t->decoded_bars());

    uint8_t buf[16];
    for (int op = 0; op < 256 && in.remaining_bytes() > 0; ++op) {
        const size_t n = in.ConsumeBool() ? size_t{1} << in.ConsumeIntegralInRange(0, 3)
                                          : in.ConsumeIntegralInRange<size_t>(0, sizeof buf);
        std::span<uint8_t> b(buf, n);
        switch (in.ConsumeIntegralInRange(0, 5)) {
        case 0: {
            uint16_t off = in.ConsumeIntegralInRange<uint16_t>(0, 0x1010);
            t->config_read(off, b);
            break;
        }
        case 1: {
            uint16_t off = in.ConsumeIntegralInRange<uint16_t>(0, 0x1010);
            uint64_t v = in.ConsumeIntegral<uint64_t>();
            for (size_t i = 0; i < n; ++i) buf[i] = static_cast<uint8_t>(v >> (8 * (i % 8)));
            t->config_write(off, b);
            t->bars_changed(t->decoded_bars());  // what the PCI bus does after a config write
            break;
        }
        case 2: {
            // Mostly the common config, where the state machine is.
            uint64_t off = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 0x40)
                                            : in.ConsumeIntegralInRange<uint64_t>(0, PciTransport::kBarSize + 16);
            t->bar_read(in.ConsumeIntegralInRange(0u, 6u), off, b);
            break;
        }
        case 3: {
            uint64_t off = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 0x40)
                                            : in.ConsumeIntegralInRange<uint64_t>(0, PciTransport::kBarSize + 16);
            uint64_t v = in.ConsumeIntegral<uint64_t>();
            for (size_t i = 0; i < n; ++i) buf[i] = static_cast<uint8_t>(v >> (8 * (i % 8)));
            t->bar_write(in.ConsumeIntegralInRange(0u, 6u), off, b);
            break;
        }
        case 4: {
            auto pending = std::move(tasks);
            tasks.clear();
            for (auto& f : pending) f();
            break;
        }
        default:
            (void)t->status();
            (void)t->counters();
            break;
        }
    }
    for (int round = 0; round < 4 && !tasks.empty(); ++round) {
        auto pending = std::move(tasks);
        tasks.clear();
        for (auto& f : pending) f();
    }
    t->shutdown();
    return 0;
}
