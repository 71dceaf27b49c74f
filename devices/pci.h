// PCI: the device interface, a reusable type-0 configuration space with BAR
// sizing and a capability list, MSI-X table/PBA emulation, and the bus that
// decodes configuration accesses (0xCF8/0xCFC and ECAM) and BAR windows.
//
// The bus owns BAR decoding: after every configuration write it re-reads the
// device's decoded BARs (address + COMMAND enables) and, when they changed,
// updates its address map and tells the device (bars_changed) so it can move
// ioeventfds. BAR accesses from vCPUs arrive through PciBus::mmio()/pio(),
// two BusDevices that cover the PCI windows.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/bus.h"
#include "vmm/core/irq.h"

namespace vmm::devices::pci {

enum class BarKind : uint8_t { Io, Mem32, Mem64 };

// Configuration header offsets and bits used by devices and tests.
inline constexpr uint16_t kCfgVendorId = 0x00;
inline constexpr uint16_t kCfgCommand = 0x04;
inline constexpr uint16_t kCfgStatus = 0x06;
inline constexpr uint16_t kCfgRevision = 0x08;
inline constexpr uint16_t kCfgClassCode = 0x09;  // prog-if, subclass, base class
inline constexpr uint16_t kCfgHeaderType = 0x0e;
inline constexpr uint16_t kCfgBar0 = 0x10;
inline constexpr uint16_t kCfgSubsystemVendor = 0x2c;
inline constexpr uint16_t kCfgSubsystem = 0x2e;
inline constexpr uint16_t kCfgRomAddress = 0x30;  // expansion ROM base address
inline constexpr uint16_t kCfgCapPtr = 0x34;
inline constexpr uint16_t kCfgInterruptLine = 0x3c;
inline constexpr uint16_t kCfgInterruptPin = 0x3d;
inline constexpr uint16_t kCfgSize = 4096;  // PCIe extended space (bytes >= 256 read 0)

inline constexpr uint16_t kCommandIo = 1u << 0;
inline constexpr uint16_t kCommandMem = 1u << 1;
inline constexpr uint16_t kCommandBusMaster = 1u << 2;
inline constexpr uint16_t kCommandIntxDisable = 1u << 10;
inline constexpr uint16_t kStatusInterrupt = 1u << 3;
inline constexpr uint16_t kStatusCapList = 1u << 4;

inline constexpr uint8_t kCapIdMsix = 0x11;
inline constexpr uint8_t kCapIdVendor = 0x09;

// BarRegion::index of the expansion ROM (configuration offset 0x30).
inline constexpr unsigned kRomBar = 6;
inline constexpr uint32_t kRomEnable = 0x1;  // bit 0 of the ROM base address

// A BAR as currently decoded by the device (address assigned, enable bit set
// in COMMAND). Mem64 BARs use two BAR slots; `index` is the lower one. The
// expansion ROM is index kRomBar (Mem32, decoded when its own enable bit and
// COMMAND.MEM are set).
struct BarRegion {
    unsigned index;
    BarKind kind;
    uint64_t addr;
    uint64_t size;
    bool operator==(const BarRegion&) const = default;
};

class PciDevice {
public:
    virtual ~PciDevice() = default;
    virtual std::string name() const = 0;
    // Configuration space, offset < 4096; an access never crosses a dword.
    virtual void config_read(uint16_t offset, std::span<uint8_t> data) = 0;
    virtual void config_write(uint16_t offset, std::span<const uint8_t> data) = 0;
    // BARs currently decoded (COMMAND.IO / COMMAND.MEM set, address != 0).
    virtual std::vector<BarRegion> decoded_bars() const = 0;
    // An access inside a decoded BAR, `offset` relative to its base.
    virtual void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) = 0;
    // Called by the bus (outside any bus lock) after decoded_bars() changed.
    virtual void bars_changed(const std::vector<BarRegion>& now) { (void)now; }
};

// Standard type-0 header with write masks, BAR sizing and capabilities.
// Devices compose one of these and forward config_read/config_write.
class ConfigSpace {
public:
    struct Ids {
        uint16_t vendor, device;
        uint8_t revision;
        uint32_t class_code;  // 24 bits: base class, subclass, prog-if
        uint16_t subsystem_vendor, subsystem;
    };
    explicit ConfigSpace(const Ids& ids, uint8_t header_type = 0);

