// ConfigSpace: the type-0 configuration header every emulated PCI device
// composes. All guest writes go through a per-byte write mask, which also
// implements BAR sizing: the address bits below the BAR size and the type
// bits are read-only, so writing all ones reads back ~(size-1) | type.
#include "devices/pci.h"

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::devices::pci {

namespace {

constexpr uint16_t kHeaderBytes = 256;
constexpr uint32_t kBarIo = 0x1;
constexpr uint32_t kBarMem64 = 0x4;
constexpr uint32_t kBarPrefetch = 0x8;

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

ConfigSpace::ConfigSpace(const Ids& ids, uint8_t header_type) {
    store_le16(cfg_, kCfgVendorId, ids.vendor);
    store_le16(cfg_, kCfgVendorId + 2, ids.device);
    cfg_[kCfgRevision] = ids.revision;
    store_le(cfg_, kCfgClassCode, 3, ids.class_code);
    cfg_[kCfgHeaderType] = header_type;
    store_le16(cfg_, kCfgSubsystemVendor, ids.subsystem_vendor);
    store_le16(cfg_, kCfgSubsystem, ids.subsystem);

    // Writable: COMMAND.IO/MEM/BUS_MASTER/INTX_DISABLE and the interrupt
    // line (scratch for the OS). Everything else is read-only until a BAR
    // or capability opens more bits.
    const uint16_t cmd = kCommandIo | kCommandMem | kCommandBusMaster | kCommandIntxDisable;
    store_le16(wmask_, kCfgCommand, cmd);
    wmask_[kCfgInterruptLine] = 0xff;
}

uint32_t ConfigSpace::dword(uint16_t off) const { return load_le32(cfg_, off); }

uint32_t ConfigSpace::wmask_dword(uint16_t off) const { return load_le32(wmask_, off); }

void ConfigSpace::add_bar(unsigned index, BarKind kind, uint64_t size, uint64_t initial_addr, bool prefetchable) {
    const unsigned slots = kind == BarKind::Mem64 ? 2 : 1;
    if (index >= 6 || index + slots > 6) fail("pci: BAR {} out of range", index);
    for (unsigned i = index; i < index + slots; ++i) {
        if (bars_[i].present || bars_[i].upper) fail("pci: BAR {} declared twice", i);
    }
    if (!is_pow2(size)) fail("pci: BAR {} size {:#x} is not a power of two", index, size);
    if (kind == BarKind::Io) {
        if (size < 4 || size > 0x10000) fail("pci: I/O BAR {} size {:#x} out of range", index, size);
        if (prefetchable) fail("pci: I/O BAR {} cannot be prefetchable", index);
    } else if (size < 16) {
        fail("pci: memory BAR {} size {:#x} is below 16 bytes", index, size);
    }
    if (kind == BarKind::Mem32 && size > (uint64_t{1} << 31)) fail("pci: 32-bit BAR {} too large", index);
    if (initial_addr % size != 0) fail("pci: BAR {} address {:#x} not aligned to its size", index, initial_addr);
    const uint64_t limit = kind == BarKind::Io ? 0x10000 : kind == BarKind::Mem32 ? uint64_t{1} << 32 : 0;
    if (limit != 0 && (initial_addr > limit || size > limit - initial_addr)) {
        fail("pci: BAR {} at {:#x} does not fit its address space", index, initial_addr);
    }
    if (kind == BarKind::Mem64 && initial_addr + size < initial_addr) fail("pci: BAR {} wraps", index);

    bars_[index] = Bar{true, false, kind, size, prefetchable};
    const uint16_t off = static_cast<uint16_t>(kCfgBar0 + 4 * index);
    uint32_t type = 0;
    uint32_t low_mask = 0;
    if (kind == BarKind::Io) {
        type = kBarIo;
        low_mask = static_cast<uint32_t>(~(size - 1)) & ~0x3u;
    } else {
        type = (kind == BarKind::Mem64 ? kBarMem64 : 0) | (prefetchable ? kBarPrefetch : 0);
        low_mask = static_cast<uint32_t>(~(size - 1)) & ~0xfu;
    }
    const uint32_t low = (static_cast<uint32_t>(initial_addr) & low_mask) | type;
    store_le32(cfg_, off, low);
    store_le32(wmask_, off, low_mask);
    if (kind == BarKind::Mem64) {
        bars_[index + 1] = Bar{};
        bars_[index + 1].upper = true;
        const uint32_t high_mask = static_cast<uint32_t>(~(size - 1) >> 32);
        const uint32_t high = static_cast<uint32_t>(initial_addr >> 32);
        store_le32(cfg_, off + 4, high);
        store_le32(wmask_, off + 4, high_mask);
    }
}

void ConfigSpace::add_rom(uint64_t size) {
    if (rom_size_ != 0) fail("pci: expansion ROM declared twice");
    if (!is_pow2(size) || size < 0x800 || size > (uint64_t{16} << 20))
        fail("pci: expansion ROM size {:#x} is not a power of two in 2 KiB..16 MiB", size);
    rom_size_ = size;
    // Address bits 31..11 above the size, and the enable bit.
    const uint32_t mask = (static_cast<uint32_t>(~(size - 1)) & 0xfffff800u) | kRomEnable;
    store_le32(cfg_, kCfgRomAddress, 0);
    store_le32(wmask_, kCfgRomAddress, mask);
}

uint8_t ConfigSpace::add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable) {
    if (!writable.empty() && writable.size() != body.size()) {
        fail("pci: capability {:#x}: write mask of {} bytes for a {}-byte body", id, writable.size(), body.size());
    }
    const std::size_t off = (next_cap_ + 3u) & ~3u;
    if (off + 2 + body.size() > kHeaderBytes) fail("pci: capability {:#x} does not fit the header", id);
    cfg_[off] = id;
    cfg_[off + 1] = 0;  // end of list until another one is appended
    for (std::size_t i = 0; i < body.size(); ++i) {
        cfg_[off + 2 + i] = body[i];
        wmask_[off + 2 + i] = writable.empty() ? 0 : writable[i];
    }
    if (last_cap_ == 0) {
        cfg_[kCfgCapPtr] = static_cast<uint8_t>(off);
    } else {
        cfg_[last_cap_ + 1] = static_cast<uint8_t>(off);
    }
    last_cap_ = static_cast<uint8_t>(off);
    next_cap_ = static_cast<uint8_t>(off + 2 + body.size() <= 0xff ? off + 2 + body.size() : 0xff);
    set_status_bit(kStatusCapList, true);
    return static_cast<uint8_t>(off);
}

void ConfigSpace::set_interrupt_pin(uint8_t pin, uint8_t line) {
    cfg_[kCfgInterruptPin] = pin;
    cfg_[kCfgInterruptLine] = line;
}

void ConfigSpace::set_writable(uint16_t offset, uint64_t mask, unsigned bytes) {
    if (bytes > 8 || std::size_t{offset} + bytes > kHeaderBytes) {
        fail("pci: write mask of {} bytes at {:#x} leaves the header", bytes, offset);
    }
    store_le(wmask_, offset, bytes, mask);
}

void ConfigSpace::read(uint16_t offset, std::span<uint8_t> data) const {
    // Bytes beyond the type-0 header (PCIe extended space) read as zero,
    // meaning "no extended capabilities".
    read_window(cfg_, offset, data);
}

void ConfigSpace::write(uint16_t offset, std::span<const uint8_t> data) {
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::size_t o = std::size_t{offset} + i;
        if (o >= kHeaderBytes) break;
        cfg_[o] = static_cast<uint8_t>((cfg_[o] & ~wmask_[o]) | (data[i] & wmask_[o]));
    }
}

