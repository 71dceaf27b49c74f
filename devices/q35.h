// The Q35 chipset functions firmware (SeaBIOS, OVMF) programs before it
// touches anything else: the MCH host bridge at 00:00.0 (PCIEXBAR, PAM,
// SMRAM) and the ICH9 LPC bridge at 00:1F.0 (PMBASE, ACPI_CNTL, PIRQ
// routing, RCBA). Only registers are modelled: the VMM reacts to the ones
// that move something through the callbacks (which run on the accessing
// vCPU thread, outside the device's lock, in guest write order since the
// PciBus serialises configuration accesses; so they must not make config
// accesses on that bus themselves).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/pci.h"

namespace vmm::devices::pci {

// A function with configuration registers only (no BARs), its ConfigSpace
// guarded by mu_.
class ConfigOnlyDevice : public PciDevice {
public:
    void config_read(uint16_t offset, std::span<uint8_t> data) override;
    void config_write(uint16_t offset, std::span<const uint8_t> data) override;
    std::vector<BarRegion> decoded_bars() const override { return {}; }
    void bar_read(unsigned bar, uint64_t offset, std::span<uint8_t> data) override;
    void bar_write(unsigned bar, uint64_t offset, std::span<const uint8_t> data) override;

protected:
    explicit ConfigOnlyDevice(const ConfigSpace::Ids& ids) : cfg_(ids) {}
    // Runs with mu_ held after every guest write; returns what to call once
    // mu_ is dropped (a callback), or an empty function.
    virtual std::function<void()> written_locked() { return {}; }
    // Little-endian register of `bytes` bytes at `offset` (header only).
    uint64_t reg_locked(uint16_t offset, unsigned bytes) const;
    void set_reg_locked(uint16_t offset, uint64_t value, unsigned bytes);

    mutable std::mutex mu_;
    ConfigSpace cfg_;
};

// Q35 MCH, the host bridge (8086:29c0).
class Q35Mch : public ConfigOnlyDevice {
public:
    static constexpr uint16_t kPciexbar = 0x60;  // 64-bit
    static constexpr uint16_t kPam0 = 0x90;      // PAM0..PAM6 at 0x90..0x96
    static constexpr unsigned kPamCount = 7;
    static constexpr uint16_t kSmram = 0x9d;
    static constexpr uint16_t kEsmramc = 0x9e;
    static constexpr uint64_t kPciexbarEnable = 1;

    // The ECAM window PCIEXBAR decodes: no base (and size 0) when disabled.
    struct Ecam {
        std::optional<uint64_t> base;
        uint64_t size = 0;
        bool operator==(const Ecam&) const = default;
    };
    using PciexbarFn = std::function<void(std::optional<uint64_t> base, uint64_t size)>;

    // `on_pciexbar` is called after a guest write changed the decoded ECAM.
    explicit Q35Mch(PciexbarFn on_pciexbar = {});
    std::string name() const override { return "q35_mch"; }

    // Programs PCIEXBAR as firmware would have (enabled, `size` of 64, 128
    // or 256 MiB, `base` aligned to it and below 64 GiB) without calling
    // on_pciexbar; for direct kernel boot. Throws vmm::Error otherwise.
    void preset_pciexbar(uint64_t base, uint64_t size);
    uint64_t pciexbar() const;  // the raw register
    Ecam ecam() const;
    uint8_t pam(unsigned index) const;  // index < kPamCount, else 0
    uint8_t smram() const;
    uint8_t esmramc() const;

private:
    std::function<void()> written_locked() override;
    Ecam decode_locked() const;
    PciexbarFn on_pciexbar_;
    Ecam last_;  // guarded by mu_: what on_pciexbar_ was last told
};

// ICH9 LPC bridge (8086:2918) at 00:1F.0.
class Ich9Lpc : public ConfigOnlyDevice {
public:
    static constexpr uint16_t kPmBase = 0x40;    // dword, bit 0 reads 1 (I/O)
    static constexpr uint16_t kAcpiCntl = 0x44;  // bit 7 ACPI_EN, bits 2:0 SCI
    static constexpr uint8_t kAcpiEnable = 0x80;
    static constexpr uint16_t kPirqA = 0x60;  // PIRQA..D at 0x60..0x63
    static constexpr uint16_t kPirqE = 0x68;  // PIRQE..H at 0x68..0x6b
    static constexpr uint8_t kPirqDisable = 0x80;
    static constexpr uint16_t kGenPmcon1 = 0xa0;
    static constexpr uint16_t kRcba = 0xf0;  // dword, bit 0 enable
    static constexpr unsigned kPirqCount = 8;

    // `on_pm_base` is called after a guest write changed PMBASE's port or
    // ACPI_CNTL.ACPI_EN, with the port the PM block decodes at.
    using PmBaseFn = std::function<void(uint16_t port, bool enabled)>;
    explicit Ich9Lpc(PmBaseFn on_pm_base = {});
    std::string name() const override { return "ich9_lpc"; }

    uint16_t pm_base() const;  // the port (bits 15:7)
    bool acpi_enabled() const;
    uint8_t sci_select() const;              // ACPI_CNTL bits 2:0
    uint8_t pirq_route(unsigned pirq) const;  // pirq < kPirqCount (A..H), else 0x80
    std::optional<uint32_t> rcba() const;     // the base when enabled

private:
    struct PmState {
        uint16_t port = 0;
        bool enabled = false;
        bool operator==(const PmState&) const = default;
    };
    std::function<void()> written_locked() override;
    PmState pm_locked() const;
    PmBaseFn on_pm_base_;
    PmState last_;  // guarded by mu_
};

}  // namespace vmm::devices::pci
