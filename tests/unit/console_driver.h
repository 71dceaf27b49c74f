// Test helper: plays the guest's multiport virtio-console driver against a
// ConsoleDevice over real split rings in FakeRam (queues 0/1 port 0, 2/3
// control, 2N+2/2N+3 port N), so tests can run the control handshake and
// move bytes both ways.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "test_util.h"
#include "virtio/console.h"
#include "virtq_builder.h"
#include "vmm/core/bytes.h"

namespace test::console {

struct Msg {
    uint32_t id;
    uint16_t event;
    uint16_t value;
    std::string payload;
    bool operator==(const Msg&) const = default;
};

inline std::string to_string(const Msg& m) {
    return "{" + std::to_string(m.id) + "," + std::to_string(m.event) + "," + std::to_string(m.value) + ",\"" +
           m.payload + "\"}";
}

class Driver {
public:
    static constexpr uint16_t kRingSize = 16;

    explicit Driver(std::vector<std::string> names, bool multiport = true) {
        vmm::virtio::ConsoleConfig cfg;
        cfg.port_names = std::move(names);
        cfg.output = [this](std::span<const uint8_t> b) {
            std::lock_guard lk(mu_);
            hvc_out_.append(b.begin(), b.end());
        };
        dev = std::make_shared<vmm::virtio::ConsoleDevice>(cfg);
        features = virtq::feature(vmm::virtio::kFeatureVersion1);
        if (multiport) features |= virtq::feature(vmm::virtio::kConsoleFeatureMultiport);
        size_t n = dev->queue_max_sizes().size();
        for (size_t i = 0; i < n; ++i) {
            rings.push_back(std::make_unique<virtq::SplitRing>(ram, kRingSize, features));
            kicks.push_back(std::make_shared<vmm::EventFd>());
        }
    }
    ~Driver() { dev->reset(); }

    void activate(size_t nqueues = 0) {
        vmm::virtio::ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.features = features;
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { ++resets; };
        if (!nqueues) nqueues = rings.size();
        for (size_t i = 0; i < nqueues; ++i)
            ctx.queues.push_back({static_cast<uint16_t>(i), vmm::virtio::Queue(ram.mem, rings[i]->config(), features),
                                  kicks[i]});
        dev->activate(std::move(ctx));
    }

    static uint16_t rx(uint32_t port) { return port == 0 ? 0 : static_cast<uint16_t>(2 * port + 2); }
    static uint16_t tx(uint32_t port) { return port == 0 ? 1 : static_cast<uint16_t>(2 * port + 3); }
    static constexpr uint16_t kCtrlRx = 2, kCtrlTx = 3;

    // Posts `n` device-writable buffers of `size` bytes on queue `q` and kicks it.
    void post(uint16_t q, int n, uint32_t size) {
        for (int i = 0; i < n; ++i) {
            uint64_t a = ram.alloc(size);
            uint16_t head = rings[q]->add_chain({{a, size, true}});
            bufs_[q][head] = a;
        }
        kicks[q]->signal();
    }
    // Sends driver -> device bytes on queue `q` (one chain) and kicks it.
    void send(uint16_t q, const std::vector<uint8_t>& bytes) {
        uint64_t a = ram.alloc(bytes.size() ? bytes.size() : 1);
        ram.fill(a, bytes);
        rings[q]->add_chain({{a, static_cast<uint32_t>(bytes.size()), false}});
        kicks[q]->signal();
    }
    void send(uint16_t q, const std::string& s) { send(q, std::vector<uint8_t>(s.begin(), s.end())); }
    void control(uint32_t id, uint16_t event, uint16_t value) {
        send(kCtrlTx, vmm::virtio::console_control_message(id, event, value));
    }

    // Used buffers of a receive queue not read yet, as strings.
    std::vector<std::string> received(uint16_t q) {
        std::vector<std::string> out;
        auto& r = *rings[q];
        while (seen_[q] != r.used_idx()) {
            auto u = r.used(seen_[q]++);
            auto b = ram.bytes(bufs_[q].at(static_cast<uint16_t>(u.id)), u.len);
            out.emplace_back(b.begin(), b.end());
        }
        return out;
    }
    std::string received_text(uint16_t q) {
        std::string s;
        for (auto& b : received(q)) s += b;
        return s;
    }
    // New control messages from the device (a zero-length buffer shows as event 0xffff).
    std::vector<Msg> messages() {
        std::vector<Msg> out;
        for (auto& b : received(kCtrlRx)) {
            if (b.size() < 8) {
                out.push_back({0, 0xffff, 0, b});
                continue;
            }
            const std::span<const uint8_t> m(reinterpret_cast<const uint8_t*>(b.data()), b.size());
            out.push_back({vmm::load_le32(m, 0), vmm::load_le16(m, 4), vmm::load_le16(m, 6), b.substr(8)});
        }
        return out;
    }
    // Waits until `n` more control messages arrived (all of them collected).
    std::vector<Msg> wait_messages(size_t n) {
        std::vector<Msg> got;
        wait_for([&] {
            for (auto& m : messages()) got.push_back(m);
            return got.size() >= n;
        });
        return got;
    }
    uint16_t used(uint16_t q) const { return rings[q]->used_idx(); }

    // DEVICE_READY and PORT_READY for every port; returns the messages.
    std::vector<Msg> handshake() {
        post(kCtrlRx, 12, 512);
        control(0xffffffff, vmm::virtio::kConsoleDeviceReady, 1);
        auto m = wait_messages(dev->nr_ports());
        for (uint32_t p = 0; p < dev->nr_ports(); ++p) control(p, vmm::virtio::kConsolePortReady, 1);
        return m;
    }

    std::string hvc_output() {
        std::lock_guard lk(mu_);
        return hvc_out_;
    }
    uint64_t counter(const std::string& k) { return dev->counters().at(k); }

    virtq::FakeRam ram;
    uint64_t features = 0;
    std::vector<std::unique_ptr<virtq::SplitRing>> rings;
    std::vector<std::shared_ptr<vmm::EventFd>> kicks;
    std::shared_ptr<virtq::CountingInterrupt> irq = std::make_shared<virtq::CountingInterrupt>();
    std::atomic<int> resets{0};
    std::shared_ptr<vmm::virtio::ConsoleDevice> dev;

private:
    std::mutex mu_;
    std::string hvc_out_;
    std::map<uint16_t, std::map<uint16_t, uint64_t>> bufs_;
    std::map<uint16_t, uint16_t> seen_;
};

}  // namespace test::console
