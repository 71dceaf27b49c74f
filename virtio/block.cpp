// virtio-blk device: config space, features, and the per-queue I/O loop.
#include "virtio/block.h"
#include "virtio/request_queue.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per segment
constexpr uint32_t kMaxDiscardSeg = 32;
constexpr uint32_t kMaxWriteZeroesSectors = 1u << 22;
constexpr uint32_t kMaxWriteZeroesSeg = 32;
constexpr uint16_t kMaxQueues = 64;

log::RateLimit g_guest_errors;

}  // namespace

// One queue: owned by its I/O thread once started.
struct BlockDevice::Worker {
    struct Slot {
        DescriptorChain chain;
        blk::Request req;
        unsigned pending = 0;  // host ops not yet completed
        int result = 0;        // first failure
    };

    BlockDevice& dev;
    QueueWorker io;
    RequestQueue& ring;
    std::unique_ptr<DiskEngine> engine;
    std::vector<std::unique_ptr<Slot>> slots;  // indexed by cookie
    std::vector<DiskRequest> batch;
    std::vector<DiskCompletion> done;

    Worker(BlockDevice& d, ActiveQueue&& aq)
        : dev(d), io(io_thread_name(d.cfg_.name, "q" + std::to_string(aq.index)), d.cfg_.name, d.ctx_,
                     d.counters_.errors),
          ring(io.add_requests(std::move(aq), [this](ServedQueue&) { process(); })),
          engine(make_disk_engine(d.disk_, ring.queue().size())), slots(ring.slots()) {
        io.loop().add(engine->event_fd(), [this](uint32_t) { on_completion(); });
        if (d.cfg_.poll_us) {
            // The ring is polled by the worker; the disk's completions too.
            io.set_poll_max_ns(uint64_t{d.cfg_.poll_us} * 1000);
            io.loop().add_poll({.poll =
                                    [this] {
                                        if (!engine->completions_ready()) return false;
                                        on_completion();
                                        return true;
                                    },
                                .mode = [this](bool spinning) { return engine->set_polling(spinning); }});
        }
    }
    ~Worker() { io.stop(); }  // before the engine and slots the thread uses go

    // Pops what the ring has (or until every slot is busy), then submits the
    // batch once and raises at most one interrupt.
    void process() {
        ring.pop_all([this](DescriptorChain&& chain) { handle(std::move(chain)); });
        if (!batch.empty()) {
            dev.counters_.host_ops.fetch_add(batch.size(), std::memory_order_relaxed);
            engine->submit(batch);
            batch.clear();
        }
        ring.notify();
    }

    void handle(DescriptorChain chain) {
        dev.counters_.requests.fetch_add(1, std::memory_order_relaxed);
        blk::Request req = blk::parse(*dev.ctx_.mem, chain, dev.limits_, dev.cfg_.serial);
        if (req.error && g_guest_errors.allow())
            log::warn("{}: q{}: {} (type {})", dev.cfg_.name, ring.index(), req.error, req.type);
        switch (req.action) {
        case blk::Action::Drop:
            dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
            ring.push(chain, 0);
            return;
        case blk::Action::Complete:
            if (req.status != blk::kStatusOk) dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
            ring.push(chain, blk::finish(req, req.status));
            return;
        default:
            break;
        }
        uint32_t cookie = ring.acquire();
        auto slot = std::make_unique<Slot>();
        slot->chain = std::move(chain);
        slot->req = std::move(req);
        blk::Request& r = slot->req;
        auto add = [&](DiskOp op, uint64_t off, uint64_t len, bool unmap) {
            DiskRequest d;
            d.op = op;
            d.offset = off;
            d.length = len;
            d.unmap = unmap;
            d.cookie = cookie;
            if (op == DiskOp::Read || op == DiskOp::Write) d.iov = r.iov;
            batch.push_back(std::move(d));
            ++slot->pending;
        };
        switch (r.action) {
        case blk::Action::Read:
            add(DiskOp::Read, r.offset, r.length, false);
            break;
        case blk::Action::Write:
            add(DiskOp::Write, r.offset, r.length, false);
            break;
        case blk::Action::Flush:
            add(DiskOp::Flush, 0, 0, false);
            break;
        case blk::Action::Discard:
        case blk::Action::WriteZeroes:
            for (auto& range : r.ranges)
                add(r.action == blk::Action::Discard ? DiskOp::Discard : DiskOp::WriteZeroes, range.offset,
                    range.length, range.unmap);
            break;
        default:
            break;
        }
        slots[cookie] = std::move(slot);
    }

