#include "virtio/pci_transport.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "devices/pci_rom.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace pci = devices::pci;

namespace {

// virtio_pci_cap.cfg_type values (virtio 1.x §4.1.4).
constexpr uint8_t kCapCommon = 1;
constexpr uint8_t kCapNotify = 2;
constexpr uint8_t kCapIsr = 3;
constexpr uint8_t kCapDevice = 4;
constexpr uint8_t kCapPciCfg = 5;
constexpr uint8_t kCapIdVendor = 0x09;
constexpr uint8_t kCapIdMsix = 0x11;

constexpr uint16_t kVendorVirtio = 0x1af4;
constexpr uint16_t kDeviceIdBase = 0x1040;

// Body of a virtio_pci_cap after cap_vndr/cap_next: cap_len, cfg_type, bar,
// id, padding[2], offset, length (+ extra bytes for notify/pci-cfg).
std::vector<uint8_t> virtio_cap_body(uint8_t type, uint8_t bar, uint32_t offset, uint32_t length, size_t extra) {
    std::vector<uint8_t> b(14 + extra, 0);
    b[0] = static_cast<uint8_t>(16 + extra);  // cap_len counts the id/next bytes
    b[1] = type;
    b[2] = bar;
    store_le32(b, 6, offset);
    store_le32(b, 10, length);
    return b;
}

}  // namespace

class PciTransport::Interrupt : public VirtioInterrupt {
public:
    explicit Interrupt(PciTransport* t) : t_(t) {}
    void signal_queue(uint16_t q) override {
        if (t_->msix_.enabled()) {
            uint16_t v = q < vectors_.size() ? vectors_[q].load(std::memory_order_relaxed) : kNoVector;
            if (v == kNoVector) return;
            t_->msix_.trigger(v);
        } else {
            t_->raise_isr(1);
        }
        if (q < t_->queue_stats_.size()) t_->queue_stats_[q]->interrupts.fetch_add(1, std::memory_order_relaxed);
    }
    void signal_config() override {
        if (t_->msix_.enabled()) {
            uint16_t v = config_vector_.load(std::memory_order_relaxed);
            if (v != kNoVector) t_->msix_.trigger(v);
            return;
        }
        t_->raise_isr(2);
    }
    std::vector<std::atomic<uint16_t>> vectors_ = std::vector<std::atomic<uint16_t>>(kMaxQueues);
    std::atomic<uint16_t> config_vector_{kNoVector};

private:
    PciTransport* t_;  // the transport outlives every user: devices are reset before it dies
};

