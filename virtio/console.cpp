#include "virtio/console.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {
constexpr uint16_t kRxQueue = 0;
constexpr uint16_t kTxQueue = 1;
constexpr uint16_t kControlRxQueue = 2;  // device -> driver
constexpr uint16_t kControlTxQueue = 3;  // driver -> device
// A single guest write larger than this is passed on in pieces.
constexpr size_t kTxChunk = 64 * 1024;
constexpr size_t kPortTxChunk = 16 * 1024;
}  // namespace

ConsoleControlRequest parse_console_control(std::span<const uint8_t> msg, uint32_t nr_ports) {
    using R = ConsoleControlRequest;
    R r;
    if (msg.size() < kConsoleControlSize) {
        r.error = "short control message (less than 8 bytes)";
        return r;
    }
    if (msg.size() > kConsoleControlSize) {
        r.error = "control message longer than 8 bytes";
        return r;
    }
    r.port = load_le32(msg, 0);
    r.event = load_le16(msg, 4);
    uint16_t value = load_le16(msg, 6);
    switch (r.event) {
        case kConsoleDeviceReady:
            if (value > 1) r.error = "DEVICE_READY value is not 0 or 1";
            else r.kind = value ? R::DeviceReady : R::DeviceFailed;
            return r;
        case kConsolePortReady:
        case kConsolePortOpen:
            if (r.port >= nr_ports) r.error = "port id out of range";
            else if (value > 1) r.error = "value is not 0 or 1";
            else if (r.event == kConsolePortReady) r.kind = value ? R::PortReady : R::PortFailed;
            else r.kind = value ? R::GuestOpen : R::GuestClose;
            return r;
        case kConsolePortAdd:
        case kConsolePortRemove:
        case kConsoleConsolePort:
        case kConsoleResize:
        case kConsolePortName:
            r.error = "a device-to-driver event sent by the driver";
            return r;
        default:
            r.error = "unknown event";
            return r;
    }
}

std::vector<uint8_t> console_control_message(uint32_t id, uint16_t event, uint16_t value, std::string_view payload) {
    std::vector<uint8_t> m(kConsoleControlSize + payload.size());
    store_le32(m, 0, id);
    store_le16(m, 4, event);
    store_le16(m, 6, value);
    if (!payload.empty()) std::memcpy(m.data() + kConsoleControlSize, payload.data(), payload.size());
    return m;
}

ConsoleDevice::ConsoleDevice(ConsoleConfig cfg) : cfg_(std::move(cfg)) {
    ports_.push_back(std::make_unique<Port>(0));
    ports_[0]->host_connected = true;  // the console always has its sink
    for (auto& n : cfg_.port_names) {
        if (n.empty() || n.size() > kMaxNameLength) fail("{}: port name \"{}\" is empty or too long", cfg_.name, n);
        ports_.push_back(std::make_unique<Port>(static_cast<uint32_t>(ports_.size())));
        ports_.back()->name = n;
    }
    // Queue indices are 16-bit and the transport allows 256 queues.
    if (ports_.size() > 126) fail("{}: {} named ports (at most 125)", cfg_.name, ports_.size() - 1);
}

ConsoleDevice::~ConsoleDevice() {
    reset();
}

std::vector<uint16_t> ConsoleDevice::queue_max_sizes() const {
    // rx0, tx0, then with MULTIPORT: control rx/tx and rx/tx per named port.
    size_t n = multiport() ? 2 * (ports_.size() + 1) : 2;
    return std::vector<uint16_t>(n, cfg_.queue_size);
}

uint64_t ConsoleDevice::device_features() const {
    return multiport() ? uint64_t{1} << kConsoleFeatureMultiport : 0;
}

void ConsoleDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
    // cols u16, rows u16, max_nr_ports u32, emerg_wr u32: without the SIZE
    // and EMERG_WRITE features those read as zero; max_nr_ports only
    // exists with MULTIPORT.
    uint8_t cfg[12] = {};
    if (multiport()) store_le32(cfg, 4, nr_ports());
    read_window(cfg, offset, data);
}

size_t ConsoleDevice::enqueue_input(std::span<const uint8_t> bytes) {
    size_t took;
    {
        std::lock_guard lk(in_mu_);
        took = std::min(bytes.size(), kInputCapacity - input_.size());
        input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<long>(took));
    }
    if (took) input_ready_.signal();
    return took;
}

size_t ConsoleDevice::enqueue_port_input(uint32_t port, std::span<const uint8_t> bytes) {
    if (port == 0 || port >= ports_.size()) return 0;
    Port& p = *ports_[port];
    size_t took;
    {
        std::lock_guard lk(mu_);
        took = std::min(bytes.size(), kInputCapacity - p.input.size());
        p.input.insert(p.input.end(), bytes.begin(), bytes.begin() + static_cast<long>(took));
    }
    if (took) wake_.signal();
    return took;
}

