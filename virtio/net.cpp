#include "virtio/net.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include <fmt/ranges.h>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

bool has(uint64_t f, unsigned bit) { return (f >> bit) & 1; }

// Control queue classes and commands (virtio 1.x 5.1.6.5).
constexpr uint8_t kCtrlOk = 0, kCtrlErr = 1;
constexpr uint8_t kClassRx = 0, kClassMac = 1, kClassAnnounce = 3, kClassMq = 4, kClassGuestOffloads = 5;
constexpr uint8_t kMacTableSet = 0, kMacAddrSet = 1;
constexpr uint16_t kStatusLinkUp = 1;
constexpr size_t kMaxIov = 1024;  // readv's limit (UIO_MAXIOV)

// "virtio-net0" + "p1" -> "net0-p1" (thread names keep 15 characters).
TapOffloads offloads_from(uint64_t guest_features) {
    TapOffloads o;
    o.csum = has(guest_features, kNetFGuestCsum);
    o.tso4 = o.csum && has(guest_features, kNetFGuestTso4);
    o.tso6 = o.csum && has(guest_features, kNetFGuestTso6);
    o.tso_ecn = (o.tso4 || o.tso6) && has(guest_features, kNetFGuestEcn);
    o.ufo = o.csum && has(guest_features, kNetFGuestUfo);
    return o;
}

constexpr uint64_t kGuestOffloadBits = (1ull << kNetFGuestCsum) | (1ull << kNetFGuestTso4) | (1ull << kNetFGuestTso6) |
                                       (1ull << kNetFGuestEcn) | (1ull << kNetFGuestUfo);

}  // namespace

// One queue pair and its tap fd, served by one I/O thread.
struct NetDevice::Pair {
    NetDevice& dev;
    size_t index;
    int fd;
    QueueWorker io;
    ServedQueue* rx = nullptr;  // owned by io; nullptr: not enabled
    ServedQueue* tx = nullptr;
    // A packet the held buffers could not take whole: its first pkt_off
    // bytes are in the held chains, the rest in pkt[0, pkt_len - pkt_off).
    std::vector<uint8_t> pkt;
    size_t pkt_len = 0;  // 0: none pending
    size_t pkt_off = 0;
    struct Held {
        DescriptorChain chain;
        uint64_t capacity;        // writable bytes, at least a header
        std::vector<iovec> iov;   // the writable part in host memory
    };
    std::deque<Held> held;  // RX chains popped but not yet used
    uint64_t held_bytes = 0;
    std::vector<iovec> rx_iov;  // scratch for read_packet()
    RxFilter filter;            // this thread's copy of dev.filter_
    uint64_t filter_gen = UINT64_MAX;
    bool polling = false;

    Pair(NetDevice& d, size_t i, int tap_fd, const ActivationContext& ctx)
        : dev(d),
          index(i),
          fd(tap_fd),
          io(io_thread_name(d.cfg_.name, fmt::format("p{}", i)), d.cfg_.name, ctx, d.stats_.errors),
          pkt(sizeof(NetHdr) + kNetMaxFrame),
          filter(d.cfg_.mac) {}
    ~Pair() { io.stop(); }  // before the buffers the thread uses go

    void add(ActiveQueue&& aq) {
        if (aq.index % 2 == 0) {
            rx = &io.add(std::move(aq), [this](ServedQueue&) {
                poll_tap(true);
                on_rx();
            });
        } else {
            tx = &io.add(std::move(aq), [this](ServedQueue&) { on_tx(); });
        }
    }

    void start() {
        if (rx) poll_tap(true);
        io.start();
    }

    void poll_tap(bool on) {
        if (on == polling) return;
        if (on) io.loop().add(fd, [this](uint32_t) { on_rx(); });
        else io.loop().remove(fd);
        polling = on;
    }

    void on_tx() {
        if (!tx) return;
        tx->drain([&](DescriptorChain& chain) {
            send(chain);
            tx->push(chain, 0);
        });
        tx->notify();
    }

