// virtio-scsi device: config space, the control queue and the request
// queues' I/O loops (see scsi.h). SCSI semantics live in scsi_target.cpp.
#include "virtio/scsi.h"
#include "virtio/request_queue.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <thread>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

static_assert(std::endian::native == std::endian::little, "virtio structures are little-endian");

namespace {

constexpr uint32_t kMaxSectors = 0xffff;  // config max_sectors (512-byte units) = scsi::kMaxTransferBytes
constexpr uint16_t kMaxQueues = 64;
constexpr unsigned kEngineDepth = 64;     // per LUN and queue: enough to keep a disk busy
constexpr auto kTmfWait = std::chrono::seconds(30);

log::RateLimit g_guest_errors;

uint32_t sat32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v); }

// The virtio-scsi command response: header plus sense_size sense bytes.
std::vector<uint8_t> response(uint32_t sense_size, uint8_t status, uint8_t resp, uint64_t resid,
                              const scsi::Sense* sense) {
    std::vector<uint8_t> b(scsi::kRespHeaderSize + sense_size, 0);
    uint32_t sense_len = 0;
    if (sense) {
        auto s = scsi::fixed_sense(*sense);
        sense_len = static_cast<uint32_t>(std::min<size_t>(s.size(), sense_size));
        std::memcpy(b.data() + scsi::kRespHeaderSize, s.data(), sense_len);
    }
    store_le32(b, 0, sense_len);
    store_le32(b, 4, sat32(resid));
    b[10] = status;
    b[11] = resp;
    return b;
}

}  // namespace

// ---------------------------------------------------------------------------
// One request queue, owned by its I/O thread once started.

struct ScsiDevice::Worker {
    struct Slot {
        DescriptorChain chain;
        std::vector<iovec> resp;  // response area in guest RAM
        uint32_t sense_size = 0;
        uint32_t used = 0;        // bytes written on success
        uint64_t resid = 0;
        scsi::Io io = scsi::Io::None;
        uint64_t length = 0;
        size_t unit = 0;
        bool fua = false;         // a flush still follows the write
        unsigned pending = 0;
        int result = 0;
    };

    ScsiDevice& dev;
    QueueWorker io;
    RequestQueue& ring;
    std::vector<std::unique_ptr<DiskEngine>> engines;     // per unit, made on first use
    std::vector<std::vector<DiskRequest>> batches;        // per unit, this round
    std::vector<size_t> touched;                          // units with a batch
    std::vector<std::unique_ptr<Slot>> slots;             // indexed by cookie

    Worker(ScsiDevice& d, ActiveQueue&& aq)
        : dev(d), io(io_thread_name(d.cfg_.name, "q" + std::to_string(aq.index)), d.cfg_.name, d.ctx_,
                     d.counters_.errors),
          ring(io.add_requests(std::move(aq), [this](ServedQueue&) { process(); })), engines(d.units_.size()),
          batches(d.units_.size()), slots(ring.slots()) {}
    ~Worker() { io.stop(); }  // before the engines and slots the thread uses go

    void process() {
        ring.pop_all([this](DescriptorChain&& chain) { handle(std::move(chain)); });
        submit();
        ring.notify();
    }

    void submit() {
        for (size_t u : touched) {
            if (batches[u].empty()) continue;
            engines[u]->submit(batches[u]);
            batches[u].clear();
        }
        touched.clear();
    }

    // The unit's engine; made (and its eventfd watched) on first use, on this thread.
    DiskEngine* engine(size_t unit) {
        if (!engines[unit]) {
            auto e = make_disk_engine(*dev.units_[unit].disk, std::min<unsigned>(ring.slots(), kEngineDepth));
            io.loop().add(e->event_fd(), [this, unit](uint32_t) { on_completion(unit); });
            engines[unit] = std::move(e);
        }
        return engines[unit].get();
    }

