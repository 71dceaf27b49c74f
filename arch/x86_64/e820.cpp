#include "arch/x86_64/e820.h"

#include <algorithm>

#include "vmm/core/error.h"

namespace vmm::arch::x86 {

std::vector<E820Entry> build_e820(std::span<const RamRegion> ram) {
    if (ram.empty()) fail("e820: no guest RAM regions");
    const RamRegion& low = ram[0];
    if (low.gpa != 0) fail("e820: the first RAM region must start at 0, not {:#x}", low.gpa);
    if (low.size < kHighMemStart) {
        fail("e820: the first RAM region ({}) must cover at least the low 1 MiB",
             human_size(low.size));
    }

    std::vector<E820Entry> map;
    map.push_back({0, kEbdaStart, kE820Ram});
    map.push_back({kEbdaStart, kEbdaEnd - kEbdaStart, kE820Reserved});
    map.push_back({kBiosAreaStart, kHighMemStart - kBiosAreaStart, kE820Reserved});
    if (low.size > kHighMemStart) map.push_back({kHighMemStart, low.size - kHighMemStart, kE820Ram});
    std::vector<E820Entry> rest{{kPciEcamBase, kPciEcamSize, kE820Reserved}};
    for (const RamRegion& r : ram.subspan(1)) {
        if (r.size != 0) rest.push_back({r.gpa, r.size, kE820Ram});
    }
    // Keep the map sorted; validate_e820 rejects RAM that overlaps the ECAM.
    std::stable_sort(rest.begin(), rest.end(), [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
    map.insert(map.end(), rest.begin(), rest.end());
    validate_e820(map);
    return map;
}

std::vector<E820Entry> firmware_e820(std::span<const RamRegion> ram) {
    std::vector<E820Entry> map;
    for (const RamRegion& r : ram)
        if (r.size != 0) map.push_back({r.gpa, r.size, kE820Ram});
    map.push_back({kKvmIdentityMapAddr, kKvmReservedSize, kE820Reserved});
    std::stable_sort(map.begin(), map.end(), [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
    validate_e820(map);
    return map;
}

void validate_e820(std::span<const E820Entry> entries) {
    if (entries.empty()) fail("e820: memory map is empty");
    uint64_t prev_end = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const E820Entry& e = entries[i];
        if (e.size == 0) fail("e820: entry {} at {:#x} is empty", i, e.addr);
        if (e.addr + e.size < e.addr) fail("e820: entry {} at {:#x} wraps around", i, e.addr);
        if (i > 0 && e.addr < prev_end) {
            fail("e820: entry {} at {:#x} overlaps or precedes the previous entry (ends {:#x})", i,
                 e.addr, prev_end);
        }
        prev_end = e.addr + e.size;
    }
}

}  // namespace vmm::arch::x86