PciTransport::PciTransport(std::shared_ptr<VirtioDevice> dev, Platform platform, uint64_t bar_addr)
    : dev_(std::move(dev)),
      platform_(std::move(platform)),
      cfg_(pci::ConfigSpace::Ids{kVendorVirtio, static_cast<uint16_t>(kDeviceIdBase + dev_->device_type()), 1,
                                 platform_.class_code, kVendorVirtio,
                                 static_cast<uint16_t>(kDeviceIdBase + dev_->device_type())}),
      msix_(static_cast<uint16_t>(std::min<size_t>(dev_->queue_max_sizes().size(), kMaxQueues) + 1),
            platform_.msi) {
    auto sizes = dev_->queue_max_sizes();
    if (sizes.empty() || sizes.size() > kMaxQueues) fail("{}: {} queues (1-{} supported)", dev_->name(), sizes.size(), kMaxQueues);
    for (auto s : sizes) {
        if (s == 0 || s > kMaxQueueSize || (s & (s - 1)))
            fail("{}: queue size {} is not a power of two in 1..{}", dev_->name(), s, kMaxQueueSize);
        QueueRegs q;
        q.max_size = s;
        q.size = s;
        queues_.push_back(q);
        kicks_.push_back(std::make_shared<EventFd>());
        queue_stats_.push_back(std::make_shared<QueueStats>());
    }
    registered_notify_.assign(queues_.size(), 0);
    interrupt_ = std::make_shared<Interrupt>(this);

    cfg_.add_bar(0, pci::BarKind::Mem64, kBarSize, bar_addr);
    cfg_.add_capability(kCapIdVendor, virtio_cap_body(kCapCommon, 0, kCommonOffset, 0x38, 0));
    auto notify = virtio_cap_body(kCapNotify, 0, kNotifyOffset, static_cast<uint32_t>(queues_.size() * kNotifyMultiplier), 4);
    store_le32(notify, 14, kNotifyMultiplier);
    cfg_.add_capability(kCapIdVendor, notify);
    cfg_.add_capability(kCapIdVendor, virtio_cap_body(kCapIsr, 0, kIsrOffset, 1, 0));
    cfg_.add_capability(kCapIdVendor, virtio_cap_body(kCapDevice, 0, kDeviceCfgOffset, 0x1000, 0));
    // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and the data window are
    // writable; accesses to the data window go to the BAR.
    auto pcicfg = virtio_cap_body(kCapPciCfg, 0, 0, 0, 4);
    std::vector<uint8_t> pcicfg_mask(pcicfg.size(), 0);
    pcicfg_mask[2] = 0xff;                                   // bar
    std::fill(pcicfg_mask.begin() + 6, pcicfg_mask.end(), 0xff);  // offset, length, data
    pcicfg_cap_ = cfg_.add_capability(kCapIdVendor, pcicfg, pcicfg_mask);
    msix_cap_ = cfg_.add_capability(kCapIdMsix, msix_.capability_body(0, kMsixTableOffset, kMsixPbaOffset),
                                    msix_.capability_write_mask());
    cfg_.set_interrupt_pin(1, platform_.intx_line);
    if (platform_.rom && !platform_.rom->empty()) {
        const uint16_t device_id = static_cast<uint16_t>(kDeviceIdBase + dev_->device_type());
        std::vector<pci::OptionRomImage> images;
        try {
            images = pci::option_rom_images(*platform_.rom);
        } catch (const Error& e) {
            fail("{}: the option ROM is not a PCI expansion ROM: {}", dev_->name(), e.what());
        }
        if (std::none_of(images.begin(), images.end(), [&](auto& i) { return i.for_device(kVendorVirtio, device_id); }))
            log::warn("{}: no image of the option ROM is for {:04x}:{:04x} (the first is for {:04x}:{:04x}); "
                      "the firmware may skip it",
                      dev_->name(), kVendorVirtio, device_id, images[0].vendor, images[0].device);
        uint64_t rom_bar = 0x800;
        while (rom_bar < platform_.rom->size()) rom_bar <<= 1;
        cfg_.add_rom(rom_bar);  // fails for images over 16 MiB
    }
    // For direct kernel boot the VMM does what firmware would: the BAR is
    // assigned and decoding is on, so Linux keeps the VMM's assignment (and
    // the ioeventfds exist from the start). Under firmware the device starts
    // as at power-on and the firmware assigns the BAR.
    if (platform_.assigned) cfg_.set_command(0x2 /* MEM */);
}

PciTransport::~PciTransport() {
    shutdown();
}

std::string PciTransport::name() const {
    return dev_->name();
}

uint64_t PciTransport::offered_features() const {
    uint64_t f = dev_->device_features() | (1ull << kFeatureVersion1) | (1ull << kFeatureEventIdx) |
                 (1ull << kFeatureIndirectDesc);
    if (platform_.offer_packed) f |= 1ull << kFeatureRingPacked;
    return f;
}

uint8_t PciTransport::status() const {
    std::lock_guard lk(mu_);
    return status_;
}

std::map<std::string, uint64_t> PciTransport::counters() const {
    auto out = dev_->counters();
    for (size_t i = 0; i < queue_stats_.size(); ++i) {
        const QueueStats& s = *queue_stats_[i];
        auto put = [&](const char* what, const std::atomic<uint64_t>& v) {
            out[fmt::format("q{}.{}", i, what)] = v.load(std::memory_order_relaxed);
        };
        put("notifications", s.notifications);
        put("chains", s.chains);
        put("used", s.used);
        put("interrupts", s.interrupts);
        put("errors", s.errors);
    }
    return out;
}

