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
    for (auto& q : ctx.queues) {
        if (q.index != 0) continue;
        worker_ = std::make_unique<QueueWorker>(cfg_.name, cfg_.name, ctx, errors_);
        queue_ = &worker_->add(std::move(q), [this](ServedQueue&) { on_kick(); });
        worker_->start();
    }
}

void RngDevice::reset() {
    worker_.reset();  // joins the thread
    queue_ = nullptr;
}

void RngDevice::on_kick() {
    std::vector<uint8_t> buf;
    queue_->drain([&](DescriptorChain& chain) {
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
        queue_->push(chain, static_cast<uint32_t>(w.written()));
    });
    queue_->notify();
}

std::map<std::string, uint64_t> RngDevice::counters() const {
    return counters_.snapshot();
}

}  // namespace vmm::virtio