    void guest_error(const char* what, uint32_t lun = 0) {
        dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
        if (g_guest_errors.allow()) log::warn("{}: q{}: {} (lun {})", dev.cfg_.name, ring.index(), what, lun);
    }

    void handle(DescriptorChain chain) {
        dev.counters_.requests.fetch_add(1, std::memory_order_relaxed);
        const GuestMemory& mem = *dev.ctx_.mem;
        Reader r(mem, chain);
        Writer w(mem, chain);
        uint32_t sense_size = dev.sense_size_.load(std::memory_order_relaxed);
        uint32_t cdb_size = dev.cdb_size_.load(std::memory_order_relaxed);
        size_t resp_size = scsi::kRespHeaderSize + sense_size;
        if (w.remaining() < resp_size) {
            guest_error("no room for the response; request dropped");
            ring.push(chain, 0);
            return;
        }
        std::vector<iovec> resp = w.take_iovecs(resp_size);
        uint64_t din_total = w.remaining();
        auto answer = [&](uint8_t status, uint8_t code, uint64_t resid, const scsi::Sense* sense, size_t data = 0) {
            scatter(resp, 0, response(sense_size, status, code, resid, sense));
            ring.push(chain, static_cast<uint32_t>(resp_size + data));
        };

        std::vector<uint8_t> hdr(scsi::kCmdHeaderSize + cdb_size);
        if (!r.read(hdr)) {
            guest_error("request shorter than its header");
            answer(scsi::kStatusGood, scsi::kRespFailure, din_total, nullptr);
            return;
        }
        uint64_t dout_total = r.remaining();
        auto a = scsi::decode_lun(std::span<const uint8_t, 8>(hdr.data(), 8));
        if (!a.ok || a.addr.target != 0 || dev.target_.empty()) {
            dev.counters_.bad_target.fetch_add(1, std::memory_order_relaxed);
            answer(scsi::kStatusGood, scsi::kRespBadTarget, din_total + dout_total, nullptr);
            return;
        }
        uint32_t lun = a.addr.lun;
        std::span<const uint8_t> cdb(hdr.data() + scsi::kCmdHeaderSize, cdb_size);
        auto unit_it = dev.unit_of_lun_.find(lun);
        const scsi::Lun* l = dev.target_.find(lun);
        uint32_t bs = l ? l->info().block_size : 512;

        std::vector<uint8_t> params(std::min<uint64_t>(scsi::parameter_length(cdb, bs), r.remaining()));
        if (!params.empty()) r.read(params);  // cannot fail: length checked

        scsi::Outcome o = dev.target_.execute(lun, cdb, params);
        if (o.check()) {
            dev.counters_.check_conditions.fetch_add(1, std::memory_order_relaxed);
            answer(scsi::kStatusCheckCondition, scsi::kRespOk, din_total + r.remaining(), &o.sense);
            return;
        }
        uint64_t dout_left = r.remaining();
        switch (o.io) {
        case scsi::Io::None: {
            size_t n = static_cast<size_t>(std::min<uint64_t>(o.data.size(), w.remaining()));
            if (n) w.write(std::span<const uint8_t>(o.data.data(), n));
            answer(scsi::kStatusGood, scsi::kRespOk, din_total - n + dout_left, nullptr, n);
            return;
        }
        case scsi::Io::Read:
        case scsi::Io::Write: {
            bool read = o.io == scsi::Io::Read;
            uint64_t avail = read ? din_total : dout_left;
            if (o.length > avail) {
                guest_error(read ? "READ longer than the data-in buffers" : "WRITE longer than the data-out buffers",
                            lun);
                answer(scsi::kStatusGood, scsi::kRespOverrun, din_total + dout_left, nullptr);
                return;
            }
            if (o.length == 0) {
                answer(scsi::kStatusGood, scsi::kRespOk, din_total + dout_left, nullptr);
                return;
            }
            break;
        }
        default:
            break;
        }
        if (unit_it == dev.unit_of_lun_.end()) {  // cannot happen: only LUNs with a unit ask for I/O
            answer(scsi::kStatusCheckCondition, scsi::kRespOk, din_total, &scsi::kInternalFailure);
            return;
        }
        size_t unit = unit_it->second;
        DiskEngine* e;
        try {
            e = engine(unit);
        } catch (const Error& err) {
            if (g_guest_errors.allow()) log::error("{}: lun {}: {}", dev.cfg_.name, lun, err.what());
            dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
            answer(scsi::kStatusCheckCondition, scsi::kRespOk, din_total, &scsi::kInternalFailure);
            return;
        }
        (void)e;

        uint32_t cookie = ring.acquire();
        auto slot = std::make_unique<Slot>();
        slot->resp = std::move(resp);
        slot->sense_size = sense_size;
        slot->io = o.io;
        slot->length = o.length;
        slot->unit = unit;
        slot->fua = o.fua;
        auto add = [&](DiskOp op, uint64_t off, uint64_t len, std::vector<iovec> iov, bool unmap) {
            DiskRequest d;
            d.op = op;
            d.offset = off;
            d.length = len;
            d.iov = std::move(iov);
            d.unmap = unmap;
            d.cookie = cookie;
            batches[unit].push_back(std::move(d));
            ++slot->pending;
        };
        switch (o.io) {
        case scsi::Io::Read:
            slot->used = static_cast<uint32_t>(resp_size + o.length);
            slot->resid = din_total - o.length + dout_left;
            add(DiskOp::Read, o.offset, o.length, w.take_iovecs(o.length), false);
            break;
        case scsi::Io::Write:
            slot->used = static_cast<uint32_t>(resp_size);
            slot->resid = din_total + dout_left - o.length;
            add(DiskOp::Write, o.offset, o.length, r.take_iovecs(o.length), false);
            break;
        case scsi::Io::Flush:
            slot->used = static_cast<uint32_t>(resp_size);
            slot->resid = din_total + dout_left;
            add(DiskOp::Flush, 0, 0, {}, false);
            break;
        case scsi::Io::Unmap:
        case scsi::Io::WriteZeroes:
            slot->used = static_cast<uint32_t>(resp_size);
            slot->resid = din_total + dout_left;
            for (auto& range : o.ranges)
                add(o.io == scsi::Io::Unmap ? DiskOp::Discard : DiskOp::WriteZeroes, range.offset, range.length, {},
                    o.unmap);
            break;
        case scsi::Io::None:
            break;
        }
        slot->chain = std::move(chain);
        if (batches[unit].size() == slot->pending) touched.push_back(unit);
        dev.inflight_.fetch_add(1, std::memory_order_relaxed);
        slots[cookie] = std::move(slot);
    }