    // One guest packet to the tap: the header as the guest wrote it (the
    // tap reads the same layout), then the frame straight from guest memory.
    void send(const DescriptorChain& chain) {
        Reader r(*dev.mem_, chain);
        size_t total = r.remaining();
        NetHdr h;
        if (total < sizeof h || !r.read({reinterpret_cast<uint8_t*>(&h), sizeof h})) {
            dev.note(dev.stats_.tx_dropped, fmt::format("transmit chain of {} bytes has no complete header", total));
            return;
        }
        uint64_t frame = r.remaining();
        if (auto why = check_tx_header(h, static_cast<uint32_t>(std::min<uint64_t>(frame, UINT32_MAX)), dev.features_)) {
            dev.note(dev.stats_.tx_dropped, "dropped a transmitted packet: " + *why);
            return;
        }
        std::vector<iovec> iov;
        iov.reserve(chain.readable.size() + 1);
        iov.push_back({&h, sizeof h});
        auto data = r.take_iovecs(frame);
        iov.insert(iov.end(), data.begin(), data.end());
        ssize_t n;
        do n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            ++dev.stats_.tx_dropped;
            static log::RateLimit rl;
            // EIO: the host has not brought the interface up yet (common at boot).
            if (errno == EIO) log::debug("{}: tap write: {}", dev.cfg_.name, std::strerror(errno));
            else if (rl.allow()) log::warn("{}: tap write: {}", dev.cfg_.name, std::strerror(errno));
            return;
        }
        ++dev.stats_.tx_packets;
        dev.stats_.tx_bytes += frame;
    }

    // Whether the driver's receive filter lets through a frame starting
    // with `frame`; counts it if not.
    bool wanted(std::span<const uint8_t> frame) {
        if (uint64_t gen = dev.filter_gen_.load(std::memory_order_acquire); gen != filter_gen) {
            std::lock_guard lk(dev.filter_mu_);
            filter = dev.filter_;
            filter_gen = dev.filter_gen_.load(std::memory_order_relaxed);
        }
        if (filter.accepts(frame)) return true;
        ++dev.stats_.rx_filtered;
        return false;
    }

    // What one attempt to take a packet from the tap came to.
    enum class Rx {
        Packet,   // one packet delivered (or dropped and counted)
        Pending,  // a packet is in pkt_len/pkt_off, waiting for more buffers
        Empty,    // the tap has nothing now
        Stop,     // the tap failed; it is no longer polled
    };

    void on_rx() {
        if (!rx || rx->broken()) return;
        Queue& q = rx->queue();
        bool ok = rx->guard([&] {
            while (!rx->broken()) {
                if (!pkt_len) {
                    Rx r = read_packet(q);
                    if (r == Rx::Packet) continue;
                    if (r != Rx::Pending) break;
                }
                if (deliver(q)) {
                    pkt_len = pkt_off = 0;
                    continue;
                }
                // The guest has no room: keep the packet, stop reading the
                // tap, and wait for the driver's kick (unless buffers came in
                // while we looked).
                poll_tap(false);
                if (!q.enable_notifications()) {
                    ++dev.stats_.rx_stalls;
                    break;
                }
            }
        });
        if (!ok) poll_tap(false);  // a broken ring takes no more packets
        // One interrupt check per batch, once the tap is empty or the ring
        // full. Checking after every packet (as QEMU does) was slower in
        // net-bench: the guest polled smaller batches and sent more ACKs,
        // and the host answered with smaller segments (docs/virtio.md).
        rx->notify();
    }

    void tap_failed(ssize_t n) {
        ++dev.stats_.errors;
        static log::RateLimit rl;
        if (rl.allow()) log::warn("{}: tap read: {}", dev.cfg_.name, n < 0 ? std::strerror(errno) : "end of file");
        poll_tap(false);
    }

    bool mergeable() const { return has(dev.features_, kNetFMrgRxbuf); }

    // Pops chains until the held ones hold `want` bytes (MRG_RXBUF) or one
    // chain is held; false if the ring runs out first (what was popped stays
    // held). Chains too small for even the header break the spec's rule for
    // receive buffers and are returned unused.
    bool fill_held(Queue& q, uint64_t want) {
        const bool mrg = mergeable();
        while (mrg ? held_bytes < want : held.empty()) {
            auto c = q.pop();
            if (!c) return false;
            uint64_t cap = c->writable_bytes();
            if (cap < sizeof(NetHdr)) {
                dev.note(dev.stats_.errors, fmt::format("receive buffer of {} writable bytes, less than a header", cap));
                rx->push(*c, 0);
                continue;
            }
            Writer w(*dev.mem_, *c);
            auto iov = w.take_iovecs(static_cast<size_t>(cap));
            held_bytes += cap;
            held.push_back({std::move(*c), cap, std::move(iov)});
        }
        return true;
    }

    // Reads one packet from the tap straight into the held guest buffers
    // (the tap writes the header, we add num_buffers): no copy in the VMM
    // whenever they can take the largest packet the tap can give, which
    // Linux's full ring always can. With less held, whatever does not fit
    // lands in `pkt` (the host buffer) after them and is copied into the
    // next buffers the guest posts (deliver()).
    Rx read_packet(Queue& q) {
        constexpr uint64_t kWant = sizeof(NetHdr) + kNetMaxFrame;
        const bool mrg = mergeable();
        fill_held(q, kWant);
        rx_iov.clear();
        uint64_t cap = 0;
        for (const auto& h : held) {
            rx_iov.insert(rx_iov.end(), h.iov.begin(), h.iov.end());
            cap += h.capacity;
            if (!mrg || cap >= kWant) break;
        }
        if (rx_iov.size() >= kMaxIov) {  // readv's limit: all through pkt
            rx_iov.clear();
            cap = 0;
        }
        if (cap < kWant) rx_iov.push_back({pkt.data(), pkt.size()});
        ssize_t n;
        do n = ::readv(fd, rx_iov.data(), static_cast<int>(rx_iov.size()));
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN) return Rx::Empty;
        if (n <= 0) {
            tap_failed(n);
            return Rx::Stop;
        }
        const auto len = static_cast<uint64_t>(n);
        if (len < sizeof(NetHdr)) {
            // Nothing is used: the bytes in the guest's buffer are not a packet.
            dev.note(dev.stats_.errors, fmt::format("tap gave a {}-byte packet, shorter than its header", n));
            return Rx::Packet;
        }
        // A filtered packet leaves the held buffers to the next one.
        std::array<uint8_t, 6> dst{};
        size_t got = gather(rx_iov, sizeof(NetHdr), std::span(dst).first(std::min<uint64_t>(6, len - sizeof(NetHdr))));
        if (!wanted(std::span(dst).first(got))) return Rx::Packet;
        if (len > cap) {
            ++dev.stats_.rx_copied;
            pkt_len = static_cast<size_t>(len);
            pkt_off = static_cast<size_t>(cap);
            return Rx::Pending;
        }
        complete(chains_for(len), len);
        return Rx::Packet;
    }

    // How many of the held chains (from the front) a packet of `len` bytes
    // fills; the caller knows they hold enough.
    size_t chains_for(uint64_t len) const {
        if (!mergeable()) return 1;
        size_t count = 0;
        uint64_t acc = 0;
        for (const auto& h : held) {
            ++count;
            acc += h.capacity;
            if (acc >= len) break;
        }
        return count;
    }

    // The packet of `len` bytes (header included) is in the first `count`
    // held chains: record how many in the header, return them to the guest.
    void complete(size_t count, uint64_t len) {
        auto num = static_cast<uint16_t>(count);  // count <= queue size
        // The first chain holds at least a header (fill_held).
        scatter(held.front().iov, offsetof(NetHdr, num_buffers),
                {reinterpret_cast<const uint8_t*>(&num), sizeof num});
        // Counted before the guest can see the packet, so whoever has seen
        // it (a test, the API) sees it counted too.
        ++dev.stats_.rx_packets;
        dev.stats_.rx_bytes += len - sizeof(NetHdr);
        uint64_t off = 0;
        for (size_t i = 0; i < count; ++i) {
            Held h = std::move(held.front());
            held.pop_front();
            held_bytes -= h.capacity;
            uint64_t n = std::min(h.capacity, len - off);
            off += n;
            rx->push(h.chain, static_cast<uint32_t>(n));
        }
    }

    // Finishes a Pending packet: copies its part in `pkt` into the held
    // buffers after the pkt_off bytes already in them. False if there are
    // not enough buffers yet (nothing is used then).
    bool deliver(Queue& q) {
        const uint64_t need = pkt_len;
        if (!fill_held(q, need)) return false;
        if (!mergeable() && held.front().capacity < need) {
            // Keep the buffer for the next packet.
            dev.note(dev.stats_.rx_dropped, fmt::format("dropped a received packet of {} bytes: the guest's buffer has {}",
                                                        need, held.front().capacity));
            return true;
        }
        size_t count = chains_for(need);
        uint64_t start = 0;  // of held[i] within the packet
        for (size_t i = 0; i < count; ++i) {
            uint64_t end = std::min(start + held[i].capacity, need);
            if (end > pkt_off) {
                uint64_t from = std::max<uint64_t>(start, pkt_off);
                scatter(held[i].iov, static_cast<size_t>(from - start),
                        {pkt.data() + (from - pkt_off), static_cast<size_t>(end - from)});
            }
            start = end;
        }
        complete(count, need);
        return true;
    }
};

