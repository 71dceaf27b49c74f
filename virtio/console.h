// virtio-console with a single port (port 0, the guest's hvc0): queue 0
// receives host input into the guest, queue 1 transmits guest output. Both
// queues are served by one I/O thread. This is the base that multiport
// serial (MULTIPORT, control queues, named ports) extends later.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "virtio/device.h"
#include "vmm/core/event_loop.h"

namespace vmm::virtio {

struct ConsoleConfig {
    std::string name = "virtio-console0";
    uint16_t queue_size = 256;
    // Receives the guest's output, on the I/O thread. Empty: discard.
    std::function<void(std::span<const uint8_t>)> output;
};

class ConsoleDevice : public VirtioDevice {
public:
    static constexpr size_t kInputCapacity = 4096;

    explicit ConsoleDevice(ConsoleConfig cfg);
    ~ConsoleDevice() override;

    uint32_t device_type() const override { return kDeviceConsole; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override { return {cfg_.queue_size, cfg_.queue_size}; }
    uint64_t device_features() const override { return 0; }
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;

    // Host input for the guest (thread-safe). Accepts what fits in the
    // bounded input buffer and returns how many bytes it took; the caller
    // retries the rest later (flow control instead of dropping bytes).
    size_t enqueue_input(std::span<const uint8_t> bytes);

    struct Stats {
        std::atomic<uint64_t> tx_bytes{0}, rx_bytes{0}, errors{0}, interrupts{0};
    };
    const Stats& stats() const { return stats_; }
    std::map<std::string, uint64_t> counters() const override;

private:
    void on_tx();
    void on_rx();
    void fail_queue(const char* which, const std::exception& e);

    ConsoleConfig cfg_;
    Stats stats_;
    std::mutex in_mu_;
    std::deque<uint8_t> input_;
    EventFd input_ready_;
    // Valid while active (owned by the I/O thread after activate()).
    const GuestMemory* mem_ = nullptr;
    std::shared_ptr<VirtioInterrupt> irq_;
    std::function<void()> needs_reset_;
    std::optional<ActiveQueue> rxq_, txq_;
    bool broken_ = false;
    std::unique_ptr<IoThread> thread_;
};

}  // namespace vmm::virtio