    void on_completion(size_t unit) {
        std::vector<DiskCompletion> done;
        engines[unit]->reap(done);
        for (auto& c : done) {
            if (c.cookie >= slots.size() || !slots[c.cookie]) continue;  // cannot happen: our own cookies
            Slot& s = *slots[c.cookie];
            if (c.result < 0 && s.result == 0) s.result = c.result;
            if (--s.pending) continue;
            if (s.fua && s.result == 0) {  // FUA write: make it stable before answering
                s.fua = false;
                s.pending = 1;
                DiskRequest f;
                f.op = DiskOp::Flush;
                f.cookie = c.cookie;
                batches[unit].push_back(std::move(f));
                if (batches[unit].size() == 1) touched.push_back(unit);
                continue;
            }
            complete(static_cast<uint32_t>(c.cookie));
        }
        submit();
        if (ring.resume()) process();
        else ring.notify();
    }

    void complete(uint32_t cookie) {
        std::unique_ptr<Slot> s = std::move(slots[cookie]);
        ring.release(cookie);
        dev.inflight_.fetch_sub(1, std::memory_order_relaxed);
        std::vector<uint8_t> resp;
        uint32_t used = s->used;
        if (s->result) {
            dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
            dev.counters_.check_conditions.fetch_add(1, std::memory_order_relaxed);
            if (g_guest_errors.allow())
                log::warn("{}: q{}: host I/O on {} failed: {}", dev.cfg_.name, ring.index(),
                          dev.units_[s->unit].disk->path(), std::strerror(-s->result));
            const scsi::Sense& sense = s->io == scsi::Io::Read ? scsi::kReadError : scsi::kWriteError;
            uint64_t resid = s->resid + (s->io == scsi::Io::Read || s->io == scsi::Io::Write ? s->length : 0);
            resp = response(s->sense_size, scsi::kStatusCheckCondition, scsi::kRespOk, resid, &sense);
            used = static_cast<uint32_t>(scsi::kRespHeaderSize + s->sense_size);
        } else {
            if (s->io == scsi::Io::Read) dev.counters_.read_bytes.fetch_add(s->length, std::memory_order_relaxed);
            if (s->io == scsi::Io::Write) dev.counters_.write_bytes.fetch_add(s->length, std::memory_order_relaxed);
            resp = response(s->sense_size, scsi::kStatusGood, scsi::kRespOk, s->resid, nullptr);
        }
        if (ring.broken()) return;  // the driver will reset the queue; leave the ring alone
        scatter(s->resp, 0, resp);
        ring.push(s->chain, used);
    }

