// virtio-blk device (virtio 1.x section 5.2): a raw disk image served by one
// I/O thread per queue.
//
// Each queue's thread waits on two eventfds: the queue's kick (driver
// notify) and its disk engine's completions. A kick pops every available
// chain, parses it (block_request.h) and submits the resulting host I/O as
// one batch; completions write the status byte, return the chain and raise
// at most one interrupt per batch. A malformed ring stops that queue and
// asks the transport for DEVICE_NEEDS_RESET; bad requests only get an error
// status.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "virtio/block_request.h"
#include "virtio/device.h"
#include "virtio/disk.h"
#include "vmm/core/counters.h"

namespace vmm::virtio {

// Feature bits (virtio 1.x section 5.2.3).
inline constexpr unsigned kBlkFeatureSizeMax = 1;
inline constexpr unsigned kBlkFeatureSegMax = 2;
inline constexpr unsigned kBlkFeatureGeometry = 4;
inline constexpr unsigned kBlkFeatureRo = 5;
inline constexpr unsigned kBlkFeatureBlkSize = 6;
inline constexpr unsigned kBlkFeatureFlush = 9;
inline constexpr unsigned kBlkFeatureTopology = 10;
inline constexpr unsigned kBlkFeatureConfigWce = 11;
inline constexpr unsigned kBlkFeatureMq = 12;
inline constexpr unsigned kBlkFeatureDiscard = 13;
inline constexpr unsigned kBlkFeatureWriteZeroes = 14;

struct BlockConfig {
    DiskOptions disk;
    std::string serial;  // GET_ID; at most 20 bytes
    uint16_t num_queues = 1;
    uint16_t queue_size = 256;
    uint32_t poll_us = 0;  // I/O thread busy polling, at most this long before sleeping; 0: off
    std::string name = "virtio-blk0";
};

class BlockDevice final : public VirtioDevice {
public:
    // Opens the image (throws vmm::Error with a "--disk ..." message).
    explicit BlockDevice(BlockConfig cfg);
    ~BlockDevice() override;

    uint32_t device_type() const override { return kDeviceBlock; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override;
    uint64_t device_features() const override;
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;

    std::map<std::string, uint64_t> counters() const override;
    uint64_t capacity_sectors() const { return limits_.capacity; }
    const DiskImage& disk() const { return disk_; }

    // Config space layout (offsets per section 5.2.4).
    static constexpr size_t kConfigSize = 60;

private:
    struct Worker;
    struct Counters {
        CounterSet set;
        std::atomic<uint64_t>& requests = set.add("requests");  // chains popped
        std::atomic<uint64_t>& read_bytes = set.add("read_bytes");
        std::atomic<uint64_t>& write_bytes = set.add("write_bytes");
        // answered IOERR/UNSUPP, dropped, or a malformed ring (kicks and
        // interrupts are the transport's per-queue counters)
        std::atomic<uint64_t>& errors = set.add("errors");
        std::atomic<uint64_t>& host_ops = set.add("host_ops");  // submitted to the disk engine
        std::atomic<uint64_t>& bounced = set.add("bounced");    // of those, through a bounce buffer
    };

    void build_config();

    BlockConfig cfg_;
    DiskImage disk_;
    blk::Limits limits_;
    uint8_t config_[kConfigSize] = {};
    Counters counters_;
    ActivationContext ctx_;  // mem, interrupt and needs_reset of the running activation
    std::vector<std::unique_ptr<Worker>> workers_;
    bool engine_logged_ = false;
};

}  // namespace vmm::virtio