bool PciTransport::in_pcicfg_window(uint16_t offset) const {
    uint16_t win = static_cast<uint16_t>(pcicfg_cap_ + 16);
    return pcicfg_cap_ && offset >= win && offset < win + 4;
}

// The BAR 0 access the PCI-config-access capability's bar/offset/length
// fields describe, if an access of `size` bytes at `offset` triggers one.
std::optional<std::pair<uint32_t, uint32_t>> PciTransport::pcicfg_target(uint16_t offset, size_t size) const {
    auto c = cfg_.bytes();
    uint32_t off = load_le32(c, pcicfg_cap_ + 8);
    uint32_t len = load_le32(c, pcicfg_cap_ + 12);
    if (c[pcicfg_cap_ + 4] != 0 || !(len == 1 || len == 2 || len == 4) || size < len || offset != pcicfg_cap_ + 16)
        return std::nullopt;
    return std::pair{off, len};
}

void PciTransport::config_read(uint16_t offset, std::span<uint8_t> data) {
    std::unique_lock lk(mu_);
    // The PCI-config-access window reads through to the BAR (with the lock
    // dropped: BAR accesses take it themselves).
    if (in_pcicfg_window(offset)) {
        std::fill(data.begin(), data.end(), 0);
        if (auto w = pcicfg_target(offset, data.size())) {
            lk.unlock();
            bar_read(0, w->first, data.first(w->second));
        }
        return;
    }
    cfg_.read(offset, data);
}

void PciTransport::config_write(uint16_t offset, std::span<const uint8_t> data) {
    std::unique_lock lk(mu_);
    if (in_pcicfg_window(offset)) {
        if (auto w = pcicfg_target(offset, data.size())) {
            lk.unlock();
            bar_write(0, w->first, data.first(w->second));
        }
        return;
    }
    cfg_.write(offset, data);
    // Message Control of the MSI-X capability (offset +2): enable/function mask.
    if (msix_cap_ && offset <= msix_cap_ + 3 && offset + data.size() > static_cast<size_t>(msix_cap_ + 2)) {
        uint16_t ctl = load_le16(cfg_.bytes(), msix_cap_ + 2);
        lk.unlock();
        msix_.set_control(ctl & 0x8000, ctl & 0x4000);
    }
}

std::vector<pci::BarRegion> PciTransport::decoded_bars() const {
    std::lock_guard lk(mu_);
    return cfg_.decoded_bars();
}

void PciTransport::bars_changed(const std::vector<pci::BarRegion>& now) {
    std::lock_guard lk(mu_);
    uint64_t base = 0;
    for (auto& b : now)
        if (b.index == 0) base = b.addr;
    if (registered_notify_[0] != (base ? base + kNotifyOffset : 0))
        log::debug("{}: BAR0 {}", dev_->name(), base ? fmt::format("at {:#x}", base) : std::string("off"));
    for (size_t i = 0; i < queues_.size(); ++i) {
        uint64_t want = base ? base + kNotifyOffset + i * kNotifyMultiplier : 0;
        if (registered_notify_[i] == want) continue;
        try {
            if (registered_notify_[i]) platform_.ioeventfd(kicks_[i]->fd(), registered_notify_[i], false);
            registered_notify_[i] = 0;
            if (want) platform_.ioeventfd(kicks_[i]->fd(), want, true);
            registered_notify_[i] = want;
        } catch (const Error& e) {
            // Notifications still work without it: they exit to bar_write().
            static log::RateLimit rl;
            if (rl.allow()) log::warn("{}: queue {} ioeventfd at {:#x}: {}", dev_->name(), i, want, e.what());
        }
    }
}