    // After the thread stopped: wait for host I/O that still points into
    // guest memory, then drop the completions unanswered.
    void quiesce() {
        io.stop();
        for (auto& e : engines) {
            if (!e) continue;
            e->drain();
            std::vector<DiskCompletion> done;
            e->reap(done);
        }
        dev.inflight_.fetch_sub(ring.busy(), std::memory_order_relaxed);
    }
};

// ---------------------------------------------------------------------------
// The control queue: task management and asynchronous-notification queries.

struct ScsiDevice::ControlWorker {
    ScsiDevice& dev;
    QueueWorker io;
    ServedQueue& queue;

    ControlWorker(ScsiDevice& d, ActiveQueue&& aq)
        : dev(d), io(io_thread_name(d.cfg_.name, "ctl"), d.cfg_.name, d.ctx_, d.counters_.errors),
          queue(io.add(std::move(aq), [this](ServedQueue&) { on_kick(); })) {}

    void on_kick() {
        queue.drain([&](DescriptorChain& chain) { queue.push(chain, handle(chain)); });
        queue.notify();
    }

    void guest_error(const char* what) {
        dev.counters_.errors.fetch_add(1, std::memory_order_relaxed);
        if (g_guest_errors.allow()) log::warn("{}: control queue: {}", dev.cfg_.name, what);
    }

    bool lun_ok(const uint8_t* field) const {
        auto a = scsi::decode_lun(std::span<const uint8_t, 8>(field, 8));
        return a.ok && a.addr.target == 0 && dev.target_.has(a.addr.lun);
    }