    void on_completion() {
        done.clear();
        engine->reap(done);
        for (auto& c : done) {
            if (c.cookie >= slots.size() || !slots[c.cookie]) continue;  // cannot happen: our own cookies
            Slot& s = *slots[c.cookie];
            if (c.result < 0 && s.result == 0) s.result = c.result;
            if (--s.pending) continue;
            complete(static_cast<uint32_t>(c.cookie));
        }
        if (ring.resume()) process();  // also raises the interrupt
        else ring.notify();
    }

    void complete(uint32_t cookie) {
        std::unique_ptr<Slot> s = std::move(slots[cookie]);
        ring.release(cookie);
        uint8_t status = s->result ? blk::kStatusIoErr : blk::kStatusOk;
        if (s->result) {
            dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
            if (g_guest_errors.allow())
                log::warn("{}: q{}: request type {} failed: {}", dev.cfg_.name, ring.index(), s->req.type,
                          std::strerror(-s->result));
        } else if (s->req.action == blk::Action::Read) {
            dev.counters_.read_bytes.fetch_add(s->req.length, std::memory_order_relaxed);
        } else if (s->req.action == blk::Action::Write) {
            dev.counters_.write_bytes.fetch_add(s->req.length, std::memory_order_relaxed);
        }
        // Once broken the driver will reset the queue; push() leaves the ring alone.
        ring.push(s->chain, blk::finish(s->req, status));
    }

    // After the thread stopped: wait for host I/O that still points into
    // guest memory or bounce buffers, then drop the completions unanswered.
    void quiesce() {
        io.stop();
        engine->drain();
        done.clear();
        engine->reap(done);
        dev.counters_.bounced.fetch_add(engine->bounced(), std::memory_order_relaxed);
    }
};

BlockDevice::BlockDevice(BlockConfig cfg) : cfg_(std::move(cfg)), disk_(cfg_.disk) {
    const std::string& p = cfg_.disk.path;
    if (cfg_.serial.size() > blk::kIdBytes)
        fail("--disk path={}: serial= is longer than {} bytes", p, blk::kIdBytes);
    if (cfg_.num_queues < 1 || cfg_.num_queues > kMaxQueues)
        fail("--disk path={}: num_queues={} is outside 1..{}", p, cfg_.num_queues, kMaxQueues);
    if (cfg_.queue_size < 4 || cfg_.queue_size > kMaxQueueSize || !std::has_single_bit(cfg_.queue_size))
        fail("--disk path={}: queue size {} must be a power of two in 4..{}", p, cfg_.queue_size, kMaxQueueSize);
    limits_.capacity = disk_.size_bytes() / blk::kSectorSize;
    limits_.readonly = disk_.readonly();
    limits_.max_discard_sectors = kMaxDiscardSectors;
    limits_.max_discard_seg = kMaxDiscardSeg;
    limits_.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
    limits_.max_write_zeroes_seg = kMaxWriteZeroesSeg;
    build_config();
}

BlockDevice::~BlockDevice() { reset(); }

