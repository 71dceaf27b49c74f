// QEMU-compatible firmware configuration interface (fw_cfg), the channel
// through which SeaBIOS and OVMF read the VM's ACPI tables, memory map,
// kernel and boot order. Registered at PIO 0x510, length 12:
//   offset 0      selector (16-bit write; bit 14, the write channel, is
//                 ignored for lookup)
//   offset 1      data: every byte read returns the next byte of the
//                 selected item (0 past its end or for unknown keys)
//   offsets 4..11 DMA address, big-endian: a 32-bit write at 4 sets the
//                 high half, a 32-bit write at 8 sets the low half and
//                 starts the transfer; a 64-bit write at 4 does both. Reads
//                 return the signature "QEMU CFG".
// Built in: key 0x00 "QEMU", key 0x01 features (traditional + DMA) and the
// file directory at key 0x19, rebuilt on every add_file().
//
// DMA reads item data straight into guest RAM; a data range must lie
// wholly inside one RAM region (else the error bit is set and nothing is
// copied). Guest writes to items are not supported.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/bus.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/log.h"

namespace vmm::devices {

class FwCfg : public vmm::BusDevice {
public:
    static constexpr uint64_t kPioBase = 0x510;
    static constexpr uint64_t kLength = 12;

    static constexpr uint16_t kSignatureKey = 0x00;
    static constexpr uint16_t kIdKey = 0x01;
    static constexpr uint16_t kFileDirKey = 0x19;
    static constexpr uint16_t kFirstFileKey = 0x20;
    // Fixed keys the VMM fills (QEMU's numbering, which firmware reads).
    static constexpr uint16_t kRamSize = 0x03;    // u64: guest RAM bytes
    static constexpr uint16_t kNoGraphic = 0x04;  // u16: 1 = no display (SeaBIOS: text on COM1)
    static constexpr uint16_t kNbCpus = 0x05;     // u16: vCPUs at boot
    static constexpr uint16_t kBootMenu = 0x0e;   // u16: 1 = show the boot menu
    static constexpr uint16_t kMaxCpus = 0x0f;    // u16: vCPUs possible
    static constexpr std::size_t kMaxNameLen = 55;  // 56 bytes with the NUL

    // mem: where DMA descriptors and buffers live; null disables DMA.
    explicit FwCfg(const GuestMemory* mem);

    // Fixed items (key < 0x20 or an arch-local key 0x8000..0xbfff), e.g.
    // 0x05 = CPU count. Replaces an earlier item; the built-in keys 0x00,
    // 0x01 and 0x19 are refused (vmm::Error).
    void add_item(uint16_t key, std::vector<uint8_t> bytes);
    // A fixed item served from memory the caller owns: `owner` keeps
    // `bytes` alive for as long as the device needs them.
    void add_item_view(uint16_t key, std::span<const uint8_t> bytes, std::shared_ptr<const void> owner);
    void add_u16(uint16_t key, uint16_t v);  // stored little-endian
    void add_u32(uint16_t key, uint32_t v);
    void add_u64(uint16_t key, uint64_t v);

    // Named file at the next key from 0x20. Throws vmm::Error if the name
    // is empty, longer than 55 bytes or already present.
    void add_file(const std::string& name, std::vector<uint8_t> bytes);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "fw_cfg"; }

private:
    // An item's bytes and whatever keeps them alive (its own vector, or a
    // caller's mapping of a large file, so a kernel is not copied).
    struct Item {
        std::shared_ptr<const void> owner;
        std::span<const uint8_t> data;
    };
    void select(uint16_t key);  // lock held (all below too)
    uint8_t next_byte();
    void dma_transfer(uint64_t desc_gpa);
    bool dma_read(uint64_t gpa, uint32_t len);
    void rebuild_directory();
    void set_item(uint16_t key, std::vector<uint8_t> bytes);
    void set_item(uint16_t key, Item item);

    std::mutex mu_;
    const GuestMemory* mem_;
    std::map<uint16_t, Item> items_;  // by key without bit 14
    std::vector<std::pair<std::string, uint16_t>> files_;  // insertion order
    const Item* cur_ = nullptr;  // selected item, or none
    std::size_t cur_off_ = 0;                   // never past cur_->size()
    uint32_t dma_high_ = 0;
    vmm::log::RateLimit log_limit_;
};

}  // namespace vmm::devices