NetDevice::NetDevice(NetConfig cfg, std::shared_ptr<NetBackend> backend)
    : cfg_(std::move(cfg)), backend_(std::move(backend)), pairs_(backend_->fds().size()), filter_(cfg_.mac) {
    if (pairs_ == 0) fail("{}: the backend has no queues", cfg_.name);
}

NetDevice::~NetDevice() { reset(); }

std::vector<uint16_t> NetDevice::queue_max_sizes() const {
    return std::vector<uint16_t>(2 * pairs_ + 1, cfg_.queue_size);
}

uint64_t NetDevice::device_features() const {
    // The tap takes checksum-offloaded and GSO packets from us whatever its
    // TUNSETOFFLOAD says; what it can give us (GUEST_*) was probed.
    TapOffloads t = backend_->supported();
    uint64_t f = (1ull << kNetFMac) | (1ull << kNetFStatus) | (1ull << kNetFMrgRxbuf) | (1ull << kNetFCtrlVq) |
                 (1ull << kNetFCtrlRx) | (1ull << kNetFCtrlRxExtra) | (1ull << kNetFCtrlMacAddr) |
                 (1ull << kNetFCsum) | (1ull << kNetFHostTso4) | (1ull << kNetFHostTso6) | (1ull << kNetFHostEcn);
    if (t.ufo) f |= 1ull << kNetFHostUfo;
    if (t.csum) f |= (1ull << kNetFGuestCsum) | (1ull << kNetFCtrlGuestOffloads);
    if (t.csum && t.tso4) f |= 1ull << kNetFGuestTso4;
    if (t.csum && t.tso6) f |= 1ull << kNetFGuestTso6;
    if (t.csum && t.tso_ecn) f |= 1ull << kNetFGuestEcn;
    if (t.csum && t.ufo) f |= 1ull << kNetFGuestUfo;
    if (pairs_ > 1) f |= 1ull << kNetFMq;
    return f;
}

void NetDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
    // mac[6], status u16, max_virtqueue_pairs u16, mtu u16 (MTU not offered).
    std::array<uint8_t, 12> c{};
    {
        std::lock_guard lk(filter_mu_);  // the driver may have set another MAC
        std::memcpy(c.data(), filter_.mac().data(), 6);
    }
    store_le16(c, 6, kStatusLinkUp);
    store_le16(c, 8, static_cast<uint16_t>(pairs_));
    store_le16(c, 10, 1500);  // mtu
    read_window(c, offset, data);
}

void NetDevice::activate(ActivationContext ctx) {
    reset();
    mem_ = ctx.mem;
    features_ = ctx.features;
    // The control queue follows the pairs the driver may use: all with MQ,
    // one without.
    const uint16_t ctrl_index = has(features_, kNetFMq) ? static_cast<uint16_t>(2 * pairs_) : 2;
    for (size_t i = 0; i < pairs_; ++i)
        workers_.push_back(std::make_unique<Pair>(*this, i, backend_->fds()[i].get(), ctx));
    for (auto& q : ctx.queues) {
        if (q.index == ctrl_index) {
            if (!has(features_, kNetFCtrlVq)) continue;
            ctrl_worker_ = std::make_unique<QueueWorker>(io_thread_name(cfg_.name, "ctl"), cfg_.name, ctx, stats_.errors);
            ctrl_ = &ctrl_worker_->add(std::move(q), [this](ServedQueue&) { on_ctrl(); });
        } else if (q.index < 2 * pairs_ && (q.index < 2 || has(features_, kNetFMq))) {
            workers_[q.index / 2]->add(std::move(q));
        }
    }
    backend_->set_offloads(offloads_from(features_));
    set_active_pairs(1);  // until the driver sets the pair count (MQ)
    for (auto& p : workers_)
        if (p->rx || p->tx) p->start();
    if (ctrl_worker_) ctrl_worker_->start();
    log::info("{}: {} queue pair(s), mergeable rx buffers {}, offloads to the guest: csum={} tso4={} tso6={}",
              cfg_.name, pairs_, has(features_, kNetFMrgRxbuf) ? "on" : "off", has(features_, kNetFGuestCsum),
              has(features_, kNetFGuestTso4), has(features_, kNetFGuestTso6));
}

