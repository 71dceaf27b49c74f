// Guest physical memory: anonymous host mappings registered with KVM as
// memory slots. Every access by GPA goes through range checks that accept a
// range only if it lies wholly (overflow-checked) inside one region, so no
// guest-supplied address can reach host memory outside guest RAM.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

namespace vmm {

struct MemoryRegion {
    uint64_t gpa;
    uint64_t size;
    uint8_t* host;  // start of the host mapping
};

class GuestMemory {
public:
    GuestMemory() = default;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    GuestMemory(GuestMemory&&) noexcept;
    GuestMemory& operator=(GuestMemory&&) noexcept;
    ~GuestMemory();

    // Maps anonymous memory for each (gpa, size) range. Ranges must be
    // page-aligned, non-empty and must not overlap. Throws vmm::Error.
    // `hugetlb`: back RAM with the host's reserved huge pages (MAP_HUGETLB,
    // 2 MiB); ranges must then be 2 MiB multiples, and a host without
    // enough reserved pages gets an error naming /proc/sys/vm/nr_hugepages.
    static GuestMemory create_anonymous(std::span<const std::pair<uint64_t, uint64_t>> ranges,
                                        bool transparent_hugepages = true, bool hugetlb = false);
    // Wraps caller-owned buffers (unit tests). Not unmapped on destruction.
    static GuestMemory from_buffers(std::vector<MemoryRegion> regions);

    const std::vector<MemoryRegion>& regions() const { return regions_; }
    uint64_t total_size() const;

    // The host span for [gpa, gpa+len), or nullopt unless the whole range is
    // inside one region. len == 0 is accepted for a gpa inside a region.
    std::optional<std::span<uint8_t>> slice(uint64_t gpa, uint64_t len) const;
    bool contains(uint64_t gpa, uint64_t len) const { return slice(gpa, len).has_value(); }

    // Copy in/out; false (nothing copied) if the range is not wholly in RAM.
    bool write(uint64_t gpa, std::span<const uint8_t> data) const;
    bool read(uint64_t gpa, std::span<uint8_t> out) const;

    // Gives the host pages wholly inside [gpa, gpa+len) back to the host
    // (virtio-balloon inflation, free page reporting): the guest reads zeros
    // there afterwards and the VMM's RSS falls. Partial pages at either end
    // are left alone (with hugetlb backing the page is 2 MiB). Returns the
    // bytes released; 0 if the range is not wholly in RAM or no whole page
    // fits. Callable from any thread.
    uint64_t discard(uint64_t gpa, uint64_t len) const;

    template <typename T>
    bool write_obj(uint64_t gpa, const T& v) const {
        static_assert(std::is_trivially_copyable_v<T>);
        return write(gpa, {reinterpret_cast<const uint8_t*>(&v), sizeof(T)});
    }
    template <typename T>
    std::optional<T> read_obj(uint64_t gpa) const {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        if (!read(gpa, {reinterpret_cast<uint8_t*>(&v), sizeof(T)})) return std::nullopt;
        return v;
    }

private:
    void release();
    std::vector<MemoryRegion> regions_;
    bool owned_ = false;
    uint64_t page_size_ = 4096;  // host page backing RAM (2 MiB with hugetlb)
};

}  // namespace vmm