void BlockDevice::build_config() {
    std::span<uint8_t> c(config_);
    uint32_t lbs = disk_.logical_block_size();
    uint32_t pbs = disk_.physical_block_size();
    store_le64(c, 0, limits_.capacity);
    store_le32(c, 8, 0);                                            // size_max: not offered
    store_le32(c, 12, static_cast<uint32_t>(cfg_.queue_size - 2));  // seg_max
    store_le32(c, 20, lbs);                                         // blk_size
    store_u8(c, 24, static_cast<uint8_t>(std::countr_zero(pbs / lbs)));  // physical_block_exp
    store_u8(c, 25, 0);                                             // alignment_offset
    store_le16(c, 26, static_cast<uint16_t>(pbs / lbs));            // min_io_size, in logical blocks
    store_le32(c, 28, 0);                                           // opt_io_size: unknown
    store_u8(c, 32, disk_.readonly() ? 0 : 1);                      // writeback (we have a cache)
    store_le16(c, 34, cfg_.num_queues);
    if (!disk_.readonly()) {
        store_le32(c, 36, kMaxDiscardSectors);
        store_le32(c, 40, kMaxDiscardSeg);
        store_le32(c, 44, std::max<uint32_t>(1, disk_.discard_granularity() / blk::kSectorSize));
        store_le32(c, 48, kMaxWriteZeroesSectors);
        store_le32(c, 52, kMaxWriteZeroesSeg);
        store_u8(c, 56, 1);  // write_zeroes_may_unmap
    }
}

std::vector<uint16_t> BlockDevice::queue_max_sizes() const {
    return std::vector<uint16_t>(cfg_.num_queues, cfg_.queue_size);
}

uint64_t BlockDevice::device_features() const {
    auto bit = [](unsigned b) { return uint64_t{1} << b; };
    uint64_t f = bit(kBlkFeatureSegMax) | bit(kBlkFeatureBlkSize) | bit(kBlkFeatureTopology);
    if (disk_.readonly())
        f |= bit(kBlkFeatureRo);
    else
        f |= bit(kBlkFeatureFlush) | bit(kBlkFeatureDiscard) | bit(kBlkFeatureWriteZeroes);
    if (cfg_.num_queues > 1) f |= bit(kBlkFeatureMq);
    return f;
}

void BlockDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
    read_window(config_, offset, data);
}

void BlockDevice::activate(ActivationContext ctx) {
    reset();
    if (!ctx.mem) fail("{}: activated without guest memory", cfg_.name);
    if (ctx.queues.size() > cfg_.num_queues)
        fail("{}: {} queues activated, {} offered", cfg_.name, ctx.queues.size(), cfg_.num_queues);
    std::vector<ActiveQueue> queues = std::move(ctx.queues);
    ctx_ = std::move(ctx);
    try {
        for (auto& aq : queues) {
            if (!aq.kick) fail("{}: queue {} has no kick eventfd", cfg_.name, aq.index);
            workers_.push_back(std::make_unique<Worker>(*this, std::move(aq)));
        }
        for (auto& w : workers_) w->io.start();
    } catch (...) {
        reset();
        throw;
    }
    const char* engine = workers_.empty() ? "no" : workers_[0]->engine->name();
    // Once per disk: which engine runs decides most of the performance.
    if (!engine_logged_ && !workers_.empty()) {
        engine_logged_ = true;
        log::info("{}: {} engine{}", cfg_.name, engine, disk_.direct() ? ", O_DIRECT" : "");
    }
    log::debug("{}: active, {} queue(s), {} engine, {} sectors", cfg_.name, workers_.size(), engine,
               limits_.capacity);
}

void BlockDevice::reset() {
    for (auto& w : workers_) w->quiesce();
    if (!workers_.empty()) {
        const auto& s = counters_;
        log::info("{}: {} requests ({} host ops, {} bounced), {} MiB read, {} MiB written, {} errors", cfg_.name,
                  s.requests.load(), s.host_ops.load(), s.bounced.load(), s.read_bytes.load() >> 20,
                  s.write_bytes.load() >> 20, s.errors.load());
    }
    workers_.clear();
    ctx_ = ActivationContext{};
}

std::map<std::string, uint64_t> BlockDevice::counters() const { return counters_.set.snapshot(); }

}  // namespace vmm::virtio
