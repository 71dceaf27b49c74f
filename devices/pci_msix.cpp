// MsixTable: the MSI-X capability, vector table and pending-bit array.
//
// Each entry owns an MsiVector (an irqfd + GSI route on the VMM side). The
// route is reprogrammed only when an entry is live (MSI-X enabled, function
// and entry unmasked) and its message differs from what was last programmed,
// so the usual guest sequence (write address, write data, unmask) costs one
// route update. A trigger on a vector that is not live sets its pending bit;
// making it live again delivers and clears it (PCI spec 6.8.2.9 behaviour).
#include "devices/pci.h"

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::devices::pci {

namespace {

constexpr uint16_t kMaxVectors = 2048;
constexpr uint64_t kOffAddrLo = 0;
constexpr uint64_t kOffAddrHi = 4;
constexpr uint64_t kOffData = 8;
constexpr uint64_t kOffControl = 12;
constexpr uint32_t kEntryMasked = 1;

vmm::log::RateLimit g_bad_access_log;

bool good_access(uint64_t offset, std::size_t size) {
    return (size == 4 || size == 8) && offset % size == 0;
}

}  // namespace

MsixTable::MsixTable(uint16_t vectors, MsiVectorFactory factory) : entries_(vectors) {
    if (vectors == 0 || vectors > kMaxVectors) fail("msix: {} vectors requested; 1..{} supported", vectors, kMaxVectors);
    if (!factory) fail("msix: no vector factory");
    for (auto& e : entries_) e.vec = factory();
}

uint16_t MsixTable::size() const { return static_cast<uint16_t>(entries_.size()); }

std::vector<uint8_t> MsixTable::capability_body(unsigned bar, uint32_t table_offset, uint32_t pba_offset) const {
    if (bar >= 6) fail("msix: BAR {} out of range", bar);
    if (table_offset % 8 != 0 || pba_offset % 8 != 0) {
        fail("msix: table offset {:#x} / PBA offset {:#x} must be 8-byte aligned", table_offset, pba_offset);
    }
    std::vector<uint8_t> b(kCapabilityBodyBytes, 0);
    const uint16_t control = static_cast<uint16_t>(entries_.size() - 1);  // table size - 1, enable/mask clear
    const uint32_t table = table_offset | bar;
    const uint32_t pba = pba_offset | bar;
    store_le16(b, 0, control);
    store_le32(b, 2, table);
    store_le32(b, 6, pba);
    return b;
}

std::vector<uint8_t> MsixTable::capability_write_mask() const {
    std::vector<uint8_t> m(kCapabilityBodyBytes, 0);
    store_le16(m, 0, kControlEnable | kControlFunctionMask);  // Message Control
    return m;
}

void MsixTable::sync_route_locked(Entry& e) {
    if (!live_locked(e) || !e.vec) return;
    if (e.programmed && *e.programmed == e.msg) return;
    e.vec->update(e.msg);
    e.programmed = e.msg;
}

void MsixTable::deliver_pending_locked() {
    for (auto& e : entries_) {
        if (!live_locked(e)) continue;
        sync_route_locked(e);
        if (e.pending) {
            e.pending = false;
            if (e.vec) e.vec->trigger();
        }
    }
}

void MsixTable::set_control(bool enabled, bool function_masked) {
    std::lock_guard lk(mu_);
    enabled_ = enabled;
    function_masked_ = function_masked;
    deliver_pending_locked();
}

bool MsixTable::enabled() const {
    std::lock_guard lk(mu_);
    return enabled_;
}

bool MsixTable::function_masked() const {
    std::lock_guard lk(mu_);
    return function_masked_;
}

bool MsixTable::masked(uint16_t vector) const {
    std::lock_guard lk(mu_);
    return vector >= entries_.size() || entries_[vector].masked;
}

void MsixTable::table_read(uint64_t offset, std::span<uint8_t> data) const {
    std::fill(data.begin(), data.end(), 0);
    if (!good_access(offset, data.size())) {
        if (g_bad_access_log.allow()) {
            vmm::log::warn("msix: ignored {}-byte table read at {:#x}", data.size(), offset);
        }
        return;
    }
    std::lock_guard lk(mu_);
    for (std::size_t i = 0; i < data.size(); i += 4) {
        const uint64_t off = offset + i;
        const uint64_t idx = off / kEntryBytes;
        if (idx >= entries_.size()) break;  // beyond the table: reads 0
        const Entry& e = entries_[idx];
        uint32_t v = 0;
        switch (off % kEntryBytes) {
            case kOffAddrLo: v = static_cast<uint32_t>(e.msg.address); break;
            case kOffAddrHi: v = static_cast<uint32_t>(e.msg.address >> 32); break;
            case kOffData: v = e.msg.data; break;
            case kOffControl: v = e.masked ? kEntryMasked : 0; break;
        }
        store_le32(data, i, v);
    }
}

void MsixTable::table_write(uint64_t offset, std::span<const uint8_t> data) {
    if (!good_access(offset, data.size())) {
        if (g_bad_access_log.allow()) {
            vmm::log::warn("msix: ignored {}-byte table write at {:#x}", data.size(), offset);
        }
        return;
    }
    std::lock_guard lk(mu_);
    for (std::size_t i = 0; i < data.size(); i += 4) {
        const uint64_t off = offset + i;
        const uint64_t idx = off / kEntryBytes;
        if (idx >= entries_.size()) break;
        Entry& e = entries_[idx];
        const uint32_t v = load_le32(data, i);
        switch (off % kEntryBytes) {
            case kOffAddrLo:
                // Bits 1:0 are reserved (dword-aligned address) and read 0.
                e.msg.address = (e.msg.address & ~uint64_t{0xffffffff}) | (v & ~3u);
                break;
            case kOffAddrHi: e.msg.address = (e.msg.address & 0xffffffff) | uint64_t{v} << 32; break;
            case kOffData: e.msg.data = v; break;
            case kOffControl: e.masked = (v & kEntryMasked) != 0; break;
        }
        if (!live_locked(e)) continue;
        sync_route_locked(e);
        if (e.pending) {
            e.pending = false;
            if (e.vec) e.vec->trigger();
        }
    }
}

void MsixTable::pba_read(uint64_t offset, std::span<uint8_t> data) const {
    std::fill(data.begin(), data.end(), 0);
    if (!good_access(offset, data.size())) {
        if (g_bad_access_log.allow()) {
            vmm::log::warn("msix: ignored {}-byte PBA read at {:#x}", data.size(), offset);
        }
        return;
    }
    if (offset >= pba_bytes()) return;  // also keeps the bit index below from overflowing
    std::lock_guard lk(mu_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const uint64_t first = (offset + i) * 8;  // vector of bit 0 of this byte
        uint8_t bits = 0;
        for (uint64_t b = 0; b < 8; ++b) {
            if (first + b < entries_.size() && entries_[first + b].pending) bits |= static_cast<uint8_t>(1u << b);
        }
        data[i] = bits;
    }
}

void MsixTable::trigger(uint16_t vector) {
    std::lock_guard lk(mu_);
    if (vector >= entries_.size()) return;
    Entry& e = entries_[vector];
    if (!live_locked(e)) {
        e.pending = true;
        return;
    }
    sync_route_locked(e);
    if (e.vec) e.vec->trigger();
}

bool MsixTable::pending(uint16_t vector) const {
    std::lock_guard lk(mu_);
    return vector < entries_.size() && entries_[vector].pending;
}

}  // namespace vmm::devices::pci
