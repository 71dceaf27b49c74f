// ACPI fixed-hardware power management registers (PM1a event/control blocks
// and the PM timer), as described by the FADT. One I/O block of 12 bytes:
//
//   +0  PM1_STS  16 bit, write 1 to clear   (PM1a_EVT_BLK, PM1_EVT_LEN = 4)
//   +2  PM1_EN   16 bit
//   +4  PM1_CNT  16 bit                     (PM1a_CNT_BLK, PM1_CNT_LEN = 2)
//   +6  reserved, reads 0
//   +8  PM_TMR   32 bit, read-only          (PM_TMR_BLK, PM_TMR_LEN = 4)
//
// Any access width at any offset works byte-wise: a 1-byte read of +5 is the
// high byte of PM1_CNT, a 4-byte write at +2 writes PM1_EN and PM1_CNT.
//
// The platform has no legacy (non-ACPI) mode: the FADT's SMI_CMD is 0, so the
// OS never asks for the switch, and SCI_EN always reads 1. Only S5 is
// supported: SLP_EN with SLP_TYP == s5_sleep_type calls on_poweroff; other
// sleep types are ignored. The PM timer is a free-running 32-bit counter
// (TMR_VAL_EXT) at 3.579545 MHz from CLOCK_MONOTONIC; its overflow status
// (TMR_STS) and interrupt are not implemented.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"
#include "vmm/core/irq.h"
#include "vmm/core/log.h"

namespace vmm::devices {

class AcpiPm : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 12;
    static constexpr uint32_t kTimerHz = 3579545;

    static constexpr uint16_t kPwrBtn = 1u << 8;  // PWRBTN_STS / PWRBTN_EN
    static constexpr uint16_t kSciEn = 1u << 0;   // PM1_CNT.SCI_EN
    static constexpr uint16_t kSlpEn = 1u << 13;  // PM1_CNT.SLP_EN
    static constexpr unsigned kSlpTypShift = 10;  // PM1_CNT.SLP_TYP, bits 12:10

    // `on_poweroff` is called without the device lock held (on the vCPU
    // thread). `sci` may be null; its level is (PM1_STS & PM1_EN) != 0.
    AcpiPm(uint8_t s5_sleep_type, std::function<void()> on_poweroff, std::shared_ptr<vmm::IrqLine> sci = nullptr);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "acpi_pm"; }

    // The power button was pressed (control API): sets PWRBTN_STS and raises
    // the SCI if the guest enabled PWRBTN_EN.
    void power_button();

private:
    uint32_t timer() const;
    void update_sci();  // lock held

    std::mutex mu_;
    uint16_t sts_ = 0;
    uint16_t en_ = 0;
    uint16_t cnt_ = 0;  // stored bits only (BM_RLD, SLP_TYP)
    bool sci_level_ = false;
    uint8_t s5_sleep_type_;
    std::function<void()> on_poweroff_;
    std::shared_ptr<vmm::IrqLine> sci_;
    vmm::log::RateLimit log_limit_;
};

}  // namespace vmm::devices