    // Declare BAR `index` of `size` bytes (power of two, >= 16 for memory,
    // >= 4 for I/O). Its address starts as `initial_addr` (the VMM's
    // assignment, aligned to size) and decoding starts disabled until the
    // guest (or the VMM, via set_command) sets COMMAND.MEM/IO.
    void add_bar(unsigned index, BarKind kind, uint64_t size, uint64_t initial_addr, bool prefetchable = false);
    // Appends a capability (id, then `body` after the id/next bytes) and
    // returns its offset. `writable` masks bits of the body the guest may
    // change (same length as body, or empty for read-only).
    uint8_t add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable = {});
    // Declare the expansion ROM BAR of `size` bytes (power of two, >= 2 KiB,
    // <= 16 MiB). It starts unassigned and disabled: firmware places it,
    // enables it to copy the image, and disables it again.
    void add_rom(uint64_t size);
    void set_interrupt_pin(uint8_t pin /* 1 = INTA */, uint8_t line);
    // Opens the bits of `mask` (little-endian, `bytes` <= 8 long) at
    // `offset` to guest writes, for device-specific registers. Throws
    // vmm::Error when the range leaves the 256-byte header.
    void set_writable(uint16_t offset, uint64_t mask, unsigned bytes);

    void read(uint16_t offset, std::span<uint8_t> data) const;
    // Applies the write through the masks; BAR writes of all-ones read back
    // the size mask as the spec requires.
    void write(uint16_t offset, std::span<const uint8_t> data);
    std::vector<BarRegion> decoded_bars() const;
    uint16_t command() const;
    void set_command(uint16_t v);
    // Raw access for the device's own registers (e.g. capability bodies).
    std::span<uint8_t> bytes() { return {cfg_.data(), cfg_.size()}; }
    std::span<const uint8_t> bytes() const { return {cfg_.data(), cfg_.size()}; }
    // Sets or clears the STATUS bits in the mask `bit` (e.g. kStatusInterrupt).
    void set_status_bit(uint16_t bit, bool on);

private:
    struct Bar {
        bool present = false;
        bool upper = false;  // the high dword of the Mem64 BAR below it
        BarKind kind = BarKind::Mem32;
        uint64_t size = 0;
        bool prefetchable = false;
    };
    uint32_t dword(uint16_t off) const;
    uint32_t wmask_dword(uint16_t off) const;
    std::array<uint8_t, 256> cfg_{};
    std::array<uint8_t, 256> wmask_{};
    std::array<Bar, 6> bars_{};
    uint64_t rom_size_ = 0;  // 0: no expansion ROM
    uint8_t next_cap_ = 0x40;
    uint8_t last_cap_ = 0;
};

// MSI message as programmed in an MSI-X table entry.
struct MsiMessage {
    uint64_t address = 0;
    uint32_t data = 0;
    bool operator==(const MsiMessage&) const = default;
};

// The VMM side of one interrupt vector (an irqfd bound to a KVM GSI route).
class MsiVector {
public:
    virtual ~MsiVector() = default;
    // Reprogram the route; called when the guest changes the entry.
    virtual void update(const MsiMessage& msg) = 0;
    virtual void trigger() = 0;  // from any thread
};

using MsiVectorFactory = std::function<std::unique_ptr<MsiVector>()>;

// MSI-X capability + table + PBA. The table and PBA live in a BAR of the
// owning device, which forwards accesses to table_read/write and pba_read.
// Masking: a trigger() on a masked vector (or with the function masked or
// MSI-X disabled) sets its PBA bit; unmasking delivers a pending vector.
class MsixTable {
public:
    // `vectors` <= 2048; the factory is called once per vector.
    MsixTable(uint16_t vectors, MsiVectorFactory factory);
    uint16_t size() const;
    static constexpr std::size_t kEntryBytes = 16;
    static constexpr std::size_t kCapabilityBodyBytes = 10;  // control, table, PBA
    static constexpr uint16_t kControlFunctionMask = 1u << 14;
    static constexpr uint16_t kControlEnable = 1u << 15;
    // Bytes the table and the PBA occupy in the BAR.
    std::size_t table_bytes() const { return entries_.size() * kEntryBytes; }
    std::size_t pba_bytes() const { return (entries_.size() + 63) / 64 * 8; }
    // Capability body (after id/next) for ConfigSpace::add_capability, with
    // the table and PBA placed in BAR `bar` at the given offsets.
    std::vector<uint8_t> capability_body(unsigned bar, uint32_t table_offset, uint32_t pba_offset) const;
    std::vector<uint8_t> capability_write_mask() const;
    // Called by the owning device after a config write that touched the
    // capability's Message Control word (enable / function mask bits).
    void set_control(bool enabled, bool function_masked);
    // Same, from the Message Control word as the guest wrote it.
    void set_control_word(uint16_t control) {
        set_control((control & kControlEnable) != 0, (control & kControlFunctionMask) != 0);
    }
    bool enabled() const;
    bool function_masked() const;
    bool masked(uint16_t vector) const;  // the entry's own mask bit; true when out of range
    void table_read(uint64_t offset, std::span<uint8_t> data) const;
    void table_write(uint64_t offset, std::span<const uint8_t> data);
    void pba_read(uint64_t offset, std::span<uint8_t> data) const;
    void trigger(uint16_t vector);  // thread-safe; out-of-range vectors are ignored
    bool pending(uint16_t vector) const;

private:
    struct Entry {
        MsiMessage msg;
        bool masked = true;
        bool pending = false;
        std::unique_ptr<MsiVector> vec;
        std::optional<MsiMessage> programmed;  // last message passed to vec->update()
    };
    mutable std::mutex mu_;
    std::vector<Entry> entries_;
    bool enabled_ = false;
    bool function_masked_ = false;
    void deliver_pending_locked();
    bool live_locked(const Entry& e) const { return enabled_ && !function_masked_ && !e.masked; }
    void sync_route_locked(Entry& e);
};

