#include "virtio/balloon.h"

#include <sys/timerfd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

// Config space layout (virtio 1.x 5.5.4), all little-endian u32.
constexpr uint64_t kCfgNumPages = 0;
constexpr uint64_t kCfgActual = 4;
constexpr uint64_t kCfgSize = 16;  // + free_page_hint_cmd_id, poison_val (features not offered: zero)

constexpr size_t kPfnBatch = 256;  // PFNs read from a chain at a time
constexpr size_t kStatSize = 10;   // packed { le16 tag; le64 val; }

bool has(uint64_t features, unsigned bit) { return (features >> bit) & 1; }

}  // namespace

const char* BalloonDevice::stat_name(uint16_t tag) {
    static constexpr const char* kNames[] = {
        "swap_in",          "swap_out",     "major_faults",        "minor_faults",     "free_memory",
        "total_memory",     "available_memory", "disk_caches",     "hugetlb_allocations", "hugetlb_failures",
    };
    return tag < std::size(kNames) ? kNames[tag] : nullptr;
}

PfnScan scan_pfns(const GuestMemory& mem, const DescriptorChain& chain,
                  const std::function<void(uint64_t first, uint64_t count)>& on_run) {
    PfnScan out;
    Reader r(mem, chain);
    out.trailing = r.remaining() % 4;
    uint64_t run_start = 0, run_len = 0;  // pages
    auto flush = [&] {
        if (run_len) on_run(run_start, run_len);
        run_len = 0;
    };
    std::array<uint8_t, kPfnBatch * 4> pfns;
    while (size_t n = std::min(r.remaining() / 4, kPfnBatch)) {
        if (!r.read({pfns.data(), n * 4})) break;
        for (size_t i = 0; i < n; ++i) {
            uint64_t pfn = load_le32(pfns, 4 * i);  // 32-bit frame number: pfn * 4096 cannot overflow
            if (!mem.contains(pfn * kBalloonPageSize, kBalloonPageSize)) {
                ++out.bad;
                flush();
                continue;
            }
            ++out.good;
            if (run_len && pfn == run_start + run_len) {
                ++run_len;
            } else {
                flush();
                run_start = pfn, run_len = 1;
            }
        }
    }
    flush();
    return out;
}

StatsScan scan_stats(const GuestMemory& mem, const DescriptorChain& chain) {
    StatsScan out;
    Reader r(mem, chain);
    uint8_t rec[kStatSize];
    while (r.remaining() >= kStatSize && r.read(rec)) {
        const uint16_t tag = load_le16(rec, 0);
        const uint64_t val = load_le64(rec, 2);
        if (const char* n = BalloonDevice::stat_name(tag)) out.values[std::string("guest_") + n] = val;
    }
    out.trailing = r.remaining();
    return out;
}

BalloonDevice::BalloonDevice(BalloonConfig cfg) : cfg_(std::move(cfg)), target_(cfg_.target_pages) {}

BalloonDevice::~BalloonDevice() { reset(); }

std::vector<uint16_t> BalloonDevice::queue_max_sizes() const {
    // The most queues a driver can use; with fewer features it uses fewer.
    size_t n = 2 + (cfg_.stats ? 1 : 0) + (cfg_.free_page_reporting ? 1 : 0);
    return std::vector<uint16_t>(n, cfg_.queue_size);
}

uint64_t BalloonDevice::device_features() const {
    uint64_t f = 0;
    if (cfg_.stats) f |= 1ull << kBalloonFStatsVq;
    if (cfg_.deflate_on_oom) f |= 1ull << kBalloonFDeflateOnOom;
    if (cfg_.free_page_reporting) f |= 1ull << kBalloonFPageReporting;
    return f;
}

void BalloonDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, kCfgSize> cfg{};
    store_le32(cfg, kCfgNumPages, target_.load());
    store_le32(cfg, kCfgActual, actual_.load());
    read_window(cfg, offset, data);
}

void BalloonDevice::write_config(uint64_t offset, std::span<const uint8_t> data) {
    // Only `actual` is driver-writable; a write may cover part of it.
    uint8_t bytes[4];
    store_le32(bytes, 0, actual_.load());
    bool touched = false;
    for (size_t i = 0; i < data.size() && i <= UINT64_MAX - offset; ++i) {  // no wrap past 2^64
        uint64_t at = offset + i;
        if (at >= kCfgActual && at < kCfgActual + 4) bytes[at - kCfgActual] = data[i], touched = true;
    }
    if (!touched) return;
    const uint32_t act = load_le32(bytes, 0);
    actual_.store(act);
    log::debug("{}: driver reports {} pages in the balloon (target {})", cfg_.name, act, target_.load());
}

void BalloonDevice::set_target_pages(uint32_t pages) {
    target_.store(pages);
    std::lock_guard lk(irq_mu_);
    if (irq_) irq_->signal_config();
}