void PciTransport::bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (bar == pci::kRomBar) {
        if (!platform_.rom) return;
        // The image, then zeros up to the BAR's size (the bus bounds offset).
        const auto& rom = *platform_.rom;
        for (size_t i = 0; i < data.size() && offset < rom.size() && i < rom.size() - offset; ++i)
            data[i] = rom[offset + i];
        return;
    }
    if (bar != 0 || offset >= kBarSize || data.size() > kBarSize - offset) return;
    if (offset >= kMsixPbaOffset) {
        msix_.pba_read(offset - kMsixPbaOffset, data);
    } else if (offset >= kMsixTableOffset) {
        msix_.table_read(offset - kMsixTableOffset, data);
    } else if (offset >= kNotifyOffset) {
        // Notify registers read as zero.
    } else if (offset >= kDeviceCfgOffset) {
        device_bar_read(offset - kDeviceCfgOffset, data);
    } else if (offset >= kIsrOffset) {
        if (offset == kIsrOffset) {
            // Reading ISR acknowledges the interrupt (virtio 1.x §4.1.4.5).
            data[0] = isr_.exchange(0);
            if (platform_.intx && intx_level_.exchange(false)) platform_.intx->set_level(false);
        }
    } else {
        std::lock_guard lk(mu_);
        common_read(offset, data);
    }
}

void PciTransport::bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) {
    if (bar != 0 || offset >= kBarSize || data.size() > kBarSize - offset) return;
    if (offset >= kMsixPbaOffset) {
        // PBA is read-only.
    } else if (offset >= kMsixTableOffset) {
        msix_.table_write(offset - kMsixTableOffset, data);
    } else if (offset >= kNotifyOffset) {
        // Only reached when no ioeventfd covers the address (e.g. while the
        // BAR moves): deliver the kick by hand.
        uint64_t q = (offset - kNotifyOffset) / kNotifyMultiplier;
        if (q < kicks_.size()) kicks_[q]->signal();
    } else if (offset >= kDeviceCfgOffset) {
        device_bar_write(offset - kDeviceCfgOffset, data);
    } else if (offset >= kIsrOffset) {
        // ISR is read-only.
    } else {
        std::lock_guard lk(mu_);
        common_write(offset, data);
    }
}

void PciTransport::device_bar_read(uint64_t offset, std::span<uint8_t> data) {
    dev_->read_config(offset, data);
}

void PciTransport::device_bar_write(uint64_t offset, std::span<const uint8_t> data) {
    dev_->write_config(offset, data);
}

// Common configuration structure (virtio 1.x §4.1.4.3).
void PciTransport::common_read(uint64_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, 0x38> r{};
    auto put = [&](size_t off, size_t n, uint64_t v) { store_le(r, off, n, v); };
    uint64_t feats = offered_features();
    put(0x00, 4, device_feature_select_);
    put(0x04, 4, device_feature_select_ < 2 ? uint32_t(feats >> (32 * device_feature_select_)) : 0);
    put(0x08, 4, driver_feature_select_);
    put(0x0c, 4, driver_feature_select_ < 2 ? uint32_t(driver_features_ >> (32 * driver_feature_select_)) : 0);
    put(0x10, 2, msix_config_);
    put(0x12, 2, queues_.size());
    put(0x14, 1, status_);
    put(0x15, 1, config_generation_);
    put(0x16, 2, queue_select_);
    if (queue_select_ < queues_.size()) {
        auto& q = queues_[queue_select_];
        put(0x18, 2, q.size);
        put(0x1a, 2, q.msix_vector);
        put(0x1c, 2, q.enabled ? 1 : 0);
        put(0x1e, 2, queue_select_);  // queue_notify_off: notify at index * multiplier
        put(0x20, 8, q.desc);
        put(0x28, 8, q.driver);
        put(0x30, 8, q.device);
    }
    // A selected queue that does not exist reads queue_size 0 (the spec's
    // way of saying "no such queue"), as zero-filled above.
    read_window(r, offset, data);
}

