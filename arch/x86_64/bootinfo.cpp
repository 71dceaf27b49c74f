#include "arch/x86_64/bootinfo.h"

#include <algorithm>

#include "arch/x86_64/e820.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

static_assert(kPvhStartInfoAddr + pvh::kStartInfoSize <= kPvhModlistAddr);
static_assert(kPvhModlistAddr + pvh::kModlistEntrySize <= kPvhMemmapAddr);
static_assert(kZeroPageAddr + zero_page::kSize <= kBootStackTop);
static_assert(zero_page::kE820Table + zero_page::kE820MaxEntries * zero_page::kE820EntrySize <=
              zero_page::kSize);

// A NUL inside the command line would silently cut it short in the guest,
// so it is an error rather than a surprise.
Blob cmdline_blob(const KernelLayout& k, const std::string& cmdline) {
    if (cmdline.size() > k.cmdline_max) {
        fail("cmdline is {} bytes; this kernel accepts at most {}", cmdline.size(), k.cmdline_max);
    }
    if (cmdline.find('\0') != std::string::npos) fail("cmdline contains a NUL byte");
    Blob b{kCmdlineAddr, std::vector<uint8_t>(cmdline.begin(), cmdline.end())};
    b.bytes.push_back(0);
    return b;
}

namespace {

void check_initrd(const KernelLayout& k, const BootInfoInputs& in) {
    if (in.initrd_size == 0) return;
    if (in.initrd_gpa > k.initrd_addr_max || in.initrd_size - 1 > k.initrd_addr_max - in.initrd_gpa) {
        fail("initramfs at {:#x} ({}) extends above this kernel's limit {:#x}", in.initrd_gpa,
             human_size(in.initrd_size), k.initrd_addr_max);
    }
}

}  // namespace

std::vector<Blob> build_boot_params(const KernelLayout& k, const BootInfoInputs& in) {
    using namespace setup_hdr;
    using namespace zero_page;
    if (k.format != KernelFormat::BzImage) fail("internal: boot_params built for a non-bzImage kernel");
    if (k.setup_header.size() > kHeaderAreaEnd - kSetupSects) {
        fail("internal: setup header of {} bytes is larger than the zero page allows",
             k.setup_header.size());
    }
    Blob cmd = cmdline_blob(k, in.cmdline);
    check_initrd(k, in);

    std::vector<uint8_t> zp(kSize, 0);
    std::span<uint8_t> z(zp);
    // The loader's copy of the header starts as the kernel's own; the
    // fields below are the ones the boot protocol says a loader writes.
    std::copy(k.setup_header.begin(), k.setup_header.end(), zp.begin() + kSetupSects);
    store_u8(z, kTypeOfLoader, kLoaderUndefined);
    store_u8(z, kLoadflags, static_cast<uint8_t>(load_u8(z, kLoadflags) | kCanUseHeap));
    store_le16(z, kHeapEndPtr, kHeapEnd);
    store_le32(z, kCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr));
    store_le32(z, kExtCmdLinePtr, static_cast<uint32_t>(kCmdlineAddr >> 32));
    store_le32(z, kRamdiskImage, static_cast<uint32_t>(in.initrd_size ? in.initrd_gpa : 0));
    store_le32(z, kRamdiskSize, static_cast<uint32_t>(in.initrd_size));
    store_le32(z, kExtRamdiskImage, static_cast<uint32_t>((in.initrd_size ? in.initrd_gpa : 0) >> 32));
    store_le32(z, kExtRamdiskSize, static_cast<uint32_t>(in.initrd_size >> 32));

    const auto map = build_e820(in.ram);
    if (map.size() > kE820MaxEntries) {
        fail("e820: {} entries do not fit the zero page (max {})", map.size(), kE820MaxEntries);
    }
    store_u8(z, kE820Entries, static_cast<uint8_t>(map.size()));
    for (std::size_t i = 0; i < map.size(); ++i) {
        const std::size_t off = kE820Table + i * kE820EntrySize;
        store_le64(z, off, map[i].addr);
        store_le64(z, off + 8, map[i].size);
        store_le32(z, off + 16, map[i].type);
    }
    // Older kernels do not read this field; they find the RSDP by scanning
    // 0xe0000..0xfffff, which is where build_acpi() puts it anyway.
    if (k.protocol_version >= kProtocolRsdpAddr && in.rsdp_gpa != 0) {
        store_le64(z, kAcpiRsdpAddr, in.rsdp_gpa);
    }

    std::vector<Blob> out;
    out.push_back({kZeroPageAddr, std::move(zp)});
    out.push_back(std::move(cmd));
    return out;
}

std::vector<Blob> build_pvh_start_info(const KernelLayout& k, const BootInfoInputs& in) {
    using namespace pvh;
    if (k.format != KernelFormat::PvhElf) fail("internal: PVH start info built for a non-PVH kernel");
    Blob cmd = cmdline_blob(k, in.cmdline);
    check_initrd(k, in);

    const auto map = build_e820(in.ram);
    if (map.size() > kMemmapMaxEntries) {
        fail("e820: {} entries do not fit the PVH memory map (max {})", map.size(),
             kMemmapMaxEntries);
    }
    // One blob from the start info through the end of the memory map; the
    // three pieces sit at fixed offsets inside it (see layout.h).
    const std::size_t memmap_off = kPvhMemmapAddr - kPvhStartInfoAddr;
    const std::size_t modlist_off = kPvhModlistAddr - kPvhStartInfoAddr;
    std::vector<uint8_t> buf(memmap_off + map.size() * kMemmapEntrySize, 0);
    std::span<uint8_t> b(buf);

    const bool has_initrd = in.initrd_size != 0;
    store_le32(b, kMagicOff, kMagic);
    store_le32(b, kVersionOff, kVersion);
    store_le32(b, kFlagsOff, 0);
    store_le32(b, kNrModulesOff, has_initrd ? 1 : 0);
    store_le64(b, kModlistPaddrOff, has_initrd ? kPvhModlistAddr : 0);
    store_le64(b, kCmdlinePaddrOff, kCmdlineAddr);
    store_le64(b, kRsdpPaddrOff, in.rsdp_gpa);
    store_le64(b, kMemmapPaddrOff, kPvhMemmapAddr);
    store_le32(b, kMemmapEntriesOff, static_cast<uint32_t>(map.size()));

    if (has_initrd) {
        store_le64(b, modlist_off + 0, in.initrd_gpa);
        store_le64(b, modlist_off + 8, in.initrd_size);
        store_le64(b, modlist_off + 16, 0);  // no per-module command line
    }
    for (std::size_t i = 0; i < map.size(); ++i) {
        const std::size_t off = memmap_off + i * kMemmapEntrySize;
        store_le64(b, off, map[i].addr);
        store_le64(b, off + 8, map[i].size);
        store_le32(b, off + 16, map[i].type);
    }

    std::vector<Blob> out;
    out.push_back({kPvhStartInfoAddr, std::move(buf)});
    out.push_back(std::move(cmd));
    return out;
}

}  // namespace vmm::arch::x86