void BalloonDevice::activate(ActivationContext ctx) {
    reset();
    mem_ = ctx.mem;
    {
        std::lock_guard lk(irq_mu_);
        irq_ = ctx.interrupt;
    }
    // Queue numbering follows the negotiated features: absent queues are
    // skipped, not left as holes.
    std::vector<Role> roles = {Role::Inflate, Role::Deflate};
    if (has(ctx.features, kBalloonFStatsVq)) roles.push_back(Role::Stats);
    if (has(ctx.features, kBalloonFPageReporting)) roles.push_back(Role::Reporting);
    worker_ = std::make_unique<QueueWorker>(cfg_.name, cfg_.name, ctx, errors_);
    for (auto& q : ctx.queues) {
        if (q.index >= roles.size()) continue;  // a queue the negotiated features leave unused
        const Role role = roles[q.index];
        ServedQueue& s = worker_->add(std::move(q), [this, role](ServedQueue& sq) {
            switch (role) {
                case Role::Inflate: on_pfns(sq, true); break;
                case Role::Deflate: on_pfns(sq, false); break;
                case Role::Stats: on_stats(sq); break;
                case Role::Reporting: on_reporting(sq); break;
            }
        });
        if (role == Role::Stats) stats_q_ = &s;
    }
    if (stats_q_ && cfg_.stats_interval_ms) {
        stats_timer_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
        if (stats_timer_.get() < 0) throw_errno(cfg_.name + ": timerfd_create");
        itimerspec its{};
        its.it_interval.tv_sec = cfg_.stats_interval_ms / 1000;
        its.it_interval.tv_nsec = static_cast<long>(cfg_.stats_interval_ms % 1000) * 1000000;
        its.it_value = its.it_interval;
        if (::timerfd_settime(stats_timer_.get(), 0, &its, nullptr) != 0) throw_errno(cfg_.name + ": timerfd_settime");
        worker_->loop().add(stats_timer_.get(), [this](uint32_t) {
            uint64_t n;
            if (::read(stats_timer_.get(), &n, sizeof n) < 0 && errno != EAGAIN) return;
            on_stats_timer();
        });
    }
    worker_->start();
}

void BalloonDevice::reset() {
    worker_.reset();  // joins the thread
    stats_chain_.reset();
    stats_q_ = nullptr;
    stats_timer_ = Fd();
    std::lock_guard lk(irq_mu_);
    irq_.reset();
}

void BalloonDevice::note_error(const std::string& what) {
    static log::RateLimit rl;
    if (rl.allow()) log::warn("{}: {}", cfg_.name, what);
    ++errors_;
}

// Inflate and deflate: each chain is an array of le32 4 KiB frame numbers.
// Inflated frames are discarded in runs of consecutive frames (one madvise
// per run); deflated frames need nothing (they fault back in on use).
void BalloonDevice::on_pfns(ServedQueue& q, bool inflate) {
    q.drain([&](DescriptorChain& chain) {
        PfnScan got = scan_pfns(*mem_, chain, [&](uint64_t first, uint64_t count) {
            if (inflate) discarded_bytes_ += mem_->discard(first * kBalloonPageSize, count * kBalloonPageSize);
        });
        if (got.trailing)
            note_error(fmt::format("{} chain of {} bytes is not a whole number of 4-byte frame numbers",
                                   inflate ? "inflate" : "deflate", chain.readable_bytes()));
        if (got.bad) {
            bad_pfns_ += got.bad;
            static log::RateLimit rl;
            if (rl.allow()) log::warn("{}: {} frame numbers outside guest RAM", cfg_.name, got.bad);
        }
        (inflate ? inflated_ : deflated_) += got.good;
        q.push(chain, 0);
    });
    q.notify();
}

// The stats buffer: parse it, keep it until the next refresh.
void BalloonDevice::on_stats(ServedQueue& q) {
    q.drain([&](DescriptorChain& chain) {
        if (stats_chain_) {
            // A second buffer while one is held: the driver broke the
            // protocol. Give the older back rather than leak it.
            note_error("stats buffer posted while the previous one is still held");
            q.push(*stats_chain_, 0);
        }
        StatsScan got = scan_stats(*mem_, chain);
        if (got.trailing) note_error(fmt::format("stats buffer has {} trailing bytes", got.trailing));
        {
            std::lock_guard lk(stats_mu_);
            for (auto& [k, v] : got.values) guest_stats_[k] = v;
        }
        ++stats_updates_;
        stats_chain_ = std::move(chain);
    });
    q.notify();
}

// Hands the held stats buffer back: the driver refills it and posts it again.
void BalloonDevice::on_stats_timer() {
    if (!stats_q_ || !stats_chain_) return;
    stats_q_->push(*stats_chain_, 0);
    stats_chain_.reset();
    stats_q_->notify();
}

// Free page reporting: every buffer of the chain is a free block of guest
// memory (the queue engine has checked each lies wholly in RAM).
void BalloonDevice::on_reporting(ServedQueue& q) {
    q.drain([&](DescriptorChain& chain) {
        for (auto* part : {&chain.readable, &chain.writable})
        for (const Buffer& b : *part) {
            reported_bytes_ += b.len;
            discarded_bytes_ += mem_->discard(b.addr, b.len);
        }
        q.push(chain, 0);
    });
    q.notify();
}

std::map<std::string, uint64_t> BalloonDevice::counters() const {
    auto c = counters_.snapshot();
    c["target_bytes"] = uint64_t{target_.load()} * kBalloonPageSize;
    c["actual_bytes"] = uint64_t{actual_.load()} * kBalloonPageSize;
    std::lock_guard lk(stats_mu_);
    c.insert(guest_stats_.begin(), guest_stats_.end());
    return c;
}

}  // namespace vmm::virtio
