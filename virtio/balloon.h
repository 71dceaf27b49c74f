// virtio-balloon (virtio 1.x section 5.5): the host asks the guest to give
// memory back by setting a target balloon size (config num_pages, in 4 KiB
// pages); the driver allocates that many pages and lists their frame
// numbers on the inflate queue, and the device releases them to the host
// (GuestMemory::discard, madvise DONTNEED), so the VMM's RSS falls. Lowering
// the target makes the driver deflate (hand pages back to its allocator;
// they fault in again on first touch).
//
// Queues, in this order, each present only when its feature is negotiated
// (Linux numbers the queues it uses consecutively, skipping absent ones):
//   inflate, deflate, [stats: STATS_VQ], [reporting: PAGE_REPORTING]
// - stats: the driver posts one buffer of (tag u16, value u64) records. The
//   device keeps it and returns it every stats interval; the driver then
//   refills and re-posts it. The last values are in counters() as guest_*.
// - reporting (free page reporting): chains whose buffers are free guest
//   pages (2 MiB or larger blocks); the device discards them and returns the
//   chain.
// DEFLATE_ON_OOM is only a feature bit: the guest then deflates by itself
// when it runs out of memory.
//
// Guest input is hostile: frame numbers outside RAM are counted (bad_pfns)
// and skipped, a chain of PFNs whose length is not a multiple of 4 or a
// stats record cut short is counted (errors), and a malformed ring stops
// the device with DEVICE_NEEDS_RESET. All counted with a rate-limited log.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "virtio/device.h"
#include "virtio/served_queue.h"
#include "vmm/core/counters.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/fd.h"

namespace vmm::virtio {

// Feature bits (virtio 1.x 5.5.3).
inline constexpr unsigned kBalloonFStatsVq = 1;
inline constexpr unsigned kBalloonFDeflateOnOom = 2;
inline constexpr unsigned kBalloonFPageReporting = 5;

inline constexpr uint64_t kBalloonPageSize = 4096;  // PFNs are always 4 KiB frames

// The guest-facing parsing of the inflate/deflate and stats queues, as
// functions of guest memory and one chain (the device's queue handlers and
// the fuzz target use them). A chain buffer outside RAM throws QueueError;
// the queue engine never hands such a chain over.
struct PfnScan {
    uint64_t good = 0;    // frame numbers of pages inside guest RAM
    uint64_t bad = 0;     // frame numbers outside it (skipped)
    size_t trailing = 0;  // bytes after the last whole le32 frame number
};
// Calls on_run(first, count) for each run of consecutive in-RAM frames, in
// chain order (a run never crosses a frame outside RAM).
PfnScan scan_pfns(const GuestMemory& mem, const DescriptorChain& chain,
                  const std::function<void(uint64_t first, uint64_t count)>& on_run);

struct StatsScan {
    std::map<std::string, uint64_t> values;  // "guest_free_memory" -> value; unknown tags skipped
    size_t trailing = 0;                     // bytes after the last whole 10-byte record
};
StatsScan scan_stats(const GuestMemory& mem, const DescriptorChain& chain);

struct BalloonConfig {
    std::string name = "virtio-balloon0";
    uint16_t queue_size = 256;
    uint32_t target_pages = 0;  // initial balloon size (config num_pages)
    bool deflate_on_oom = false;
    bool free_page_reporting = false;
    bool stats = true;                  // offer the stats queue
    uint32_t stats_interval_ms = 5000;  // how often the stats buffer is returned for a refresh; 0: never
};

class BalloonDevice final : public VirtioDevice {
public:
    explicit BalloonDevice(BalloonConfig cfg);
    ~BalloonDevice() override;

    uint32_t device_type() const override { return kDeviceBalloon; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override;
    uint64_t device_features() const override;
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;
    std::map<std::string, uint64_t> counters() const override;

    // A new target (any thread): config num_pages changes and the driver
    // gets a configuration-change interrupt if it is running.
    void set_target_pages(uint32_t pages);
    uint32_t target_pages() const { return target_.load(); }
    // What the driver last reported in config `actual`.
    uint32_t actual_pages() const { return actual_.load(); }

    // Names of the stats tags (virtio 1.x 5.5.6.3), e.g. 4 -> "free_memory";
    // nullptr for a tag this device does not know.
    static const char* stat_name(uint16_t tag);

private:
    enum class Role { Inflate, Deflate, Stats, Reporting };

    void on_pfns(ServedQueue& q, bool inflate);
    void on_stats(ServedQueue& q);
    void on_reporting(ServedQueue& q);
    void on_stats_timer();
    void note_error(const std::string& what);

    BalloonConfig cfg_;
    std::atomic<uint32_t> target_, actual_{0};
    // The event counters; counters() adds the sizes and the guest's stats.
    CounterSet counters_;
    std::atomic<uint64_t>& inflated_ = counters_.add("inflated_pages");
    std::atomic<uint64_t>& deflated_ = counters_.add("deflated_pages");
    std::atomic<uint64_t>& discarded_bytes_ = counters_.add("discarded_bytes");
    std::atomic<uint64_t>& reported_bytes_ = counters_.add("reported_bytes");
    std::atomic<uint64_t>& bad_pfns_ = counters_.add("bad_pfns");
    std::atomic<uint64_t>& errors_ = counters_.add("errors");
    std::atomic<uint64_t>& stats_updates_ = counters_.add("stats_updates");
    mutable std::mutex stats_mu_;
    std::map<std::string, uint64_t> guest_stats_;  // "guest_free_memory" -> value

    std::mutex irq_mu_;  // irq_ is read by set_target_pages on any thread
    std::shared_ptr<VirtioInterrupt> irq_;
    // Valid while active (used by the I/O thread after activate()).
    const GuestMemory* mem_ = nullptr;
    ServedQueue* stats_q_ = nullptr;              // owned by worker_
    std::optional<DescriptorChain> stats_chain_;  // held until the next refresh
    Fd stats_timer_;
    std::unique_ptr<QueueWorker> worker_;  // last: its thread stops first
};

}  // namespace vmm::virtio
