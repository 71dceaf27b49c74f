#include "vmm/core/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm {

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : regions_(std::move(o.regions_)), owned_(o.owned_), page_size_(o.page_size_) {
    o.regions_.clear();
    o.owned_ = false;
}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
    if (this != &o) {
        release();
        regions_ = std::move(o.regions_);
        owned_ = o.owned_;
        page_size_ = o.page_size_;
        o.regions_.clear();
        o.owned_ = false;
    }
    return *this;
}

GuestMemory::~GuestMemory() { release(); }

void GuestMemory::release() {
    if (owned_)
        for (auto& r : regions_) munmap(r.host, r.size);
    regions_.clear();
}

GuestMemory GuestMemory::create_anonymous(std::span<const std::pair<uint64_t, uint64_t>> ranges,
                                          bool transparent_hugepages, bool hugetlb) {
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    GuestMemory m;
    m.owned_ = true;
    m.page_size_ = hugetlb ? (2ull << 20) : page;
    std::vector<std::pair<uint64_t, uint64_t>> sorted(ranges.begin(), ranges.end());
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i) {
        auto [gpa, size] = sorted[i];
        if (size == 0 || gpa % page || size % page) fail("guest memory: range {:#x}+{:#x} is not page aligned", gpa, size);
        if (gpa + size < gpa) fail("guest memory: range {:#x}+{:#x} overflows", gpa, size);
        if (i > 0 && sorted[i - 1].first + sorted[i - 1].second > gpa)
            fail("guest memory: range {:#x} overlaps the previous one", gpa);
        // MAP_NORESERVE: guest RAM is committed lazily, like any VMM; the
        // guest only costs host memory for pages it touches.
        constexpr uint64_t kHuge = 2ull << 20;
        if (hugetlb && (gpa % kHuge || size % kHuge))
            fail("guest memory: range {:#x}+{:#x} is not a multiple of 2 MiB, as huge pages need", gpa, size);
        int flags = MAP_PRIVATE | MAP_ANONYMOUS | (hugetlb ? MAP_HUGETLB : MAP_NORESERVE);
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (p == MAP_FAILED && hugetlb)
            throw_errno(fmt::format("guest memory: {} MiB of huge pages (reserve them in /proc/sys/vm/nr_hugepages)",
                                    size >> 20));
        if (p == MAP_FAILED) throw_errno(fmt::format("guest memory: mmap of {} MiB", size >> 20));
        if (!hugetlb && transparent_hugepages && madvise(p, size, MADV_HUGEPAGE) != 0)
            log::debug("guest memory: MADV_HUGEPAGE not available: {}", std::strerror(errno));
        m.regions_.push_back({gpa, size, static_cast<uint8_t*>(p)});
    }
    return m;
}

GuestMemory GuestMemory::from_buffers(std::vector<MemoryRegion> regions) {
    GuestMemory m;
    m.regions_ = std::move(regions);
    m.owned_ = false;
    return m;
}

uint64_t GuestMemory::total_size() const {
    uint64_t t = 0;
    for (auto& r : regions_) t += r.size;
    return t;
}

std::optional<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const {
    for (auto& r : regions_) {
        if (gpa < r.gpa) continue;
        uint64_t off = gpa - r.gpa;
        if (off >= r.size) continue;
        // Written so that no addition can overflow: off < size here.
        if (len > r.size - off) return std::nullopt;
        return std::span<uint8_t>(r.host + off, len);
    }
    return std::nullopt;
}

uint64_t GuestMemory::discard(uint64_t gpa, uint64_t len) const {
    auto s = slice(gpa, len);
    if (!s || len == 0) return 0;
    // Whole pages only: round the start up and the end down. Region starts
    // and host mappings are page aligned, so guest-physical alignment is
    // host alignment (unit-test buffers are not, hence the gpa here).
    uint64_t a = (gpa + page_size_ - 1) & ~(page_size_ - 1);
    uint64_t b = (gpa + len) & ~(page_size_ - 1);  // slice() checked gpa + len fits in a region
    if (a >= b) return 0;
    uint8_t* host = s->data() + (a - gpa);
    if (!owned_) {
        // Caller-owned buffers (unit tests): same contents as a discarded page.
        std::memset(host, 0, b - a);
        return b - a;
    }
    // Private anonymous memory: DONTNEED frees the pages now and maps fresh
    // zero pages on the guest's next touch.
    if (madvise(host, b - a, MADV_DONTNEED) != 0) {
        static log::RateLimit rl;
        if (rl.allow()) log::warn("guest memory: madvise(DONTNEED) of {} bytes: {}", b - a, std::strerror(errno));
        return 0;
    }
    return b - a;
}

bool GuestMemory::write(uint64_t gpa, std::span<const uint8_t> data) const {
    auto s = slice(gpa, data.size());
    if (!s) return false;
    if (!data.empty()) std::memcpy(s->data(), data.data(), data.size());
    return true;
}

bool GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
    auto s = slice(gpa, out.size());
    if (!s) return false;
    if (!out.empty()) std::memcpy(out.data(), s->data(), out.size());
    return true;
}

}  // namespace vmm
