/* PCI configuration space through the legacy 0xCF8/0xCFC mechanism, which
 * both our VMM and QEMU's Q35 decode. bdf = bus << 8 | dev << 3 | fn. */
#include "probe.h"

static void select_(unsigned bdf, unsigned off) { outl(0xCF8, 0x80000000u | (bdf << 8) | (off & 0xFC)); }

uint32_t pci_read32(unsigned bdf, unsigned off) {
    select_(bdf, off);
    return inl(0xCFC);
}
void pci_write32(unsigned bdf, unsigned off, uint32_t v) {
    select_(bdf, off);
    outl(0xCFC, v);
}
uint16_t pci_read16(unsigned bdf, unsigned off) { return (uint16_t)(pci_read32(bdf, off) >> ((off & 2) * 8)); }
uint8_t pci_read8(unsigned bdf, unsigned off) { return (uint8_t)(pci_read32(bdf, off) >> ((off & 3) * 8)); }
void pci_write16(unsigned bdf, unsigned off, uint16_t v) {
    uint32_t old = pci_read32(bdf, off);
    unsigned sh = (off & 2) * 8;
    pci_write32(bdf, off, (old & ~(0xFFFFu << sh)) | ((uint32_t)v << sh));
}

/* The address the VMM or firmware assigned to a memory BAR (0 if none). */
uint64_t pci_bar_address(unsigned bdf, unsigned bar) {
    uint32_t lo = pci_read32(bdf, 0x10 + 4 * bar);
    if (lo & 1) return 0; /* I/O BAR */
    uint64_t a = lo & ~0xFull;
    if (((lo >> 1) & 3) == 2 && bar < 5) a |= (uint64_t)pci_read32(bdf, 0x10 + 4 * (bar + 1)) << 32;
    return a;
}
