#include "virtio/console.h"

#include <algorithm>
#include <vector>

#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {
constexpr uint16_t kRxQueue = 0;
constexpr uint16_t kTxQueue = 1;
// A single guest write larger than this is passed on in pieces.
constexpr size_t kTxChunk = 64 * 1024;
}  // namespace

ConsoleDevice::ConsoleDevice(ConsoleConfig cfg) : cfg_(std::move(cfg)) {}

ConsoleDevice::~ConsoleDevice() {
    reset();
}

void ConsoleDevice::read_config(uint64_t offset, std::span<uint8_t> data) {
    // cols u16, rows u16, max_nr_ports u32, emerg_wr u32: without the SIZE,
    // MULTIPORT and EMERG_WRITE features every field reads as zero.
    (void)offset;
    std::fill(data.begin(), data.end(), 0);
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

void ConsoleDevice::activate(ActivationContext ctx) {
    reset();
    mem_ = ctx.mem;
    irq_ = ctx.interrupt;
    needs_reset_ = ctx.needs_reset;
    broken_ = false;
    for (auto& q : ctx.queues) {
        if (q.index == kRxQueue) rxq_.emplace(std::move(q));
        else if (q.index == kTxQueue) txq_.emplace(std::move(q));
    }
    thread_ = std::make_unique<IoThread>(cfg_.name);
    auto& loop = thread_->loop();
    if (txq_) loop.add(txq_->kick->fd(), [this](uint32_t) {
        txq_->kick->consume();
        txq_->queue.note_notification();
        on_tx();
    });
    if (rxq_) {
        loop.add(rxq_->kick->fd(), [this](uint32_t) {
            rxq_->kick->consume();
            rxq_->queue.note_notification();
            on_rx();
        });
        loop.add(input_ready_.fd(), [this](uint32_t) {
            input_ready_.consume();
            on_rx();
        });
    }
    thread_->start();
    // Input queued before the driver came up, and kicks that raced with
    // activation, are picked up by the first loop iteration: eventfds keep
    // their count until consumed.
    input_ready_.signal();
    if (txq_) txq_->kick->signal();
}

void ConsoleDevice::reset() {
    if (thread_) thread_->stop();
    thread_.reset();
    rxq_.reset();
    txq_.reset();
    irq_.reset();
    needs_reset_ = nullptr;
}

void ConsoleDevice::fail_queue(const char* which, const std::exception& e) {
    static log::RateLimit rl;
    if (rl.allow()) log::warn("{}: {} queue: {}", cfg_.name, which, e.what());
    ++stats_.errors;
    broken_ = true;
    if (needs_reset_) needs_reset_();
}

void ConsoleDevice::on_tx() {
    if (broken_ || !txq_) return;
    auto& q = txq_->queue;
    bool used = false;
    try {
        std::vector<uint8_t> buf;
        for (;;) {
            q.disable_notifications();
            while (auto chain = q.pop()) {
                Reader r(*mem_, *chain);
                while (r.remaining()) {
                    buf.resize(std::min(r.remaining(), kTxChunk));
                    if (!r.read(buf)) break;
                    stats_.tx_bytes += buf.size();
                    if (cfg_.output) cfg_.output(buf);
                }
                q.push_used(*chain, 0);
                used = true;
            }
            if (!q.enable_notifications()) break;
        }
    } catch (const QueueError& e) {
        fail_queue("transmit", e);
    }
    if (used && q.should_notify()) {
        ++stats_.interrupts;
        irq_->signal_queue(kTxQueue);
    }
}

void ConsoleDevice::on_rx() {
    if (broken_ || !rxq_) return;
    auto& q = rxq_->queue;
    bool used = false;
    try {
        for (;;) {
            {
                std::lock_guard lk(in_mu_);
                if (input_.empty()) break;
            }
            auto chain = q.pop();
            if (!chain) {
                // No buffers: wait for the driver's kick; input stays queued.
                if (!q.enable_notifications()) break;
                continue;
            }
            Writer w(*mem_, *chain);
            std::vector<uint8_t> chunk;
            {
                std::lock_guard lk(in_mu_);
                size_t n = std::min(input_.size(), w.remaining());
                chunk.assign(input_.begin(), input_.begin() + static_cast<long>(n));
                input_.erase(input_.begin(), input_.begin() + static_cast<long>(n));
            }
            w.write(chunk);  // fits: n <= remaining()
            stats_.rx_bytes += chunk.size();
            q.push_used(*chain, static_cast<uint32_t>(w.written()));
            used = true;
        }
    } catch (const QueueError& e) {
        fail_queue("receive", e);
    }
    if (used && q.should_notify()) {
        ++stats_.interrupts;
        irq_->signal_queue(kRxQueue);
    }
}

std::map<std::string, uint64_t> ConsoleDevice::counters() const {
    return {{"tx_bytes", stats_.tx_bytes.load()},
            {"rx_bytes", stats_.rx_bytes.load()},
            {"errors", stats_.errors.load()},
            {"interrupts", stats_.interrupts.load()}};
}

}  // namespace vmm::virtio
