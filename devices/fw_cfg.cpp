#include "devices/fw_cfg.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::devices {
namespace {

constexpr uint16_t kWriteChannel = 0x4000;  // only says "for writing"
constexpr uint16_t kArchLocal = 0x8000;
constexpr uint32_t kIdTraditional = 1u << 0;
constexpr uint32_t kIdDma = 1u << 1;

constexpr uint64_t kSelectorOff = 0;
constexpr uint64_t kDataOff = 1;
constexpr uint64_t kDmaOff = 4;
constexpr uint64_t kDmaLowOff = 8;
constexpr std::array<uint8_t, 8> kDmaSignature = {'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G'};

// FWCfgDmaAccess: be32 control, be32 length, be64 address.
constexpr std::size_t kDescSize = 16;
constexpr uint32_t kCtlError = 0x01;
constexpr uint32_t kCtlRead = 0x02;
constexpr uint32_t kCtlSkip = 0x04;
constexpr uint32_t kCtlSelect = 0x08;
constexpr uint32_t kCtlWrite = 0x10;

constexpr std::size_t kDirEntrySize = 64;  // be32 size, be16 key, be16 0, name[56]

}  // namespace

FwCfg::FwCfg(const GuestMemory* mem) : mem_(mem) {
    set_item(kSignatureKey, {'Q', 'E', 'M', 'U'});
    set_item(kIdKey, le_bytes(4, kIdTraditional | kIdDma));
    rebuild_directory();
}

namespace {
void check_fixed_key(uint16_t key) {
    const bool fixed = key < FwCfg::kFirstFileKey || (key & (kArchLocal | kWriteChannel)) == kArchLocal;
    if (!fixed || key == FwCfg::kSignatureKey || key == FwCfg::kIdKey || key == FwCfg::kFileDirKey) {
        fail("fw_cfg: key {:#x} is not a free fixed key", key);
    }
}
}  // namespace

void FwCfg::add_item(uint16_t key, std::vector<uint8_t> bytes) {
    check_fixed_key(key);
    std::lock_guard lk(mu_);
    set_item(key, std::move(bytes));
}

void FwCfg::add_item_view(uint16_t key, std::span<const uint8_t> bytes, std::shared_ptr<const void> owner) {
    check_fixed_key(key);
    if (bytes.size() > UINT32_MAX) fail("fw_cfg: item {:#x} is larger than 4 GiB", key);
    std::lock_guard lk(mu_);
    set_item(key, Item{std::move(owner), bytes});
}

void FwCfg::add_u16(uint16_t key, uint16_t v) { add_item(key, le_bytes(2, v)); }
void FwCfg::add_u32(uint16_t key, uint32_t v) { add_item(key, le_bytes(4, v)); }
void FwCfg::add_u64(uint16_t key, uint64_t v) { add_item(key, le_bytes(8, v)); }

void FwCfg::add_file(const std::string& name, std::vector<uint8_t> bytes) {
    if (name.empty() || name.size() > kMaxNameLen || name.find('\0') != std::string::npos) {
        fail("fw_cfg: file name '{}' must be 1..{} bytes without NUL", name, kMaxNameLen);
    }
    if (bytes.size() > UINT32_MAX) fail("fw_cfg: file '{}' is larger than 4 GiB", name);
    std::lock_guard lk(mu_);
    for (const auto& f : files_) {
        if (f.first == name) fail("fw_cfg: file '{}' added twice", name);
    }
    // Keys stay below the write-channel bit.
    if (files_.size() >= kWriteChannel - kFirstFileKey) fail("fw_cfg: too many files");
    const auto key = static_cast<uint16_t>(kFirstFileKey + files_.size());
    files_.emplace_back(name, key);
    set_item(key, std::move(bytes));
    rebuild_directory();
}

void FwCfg::set_item(uint16_t key, std::vector<uint8_t> bytes) {
    auto owned = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
    std::span<const uint8_t> data(*owned);
    set_item(key, Item{std::move(owned), data});
}

void FwCfg::set_item(uint16_t key, Item item) {
    auto& slot = items_[key];
    slot = std::move(item);
    if (cur_ == &slot) cur_off_ = std::min(cur_off_, slot.data.size());
}