void PciTransport::common_write(uint64_t offset, std::span<const uint8_t> data) {
    uint64_t v = load_le(data);
    size_t n = data.size();
    static log::RateLimit rl;
    auto bad = [&] {
        if (rl.allow()) log::debug("{}: ignored common-config write of {} bytes at {:#x}", dev_->name(), n, offset);
    };
    // Ring addresses may be written as two 32-bit halves.
    auto write64 = [&](uint64_t& field, uint64_t base) {
        if (n == 8 && offset == base) field = v;
        else if (n == 4 && offset == base) field = (field & ~0xffffffffull) | uint32_t(v);
        else if (n == 4 && offset == base + 4) field = (field & 0xffffffffull) | (v << 32);
        else bad();
    };
    QueueRegs* q = queue_select_ < queues_.size() ? &queues_[queue_select_] : nullptr;
    // Queue registers may only change while the driver sets the device up.
    bool queue_rw = q && !(status_ & kStatusDriverOk) && !q->enabled;
    if (offset == 0x00 && n == 4) {
        device_feature_select_ = uint32_t(v);
    } else if (offset == 0x08 && n == 4) {
        driver_feature_select_ = uint32_t(v);
    } else if (offset == 0x0c && n == 4) {
        if (status_ & kStatusFeaturesOk) return bad();
        if (driver_feature_select_ == 0) driver_features_ = (driver_features_ & ~0xffffffffull) | uint32_t(v);
        else if (driver_feature_select_ == 1) driver_features_ = (driver_features_ & 0xffffffffull) | (v << 32);
    } else if (offset == 0x10 && n == 2) {
        msix_config_ = uint16_t(v);
        interrupt_->config_vector_.store(msix_config_);
    } else if (offset == 0x14 && n == 1) {
        write_status_locked(uint8_t(v));
    } else if (offset == 0x16 && n == 2) {
        queue_select_ = uint16_t(v);
    } else if (offset == 0x18 && n == 2) {
        if (!queue_rw) return bad();
        // Split rings need a power of two no larger than the maximum; the
        // queue constructor re-checks against the negotiated layout.
        uint16_t s = uint16_t(v);
        if (s == 0 || s > q->max_size) return bad();
        q->size = s;
    } else if (offset == 0x1a && n == 2) {
        if (!q) return bad();
        // An out-of-range vector reads back as NO_VECTOR, telling the driver
        // the assignment failed.
        uint16_t vec = uint16_t(v);
        q->msix_vector = vec < msix_.size() ? vec : kNoVector;
        interrupt_->vectors_[queue_select_].store(q->msix_vector);
    } else if (offset == 0x1c && n == 2) {
        if (!q || (status_ & kStatusDriverOk)) return bad();
        if (v == 1) q->enabled = true;  // writing 0 is not allowed (use reset)
    } else if (offset >= 0x20 && offset < 0x38) {
        if (!queue_rw) return bad();
        if (offset < 0x28) write64(q->desc, 0x20);
        else if (offset < 0x30) write64(q->driver, 0x28);
        else write64(q->device, 0x30);
    } else {
        bad();
    }
}