// Bus 0 with up to 32 slots (slot 0: the host bridge). Configuration access
// through ports 0xCF8/0xCFC (io_port_device()) and ECAM (ecam_device(), or
// the movable ECAM set_ecam() places inside the mmio_device() windows),
// BAR decoding through mmio_device()/pio_device(), which the VMM registers on
// its buses over the PCI windows.
class PciBus {
public:
    PciBus();
    // Throws vmm::Error if the slot is taken or out of range.
    void add(unsigned slot, std::shared_ptr<PciDevice> dev);
    // First free slot >= 1, or throws when all 31 are used.
    unsigned free_slot() const;

    void config_read(unsigned bus, unsigned slot, unsigned function, uint16_t offset, std::span<uint8_t> data);
    void config_write(unsigned bus, unsigned slot, unsigned function, uint16_t offset, std::span<const uint8_t> data);

    // 8 bytes at 0xCF8. Port 0xCF9 (inside CONFIG_ADDRESS) is also the
    // reset control register on PC chipsets: byte accesses to it are passed
    // to `cf9` (at offset 0) when given, since the PIO bus rejects overlaps.
    std::shared_ptr<BusDevice> io_port_device(std::shared_ptr<BusDevice> cf9 = nullptr);
    std::shared_ptr<BusDevice> ecam_device();     // 1 MiB (bus 0) at the ECAM base
    // BusDevices that dispatch to decoded BARs; register them over the
    // windows given (addresses passed to read/write are offsets from `base`).
    std::shared_ptr<BusDevice> mmio_device(uint64_t base);
    std::shared_ptr<BusDevice> pio_device(uint64_t base);
    // Where the chipset (PCIEXBAR) decodes ECAM: mmio_device() windows turn
    // accesses inside [*base, *base + size) into configuration accesses
    // (bus = offset >> 20; buses other than 0 read all ones), ahead of BARs.
    // std::nullopt turns it off (the default). Thread-safe. Throws
    // vmm::Error for a zero size or a range that wraps.
    void set_ecam(std::optional<uint64_t> base, uint64_t size);
    // The BusDevices above point back at this PciBus, which must outlive
    // them. Config accesses to one bus are serialised by it; BAR accesses
    // are not (a device locks its own state against its BAR handlers).

    // Bytes of the ECAM window for bus 0.
    static constexpr uint64_t kEcamBytes = 1u << 20;

private:
    class ConfigPorts;
    class Ecam;
    class Window;
    mutable std::shared_mutex mu_;
    // Serialises configuration accesses (so a device's ConfigSpace sees one
    // access at a time and bars_changed() calls arrive in order). Taken
    // before mu_, never while calling into BAR accesses.
    std::mutex config_mu_;
    std::vector<std::shared_ptr<PciDevice>> slots_;  // 32 entries, null when empty
    std::vector<std::pair<BarRegion, std::pair<unsigned, std::weak_ptr<PciDevice>>>> decode_;  // guarded by mu_
    std::optional<uint64_t> ecam_base_;  // guarded by mu_, with ecam_size_
    uint64_t ecam_size_ = 0;
    void refresh_decode(unsigned slot);
    // Offset into the movable ECAM of an access at `addr`, if wholly inside.
    std::optional<uint64_t> ecam_offset(uint64_t addr, std::size_t size) const;
    // A configuration access by ECAM offset; a write when `rd` is empty.
    void ecam_access(uint64_t offset, std::span<uint8_t> rd, std::span<const uint8_t> wr);
    bool dispatch(BarKind kind, uint64_t addr, std::span<uint8_t> rd, std::span<const uint8_t> wr);
};

// Hands out naturally aligned BAR addresses from [start, end) in order, for
// the VMM's initial assignment (the windows come from the arch layout).
class BarAllocator {
public:
    BarAllocator(uint64_t start, uint64_t end);
    // `size` must be a power of two; throws vmm::Error when it does not fit.
    uint64_t allocate(uint64_t size);

private:
    uint64_t next_;
    uint64_t end_;
};

// The host bridge at 00:00.0: a Q35Mch (devices/q35.h) with no callbacks,
// so its chipset registers only store what the guest writes.
std::shared_ptr<PciDevice> make_host_bridge();

}  // namespace vmm::devices::pci
