#include "virtio/rng.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

// Fills `buf` from getrandom(); false if the host cannot supply entropy.
bool fill_random(std::span<uint8_t> buf) {
    size_t done = 0;
    while (done < buf.size()) {
        ssize_t n = ::getrandom(buf.data() + done, buf.size() - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        done += static_cast<size_t>(n);
    }
    return true;
}

}  // namespace

RngDevice::RngDevice(RngConfig cfg) : cfg_(std::move(cfg)) {}

RngDevice::~RngDevice() { reset(); }

void RngDevice::read_config(uint64_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);  // virtio-rng has no config space
}

void RngDevice::activate(ActivationContext ctx) {
    reset();
    mem_ = ctx.mem;
    irq_ = ctx.interrupt;
    needs_reset_ = ctx.needs_reset;
    broken_ = false;
    for (auto& q : ctx.queues)
        if (q.index == 0) q_.emplace(std::move(q));
    if (!q_) return;  // the driver did not enable the queue
    thread_ = std::make_unique<IoThread>(cfg_.name);
    thread_->loop().add(q_->kick->fd(), [this](uint32_t) {
        q_->kick->consume();
        q_->queue.note_notification();
        on_kick();
    });
    thread_->start();
    q_->kick->signal();  // requests posted before activation
}

void RngDevice::reset() {
    if (thread_) thread_->stop();
    thread_.reset();
    q_.reset();
    irq_.reset();
    needs_reset_ = nullptr;
}

void RngDevice::on_kick() {
    if (broken_ || !q_) return;
    auto& q = q_->queue;
    bool used = false;
    std::vector<uint8_t> buf;
    try {
        used = drain(q, [&](DescriptorChain& chain) {
            Writer w(*mem_, chain);
            size_t n = std::min(w.remaining(), kMaxPerRequest);
            buf.resize(n);
            if (n && !fill_random(buf)) {
                static log::RateLimit rl;
                if (rl.allow()) log::warn("{}: getrandom: {}", cfg_.name, std::strerror(errno));
                ++errors_;
                n = 0;
            }
            if (n) w.write(std::span<const uint8_t>(buf.data(), n));
            bytes_ += w.written();
            q.push_used(chain, static_cast<uint32_t>(w.written()));
        }) > 0;
    } catch (const QueueError& e) {
        static log::RateLimit rl;
        if (rl.allow()) log::warn("{}: request queue: {}", cfg_.name, e.what());
        ++errors_;
        broken_ = true;
        if (needs_reset_) needs_reset_();
    }
    if (used && q.should_notify()) {
        ++interrupts_;
        irq_->signal_queue(0);
    }
}

std::map<std::string, uint64_t> RngDevice::counters() const {
    return counters_.snapshot();
}

}  // namespace vmm::virtio