size_t ConsoleDevice::read_port_output(uint32_t port, std::span<uint8_t> out) {
    if (port == 0 || port >= ports_.size()) return 0;
    Port& p = *ports_[port];
    size_t n;
    {
        std::lock_guard lk(mu_);
        n = std::min(out.size(), p.output.size());
        std::copy_n(p.output.begin(), n, out.begin());
        p.output.erase(p.output.begin(), p.output.begin() + static_cast<long>(n));
    }
    if (n) wake_.signal();  // room again: guest output may be waiting in the ring
    return n;
}

void ConsoleDevice::set_host_connected(uint32_t port, bool connected) {
    if (port == 0 || port >= ports_.size()) return;
    Port& p = *ports_[port];
    {
        std::lock_guard lk(mu_);
        if (p.host_connected == connected) return;
        p.host_connected = connected;
    }
    if (connected) ++p.host_connects;
    wake_.signal();
}

ConsoleDevice::PortState ConsoleDevice::port_state(uint32_t port) const {
    if (port >= ports_.size()) return {};
    return {ports_[port]->guest_open.load(), ports_[port]->guest_closes.load()};
}

ServedQueue* ConsoleDevice::queue(uint16_t index) {
    return index < queues_.size() ? queues_[index] : nullptr;
}

void ConsoleDevice::activate(ActivationContext ctx) {
    reset();
    mem_ = ctx.mem;
    use_multiport_ = multiport() && (ctx.features & (uint64_t{1} << kConsoleFeatureMultiport));
    queues_.assign(queue_max_sizes().size(), nullptr);
    worker_ = std::make_unique<QueueWorker>(cfg_.name, cfg_.name, ctx, stats_.errors);
    // Each kick runs its queue's work, then sends what that produced for
    // the control queue.
    auto work_of = [this](uint16_t index) -> std::function<void()> {
        if (index == kTxQueue) return [this] { on_tx(); };
        if (index == kRxQueue) return [this] { on_rx(); };
        if (index == kControlRxQueue) return [this] { flush_control(); };
        if (index == kControlTxQueue) return [this] { on_control_tx(); };
        const uint32_t port = index / 2 - 1;  // rx_index(p) = 2p + 2, tx_index(p) = 2p + 3
        if (index % 2) return [this, port] { on_port_tx(port); };
        return [this, port] { on_port_rx(port); };
    };
    for (auto& q : ctx.queues) {
        // Without MULTIPORT negotiated only rx0/tx0 exist for the driver.
        if (q.index >= (use_multiport_ ? queues_.size() : 2)) continue;
        const uint16_t index = q.index;
        queues_[index] = &worker_->add(std::move(q), [this, work = work_of(index)](ServedQueue&) {
            work();
            if (!control_out_.empty()) flush_control();
        });
    }
    auto& loop = worker_->loop();
    if (queue(kRxQueue)) loop.add(input_ready_.fd(), [this](uint32_t) {
        input_ready_.consume();
        on_rx();
    });
    if (use_multiport_) loop.add(wake_.fd(), [this](uint32_t) { on_wake(); });
    // Input queued before the driver came up is picked up by the first loop
    // iteration (start() also serves what the queues already hold).
    worker_->start();
    input_ready_.signal();
    if (use_multiport_) wake_.signal();
}

void ConsoleDevice::reset() {
    worker_.reset();  // joins the thread
    queues_.clear();
    control_out_.clear();
    // The driver is gone: every port is closed on its side and must be
    // added again; the host side hears about the close.
    bool closed = false;
    for (auto& p : ports_) {
        p->added = p->ready = p->sent_open = false;
        p->tx_chain.reset();
        p->tx_off = 0;
        if (p->guest_open.exchange(false)) {
            ++p->guest_closes;
            closed = true;
        }
    }
    if (closed) port_events_.signal();
}

void ConsoleDevice::on_tx() {
    ServedQueue* q = queue(kTxQueue);
    if (!q) return;
    std::vector<uint8_t> buf;
    q->drain([&](DescriptorChain& chain) {
        Reader r(*mem_, chain);
        while (r.remaining()) {
            buf.resize(std::min(r.remaining(), kTxChunk));
            if (!r.read(buf)) break;
            stats_.tx_bytes += buf.size();
            if (cfg_.output) cfg_.output(buf);
        }
        q->push(chain, 0);
    });
    q->notify();
}