    // Requests cannot be cancelled once the host runs them, so aborts and
    // resets complete when nothing is in flight any more (bounded wait).
    bool wait_idle() {
        auto until = std::chrono::steady_clock::now() + kTmfWait;
        while (dev.inflight_.load(std::memory_order_relaxed) > 0) {
            if (io.loop().stop_requested() || std::chrono::steady_clock::now() > until) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }

    // Returns the bytes written.
    uint32_t handle(const DescriptorChain& chain) {
        Reader r(*dev.ctx_.mem, chain);
        Writer w(*dev.ctx_.mem, chain);
        auto type = r.read_obj<uint32_t>();
        if (!type) {
            guest_error("request without a type");
            return 0;
        }
        if (*type == scsi::kCtrlTmf) {
            dev.counters_.tmf.fetch_add(1, std::memory_order_relaxed);
            uint8_t req[20];  // subtype, lun[8], id
            uint8_t resp;
            if (!r.read(req)) {
                guest_error("task management request too short");
                resp = scsi::kRespFailure;
            } else if (!lun_ok(req + 4)) {
                resp = scsi::kRespBadTarget;
            } else {
                switch (load_le32(req, 0)) {  // subtype
                case scsi::kTmfAbortTask:
                case scsi::kTmfAbortTaskSet:
                case scsi::kTmfClearTaskSet:
                case scsi::kTmfITNexusReset:
                case scsi::kTmfLunReset:
                    resp = wait_idle() ? scsi::kRespFunctionComplete : scsi::kRespFunctionRejected;
                    break;
                case scsi::kTmfQueryTask:
                case scsi::kTmfQueryTaskSet:
                    // SUCCEEDED: a task may still be in the task set.
                    resp = dev.inflight_.load() ? scsi::kRespFunctionSucceeded : scsi::kRespFunctionComplete;
                    break;
                default:  // CLEAR ACA (NACA is refused) and unknown functions
                    resp = scsi::kRespFunctionRejected;
                    break;
                }
            }
            if (!w.write_obj(resp)) {
                guest_error("no room for the task management response");
                return 0;
            }
            return 1;
        }
        if (*type == scsi::kCtrlAnQuery || *type == scsi::kCtrlAnSubscribe) {
            uint8_t req[12];  // lun[8], event_requested
            uint8_t resp[5] = {};  // event_actual = 0: this device reports no events
            if (!r.read(req)) {
                guest_error("notification request too short");
                resp[4] = scsi::kRespFailure;
            } else {
                resp[4] = lun_ok(req) ? scsi::kRespOk : scsi::kRespBadTarget;
            }
            if (!w.write(resp)) {
                guest_error("no room for the notification response");
                return 0;
            }
            return 5;
        }
        guest_error("unknown control request type");
        return 0;
    }
};

// ---------------------------------------------------------------------------

ScsiDevice::ScsiDevice(ScsiConfig cfg) : cfg_(std::move(cfg)) {
    if (cfg_.num_queues < 1 || cfg_.num_queues > kMaxQueues)
        fail("{}: num_queues={} is outside 1..{}", cfg_.name, cfg_.num_queues, kMaxQueues);
    if (cfg_.queue_size < 4 || cfg_.queue_size > kMaxQueueSize || !std::has_single_bit(cfg_.queue_size))
        fail("{}: queue size {} must be a power of two in 4..{}", cfg_.name, cfg_.queue_size, kMaxQueueSize);
    for (auto& spec : cfg_.luns) {
        const char* opt = spec.cdrom ? "--cdrom" : "--scsi-disk";
        if (spec.lun > scsi::kMaxLun) fail("{} {}: lun {} is above {}", opt, spec.disk.path, spec.lun, scsi::kMaxLun);
        if (unit_of_lun_.count(spec.lun)) fail("{} {}: lun {} is given twice", opt, spec.disk.path, spec.lun);
        DiskOptions o = spec.disk;
        o.option = opt;
        if (spec.cdrom) o.readonly = true;
        auto img = std::make_unique<DiskImage>(o);
        scsi::LunInfo info;
        info.kind = spec.cdrom ? scsi::Kind::Cdrom : scsi::Kind::Disk;
        info.block_size = spec.cdrom ? 2048 : img->logical_block_size();
        info.physical_block_size = std::max(info.block_size, img->physical_block_size());
        info.blocks = img->size_bytes() / info.block_size;
        if (info.blocks == 0) fail("{} {}: image is smaller than one {}-byte block", opt, o.path, info.block_size);
        if (spec.cdrom && img->size_bytes() % 2048)
            log::warn("{} {}: size is not a multiple of 2048; the tail is not visible to the guest", opt, o.path);
        info.readonly = img->readonly();
        info.unmap_reads_zeroes = !img->is_block_device();  // BLKDISCARD may leave old data readable
        info.serial = fmt::format("VMMSCSI{:05}", spec.lun);
        target_.add(spec.lun, info);
        unit_of_lun_[spec.lun] = units_.size();
        units_.push_back(Unit{std::move(img), spec.lun});
    }
}

ScsiDevice::~ScsiDevice() { reset(); }

std::vector<uint16_t> ScsiDevice::queue_max_sizes() const {
    std::vector<uint16_t> q{scsi::kCtrlQueueSize, scsi::kCtrlQueueSize};
    q.insert(q.end(), cfg_.num_queues, cfg_.queue_size);
    return q;
}

void ScsiDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
    uint8_t c[kConfigSize] = {};
    store_le32(c, 0, cfg_.num_queues);
    store_le32(c, 4, static_cast<uint32_t>(cfg_.queue_size - 2));  // seg_max
    store_le32(c, 8, kMaxSectors);
    store_le32(c, 12, cfg_.queue_size);                            // cmd_per_lun
    store_le32(c, 16, 16);                                         // event_info_size: sizeof(virtio_scsi_event)
    store_le32(c, 20, sense_size_.load());
    store_le32(c, 24, cdb_size_.load());
    store_le16(c, 28, 0);                                          // max_channel
    store_le16(c, 30, 0);                                          // max_target
    store_le32(c, 32, scsi::kMaxLun);
    read_window(c, offset, data);
}

