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

}  // namespace vmm