// Moves `input` (under `mu`) into the receive queue's buffers while both
// last; returns the bytes moved. No buffers: the input stays queued until
// the driver's kick.
size_t ConsoleDevice::fill_rx(ServedQueue& sq, std::mutex& mu, std::deque<uint8_t>& input) {
    size_t moved = 0;
    sq.guard([&] {
        Queue& q = sq.queue();
        std::vector<uint8_t> chunk;
        while (!sq.broken()) {
            {
                std::lock_guard lk(mu);
                if (input.empty()) break;
            }
            auto chain = q.pop();
            if (!chain) {
                if (!q.enable_notifications()) break;
                continue;
            }
            Writer w(*mem_, *chain);
            {
                std::lock_guard lk(mu);
                size_t n = std::min(input.size(), w.remaining());
                chunk.assign(input.begin(), input.begin() + static_cast<long>(n));
                input.erase(input.begin(), input.begin() + static_cast<long>(n));
            }
            w.write(chunk);  // fits: n <= remaining()
            moved += chunk.size();
            sq.push(*chain, static_cast<uint32_t>(w.written()));
        }
    });
    sq.notify();
    return moved;
}

void ConsoleDevice::on_rx() {
    if (ServedQueue* q = queue(kRxQueue)) stats_.rx_bytes += fill_rx(*q, in_mu_, input_);
}

// Guest output of a named port into its bounded output buffer. A chain is
// consumed piecewise (tx_chain/tx_off) so a huge one costs no more host
// memory than the buffer; while the buffer is full the rest stays in the
// ring and read_port_output() wakes us.
void ConsoleDevice::on_port_tx(uint32_t port) {
    ServedQueue* sq = queue(tx_index(port));
    if (!sq) return;
    Port& p = *ports_[port];
    bool produced = false;
    sq->guard([&] {
        Queue& q = sq->queue();
        std::vector<uint8_t> buf;
        while (!sq->broken()) {
            if (!p.tx_chain) {
                q.disable_notifications();
                p.tx_chain = q.pop();
                if (!p.tx_chain) {
                    if (!q.enable_notifications()) break;
                    continue;
                }
                p.tx_off = 0;
            }
            Reader r(*mem_, *p.tx_chain);
            r.skip(p.tx_off);  // tx_off counts bytes already read from this chain
            size_t room;
            {
                std::lock_guard lk(mu_);
                room = kOutputCapacity - p.output.size();
            }
            size_t n = std::min({room, r.remaining(), kPortTxChunk});
            if (n == 0 && r.remaining() > 0) break;  // full: wait for the host to read
            bool last = n == r.remaining();
            if (n) {
                buf.resize(n);
                r.read(buf);  // n <= remaining()
                std::lock_guard lk(mu_);
                p.output.insert(p.output.end(), buf.begin(), buf.end());
                p.tx_off += n;
                p.tx_bytes += n;
                produced = true;
            }
            if (last) {
                sq->push(*p.tx_chain, 0);
                p.tx_chain.reset();
            }
        }
    });
    sq->notify();
    if (produced) port_events_.signal();
}

// Host input of a named port into the guest's receive buffers, only while
// the guest has the port open (Linux discards what arrives on a closed port).
void ConsoleDevice::on_port_rx(uint32_t port) {
    ServedQueue* q = queue(rx_index(port));
    Port& p = *ports_[port];
    if (!q || !p.ready || !p.guest_open) return;
    size_t moved = fill_rx(*q, mu_, p.input);
    if (moved) {
        p.rx_bytes += moved;
        port_events_.signal();  // input room for the host side
        sync_host_open(port);   // a disconnect may have waited for this input
    }
}

void ConsoleDevice::on_wake() {
    wake_.consume();
    for (uint32_t p = 1; p < ports_.size(); ++p) {
        sync_host_open(p);
        on_port_rx(p);
        on_port_tx(p);
    }
    flush_control();
}

// Sends PORT_OPEN when the host's connection state differs from what the
// guest was told. A disconnect waits while input for an open port is still
// on its way, so the guest reads every byte before it sees EOF.
void ConsoleDevice::sync_host_open(uint32_t port) {
    Port& p = *ports_[port];
    if (!use_multiport_ || !p.ready) return;
    bool want;
    {
        std::lock_guard lk(mu_);
        want = p.host_connected || (port != 0 && p.guest_open && !p.input.empty());
    }
    if (want == p.sent_open) return;
    p.sent_open = want;
    send_control(port, kConsolePortOpen, want ? 1 : 0);
}