// sense_size (20) and cdb_size (24) are the only driver-writable fields;
// a whole, aligned 32-bit write within limits takes effect, anything else
// is ignored.
void ScsiDevice::write_config(uint64_t offset, std::span<const uint8_t> data) {
    if (data.size() != 4 || (offset != 20 && offset != 24)) return;
    const uint32_t v = load_le32(data, 0);
    if (offset == 20 && v <= scsi::kMaxSenseSize) sense_size_.store(v);
    if (offset == 24 && v <= scsi::kMaxCdbSize) cdb_size_.store(v);
}

void ScsiDevice::activate(ActivationContext ctx) {
    reset_threads();
    if (!ctx.mem) fail("{}: activated without guest memory", cfg_.name);
    std::vector<ActiveQueue> queues = std::move(ctx.queues);
    ctx_ = std::move(ctx);
    try {
        for (auto& aq : queues) {
            if (!aq.kick) fail("{}: queue {} has no kick eventfd", cfg_.name, aq.index);
            if (aq.index == 0) control_ = std::make_unique<ControlWorker>(*this, std::move(aq));
            else if (aq.index >= 2 && aq.index < 2 + cfg_.num_queues)
                workers_.push_back(std::make_unique<Worker>(*this, std::move(aq)));
            // queue 1 (events): buffers stay with the device, unused
        }
        if (control_) control_->io.start();
        for (auto& w : workers_) w->io.start();
    } catch (...) {
        reset_threads();
        throw;
    }
    log::debug("{}: active, {} request queue(s), {} LUN(s)", cfg_.name, workers_.size(), units_.size());
}

void ScsiDevice::reset_threads() {
    if (control_) control_->io.stop();
    for (auto& w : workers_) w->quiesce();
    control_.reset();
    workers_.clear();
    ctx_ = ActivationContext{};
}

void ScsiDevice::reset() {
    bool was_active = control_ || !workers_.empty();
    reset_threads();
    sense_size_.store(scsi::kDefaultSenseSize);
    cdb_size_.store(scsi::kDefaultCdbSize);
    if (was_active) {
        auto c = counters();
        log::info("{}: {} requests, {} MiB read, {} MiB written, {} check conditions, {} errors", cfg_.name,
                  c["requests"], c["read_bytes"] >> 20, c["write_bytes"] >> 20, c["check_conditions"], c["errors"]);
    }
}

std::map<std::string, uint64_t> ScsiDevice::counters() const { return counters_.set.snapshot(); }

}  // namespace vmm::virtio