void NetDevice::reset() {
    ctrl_worker_.reset();  // joins the thread
    ctrl_ = nullptr;
    workers_.clear();  // stops and joins each pair's thread
    update_filter([&](RxFilter& f) { f = RxFilter(cfg_.mac); });  // promiscuous, our MAC
}

void NetDevice::note(std::atomic<uint64_t>& counter, const std::string& what) {
    ++counter;
    static log::RateLimit rl;
    if (rl.allow()) log::warn("{}: {}", cfg_.name, what);
}

void NetDevice::update_filter(const std::function<void(RxFilter&)>& change) {
    std::lock_guard lk(filter_mu_);
    change(filter_);
    filter_gen_.fetch_add(1, std::memory_order_release);
}

void NetDevice::set_active_pairs(size_t n) {
    for (size_t i = 0; i < pairs_; ++i) backend_->set_queue_attached(i, i < n);
}

void NetDevice::on_ctrl() {
    ctrl_->drain([&](DescriptorChain& chain) {
        Reader r(*mem_, chain);
        Writer w(*mem_, chain);
        uint8_t hdr[2];
        uint8_t ack = kCtrlErr;
        if (r.read(hdr)) ack = ctrl_command(hdr[0], hdr[1], r);
        else note(stats_.ctrl_errors, "control command shorter than its 2-byte header");
        // The ack is the last device-writable byte.
        uint32_t written = 0;
        if (auto tail = w.split_tail(1); tail && tail->write_obj(ack)) written = 1;
        else note(stats_.ctrl_errors, "control command without room for its ack");
        ctrl_->push(chain, written);
    });
    ctrl_->notify();
}

