// Synthetic kernels for the kernel and linuxboot unit tests:
//  - make_bzimage(): a valid setup header with the fields the loaders read,
//    setup sectors of zeros and a recognisable protected-mode part (byte i
//    of the file is i * 7);
//  - make_elf(): a PVH ELF with one PT_NOTE and one PT_LOAD.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "arch/x86_64/layout.h"
#include "vmm/core/bytes.h"

namespace test {

using vmm::arch::x86::KiB;
using vmm::arch::x86::MiB;

using vmm::store_le16;
using vmm::store_le32;
using vmm::store_le64;

struct BzOpts {
    uint16_t version = 0x020f;
    uint8_t setup_sects = 4;
    uint8_t loadflags = 0x01;
    uint16_t xloadflags = 0x01;
    uint32_t init_size = 8 * MiB;
    uint32_t kernel_alignment = 2 * MiB;
    uint8_t relocatable = 1;
    uint64_t pref_address = 16 * MiB;
    uint32_t cmdline_size = 2047;
    uint32_t initrd_addr_max = 0x7fffffff;
    uint8_t jump = 0x6a;  // header ends at 0x26c, as in Debian's 6.1 kernel
    std::size_t code_size = 64 * KiB;
};

inline std::vector<uint8_t> make_bzimage(const BzOpts& o = {}) {
    const std::size_t setup = (std::size_t{o.setup_sects ? o.setup_sects : 4u} + 1) * 512;
    std::vector<uint8_t> f(setup + o.code_size, 0);
    f[0x1f1] = o.setup_sects;
    store_le16(f, 0x1fe, 0xaa55);
    f[0x200] = 0xeb;
    f[0x201] = o.jump;
    std::memcpy(&f[0x202], "HdrS", 4);
    store_le16(f, 0x206, o.version);
    f[0x211] = o.loadflags;
    store_le32(f, 0x22c, o.initrd_addr_max);
    store_le32(f, 0x230, o.kernel_alignment);
    f[0x234] = o.relocatable;
    store_le16(f, 0x236, o.xloadflags);
    store_le32(f, 0x238, o.cmdline_size);
    store_le64(f, 0x258, o.pref_address);
    store_le32(f, 0x260, o.init_size);
    store_le32(f, 0x1f4, static_cast<uint32_t>(o.code_size / 16));  // syssize
    for (std::size_t i = setup; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i * 7);
    return f;
}

// ELF layout used by make_elf(): header, 2 program headers (PT_NOTE,
// PT_LOAD), the note at 0x100, the segment data at 0x200.
inline constexpr std::size_t kPh0 = 64;        // PT_NOTE phdr
inline constexpr std::size_t kPh1 = 64 + 56;   // PT_LOAD phdr
inline constexpr std::size_t kNoteOff = 0x100;
inline constexpr std::size_t kLoadOff = 0x200;
inline constexpr uint64_t kLoadPaddr = 16 * MiB;
inline constexpr uint64_t kLoadFilesz = 0x1000;
inline constexpr uint64_t kLoadMemsz = 0x3000;

struct ElfOpts {
    uint64_t entry = kLoadPaddr + 0x40;
    uint32_t desc_size = 8;  // Linux uses a 64-bit address (_ASM_PTR)
    bool with_note = true;
    uint32_t note_type = 18;
};

inline std::vector<uint8_t> make_elf(const ElfOpts& o = {}) {
    std::vector<uint8_t> f(kLoadOff + kLoadFilesz, 0);
    const uint8_t ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    std::memcpy(f.data(), ident, sizeof ident);
    store_le16(f, 0x10, 2);   // ET_EXEC
    store_le16(f, 0x12, 62);  // EM_X86_64
    store_le32(f, 0x14, 1);
    store_le64(f, 0x18, 0xffffffff81000000);  // e_entry: virtual, ignored
    store_le64(f, 0x20, kPh0);                // e_phoff
    store_le16(f, 0x34, 64);
    store_le16(f, 0x36, 56);
    store_le16(f, 0x38, 2);
    // PT_NOTE
    const uint32_t note_len = 12 + 4 + o.desc_size;
    store_le32(f, kPh0, o.with_note ? 4 : 6 /* PT_PHDR: ignored */);
    store_le64(f, kPh0 + 8, kNoteOff);
    store_le64(f, kPh0 + 32, note_len);
    store_le64(f, kPh0 + 40, note_len);
    store_le64(f, kPh0 + 48, 4);
    store_le32(f, kNoteOff, 4);
    store_le32(f, kNoteOff + 4, o.desc_size);
    store_le32(f, kNoteOff + 8, o.note_type);
    std::memcpy(&f[kNoteOff + 12], "Xen", 4);
    if (o.desc_size == 8) {
        store_le64(f, kNoteOff + 16, o.entry);
    } else {
        store_le32(f, kNoteOff + 16, static_cast<uint32_t>(o.entry));
    }
    // PT_LOAD
    store_le32(f, kPh1, 1);
    store_le32(f, kPh1 + 4, 5);
    store_le64(f, kPh1 + 8, kLoadOff);
    store_le64(f, kPh1 + 16, 0xffffffff81000000);
    store_le64(f, kPh1 + 24, kLoadPaddr);
    store_le64(f, kPh1 + 32, kLoadFilesz);
    store_le64(f, kPh1 + 40, kLoadMemsz);
    store_le64(f, kPh1 + 48, 0x200000);
    for (std::size_t i = kLoadOff; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i);
    return f;
}

}  // namespace test