void ConsoleDevice::send_control(uint32_t id, uint16_t event, uint16_t value, std::string_view payload) {
    // Bounded: a driver that repeats DEVICE_READY without posting buffers
    // must not grow this without limit.
    if (control_out_.size() >= 64 + 4 * ports_.size()) {
        ++stats_.control_dropped;
        static log::RateLimit rl;
        if (rl.allow()) log::warn("{}: control backlog full; event {} for port {} dropped", cfg_.name, event, id);
        return;
    }
    control_out_.push_back(console_control_message(id, event, value, payload));
}

void ConsoleDevice::flush_control() {
    ServedQueue* sq = queue(kControlRxQueue);
    if (!sq) return;
    sq->guard([&] {
        Queue& q = sq->queue();
        while (!control_out_.empty() && !sq->broken()) {
            auto chain = q.pop();
            if (!chain) {
                if (!q.enable_notifications()) break;
                continue;
            }
            Writer w(*mem_, *chain);
            const auto& m = control_out_.front();
            if (w.remaining() < m.size()) {
                // A driver posting buffers too small for a message (Linux
                // posts pages) loses that message; the buffer goes back empty.
                ++stats_.control_dropped;
                static log::RateLimit rl;
                if (rl.allow())
                    log::warn("{}: control buffer of {} bytes is too small for a {}-byte message (event {}); dropped",
                              cfg_.name, w.remaining(), m.size(), load_le16(m, 4));
            } else {
                w.write(m);
            }
            sq->push(*chain, static_cast<uint32_t>(w.written()));
            control_out_.pop_front();
        }
    });
    sq->notify();
}

void ConsoleDevice::on_control_tx() {
    ServedQueue* q = queue(kControlTxQueue);
    if (!q) return;
    q->drain([&](DescriptorChain& chain) {
        Reader r(*mem_, chain);
        // One byte more than a message, so a long one shows as such.
        uint8_t buf[kConsoleControlSize + 1];
        size_t n = std::min(r.remaining(), sizeof buf);
        r.read({buf, n});
        q->push(chain, 0);
        handle_control(parse_console_control({buf, n}, nr_ports()));
    });
    q->notify();
}

void ConsoleDevice::control_error(const char* what, uint32_t port, uint16_t event) {
    ++stats_.control_errors;
    static log::RateLimit rl;
    if (rl.allow()) log::warn("{}: control message (event {}, port {}): {}", cfg_.name, event, port, what);
}

void ConsoleDevice::handle_control(const ConsoleControlRequest& req) {
    using R = ConsoleControlRequest;
    switch (req.kind) {
        case R::Invalid:
            control_error(req.error, req.port, req.event);
            return;
        case R::DeviceReady:
            for (uint32_t id = 0; id < ports_.size(); ++id) {
                ports_[id]->added = true;
                send_control(id, kConsolePortAdd, 0);
            }
            return;
        case R::DeviceFailed:
            control_error("the driver reports it failed to initialise", req.port, req.event);
            return;
        default:
            break;
    }
    Port& p = *ports_[req.port];  // in range: checked by the parser
    if (!p.added) {
        control_error("message for a port that was not added", req.port, req.event);
        return;
    }
    switch (req.kind) {
        case R::PortReady:
            p.ready = true;
            if (req.port == 0) send_control(0, kConsoleConsolePort, 1);  // port 0 is hvc0
            else send_control(req.port, kConsolePortName, 1, p.name);
            p.sent_open = false;  // the driver starts from "host closed"
            sync_host_open(req.port);
            return;
        case R::PortFailed:
            p.ready = false;
            control_error("the driver failed to add the port", req.port, req.event);
            return;
        case R::GuestOpen:
        case R::GuestClose:
            break;
        default:
            return;
    }
    if (!p.ready) {
        control_error("PORT_OPEN for a port that is not ready", req.port, req.event);
        return;
    }
    bool open = req.kind == R::GuestOpen;
    if (open == p.guest_open.load()) return;  // repeated: nothing changes
    if (open) {
        ++p.guest_opens;
        p.guest_open = true;
        if (req.port != 0) on_port_rx(req.port);  // input held while it was closed
    } else {
        // Take what the guest wrote before closing, then drop the input the
        // guest will not read (Linux discards data for a closed port).
        if (req.port != 0) on_port_tx(req.port);
        ++p.guest_closes;
        p.guest_open = false;
        {
            std::lock_guard lk(mu_);
            p.input.clear();
        }
        sync_host_open(req.port);  // a disconnect no longer waits for that input
    }
    if (req.port != 0) port_events_.signal();
}

std::map<std::string, uint64_t> ConsoleDevice::counters() const {
    auto c = stats_.set.snapshot();
    if (!multiport()) return c;
    stats_.multiport.snapshot_into(c);
    for (size_t i = 1; i < ports_.size(); ++i) ports_[i]->counters.snapshot_into(c);
    return c;
}

}  // namespace vmm::virtio