uint8_t NetDevice::ctrl_command(uint8_t cls, uint8_t cmd, Reader& d) {
    ++stats_.ctrl_commands;
    auto bad = [&](const std::string& why) {
        note(stats_.ctrl_errors, fmt::format("control command class {} command {}: {}", cls, cmd, why));
        return kCtrlErr;
    };
    switch (cls) {
        case kClassRx: {
            if (!has(features_, kNetFCtrlRx)) return bad("CTRL_RX was not negotiated");
            if (cmd > static_cast<uint8_t>(RxMode::NoBcast)) return bad("unknown rx mode command");
            if (cmd > static_cast<uint8_t>(RxMode::AllMulti) && !has(features_, kNetFCtrlRxExtra))
                return bad("CTRL_RX_EXTRA was not negotiated");
            auto on = d.read_obj<uint8_t>();
            if (!on) return bad("missing on/off byte");
            update_filter([&](RxFilter& f) { f.set_mode(static_cast<RxMode>(cmd), *on != 0); });
            return kCtrlOk;
        }
        case kClassMac: {
            if (cmd == kMacAddrSet) {
                if (!has(features_, kNetFCtrlMacAddr)) return bad("CTRL_MAC_ADDR was not negotiated");
                auto mac = d.read_obj<MacAddress>();
                if (!mac) return bad("MAC address shorter than 6 bytes");
                update_filter([&](RxFilter& f) { f.set_mac(*mac); });
                log::info("{}: guest set MAC {:02x}", cfg_.name, fmt::join(*mac, ":"));
                return kCtrlOk;
            }
            if (cmd != kMacTableSet) return bad("unknown MAC command");
            if (!has(features_, kNetFCtrlRx)) return bad("CTRL_RX was not negotiated");
            // Two tables (unicast, multicast): le32 entries, then 6 bytes per
            // entry. Past kMaxEntries only the count matters (overflow).
            std::vector<MacAddress> tables[2];
            for (auto& t : tables) {
                auto n = d.read_obj<uint32_t>();
                if (!n || uint64_t{*n} * 6 > d.remaining()) return bad("MAC table longer than the command");
                for (uint32_t i = 0; i < *n; ++i) {
                    if (i > RxFilter::kMaxEntries) {
                        d.skip(size_t{*n - i} * 6);
                        break;
                    }
                    t.push_back(*d.read_obj<MacAddress>());  // within remaining(): checked above
                }
            }
            update_filter([&](RxFilter& f) { f.set_tables(std::move(tables[0]), std::move(tables[1])); });
            return kCtrlOk;
        }
        case kClassAnnounce:
            return cmd == 0 ? kCtrlOk : bad("unknown announce command");
        case kClassMq: {
            auto n = d.read_obj<uint16_t>();
            if (cmd != 0 || !n) return bad("malformed VQ_PAIRS_SET");
            if (!has(features_, kNetFMq)) return bad("MQ was not negotiated");
            if (*n < 1 || *n > pairs_) return bad(fmt::format("{} queue pairs requested, 1..{} exist", *n, pairs_));
            set_active_pairs(*n);
            log::info("{}: guest uses {} queue pair(s)", cfg_.name, *n);
            return kCtrlOk;
        }
        case kClassGuestOffloads: {
            auto o = d.read_obj<uint64_t>();
            if (cmd != 0 || !o) return bad("malformed GUEST_OFFLOADS_SET");
            if (!has(features_, kNetFCtrlGuestOffloads)) return bad("CTRL_GUEST_OFFLOADS was not negotiated");
            if (*o & ~(features_ & kGuestOffloadBits)) return bad(fmt::format("offloads {:#x} were not negotiated", *o));
            backend_->set_offloads(offloads_from(*o));
            return kCtrlOk;
        }
        default:
            return bad("unknown class");
    }
}

std::map<std::string, uint64_t> NetDevice::counters() const { return stats_.set.snapshot(); }

}  // namespace vmm::virtio