void FwCfg::rebuild_directory() {
    auto sorted = files_;
    std::sort(sorted.begin(), sorted.end());
    std::vector<uint8_t> dir(4 + sorted.size() * kDirEntrySize, 0);
    store_be32(dir, 0, static_cast<uint32_t>(sorted.size()));
    std::size_t off = 4;
    for (const auto& [name, key] : sorted) {
        store_be32(dir, off, static_cast<uint32_t>(items_.at(key).data.size()));
        store_be16(dir, off + 4, key);
        std::copy(name.begin(), name.end(), dir.begin() + static_cast<std::ptrdiff_t>(off + 8));
        off += kDirEntrySize;
    }
    set_item(kFileDirKey, std::move(dir));
}

void FwCfg::select(uint16_t key) {
    auto it = items_.find(static_cast<uint16_t>(key & ~kWriteChannel));
    cur_ = it == items_.end() ? nullptr : &it->second;
    cur_off_ = 0;
}

uint8_t FwCfg::next_byte() {
    if (!cur_ || cur_off_ >= cur_->data.size()) return 0;
    return cur_->data[cur_off_++];
}

void FwCfg::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const uint64_t off = offset + i;
        // A wide read of the data port streams consecutive item bytes.
        if (offset == kDataOff || off == kDataOff) {
            data[i] = next_byte();
        } else if (off >= kDmaOff && off < kDmaOff + kDmaSignature.size()) {
            data[i] = kDmaSignature[off - kDmaOff];
        } else {
            data[i] = 0;
        }
    }
}

void FwCfg::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lk(mu_);
    if (offset == kSelectorOff) {
        select(static_cast<uint16_t>(load_le(data.first(std::min<std::size_t>(data.size(), 2)))));
    } else if (offset == kDmaOff && data.size() == 4) {
        dma_high_ = load_be32(data, 0);
    } else if (offset == kDmaLowOff && data.size() == 4) {
        const uint64_t gpa = uint64_t{dma_high_} << 32 | load_be32(data, 0);
        // Firmware that only ever uses low addresses writes only the low
        // half, so the high half must not outlive a transfer.
        dma_high_ = 0;
        dma_transfer(gpa);
    } else if (offset == kDmaOff && data.size() == 8) {
        dma_high_ = 0;
        dma_transfer(load_be64(data, 0));
    } else if (log_limit_.allow()) {
        vmm::log::debug("fw_cfg: ignored {}-byte write at offset {}", data.size(), offset);
    }
}

void FwCfg::dma_transfer(uint64_t desc_gpa) {
    if (!mem_) {
        if (log_limit_.allow()) vmm::log::warn("fw_cfg: DMA at {:#x} without guest memory; ignored", desc_gpa);
        return;
    }
    std::array<uint8_t, kDescSize> desc{};
    if (!mem_->read(desc_gpa, desc)) {
        if (log_limit_.allow()) vmm::log::warn("fw_cfg: DMA descriptor at {:#x} is not in guest RAM", desc_gpa);
        return;
    }
    const uint32_t control = load_be32(desc, 0);
    const uint32_t length = load_be32(desc, 4);
    const uint64_t addr = load_be64(desc, 8);

    if (control & kCtlSelect) select(static_cast<uint16_t>(control >> 16));
    bool ok = true;
    if (control & kCtlWrite) {
        ok = false;  // items are read-only
    } else if (control & kCtlRead) {
        ok = dma_read(addr, length);
    } else if (control & kCtlSkip) {
        // Past the end everything reads 0, so the offset can stop there.
        const std::size_t avail = cur_ ? cur_->data.size() - cur_off_ : 0;
        cur_off_ += std::min<std::size_t>(avail, length);
    }
    if (!ok && log_limit_.allow()) {
        vmm::log::debug("fw_cfg: DMA control {:#x} length {} address {:#x} failed", control, length, addr);
    }
    const std::array<uint8_t, 4> result = {0, 0, 0, ok ? uint8_t{0} : uint8_t{kCtlError}};
    mem_->write(desc_gpa, result);
}

bool FwCfg::dma_read(uint64_t gpa, uint32_t len) {
    // One overflow-checked range check, then copy in place: no host buffer
    // proportional to the guest's length.
    auto dst = mem_->slice(gpa, len);
    if (!dst) return false;
    const std::size_t avail = cur_ ? cur_->data.size() - cur_off_ : 0;
    const std::size_t n = std::min<std::size_t>(avail, len);
    if (n) std::memcpy(dst->data(), cur_->data.data() + cur_off_, n);
    std::memset(dst->data() + n, 0, dst->size() - n);
    cur_off_ += n;
    return true;
}

}  // namespace vmm::devices
