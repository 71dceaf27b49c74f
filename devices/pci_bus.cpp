// PciBus: bus 0 with 32 single-function slots, configuration access through
// the legacy 0xCF8/0xCFC mechanism and ECAM, and dispatch of BAR accesses.
//
// Locking: config_mu_ serialises configuration accesses (so BAR moves are
// seen and reported in order); mu_ guards the slot table, the decode map and
// the movable ECAM range.
// BAR dispatch holds mu_ shared only long enough to find the device, then
// calls it unlocked, so a slow device or one that re-enters the bus (e.g. a
// config access from a BAR handler) cannot deadlock or stall other vCPUs.
#include "devices/pci.h"

#include <algorithm>
#include <atomic>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::devices::pci {

namespace {

constexpr unsigned kSlots = 32;

bool config_access_ok(uint16_t offset, std::size_t size) {
    if (size != 1 && size != 2 && size != 4) return false;
    if (offset >= kCfgSize) return false;
    return (offset & 3u) + size <= 4;  // never crosses a dword
}

void fill_ones(std::span<uint8_t> d) { std::fill(d.begin(), d.end(), 0xff); }

}  // namespace

PciBus::PciBus() : slots_(kSlots) {}

void PciBus::add(unsigned slot, std::shared_ptr<PciDevice> dev) {
    if (!dev) fail("pci: null device for slot {}", slot);
    if (slot >= kSlots) fail("pci: slot {} out of range (0..{})", slot, kSlots - 1);
    {
        std::unique_lock lk(mu_);
        if (slots_[slot]) fail("pci: slot {} is already used by {}", slot, slots_[slot]->name());
        slots_[slot] = std::move(dev);
    }
    std::lock_guard cl(config_mu_);
    refresh_decode(slot);
}

unsigned PciBus::free_slot() const {
    std::shared_lock lk(mu_);
    for (unsigned s = 1; s < kSlots; ++s) {
        if (!slots_[s]) return s;
    }
    fail("pci: all {} slots of bus 0 are used", kSlots - 1);
}

void PciBus::config_read(unsigned bus, unsigned slot, unsigned function, uint16_t offset, std::span<uint8_t> data) {
    fill_ones(data);
    if (bus != 0 || function != 0 || slot >= kSlots || !config_access_ok(offset, data.size())) return;
    std::shared_ptr<PciDevice> dev;
    {
        std::shared_lock lk(mu_);
        dev = slots_[slot];
    }
    if (!dev) return;
    std::lock_guard cl(config_mu_);
    dev->config_read(offset, data);
}

void PciBus::config_write(unsigned bus, unsigned slot, unsigned function, uint16_t offset,
                          std::span<const uint8_t> data) {
    if (bus != 0 || function != 0 || slot >= kSlots || !config_access_ok(offset, data.size())) return;
    std::shared_ptr<PciDevice> dev;
    {
        std::shared_lock lk(mu_);
        dev = slots_[slot];
    }
    if (!dev) return;
    std::lock_guard cl(config_mu_);
    dev->config_write(offset, data);
    refresh_decode(slot);
}

// Caller holds config_mu_ (not mu_).
void PciBus::refresh_decode(unsigned slot) {
    std::shared_ptr<PciDevice> dev;
    {
        std::shared_lock lk(mu_);
        dev = slots_[slot];
    }
    if (!dev) return;
    std::vector<BarRegion> now = dev->decoded_bars();
    bool changed = false;
    {
        std::unique_lock lk(mu_);
        std::vector<BarRegion> before;
        for (const auto& d : decode_) {
            if (d.second.first == slot) before.push_back(d.first);
        }
        if (before != now) {
            changed = true;
            std::erase_if(decode_, [&](const auto& d) { return d.second.first == slot; });
            for (const auto& r : now) decode_.push_back({r, {slot, dev}});
        }
    }
    if (changed) dev->bars_changed(now);
}

