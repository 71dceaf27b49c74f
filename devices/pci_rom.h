// PCI expansion ROM images (PCI Firmware Specification 3.0, chapter 5): a
// chain of images, each starting with 0x55 0xAA and pointing to a "PCIR"
// data structure that names the vendor/device it is for and its code type
// (0 x86 BIOS, 3 EFI). The VMM only reads the chain, to refuse files that
// are not ROMs and to warn when no image is for the device (SeaBIOS runs
// only a legacy image whose IDs match the device).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace vmm::devices::pci {

struct OptionRomImage {
    uint64_t offset;      // of the image in the file
    uint16_t vendor;
    uint16_t device;
    std::vector<uint16_t> more_devices;  // PCI 3.0 device list (may be empty)
    uint8_t code_type;    // 0: x86 (BIOS), 3: EFI
    bool for_device(uint16_t v, uint16_t d) const;
};

inline constexpr uint8_t kRomCodeX86 = 0;
inline constexpr uint8_t kRomCodeEfi = 3;
inline constexpr size_t kMaxRomImages = 8;

// The images of `rom`; throws vmm::Error naming what is wrong (no 0x55AA
// signature, a PCIR structure outside the file, an image of length 0, a
// chain running past the end or longer than kMaxRomImages).
std::vector<OptionRomImage> option_rom_images(std::span<const uint8_t> rom);

}  // namespace vmm::devices::pci
