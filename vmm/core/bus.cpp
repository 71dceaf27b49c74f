#include "vmm/core/bus.h"

#include <algorithm>

#include "vmm/core/error.h"

namespace vmm {

void Bus::add(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> dev) {
    if (len == 0) fail("{} bus: zero-length range at {:#x} for {}", name_, base, dev->name());
    if (base + len < base) fail("{} bus: range {:#x}+{:#x} overflows", name_, base, len);
    auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && next->second.base < base + len)
        fail("{} bus: {} at {:#x}+{:#x} overlaps {}", name_, dev->name(), base, len, next->second.dev->name());
    if (next != ranges_.begin()) {
        auto prev = std::prev(next);
        if (prev->second.base + prev->second.len > base)
            fail("{} bus: {} at {:#x}+{:#x} overlaps {}", name_, dev->name(), base, len, prev->second.dev->name());
    }
    ranges_.emplace(base, Range{base, len, std::move(dev)});
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t size) const {
    auto it = ranges_.upper_bound(addr);
    if (it == ranges_.begin()) return nullptr;
    --it;
    const Range& r = it->second;
    // Overflow-safe: addr >= r.base here; require the whole access inside.
    uint64_t off = addr - r.base;
    if (off >= r.len || size > r.len - off) return nullptr;
    return &r;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
    std::fill(data.begin(), data.end(), 0xff);
    const Range* r = find(addr, data.size());
    if (!r) return false;
    r->dev->read(addr - r->base, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (!r) return false;
    r->dev->write(addr - r->base, data);
    return true;
}

}  // namespace vmm