bool PciBus::dispatch(BarKind kind, uint64_t addr, std::span<uint8_t> rd, std::span<const uint8_t> wr) {
    const uint64_t size = rd.empty() ? wr.size() : rd.size();
    std::shared_ptr<PciDevice> dev;
    unsigned bar = 0;
    uint64_t offset = 0;
    {
        std::shared_lock lk(mu_);
        for (const auto& [r, owner] : decode_) {
            const bool io = r.kind == BarKind::Io;
            if (io != (kind == BarKind::Io)) continue;
            // Wholly inside [r.addr, r.addr + r.size); no overflow since
            // decoded BARs never wrap and addr >= r.addr here.
            if (addr < r.addr || addr - r.addr >= r.size || size > r.size - (addr - r.addr)) continue;
            dev = owner.second.lock();
            bar = r.index;
            offset = addr - r.addr;
            break;
        }
    }
    if (!dev) return false;
    if (rd.empty()) {
        dev->bar_write(bar, offset, wr);
    } else {
        dev->bar_read(bar, offset, rd);
    }
    return true;
}

// ---- 0xCF8 / 0xCFC

class PciBus::ConfigPorts : public BusDevice {
public:
    ConfigPorts(PciBus* bus, std::shared_ptr<BusDevice> cf9) : bus_(bus), cf9_(std::move(cf9)) {}
    std::string name() const override { return "pci_config_ports"; }

    void read(uint64_t offset, std::span<uint8_t> data) override {
        fill_ones(data);
        if (offset < 4) {
            if (offset == 0 && data.size() == 4) {
                store_le(data, addr_.load());
            } else if (offset == 1 && data.size() == 1 && cf9_) {
                cf9_->read(0, data);
            }
            return;
        }
        unsigned bus, slot, fn;
        uint16_t reg;
        if (!target(offset, data.size(), bus, slot, fn, reg)) return;
        bus_->config_read(bus, slot, fn, reg, data);
    }

    void write(uint64_t offset, std::span<const uint8_t> data) override {
        if (offset < 4) {
            // CONFIG_ADDRESS only takes dword writes; narrower ones go to
            // whatever else lives in 0xCF8..0xCFB (the reset register).
            if (offset == 0 && data.size() == 4) {
                addr_.store(static_cast<uint32_t>(load_le(data)));
            } else if (offset == 1 && data.size() == 1 && cf9_) {
                cf9_->write(0, data);
            }
            return;
        }
        unsigned bus, slot, fn;
        uint16_t reg;
        if (!target(offset, data.size(), bus, slot, fn, reg)) return;
        bus_->config_write(bus, slot, fn, reg, data);
    }

private:
    // Decodes CONFIG_ADDRESS for an access at 0xCFC + (offset - 4).
    bool target(uint64_t offset, std::size_t size, unsigned& bus, unsigned& slot, unsigned& fn, uint16_t& reg) const {
        const uint64_t lane = offset - 4;
        if (offset < 4 || lane + size > 4) return false;
        const uint32_t a = addr_.load();
        if (!(a & 0x80000000u)) return false;  // enable bit clear: no configuration cycle
        bus = (a >> 16) & 0xff;
        slot = (a >> 11) & 0x1f;
        fn = (a >> 8) & 0x7;
        reg = static_cast<uint16_t>((a & 0xfc) | lane);
        return true;
    }

    PciBus* bus_;
    std::shared_ptr<BusDevice> cf9_;
    std::atomic<uint32_t> addr_{0};
};

std::shared_ptr<BusDevice> PciBus::io_port_device(std::shared_ptr<BusDevice> cf9) {
    return std::make_shared<ConfigPorts>(this, std::move(cf9));
}

// ---- ECAM (memory-mapped configuration, bus 0 only)

class PciBus::Ecam : public BusDevice {
public:
    explicit Ecam(PciBus* bus) : bus_(bus) {}
    std::string name() const override { return "pci_ecam"; }
    void read(uint64_t offset, std::span<uint8_t> data) override { bus_->ecam_access(offset, data, {}); }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        if (!data.empty()) bus_->ecam_access(offset, {}, data);
    }

