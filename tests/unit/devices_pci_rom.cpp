// PCI expansion ROM image chains (devices/pci_rom.h), built here byte by
// byte: well-formed chains and every way a file can lie about its layout.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "devices/pci_rom.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

using namespace vmm::devices::pci;
using Catch::Matchers::Contains;

namespace {

// Appends one image of `blocks` * 512 bytes with its PCIR at 0x40 (and a
// device list at 0x60 when `list` is not empty).
void add_image(std::vector<uint8_t>& rom, uint16_t vendor, uint16_t device, uint8_t type, bool last,
               uint16_t blocks = 1, std::vector<uint16_t> list = {}) {
    size_t base = rom.size();
    rom.resize(base + blocks * 512u, 0);
    rom[base] = 0x55;
    rom[base + 1] = 0xaa;
    rom[base + 2] = static_cast<uint8_t>(blocks);
    vmm::store_le16(rom, base + 0x18, 0x40);
    size_t p = base + 0x40;
    rom[p] = 'P', rom[p + 1] = 'C', rom[p + 2] = 'I', rom[p + 3] = 'R';
    vmm::store_le16(rom, p + 4, vendor);
    vmm::store_le16(rom, p + 6, device);
    if (!list.empty()) {
        vmm::store_le16(rom, p + 8, 0x20);
        for (size_t i = 0; i < list.size(); ++i) vmm::store_le16(rom, p + 0x20 + 2 * i, list[i]);
    }
    rom[p + 0x0c] = 3;  // PCIR revision (PCI 3.0)
    vmm::store_le16(rom, p + 0x10, blocks);
    rom[p + 0x14] = type;
    rom[p + 0x15] = last ? 0x80 : 0;
}

std::string error_of(const std::vector<uint8_t>& rom) {
    try {
        option_rom_images(rom);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("pci rom: a BIOS and an EFI image, device lists", "[devices][pci]") {
    std::vector<uint8_t> rom;
    add_image(rom, 0x1af4, 0x1000, kRomCodeX86, false, 2, {0x1041, 0x1000});
    add_image(rom, 0x1af4, 0x1041, kRomCodeEfi, true, 3);
    auto imgs = option_rom_images(rom);
    REQUIRE(imgs.size() == 2);
    CHECK(imgs[0].offset == 0);
    CHECK(imgs[0].code_type == kRomCodeX86);
    CHECK(imgs[0].for_device(0x1af4, 0x1041));  // through the device list
    CHECK(imgs[0].for_device(0x1af4, 0x1000));
    CHECK_FALSE(imgs[0].for_device(0x8086, 0x1000));
    CHECK(imgs[1].offset == 1024);
    CHECK(imgs[1].code_type == kRomCodeEfi);
    CHECK(imgs[1].for_device(0x1af4, 0x1041));
    CHECK_FALSE(imgs[1].for_device(0x1af4, 0x1042));
}

TEST_CASE("pci rom: malformed files are refused with a reason", "[devices][pci]") {
    CHECK_THAT(error_of({}), Contains("runs past the end"));
    std::vector<uint8_t> good;
    add_image(good, 0x1af4, 0x1041, kRomCodeX86, true);
    REQUIRE(error_of(good).empty());

    auto bad = good;
    bad[1] = 0x55;
    CHECK_THAT(error_of(bad), Contains("signature"));
    bad = good;
    vmm::store_le16(bad, 0x18, 0xfff0);  // PCIR pointer past the end
    CHECK_THAT(error_of(bad), Contains("no PCIR"));
    bad = good;
    bad[0x40] = 'X';
    CHECK_THAT(error_of(bad), Contains("no PCIR"));
    bad = good;
    vmm::store_le16(bad, 0x40 + 0x10, 0);
    CHECK_THAT(error_of(bad), Contains("length 0"));
    bad = good;
    vmm::store_le16(bad, 0x40 + 0x10, 2);  // claims 1024 bytes in a 512-byte file
    CHECK_THAT(error_of(bad), Contains("past the end of the file"));
    bad = good;
    bad[0x40 + 0x15] = 0;  // not the last image, but nothing follows
    CHECK_THAT(error_of(bad), Contains("runs past the end"));

    // A device list running to the end of the file stops there.
    std::vector<uint8_t> list;
    add_image(list, 0x1af4, 0x1000, kRomCodeX86, true, 1, {0x1041});
    for (size_t i = 0x60; i < list.size(); i += 2) vmm::store_le16(list, i, 0x1234);
    auto imgs = option_rom_images(list);
    REQUIRE(imgs.size() == 1);
    CHECK(imgs[0].more_devices.size() <= 256);

    // A chain longer than kMaxRomImages.
    std::vector<uint8_t> many;
    for (size_t i = 0; i <= kMaxRomImages; ++i) add_image(many, 0x1af4, 0x1041, kRomCodeX86, false);
    CHECK_THAT(error_of(many), Contains("more than"));
}
