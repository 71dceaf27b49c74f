#include "devices/acpi_pm.h"

#include <time.h>

namespace vmm::devices {
namespace {

constexpr uint64_t kStsOffset = 0;
constexpr uint64_t kEnOffset = 2;
constexpr uint64_t kCntOffset = 4;
constexpr uint64_t kTmrOffset = 8;

// PM1_EN bits the guest may set: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN,
// RTC_EN, PCIEXP_WAKE_DIS.
constexpr uint16_t kEnWritable = 0x0001 | 0x0020 | 0x0100 | 0x0200 | 0x0400 | 0x4000;
// Status/enable pairs that can raise the SCI (bit 14 of PM1_EN is a
// *disable* bit and WAK_STS has no enable, so neither takes part).
constexpr uint16_t kSciSources = 0x0001 | 0x0020 | 0x0100 | 0x0200 | 0x0400;
// PM1_CNT bits kept: BM_RLD and SLP_TYP. SCI_EN is forced on read; GBL_RLS
// and SLP_EN are write-only and read 0.
constexpr uint16_t kCntStored = 0x0002 | 0x1c00;

// The byte of a register at a given offset within that register.
uint8_t reg_byte(uint64_t reg_value, uint64_t offset_in_reg) { return uint8_t(reg_value >> (8 * offset_in_reg)); }

}  // namespace

AcpiPm::AcpiPm(uint8_t s5_sleep_type, std::function<void()> on_poweroff, std::shared_ptr<vmm::IrqLine> sci)
    : s5_sleep_type_(s5_sleep_type & 0x7), on_poweroff_(std::move(on_poweroff)), sci_(std::move(sci)) {}

uint32_t AcpiPm::timer() const {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    // ticks = ns * 3.579545e6 / 1e9, split so no intermediate overflows 64
    // bits; the counter is the low 32 bits (it wraps every ~20 minutes).
    uint64_t ticks = uint64_t(ts.tv_sec) * kTimerHz + uint64_t(ts.tv_nsec) * kTimerHz / 1000000000ull;
    return uint32_t(ticks);
}

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    uint16_t cnt = cnt_ | kSciEn;
    bool need_timer = false;
    for (size_t i = 0; i < data.size(); ++i)
        if (offset + i >= kTmrOffset && offset + i < kLength) need_timer = true;
    uint32_t tmr = need_timer ? timer() : 0;  // one sample per access, so a dword read is coherent
    for (size_t i = 0; i < data.size(); ++i) {
        uint64_t off = offset + i;
        if (off < kEnOffset) data[i] = reg_byte(sts_, off - kStsOffset);
        else if (off < kCntOffset) data[i] = reg_byte(en_, off - kEnOffset);
        else if (off < kCntOffset + 2) data[i] = reg_byte(cnt, off - kCntOffset);
        else if (off < kTmrOffset) data[i] = 0;  // reserved
        else if (off < kLength) data[i] = reg_byte(tmr, off - kTmrOffset);
        else data[i] = 0xff;
    }
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
    bool poweroff = false;
    {
        std::lock_guard lk(mu_);
        // Gather the access into per-register (value, byte mask) pairs, so
        // partial writes merge with the bytes they do not touch.
        uint16_t sts_clear = 0, en_val = 0, en_mask = 0, cnt_val = 0, cnt_mask = 0;
        for (size_t i = 0; i < data.size(); ++i) {
            uint64_t off = offset + i;
            uint16_t b = data[i];
            if (off < kEnOffset) {
                sts_clear |= uint16_t(b << (8 * (off - kStsOffset)));
            } else if (off < kCntOffset) {
                en_val |= uint16_t(b << (8 * (off - kEnOffset)));
                en_mask |= uint16_t(0xff << (8 * (off - kEnOffset)));
            } else if (off < kCntOffset + 2) {
                cnt_val |= uint16_t(b << (8 * (off - kCntOffset)));
                cnt_mask |= uint16_t(0xff << (8 * (off - kCntOffset)));
            }
            // Reserved bytes and the read-only timer ignore writes.
        }
        sts_ &= uint16_t(~sts_clear);  // write 1 to clear
        en_ = uint16_t((en_ & ~(en_mask & kEnWritable)) | (en_val & en_mask & kEnWritable));
        if (cnt_mask) {
            uint16_t cnt = uint16_t((cnt_ & ~cnt_mask) | (cnt_val & cnt_mask));
            cnt_ = cnt & kCntStored;
            if ((cnt_mask & kSlpEn) && (cnt & kSlpEn)) {
                unsigned typ = (cnt >> kSlpTypShift) & 0x7;
                if (typ == s5_sleep_type_) poweroff = true;
                else if (log_limit_.allow())
                    vmm::log::debug("acpi_pm: sleep type {} requested; only S5 ({}) is supported", typ,
                                    s5_sleep_type_);
            }
        }
        update_sci();
    }
    // Outside the lock: the handler may stop the vCPUs.
    if (poweroff && on_poweroff_) on_poweroff_();
}

void AcpiPm::power_button() {
    std::lock_guard lk(mu_);
    sts_ |= kPwrBtn;
    update_sci();
}

void AcpiPm::update_sci() {
    bool level = (sts_ & en_ & kSciSources) != 0;
    if (level == sci_level_) return;
    sci_level_ = level;
    if (sci_) sci_->set_level(level);
}

}  // namespace vmm::devices