private:
    PciBus* bus_;
};

void PciBus::ecam_access(uint64_t offset, std::span<uint8_t> rd, std::span<const uint8_t> wr) {
    // Bus numbers past 255 cannot exist; 256 makes config_read refuse them.
    const unsigned bus = static_cast<unsigned>(std::min<uint64_t>(offset >> 20, 0x100));
    const unsigned slot = (offset >> 15) & 0x1f;
    const unsigned fn = (offset >> 12) & 0x7;
    const auto reg = static_cast<uint16_t>(offset & 0xfff);
    if (rd.empty()) {
        config_write(bus, slot, fn, reg, wr);
    } else {
        config_read(bus, slot, fn, reg, rd);
    }
}

void PciBus::set_ecam(std::optional<uint64_t> base, uint64_t size) {
    if (base && (size == 0 || *base + size < *base)) fail("pci: bad ECAM range {:#x} + {:#x}", *base, size);
    std::unique_lock lk(mu_);
    ecam_base_ = base;
    ecam_size_ = base ? size : 0;
}

std::optional<uint64_t> PciBus::ecam_offset(uint64_t addr, std::size_t size) const {
    std::shared_lock lk(mu_);
    if (!ecam_base_ || addr < *ecam_base_) return std::nullopt;
    const uint64_t off = addr - *ecam_base_;
    if (off >= ecam_size_ || size > ecam_size_ - off) return std::nullopt;
    return off;
}

std::shared_ptr<BusDevice> PciBus::ecam_device() { return std::make_shared<Ecam>(this); }

// ---- BAR windows

class PciBus::Window : public BusDevice {
public:
    Window(PciBus* bus, uint64_t base, bool io) : bus_(bus), base_(base), io_(io) {}
    std::string name() const override { return io_ ? "pci_pio_window" : "pci_mmio_window"; }
    void read(uint64_t offset, std::span<uint8_t> data) override {
        uint64_t addr;
        if (!address(offset, addr)) return fill_ones(data);
        if (auto ecam = ecam_offset(addr, data.size())) return bus_->ecam_access(*ecam, data, {});
        if (!bus_->dispatch(kind(), addr, data, {})) fill_ones(data);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        uint64_t addr;
        if (!address(offset, addr) || data.empty()) return;
        if (auto ecam = ecam_offset(addr, data.size())) return bus_->ecam_access(*ecam, {}, data);
        bus_->dispatch(kind(), addr, {}, data);
    }

private:
    BarKind kind() const { return io_ ? BarKind::Io : BarKind::Mem32; }
    // The chipset decodes ECAM in memory space only, ahead of any BAR.
    std::optional<uint64_t> ecam_offset(uint64_t addr, std::size_t size) const {
        return io_ ? std::nullopt : bus_->ecam_offset(addr, size);
    }
    bool address(uint64_t offset, uint64_t& addr) const {
        addr = base_ + offset;
        return addr >= base_;
    }
    PciBus* bus_;
    uint64_t base_;
    bool io_;
};

std::shared_ptr<BusDevice> PciBus::mmio_device(uint64_t base) { return std::make_shared<Window>(this, base, false); }
std::shared_ptr<BusDevice> PciBus::pio_device(uint64_t base) { return std::make_shared<Window>(this, base, true); }

// ---- BAR allocation

BarAllocator::BarAllocator(uint64_t start, uint64_t end) : next_(start), end_(end) {
    if (end < start) fail("pci: empty BAR window [{:#x}, {:#x})", start, end);
}

uint64_t BarAllocator::allocate(uint64_t size) {
    if (size == 0 || (size & (size - 1)) != 0) fail("pci: BAR size {:#x} is not a power of two", size);
    const uint64_t at = (next_ + size - 1) & ~(size - 1);
    if (at < next_ || at > end_ || size > end_ - at) {
        fail("pci: no room for a {:#x}-byte BAR in the window (next free {:#x}, end {:#x})", size, next_, end_);
    }
    next_ = at + size;
    return at;
}

}  // namespace vmm::devices::pci
