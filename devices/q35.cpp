// Q35 MCH and ICH9 LPC configuration registers. Write masks in ConfigSpace
// drop guest writes to read-only and reserved bits; the callbacks compare
// the decoded state before and after each write so they fire on changes only.
#include "devices/q35.h"

#include <algorithm>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

namespace vmm::devices::pci {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
// Intel IDs with subsystem 1af4:1100: firmware checks that to know it runs
// under QEMU-like virtual hardware.
ConfigSpace::Ids intel_ids(uint16_t device, uint8_t revision, uint32_t class_code) {
    return {.vendor = 0x8086,
            .device = device,
            .revision = revision,
            .class_code = class_code,
            .subsystem_vendor = 0x1af4,
            .subsystem = 0x1100};
}

// PCIEXBAR: bit 0 enable, bits 2:1 length (256 >> n MiB; 3 is reserved),
// base in bits 35:26 (a 256 MiB window ignores bits 27:26).
constexpr uint64_t kPciexbarBaseMask = 0x0000000ffc000000;
constexpr uint64_t kPciexbarWritable = kPciexbarBaseMask | 0x7;

// PAM0 only has the high (0xF0000) attribute field.
constexpr uint8_t kPam0Writable = 0x30;
constexpr uint8_t kPamWritable = 0x33;
// SMRAM: C_BASE_SEG (bits 2:0) reads 010; D_OPEN/D_CLS/D_LCK/G_SMRAME store.
constexpr uint8_t kSmramReset = 0x02;
constexpr uint8_t kSmramWritable = 0x78;
// ESMRAMC: the cache bits 5:3 read 1; H_SMRAME, TSEG_SZ, T_EN store.
constexpr uint8_t kEsmramcReset = 0x38;
constexpr uint8_t kEsmramcWritable = 0x87;

constexpr uint32_t kPmBaseWritable = 0xff80;
constexpr uint8_t kAcpiCntlWritable = 0x87;
constexpr uint8_t kPirqWritable = 0x8f;  // disable bit and IRQ number
constexpr uint32_t kRcbaWritable = 0xffffc001;
constexpr uint16_t kGenPmconBytes = 8;  // GEN_PMCON_1..3 and neighbours: stored

// Records a decoded state that differs from `last` and returns the call
// that reports it (empty when unchanged or nobody listens).
template <typename State, typename Call>
std::function<void()> if_changed(State& last, const State& now, bool listening, Call call) {
    if (now == last) return {};
    last = now;
    if (!listening) return {};
    return [call, now] { call(now); };
}

}  // namespace

// ---- ConfigOnlyDevice

void ConfigOnlyDevice::config_read(uint16_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    cfg_.read(offset, data);
}

void ConfigOnlyDevice::config_write(uint16_t offset, std::span<const uint8_t> data) {
    std::function<void()> after;
    {
        std::lock_guard lk(mu_);
        cfg_.write(offset, data);
        after = written_locked();
    }
    if (after) after();
}

void ConfigOnlyDevice::bar_read(unsigned, uint64_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0xff);
}

void ConfigOnlyDevice::bar_write(unsigned, uint64_t, std::span<const uint8_t>) {}

uint64_t ConfigOnlyDevice::reg_locked(uint16_t offset, unsigned bytes) const {
    return load_le(cfg_.bytes(), offset, bytes);
}

void ConfigOnlyDevice::set_reg_locked(uint16_t offset, uint64_t value, unsigned bytes) {
    store_le(cfg_.bytes(), offset, bytes, value);
}

// ---- Q35 MCH

Q35Mch::Q35Mch(PciexbarFn on_pciexbar)
    : ConfigOnlyDevice(intel_ids(0x29c0, 0, 0x060000)),
      on_pciexbar_(std::move(on_pciexbar)) {
    cfg_.set_writable(kPciexbar, kPciexbarWritable, 8);
    cfg_.set_writable(kPam0, kPam0Writable, 1);
    for (unsigned i = 1; i < kPamCount; ++i) cfg_.set_writable(static_cast<uint16_t>(kPam0 + i), kPamWritable, 1);
    set_reg_locked(kSmram, kSmramReset, 1);
    cfg_.set_writable(kSmram, kSmramWritable, 1);
    set_reg_locked(kEsmramc, kEsmramcReset, 1);
    cfg_.set_writable(kEsmramc, kEsmramcWritable, 1);
}

Q35Mch::Ecam Q35Mch::decode_locked() const {
    const uint64_t v = reg_locked(kPciexbar, 8);
    const unsigned length = (v >> 1) & 3;
    if (!(v & kPciexbarEnable) || length == 3) return {};
    const uint64_t size = (256 * kMiB) >> length;
    return {v & kPciexbarBaseMask & ~(size - 1), size};
}