std::vector<BarRegion> ConfigSpace::decoded_bars() const {
    std::vector<BarRegion> out;
    const uint16_t cmd = command();
    for (unsigned i = 0; i < bars_.size(); ++i) {
        const Bar& b = bars_[i];
        if (!b.present) continue;
        const uint16_t off = static_cast<uint16_t>(kCfgBar0 + 4 * i);
        const uint32_t low = dword(off);
        const uint32_t low_mask = wmask_dword(off);
        // A dword with all its writable bits set is the sizing pattern
        // (or an address that cannot hold the BAR anyway): not decoded.
        if (low_mask != 0 && (low & low_mask) == low_mask) continue;
        uint64_t addr = low & low_mask;
        uint64_t limit = 0;
        if (b.kind == BarKind::Io) {
            if (!(cmd & kCommandIo)) continue;
            limit = 0x10000;
        } else {
            if (!(cmd & kCommandMem)) continue;
            if (b.kind == BarKind::Mem64) {
                const uint32_t high = dword(off + 4);
                const uint32_t high_mask = wmask_dword(off + 4);
                if (high_mask != 0 && (high & high_mask) == high_mask) continue;
                addr |= uint64_t{high} << 32;
                addr &= ~(b.size - 1);
            } else {
                limit = uint64_t{1} << 32;
            }
        }
        if (addr == 0) continue;
        if (addr + b.size < addr) continue;
        if (limit != 0 && addr + b.size > limit) continue;
        out.push_back({i, b.kind, addr, b.size});
    }
    if (rom_size_ != 0 && (cmd & kCommandMem)) {
        const uint32_t v = dword(kCfgRomAddress);
        const uint32_t addr_mask = static_cast<uint32_t>(~(rom_size_ - 1)) & 0xfffff800u;
        const uint64_t addr = v & addr_mask;
        // Enabled and placed; like the BARs, the sizing pattern (every
        // address bit set) is not decoded.
        if ((v & kRomEnable) && addr != 0 && addr != addr_mask)
            out.push_back({kRomBar, BarKind::Mem32, addr, rom_size_});
    }
    return out;
}

uint16_t ConfigSpace::command() const {
    return load_le16(cfg_, kCfgCommand);
}

void ConfigSpace::set_command(uint16_t v) {
    store_le16(cfg_, kCfgCommand, v);
}

void ConfigSpace::set_status_bit(uint16_t bit, bool on) {
    const uint16_t st = load_le16(cfg_, kCfgStatus);
    store_le16(cfg_, kCfgStatus, on ? static_cast<uint16_t>(st | bit) : static_cast<uint16_t>(st & ~bit));
}

}  // namespace vmm::devices::pci
