#include "arch/x86_64/kernel.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "arch/x86_64/bytes.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::arch::x86 {

namespace {

// Reads little-endian fields of the untrusted kernel file; a read past the
// end is a truncated file, reported with the field name.
class FileReader {
public:
    explicit FileReader(std::span<const uint8_t> f) : f_(f) {}

    uint64_t le(uint64_t off, std::size_t n, const char* field) const {
        if (!contains(off, n)) {
            fail("kernel: file is truncated ({} bytes): {} at {:#x} is past the end", f_.size(),
                 field, off);
        }
        return load_le(f_, static_cast<std::size_t>(off), n);
    }
    uint8_t u8(uint64_t off, const char* field) const {
        return static_cast<uint8_t>(le(off, 1, field));
    }
    uint16_t u16(uint64_t off, const char* field) const {
        return static_cast<uint16_t>(le(off, 2, field));
    }
    uint32_t u32(uint64_t off, const char* field) const {
        return static_cast<uint32_t>(le(off, 4, field));
    }
    uint64_t u64(uint64_t off, const char* field) const { return le(off, 8, field); }

    // True if [off, off+len) lies inside the file (overflow-safe).
    bool contains(uint64_t off, uint64_t len) const { return in_bounds(f_.size(), off, len); }
    std::span<const uint8_t> sub(uint64_t off, uint64_t len) const {
        return f_.subspan(static_cast<std::size_t>(off), static_cast<std::size_t>(len));
    }
    std::size_t size() const { return f_.size(); }

private:
    std::span<const uint8_t> f_;
};

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

uint64_t region_end(const RamRegion& r) { return r.gpa + r.size; }

// [gpa, gpa+size) inside region r, without overflow.
bool inside(const RamRegion& r, uint64_t gpa, uint64_t size) {
    return gpa >= r.gpa && gpa - r.gpa <= r.size && size <= r.size - (gpa - r.gpa);
}

const RamRegion& first_region(std::span<const RamRegion> ram) {
    if (ram.empty()) fail("kernel: guest has no RAM");
    return ram[0];
}

uint64_t total_ram(std::span<const RamRegion> ram) {
    uint64_t t = 0;
    for (const auto& r : ram) t += r.size;
    return t;
}

// ---------------------------------------------------------------- bzImage

constexpr uint16_t kBootFlagMagic = 0xAA55;
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS" read little-endian
constexpr uint16_t kMinProtocol = 0x020c;   // 2.12: xloadflags / XLF_KERNEL_64
// 2.02: the command line anywhere below 0xa0000 through cmd_line_ptr, so
// the real-mode setup can sit at 0x10000 clear of the EBDA.
constexpr uint16_t kMinRealModeProtocol = 0x0202;
constexpr uint16_t kProtocolInitrdAddrMax = 0x0203;
constexpr uint16_t kProtocolCmdlineSize = 0x0206;
constexpr uint16_t kProtocolPlacement = 0x020a;  // 2.10: pref_address, init_size
// What boot.rst tells loaders to assume where a field is missing.
constexpr uint64_t kDefaultInitrdAddrMax = 0x37ffffff;
constexpr uint32_t kDefaultCmdlineMax = 255;
// The 64-bit entry point sits 0x200 bytes into the protected-mode code.
constexpr uint64_t kEntry64Offset = 0x200;

// The first byte after the fields a loader of this protocol reads.
uint64_t min_header_end(uint16_t version, BzImageEntry entry) {
    using namespace setup_hdr;
    if (entry == BzImageEntry::Entry64) return kHandoverOffset + 4;
    if (version >= kProtocolPlacement) return kInitSize + 4;
    if (version >= kProtocolCmdlineSize) return kCmdlineSize + 4;
    if (version >= kProtocolInitrdAddrMax) return kInitrdAddrMax + 4;
    return kCmdLinePtr + 4;
}

KernelLayout parse_bzimage(const FileReader& f, std::span<const RamRegion> ram,
                           BzImageEntry entry) {
    using namespace setup_hdr;
    const RamRegion& low = first_region(ram);
    const bool real_mode = entry == BzImageEntry::RealMode;

    const uint16_t boot_flag = f.u16(kBootFlag, "boot flag");
    if (boot_flag != kBootFlagMagic) {
        fail("kernel: bzImage boot flag at 0x1fe is {:#06x}, expected 0xaa55", boot_flag);
    }
    const uint16_t version = f.u16(kVersion, "boot protocol version");
    if (!real_mode && version < kMinProtocol) {
        fail("kernel: boot protocol {}.{:02} is too old; 64-bit boot needs >= 2.12", version >> 8,
             version & 0xff);
    }
    if (real_mode && version < kMinRealModeProtocol) {
        fail("kernel: boot protocol {}.{:02} is too old; booting it through firmware needs >= "
             "2.02",
             version >> 8, version & 0xff);
    }
    // The header's length is encoded by the short jump at 0x200 that skips
    // over it: the jump target 0x202 + byte[0x201] is the first byte after
    // the header.
    const uint64_t hdr_end = 0x202 + uint64_t{f.u8(kJump + 1, "setup header jump")};
    if (hdr_end < min_header_end(version, entry)) {
        fail("kernel: bzImage setup header ends at {:#x}, too short for boot protocol {}.{:02}",
             hdr_end, version >> 8, version & 0xff);
    }
    if (!f.contains(kSetupSects, hdr_end - kSetupSects)) {
        fail("kernel: file is truncated ({} bytes) inside the bzImage setup header", f.size());
    }
    const uint64_t copy_end = std::min<uint64_t>(hdr_end, kHeaderAreaEnd);

    const uint8_t loadflags = f.u8(kLoadflags, "loadflags");
    if (!(loadflags & kLoadedHigh)) {
        fail("kernel: bzImage is not loaded high (LOADED_HIGH clear); zImage kernels are not "
             "supported");
    }
    if (!real_mode) {
        const uint16_t xloadflags = f.u16(kXloadflags, "xloadflags");
        if (!(xloadflags & kXlfKernel64)) {
            fail("kernel: this bzImage has no 64-bit entry point (XLF_KERNEL_64 not set); it is "
                 "probably a 32-bit kernel");
        }
    }

    uint64_t setup_sects = f.u8(kSetupSects, "setup_sects");
    if (setup_sects == 0) setup_sects = 4;  // historical meaning of 0
    // The boot sector plus setup_sects sectors of real-mode setup code
    // precede the protected-mode kernel.
    const uint64_t pm_offset = (setup_sects + 1) * 512;
    if (pm_offset >= f.size()) {
        fail("kernel: bzImage is truncated: its protected-mode code should start at {:#x} but "
             "the file has only {} bytes",
             pm_offset, f.size());
    }
    // syssize (32 bits since protocol 2.04, below our minimum) says how much
    // protected-mode code the build produced: a file cut short (a partial
    // copy or download) would otherwise boot into garbage.
    const uint64_t code_size = uint64_t{f.u32(kSysSize, "syssize")} * 16;
    if (pm_offset + code_size > f.size()) {
        fail("kernel: bzImage is truncated: its header says {} bytes ({} of setup, {} of kernel) but the file has "
             "only {}",
             pm_offset + code_size, pm_offset, code_size, f.size());
    }
    const std::span<const uint8_t> code = f.sub(pm_offset, f.size() - pm_offset);

    // init_size covers the decompressor's whole working area, which is
    // usually much larger than the compressed file. Before 2.10 the header
    // does not say: such a kernel runs, non-relocatable, at 1 MiB, and only
    // its compressed size is known.
    const bool placement = version >= kProtocolPlacement;
    const uint64_t init_size = placement ? f.u32(kInitSize, "init_size") : 0;
    const uint64_t mem_size = std::max<uint64_t>(init_size, code.size());
    const uint64_t kernel_alignment =
        placement ? f.u32(kKernelAlignment, "kernel_alignment") : 0;
    const bool relocatable =
        placement && f.u8(kRelocatableKernel, "relocatable_kernel") != 0;
    const uint64_t pref_address = placement ? f.u64(kPrefAddress, "pref_address") : kHighMemStart;

    auto fits = [&](uint64_t addr) {
        return addr >= kHighMemStart && inside(low, addr, mem_size);
    };

    uint64_t load;
    if (!relocatable) {
        // The kernel runs where it was linked; kernel_alignment only
        // constrains where a loader may relocate it, so page alignment is
        // the one requirement (the identity map and KVM work in pages).
        if (pref_address % 4096 != 0) {
            fail("kernel: non-relocatable bzImage wants load address {:#x}, which is not "
                 "4 KiB-aligned",
                 pref_address);
        }
        if (!fits(pref_address)) {
            fail("kernel: non-relocatable bzImage must be loaded at {:#x} and needs {} there, but "
                 "guest RAM below 4 GiB is [1 MiB, {:#x})",
                 pref_address, human_size(mem_size), region_end(low));
        }
        load = pref_address;
    } else {
        if (!is_pow2(kernel_alignment)) {
            fail("kernel: bzImage kernel_alignment {:#x} is not a power of two", kernel_alignment);
        }
        if (real_mode) {
            // The setup code enters the decompressor where firmware put it
            // (1 MiB), which moves itself to that address rounded up to
            // kernel_alignment but never below the one it was linked for.
            load = std::max(align_up(kHighMemStart, kernel_alignment), pref_address);
        } else if (pref_address % kernel_alignment == 0 && fits(pref_address)) {
            load = pref_address;  // where the kernel was linked: no relocation work
        } else {
            load = align_up(kHighMemStart, kernel_alignment);
        }
        if (!fits(load)) {
            fail("kernel: bzImage needs {} of RAM at {:#x} (init_size) but guest RAM below "
                 "4 GiB ends at {:#x}; give the VM more memory",
                 human_size(mem_size), load, region_end(low));
        }
    }

    KernelLayout k;
    k.format = KernelFormat::BzImage;
    k.segments.push_back({load, code, mem_size});
    // Through firmware the setup code enters the kernel itself; `entry` is
    // then only where the decompressor will run.
    k.entry = real_mode ? load : load + kEntry64Offset;
    k.kernel_end = load + mem_size;
    const auto hdr = f.sub(kSetupSects, copy_end - kSetupSects);
    k.setup_header.assign(hdr.begin(), hdr.end());
    const uint64_t cmdline_size = version >= kProtocolCmdlineSize
                                      ? f.u32(kCmdlineSize, "cmdline_size")
                                      : kDefaultCmdlineMax;
    k.cmdline_max = static_cast<uint32_t>(std::min<uint64_t>(cmdline_size, kCmdlineMaxBytes - 1));
    k.initrd_addr_max = version >= kProtocolInitrdAddrMax
                            ? f.u32(kInitrdAddrMax, "initrd_addr_max")
                            : kDefaultInitrdAddrMax;
    k.protocol_version = version;
    return k;
}

// ---------------------------------------------------------------- ELF

constexpr uint16_t kEtExec = 2;
constexpr uint16_t kEmX86_64 = 62;
constexpr uint32_t kPtLoad = 1;
constexpr uint32_t kPtNote = 4;
constexpr std::size_t kEhdrSize = 64;
constexpr std::size_t kPhdrSize = 56;
constexpr uint16_t kPnXnum = 0xffff;
constexpr uint32_t kXenElfnotePhys32Entry = 18;

// Walks the notes of one PT_NOTE segment looking for the PVH entry note
// ("Xen", XEN_ELFNOTE_PHYS32_ENTRY). Note records are namesz, descsz, type
// (4 bytes each), then name and desc, each padded to the note alignment.
std::optional<uint64_t> find_pvh_note(std::span<const uint8_t> notes, uint64_t p_align) {
    const uint64_t a = p_align == 8 ? 8 : 4;
    const FileReader r(notes);
    uint64_t pos = 0;
    while (r.contains(pos, 12)) {
        const uint64_t namesz = r.u32(pos, "note namesz");
        const uint64_t descsz = r.u32(pos + 4, "note descsz");
        const uint32_t type = r.u32(pos + 8, "note type");
        // All quantities are < 2^32 and pos <= notes.size(), so none of
        // these sums can overflow 64 bits.
        const uint64_t name_off = pos + 12;
        const uint64_t desc_off = name_off + align_up(namesz, a);
        if (!r.contains(name_off, namesz) || !r.contains(desc_off, descsz)) {
            fail("kernel: ELF note at offset {:#x} of a PT_NOTE segment runs past its end", pos);
        }
        const auto name = r.sub(name_off, namesz);
        const bool is_xen = namesz == 4 && name[0] == 'X' && name[1] == 'e' && name[2] == 'n' &&
                            name[3] == 0;
        if (is_xen && type == kXenElfnotePhys32Entry) {
            uint64_t entry;
            if (descsz == 4) {
                entry = r.u32(desc_off, "PVH entry");
            } else if (descsz == 8) {
                entry = r.u64(desc_off, "PVH entry");
            } else {
                fail("kernel: PVH entry note has a {}-byte address; expected 4 or 8", descsz);
            }
            if (entry > 0xffffffff) {
                fail("kernel: PVH entry {:#x} is above 4 GiB; a 32-bit entry is required", entry);
            }
            return entry;
        }
        pos = desc_off + align_up(descsz, a);
    }
    return std::nullopt;
}

KernelLayout parse_elf(const FileReader& f, std::span<const RamRegion> ram) {
    const RamRegion& low = first_region(ram);
    if (f.size() < kEhdrSize) fail("kernel: ELF file is truncated ({} bytes)", f.size());
    if (f.u8(4, "EI_CLASS") != 2) fail("kernel: ELF is not 64-bit (ELFCLASS64)");
    if (f.u8(5, "EI_DATA") != 1) fail("kernel: ELF is not little-endian");
    if (f.u8(6, "EI_VERSION") != 1) fail("kernel: ELF has an unknown version");
    if (f.u16(0x10, "e_type") != kEtExec) fail("kernel: ELF is not an executable (ET_EXEC)");
    const uint16_t machine = f.u16(0x12, "e_machine");
    if (machine != kEmX86_64) fail("kernel: ELF is for machine {}, not x86-64", machine);

    const uint64_t phoff = f.u64(0x20, "e_phoff");
    const uint64_t phentsize = f.u16(0x36, "e_phentsize");
    const uint64_t phnum = f.u16(0x38, "e_phnum");
    if (phnum == 0) fail("kernel: ELF has no program headers");
    if (phnum == kPnXnum) fail("kernel: ELF uses extended program header numbering (PN_XNUM)");
    if (phentsize < kPhdrSize) {
        fail("kernel: ELF program header size {} is smaller than {}", phentsize, kPhdrSize);
    }
    // Both factors are < 2^16: the product cannot overflow.
    if (!f.contains(phoff, phnum * phentsize)) {
        fail("kernel: ELF program header table ({} entries at {:#x}) extends past the end of the "
             "file ({} bytes)",
             phnum, phoff, f.size());
    }

    KernelLayout k;
    k.format = KernelFormat::PvhElf;
    k.kernel_end = 0;
    std::optional<uint64_t> entry;
    for (uint64_t i = 0; i < phnum; ++i) {
        const uint64_t ph = phoff + i * phentsize;
        const uint32_t type = f.u32(ph, "p_type");
        if (type != kPtLoad && type != kPtNote) continue;
        const uint64_t offset = f.u64(ph + 8, "p_offset");
        const uint64_t paddr = f.u64(ph + 24, "p_paddr");
        const uint64_t filesz = f.u64(ph + 32, "p_filesz");
        const uint64_t memsz = f.u64(ph + 40, "p_memsz");
        const uint64_t align = f.u64(ph + 48, "p_align");
        if (!f.contains(offset, filesz)) {
            fail("kernel: ELF segment {} (offset {:#x}, {} bytes) extends past the end of the file "
                 "({} bytes)",
                 i, offset, filesz, f.size());
        }
        if (type == kPtNote) {
            if (!entry) entry = find_pvh_note(f.sub(offset, filesz), align);
            continue;
        }
        if (memsz == 0) continue;
        if (filesz > memsz) {
            fail("kernel: ELF segment {} has p_filesz {:#x} > p_memsz {:#x}", i, filesz, memsz);
        }
        if (paddr < kHighMemStart) {
            fail("kernel: ELF segment {} at {:#x} overlaps the low 1 MiB reserved for boot data", i,
                 paddr);
        }
        if (!inside(low, paddr, memsz)) {
            // Print the end without risking overflow in the message itself.
            fail("kernel: ELF segment {} [{:#x}, +{:#x}) is outside guest RAM below 4 GiB (ends "
                 "at {:#x}); give the VM more memory",
                 i, paddr, memsz, region_end(low));
        }
        k.segments.push_back({paddr, f.sub(offset, filesz), memsz});
        k.kernel_end = std::max(k.kernel_end, paddr + memsz);
    }
    if (!entry) {
        fail("kernel: ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); use the bzImage");
    }
    if (k.segments.empty()) fail("kernel: ELF has no loadable segments");
    const bool entry_loaded = std::any_of(k.segments.begin(), k.segments.end(), [&](const auto& s) {
        return *entry >= s.gpa && *entry - s.gpa < s.data.size();
    });
    if (!entry_loaded) {
        fail("kernel: PVH entry {:#x} is not inside any loaded ELF segment", *entry);
    }
    k.entry = *entry;
    k.cmdline_max = kCmdlineMaxBytes - 1;
    k.initrd_addr_max = std::min<uint64_t>(0xffffffff, region_end(low) - 1);
    k.protocol_version = 0;
    return k;
}

}  // namespace