std::function<void()> Q35Mch::written_locked() {
    return if_changed(last_, decode_locked(), static_cast<bool>(on_pciexbar_),
                      [this](const Ecam& e) { on_pciexbar_(e.base, e.size); });
}

void Q35Mch::preset_pciexbar(uint64_t base, uint64_t size) {
    unsigned length = 0;
    while (length < 3 && size != (256 * kMiB) >> length) ++length;
    if (length == 3) fail("q35: PCIEXBAR size {:#x} is not 64, 128 or 256 MiB", size);
    if (base % size != 0 || (base & ~kPciexbarBaseMask) != 0) {
        fail("q35: PCIEXBAR base {:#x} is not aligned to {:#x} or above 64 GiB", base, size);
    }
    std::lock_guard lk(mu_);
    set_reg_locked(kPciexbar, base | uint64_t{length} << 1 | kPciexbarEnable, 8);
    last_ = decode_locked();
}

uint64_t Q35Mch::pciexbar() const {
    std::lock_guard lk(mu_);
    return reg_locked(kPciexbar, 8);
}

Q35Mch::Ecam Q35Mch::ecam() const {
    std::lock_guard lk(mu_);
    return decode_locked();
}

uint8_t Q35Mch::pam(unsigned index) const {
    if (index >= kPamCount) return 0;
    std::lock_guard lk(mu_);
    return static_cast<uint8_t>(reg_locked(static_cast<uint16_t>(kPam0 + index), 1));
}

uint8_t Q35Mch::smram() const {
    std::lock_guard lk(mu_);
    return static_cast<uint8_t>(reg_locked(kSmram, 1));
}

uint8_t Q35Mch::esmramc() const {
    std::lock_guard lk(mu_);
    return static_cast<uint8_t>(reg_locked(kEsmramc, 1));
}

std::shared_ptr<PciDevice> make_host_bridge() { return std::make_shared<Q35Mch>(); }

// ---- ICH9 LPC

Ich9Lpc::Ich9Lpc(PmBaseFn on_pm_base)
    : ConfigOnlyDevice(intel_ids(0x2918, 2, 0x060100)),
      on_pm_base_(std::move(on_pm_base)) {
    set_reg_locked(kPmBase, 1, 4);
    cfg_.set_writable(kPmBase, kPmBaseWritable, 4);
    cfg_.set_writable(kAcpiCntl, kAcpiCntlWritable, 1);
    for (uint16_t base : {kPirqA, kPirqE}) {
        for (uint16_t i = 0; i < 4; ++i) {
            set_reg_locked(static_cast<uint16_t>(base + i), kPirqDisable, 1);
            cfg_.set_writable(static_cast<uint16_t>(base + i), kPirqWritable, 1);
        }
    }
    cfg_.set_writable(kGenPmcon1, ~uint64_t{0}, kGenPmconBytes);
    cfg_.set_writable(kRcba, kRcbaWritable, 4);
}

Ich9Lpc::PmState Ich9Lpc::pm_locked() const {
    return {static_cast<uint16_t>(reg_locked(kPmBase, 4) & kPmBaseWritable),
            (reg_locked(kAcpiCntl, 1) & kAcpiEnable) != 0};
}

std::function<void()> Ich9Lpc::written_locked() {
    return if_changed(last_, pm_locked(), static_cast<bool>(on_pm_base_),
                      [this](const PmState& p) { on_pm_base_(p.port, p.enabled); });
}

uint16_t Ich9Lpc::pm_base() const {
    std::lock_guard lk(mu_);
    return pm_locked().port;
}

bool Ich9Lpc::acpi_enabled() const {
    std::lock_guard lk(mu_);
    return pm_locked().enabled;
}

uint8_t Ich9Lpc::sci_select() const {
    std::lock_guard lk(mu_);
    return static_cast<uint8_t>(reg_locked(kAcpiCntl, 1) & 0x7);
}

uint8_t Ich9Lpc::pirq_route(unsigned pirq) const {
    if (pirq >= kPirqCount) return kPirqDisable;
    std::lock_guard lk(mu_);
    return static_cast<uint8_t>(reg_locked(static_cast<uint16_t>((pirq < 4 ? kPirqA : kPirqE - 4) + pirq), 1));
}

std::optional<uint32_t> Ich9Lpc::rcba() const {
    std::lock_guard lk(mu_);
    const auto v = static_cast<uint32_t>(reg_locked(kRcba, 4));
    if (!(v & 1)) return std::nullopt;
    return v & (kRcbaWritable & ~1u);
}

}  // namespace vmm::devices::pci
