// Walks the image chain of a PCI expansion ROM file; every offset comes from
// the file and is checked against its size before it is followed.
#include "devices/pci_rom.h"

#include <algorithm>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::devices::pci {

namespace {

constexpr uint64_t kPcirPointer = 0x18;  // in the image header
constexpr uint64_t kPcirMinBytes = 0x18;  // signature .. indicator
constexpr uint8_t kIndicatorLast = 0x80;

}  // namespace

bool OptionRomImage::for_device(uint16_t v, uint16_t d) const {
    if (v != vendor) return false;
    return d == device || std::find(more_devices.begin(), more_devices.end(), d) != more_devices.end();
}

std::vector<OptionRomImage> option_rom_images(std::span<const uint8_t> rom) {
    std::vector<OptionRomImage> out;
    uint64_t off = 0;
    for (;;) {
        if (out.size() == kMaxRomImages) fail("more than {} images in the ROM", kMaxRomImages);
        if (off > rom.size() || rom.size() - off < kPcirPointer + 2)
            fail("image {} at {:#x} runs past the end of the file ({} bytes)", out.size(), off, rom.size());
        if (rom[off] != 0x55 || rom[off + 1] != 0xaa)
            fail("no option ROM signature (55 AA) at {:#x}", off);
        const uint64_t pcir = off + load_le16(rom, off + kPcirPointer);
        if (pcir + kPcirMinBytes > rom.size() || rom[pcir] != 'P' || rom[pcir + 1] != 'C' || rom[pcir + 2] != 'I' ||
            rom[pcir + 3] != 'R')
            fail("image {} at {:#x}: no PCIR data structure", out.size(), off);
        OptionRomImage img{off, load_le16(rom, pcir + 4), load_le16(rom, pcir + 6), {}, rom[pcir + 0x14]};
        // PCI 3.0: a device list (0-terminated 16-bit IDs) when the pointer
        // at PCIR+8 is set and the structure's revision is 3.
        const uint16_t list = load_le16(rom, pcir + 8);
        if (rom[pcir + 0x0c] >= 3 && list != 0) {
            for (uint64_t p = pcir + list; p + 2 <= rom.size() && img.more_devices.size() < 256; p += 2) {
                uint16_t id = load_le16(rom, p);
                if (id == 0) break;
                img.more_devices.push_back(id);
            }
        }
        const uint64_t len = uint64_t{load_le16(rom, pcir + 0x10)} * 512;
        if (len == 0) fail("image {} at {:#x}: length 0", out.size(), off);
        if (len > rom.size() - off)
            fail("image {} at {:#x}: {} bytes long, past the end of the file ({} bytes)", out.size(), off, len, rom.size());
        const bool last = rom[pcir + 0x15] & kIndicatorLast;
        out.push_back(std::move(img));
        if (last) return out;
        off += len;
    }
}

}  // namespace vmm::devices::pci
