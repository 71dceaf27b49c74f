// virtio-net (virtio 1.x section 5.1) on a host tap (virtio/tap.h).
//
// Queues: rx0, tx0, rx1, tx1, ..., then the control queue (index 2 * the
// number of pairs, or 2 without MQ). Each queue pair has its own I/O thread
// and its own tap fd:
// - TX: a kick pops chains; each is a 12-byte header and a frame, checked
//   (net_hdr.h) and written to the tap with one writev, without copying.
//   Malformed packets are counted (tx_dropped) and dropped.
// - RX: the tap fd is polled. Each packet is read from the tap with one
//   readv straight into the guest buffers the device holds (up to the
//   largest packet, 64 KiB + header: a few dozen mergeable buffers, or one
//   big one); the VMM only writes num_buffers. When the guest has posted
//   less than that, a host buffer follows them in the readv, and whatever
//   lands there is copied into the next buffers (counted: rx_copied). The
//   interrupt check comes once per batch (tap empty or ring full). When the
//   guest has no buffers, the packet is kept and the tap is no longer
//   polled until the driver kicks the RX queue: back-pressure on the tap,
//   no silent drop in the VMM. Without MRG_RXBUF a packet larger than the
//   guest's buffer is dropped and counted (rx_dropped).
//   Every received frame passes the driver's receive filter first
//   (net_filter.h): one the guest did not ask for is counted (rx_filtered)
//   and its buffers are reused.
// - Control queue (own thread): RX modes and MAC tables (the receive
//   filter), MAC address (CTRL_MAC_ADDR; also what the config space then
//   reports), MQ pair count (attaches/detaches tap queues), guest offloads
//   (TUNSETOFFLOAD), announce.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>

#include "virtio/device.h"
#include "virtio/served_queue.h"
#include "virtio/net_filter.h"
#include "virtio/net_hdr.h"
#include "virtio/tap.h"
#include "vmm/core/counters.h"
#include "vmm/core/event_loop.h"

namespace vmm::virtio {

struct NetConfig {
    std::string name = "virtio-net0";
    uint16_t queue_size = 256;
    std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
};

class NetDevice final : public VirtioDevice {
public:
    // One queue pair per backend fd.
    NetDevice(NetConfig cfg, std::shared_ptr<NetBackend> backend);
    ~NetDevice() override;

    uint32_t device_type() const override { return kDeviceNet; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override;
    uint64_t device_features() const override;
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;
    std::map<std::string, uint64_t> counters() const override;

    size_t queue_pairs() const { return pairs_; }

    struct Stats {
        CounterSet set;
        std::atomic<uint64_t>& rx_packets = set.add("rx_packets");
        std::atomic<uint64_t>& rx_bytes = set.add("rx_bytes");
        std::atomic<uint64_t>& rx_dropped = set.add("rx_dropped");
        std::atomic<uint64_t>& rx_stalls = set.add("rx_stalls");
        std::atomic<uint64_t>& rx_copied = set.add("rx_copied");
        std::atomic<uint64_t>& rx_filtered = set.add("rx_filtered");
        std::atomic<uint64_t>& tx_packets = set.add("tx_packets");
        std::atomic<uint64_t>& tx_bytes = set.add("tx_bytes");
        std::atomic<uint64_t>& tx_dropped = set.add("tx_dropped");
        std::atomic<uint64_t>& ctrl_commands = set.add("ctrl_commands");
        std::atomic<uint64_t>& ctrl_errors = set.add("ctrl_errors");
        std::atomic<uint64_t>& errors = set.add("errors");
    };

private:
    // tests/fuzz/fuzz_virtio_net.cpp: the control handler and the state it
    // changes, driven without activation or threads.
    friend struct NetDeviceTestAccess;
    struct Pair;
    void on_ctrl();
    uint8_t ctrl_command(uint8_t cls, uint8_t cmd, Reader& data);
    void set_active_pairs(size_t n);
    void note(std::atomic<uint64_t>& counter, const std::string& what);

    NetConfig cfg_;
    std::shared_ptr<NetBackend> backend_;
    size_t pairs_;
    Stats stats_;
    // Valid while active.
    const GuestMemory* mem_ = nullptr;
    uint64_t features_ = 0;
    std::vector<std::unique_ptr<Pair>> workers_;
    std::unique_ptr<QueueWorker> ctrl_worker_;
    ServedQueue* ctrl_ = nullptr;  // owned by ctrl_worker_
    // Written by the control thread; each pair keeps a copy and takes a new
    // one when the generation moves, so receiving takes no lock.
    mutable std::mutex filter_mu_;
    RxFilter filter_;
    std::atomic<uint64_t> filter_gen_{0};
    void update_filter(const std::function<void(RxFilter&)>& change);
};

}  // namespace vmm::virtio
