// virtio-rng (virtio 1.x section 5.4): one request queue; the driver posts
// device-writable buffers and the device fills them with random bytes from
// the host kernel's getrandom(). No feature bits, no config space. Linux
// binds it as hw_random's "virtio_rng.N" (/dev/hwrng) and feeds the guest's
// entropy pool from it.
#pragma once

#include <atomic>
#include <memory>

#include "virtio/device.h"
#include "virtio/served_queue.h"
#include "vmm/core/counters.h"

namespace vmm::virtio {

struct RngConfig {
    std::string name = "virtio-rng0";
    uint16_t queue_size = 256;
};

class RngDevice final : public VirtioDevice {
public:
    // A chain longer than this gets only this many bytes (the driver asks
    // for small amounts; a hostile one must not make us produce gigabytes).
    static constexpr size_t kMaxPerRequest = 64 * 1024;

    explicit RngDevice(RngConfig cfg);
    ~RngDevice() override;

    uint32_t device_type() const override { return kDeviceRng; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override { return {cfg_.queue_size}; }
    uint64_t device_features() const override { return 0; }
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;
    std::map<std::string, uint64_t> counters() const override;

private:
    void on_kick();

    RngConfig cfg_;
    CounterSet counters_;
    std::atomic<uint64_t>& bytes_ = counters_.add("bytes");
    std::atomic<uint64_t>& errors_ = counters_.add("errors");
    // Valid while active (used by the I/O thread after activate()).
    const GuestMemory* mem_ = nullptr;
    std::unique_ptr<QueueWorker> worker_;
    ServedQueue* queue_ = nullptr;  // owned by worker_
};

}  // namespace vmm::virtio
