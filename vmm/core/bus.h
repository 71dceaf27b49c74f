// PIO and MMIO dispatch by address interval. A device is registered for a
// range [base, base+len); overlapping registrations are rejected. Accesses
// are delivered with the offset relative to the range base. The bus itself is
// immutable while vCPUs run (registration happens at setup), so dispatch takes
// no lock; each device serialises its own state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

namespace vmm {

class BusDevice {
public:
    virtual ~BusDevice() = default;
    // `data.size()` is the access width (1, 2, 4 or 8 bytes for PIO/MMIO).
    // For reads the device fills `data`; anything it leaves is 0xff.
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
    virtual std::string name() const = 0;
};

class Bus {
public:
    explicit Bus(std::string name) : name_(std::move(name)) {}

    // Throws vmm::Error on zero length, overlap, or a range that reaches past
    // the last address (base + len must not wrap).
    void add(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> dev);

    // Returns false when no device covers [addr, addr+size) wholly; reads of
    // unclaimed addresses are filled with 0xff by the caller's convention.
    bool read(uint64_t addr, std::span<uint8_t> data) const;
    bool write(uint64_t addr, std::span<const uint8_t> data) const;

private:
    struct Range {
        uint64_t base;
        uint64_t len;
        std::shared_ptr<BusDevice> dev;
    };
    const Range* find(uint64_t addr, uint64_t size) const;
    std::string name_;
    std::map<uint64_t, Range> ranges_;  // keyed by base
};

// Little-endian helpers for register emulation.
inline uint64_t load_le(std::span<const uint8_t> d) {
    uint64_t v = 0;
    for (size_t i = 0; i < d.size() && i < 8; ++i) v |= uint64_t(d[i]) << (8 * i);
    return v;
}
inline void store_le(std::span<uint8_t> d, uint64_t v) {
    for (size_t i = 0; i < d.size(); ++i) d[i] = i < 8 ? uint8_t(v >> (8 * i)) : 0;
}

}  // namespace vmm