KernelLayout parse_kernel(std::span<const uint8_t> file, std::span<const RamRegion> ram,
                          BzImageEntry entry) {
    const FileReader f(file);
    // ELF first: its magic is at offset 0 and unambiguous, while 0x202 of
    // an ELF file is arbitrary data.
    if (f.contains(0, 4) && file[0] == 0x7f && file[1] == 'E' && file[2] == 'L' && file[3] == 'F') {
        return parse_elf(f, ram);
    }
    if (f.contains(setup_hdr::kHeader, 4) && f.u32(setup_hdr::kHeader, "magic") == kHdrSMagic) {
        return parse_bzimage(f, ram, entry);
    }
    fail("kernel: not a bzImage or ELF (no HdrS magic at 0x202)");
}

uint64_t place_initrd(const KernelLayout& k, uint64_t initrd_size, std::span<const RamRegion> ram) {
    const RamRegion& low = first_region(ram);
    uint64_t limit = region_end(low);
    if (k.initrd_addr_max < limit) limit = k.initrd_addr_max + 1;
    const uint64_t page = 4096;
    if (initrd_size <= limit) {
        const uint64_t addr = align_down(limit - initrd_size, page);
        if (addr >= k.kernel_end && addr >= kHighMemStart) return addr;
    }
    fail("initramfs ({}) does not fit between the kernel's end at {:#x} and {:#x} with {} of RAM; "
         "give the VM more memory",
         human_size(initrd_size), k.kernel_end, limit - 1, human_size(total_ram(ram)));
}

}  // namespace vmm::arch::x86