void PciTransport::write_status_locked(uint8_t v) {
    if (v == 0) {
        if (reset_pending_) return;
        if (!active_) {
            // No I/O thread to stop: reset at once. Firmware drivers
            // (SeaBIOS) write 0 and go straight on without polling for it.
            dev_->reset();
            clear_registers_locked();
            return;
        }
        // Reset of an active device happens on the main thread (it joins I/O
        // threads); status keeps its old value until then, and drivers poll
        // for 0 as the spec asks.
        reset_pending_ = true;
        auto self = shared_from_this();
        platform_.defer([self] { self->reset_on_main(); });
        return;
    }
    if (reset_pending_) return;
    uint8_t old = status_;
    // Bits can only be added, except by reset.
    if ((old & ~v) != 0) {
        static log::RateLimit rl;
        if (rl.allow()) log::debug("{}: status {:#x} -> {:#x} clears bits without reset; ignored", dev_->name(), old, v);
        return;
    }
    if ((v & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
        uint64_t offered = offered_features();
        if ((driver_features_ & ~offered) || !(driver_features_ & (1ull << kFeatureVersion1))) {
            log::warn("{}: driver features {:#x} not acceptable (offered {:#x}, VERSION_1 required)", dev_->name(),
                      driver_features_, offered);
            v &= static_cast<uint8_t>(~kStatusFeaturesOk);  // the driver reads it back and gives up
        }
    }
    status_ = v;
    if ((v & kStatusDriverOk) && !(old & kStatusDriverOk) && (v & kStatusFeaturesOk) && !(v & kStatusFailed)) {
        auto self = shared_from_this();
        platform_.defer([self] { self->activate_on_main(); });
    }
}

void PciTransport::activate_on_main() {
    ActivationContext ctx;
    {
        std::lock_guard lk(mu_);
        if (reset_pending_ || !(status_ & kStatusDriverOk) || active_) return;
        ctx.mem = platform_.mem;
        ctx.features = driver_features_;
        ctx.interrupt = interrupt_;
        std::weak_ptr<PciTransport> weak = shared_from_this();
        ctx.needs_reset = [weak] {
            if (auto t = weak.lock()) t->set_needs_reset();
        };
        try {
            for (size_t i = 0; i < queues_.size(); ++i) {
                auto& q = queues_[i];
                if (!q.enabled) continue;
                QueueConfig qc{q.size, q.desc, q.driver, q.device};
                Queue queue(*platform_.mem, qc, driver_features_);
                queue.set_stats(queue_stats_[i]);
                ctx.queues.push_back(ActiveQueue{static_cast<uint16_t>(i), std::move(queue), kicks_[i]});
            }
        } catch (const QueueError& e) {
            log::warn("{}: cannot start: {}", dev_->name(), e.what());
            status_ |= kStatusNeedsReset;
            ++config_generation_;
            interrupt_->signal_config();  // takes no transport lock
            return;
        }
        active_ = true;
    }
    try {
        size_t nq = ctx.queues.size();
        uint64_t f = ctx.features;
        dev_->activate(std::move(ctx));
        log::info("{}: driver ready: {} queue(s), {} ring{}{}", dev_->name(), nq,
                  (f >> kFeatureRingPacked) & 1 ? "packed" : "split", (f >> kFeatureEventIdx) & 1 ? ", event-idx" : "",
                  (f >> kFeatureIndirectDesc) & 1 ? ", indirect" : "");
    } catch (const std::exception& e) {
        log::error("{}: activation failed: {}", dev_->name(), e.what());
        set_needs_reset();
    }
}

void PciTransport::reset_on_main() {
    dev_->reset();
    std::lock_guard lk(mu_);
    clear_registers_locked();
}

void PciTransport::clear_registers_locked() {
    for (auto& q : queues_) {
        uint16_t max = q.max_size;
        q = QueueRegs{};
        q.max_size = max;
        q.size = max;
    }
    for (auto& v : interrupt_->vectors_) v.store(kNoVector);
    interrupt_->config_vector_.store(kNoVector);
    for (auto& k : kicks_) k->consume();  // drop stale notifications
    device_feature_select_ = driver_feature_select_ = 0;
    driver_features_ = 0;
    msix_config_ = kNoVector;
    queue_select_ = 0;
    isr_.store(0);
    if (platform_.intx && intx_level_.exchange(false)) platform_.intx->set_level(false);
    active_ = false;
    status_ = 0;
    reset_pending_ = false;
}

void PciTransport::set_needs_reset() {
    {
        std::lock_guard lk(mu_);
        if (!(status_ & kStatusDriverOk) || (status_ & kStatusNeedsReset)) return;
        status_ |= kStatusNeedsReset;
        ++config_generation_;
    }
    log::warn("{}: device needs reset (guest driver error); waiting for the driver to reset it", dev_->name());
    interrupt_->signal_config();
}

void PciTransport::raise_isr(uint8_t bits) {
    isr_.fetch_or(bits);
    if (platform_.intx && !intx_level_.exchange(true)) platform_.intx->set_level(true);
}

void PciTransport::shutdown() {
    dev_->reset();
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < registered_notify_.size(); ++i) {
        if (!registered_notify_[i]) continue;
        try {
            platform_.ioeventfd(kicks_[i]->fd(), registered_notify_[i], false);
        } catch (const Error&) {
        }
        registered_notify_[i] = 0;
    }
    active_ = false;
}

}  // namespace vmm::virtio
