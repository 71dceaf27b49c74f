#include "vmm/chipset.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "devices/acpi_pm.h"
#include "devices/boot_progress.h"
#include "devices/cmos.h"
#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/pvpanic.h"
#include "devices/q35.h"
#include "devices/reset.h"
#include "devices/serial.h"
#include "vmm/boot_clock.h"
#include "vmm/console_socket.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/irq_routing.h"
#include "vmm/platform.h"

namespace vmm {

namespace x86 = arch::x86;

namespace {

// The most physical address bits x86 has (52): the end of the PCI decode
// window under firmware.
constexpr uint64_t kMaxPhysAddr = uint64_t{1} << 52;

}  // namespace

Chipset::Chipset(const VmConfig& cfg, Vm& vm, const x86::PlatformLayout& layout, Bus& pio, Bus& mmio,
                 ExitControl& exit, std::function<void(std::span<const uint8_t>)> serial_out)
    : layout_(layout), firmware_(!cfg.firmware.empty()) {
    add_legacy_devices(cfg, vm, pio, exit, std::move(serial_out));
    add_pci(vm, pio, mmio);
}

Chipset::~Chipset() {
    // The bus may keep the device a little longer than the timerfd lives.
    if (rtc_) rtc_->set_timer({});
}

void Chipset::rtc_timer_fired() {
    uint64_t expirations = 0;
    // Non-blocking: a re-arm from a vCPU may have consumed the expiry already.
    [[maybe_unused]] ssize_t n = ::read(rtc_timer_.get(), &expirations, sizeof expirations);
    rtc_->tick();
}

void Chipset::add_legacy_devices(const VmConfig& cfg, Vm& vm, Bus& pio, ExitControl& exit,
                                 std::function<void(std::span<const uint8_t>)> serial_out) {
    if (cfg.serial == SerialMode::Socket) {
        serial_sock_ = std::make_unique<ConsoleSocket>(cfg.serial_path, "--serial socket=" + cfg.serial_path);
        serial_out = [s = serial_sock_.get()](std::span<const uint8_t> b) { s->write_output(b); };
    }
    serial_ = std::make_shared<devices::Serial8250>(std::make_shared<KvmIrqLine>(vm, platform::kCom1Irq),
                                                    std::move(serial_out));
    pio.add(platform::kCom1Port, 8, serial_);
    pio.add(platform::kI8042Port, 5, std::make_shared<devices::I8042>([&exit] {
                 exit.request(ExitReason::Reboot, "guest reset through the i8042 controller");
             }));
    uint64_t below = layout_.ram[0].size;
    auto cmos = std::make_shared<devices::Cmos>(
        below, cfg.memory - below,
        devices::Cmos::Clock{devices::Cmos::host_clock(cfg.rtc_localtime), devices::Cmos::monotonic_ns},
        std::make_shared<KvmIrqLine>(vm, platform::kRtcIrq));
    // The RTC's interrupts: a timerfd on the main event loop, armed (from
    // whichever thread changes the RTC's state) only while an enabled
    // interrupt is due; Machine::event_loop() calls rtc_timer_fired().
    rtc_timer_ = Fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!rtc_timer_) throw_errno("timerfd_create (RTC)");
    cmos->set_timer([fd = rtc_timer_.get(), limit = std::make_shared<log::RateLimit>()](int64_t deadline) {
        itimerspec its{};
        if (deadline != devices::Cmos::kNoDeadline) {
            // 0 would disarm: a deadline at or before the clock's start is due at once anyway.
            const int64_t d = std::max<int64_t>(deadline, 1);
            its.it_value.tv_sec = d / 1'000'000'000;
            its.it_value.tv_nsec = d % 1'000'000'000;
        }
        if (::timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, nullptr) != 0 && limit->allow())
            log::warn("cmos: timerfd_settime: {}", std::strerror(errno));
    });
    rtc_ = cmos;
    // SeaBIOS waits until it has seen this many APs (the CPU count - 1).
    cmos->set_byte(0x5f, static_cast<uint8_t>(cfg.cpus - 1));
    // SeaBIOS's default boot order on QEMU machines comes from CMOS: one
    // nibble per place (3 CD-ROM, 2 disk, 4 network), 0x3d the first two,
    // 0x38's high nibble the third; 0x38 bit 0 skips the floppy check.
    cmos->set_byte(0x3d, 0x23);
    cmos->set_byte(0x38, 0x41);
    pio.add(platform::kCmosPort, 2, cmos);
    acpi_pm_ = std::make_shared<devices::AcpiPm>(
        platform::kAcpiS5SleepType, [&exit] { exit.request(ExitReason::PowerOff); },
        std::make_shared<KvmIrqLine>(vm, platform::kAcpiSciIrq));
    pio.add(platform::kAcpiPmPort, 12, acpi_pm_);
    if (cfg.pvpanic) {
        pio.add(platform::kPvPanicPort, 1, std::make_shared<devices::PvPanic>([&exit](uint8_t events) {
                     if (events & devices::PvPanic::kPanicked)
                         exit.request(ExitReason::Panic, "the guest kernel panicked (pvpanic)");
                     else
                         log::warn("guest loaded a crash kernel after a panic (pvpanic CRASH_LOADED)");
                 }));
    }
    reset_ = std::make_shared<devices::ResetControl>(
        [&exit] { exit.request(ExitReason::Reboot, "guest reset through the reset control register"); });
    bool report = cfg.boot_report;
    pio.add(platform::kBootProgressPort, 1, std::make_shared<devices::BootProgress>([report](uint8_t v) {
                 double ms = ms_since_start();
                 if (report) std::fprintf(stderr, "vmm: boot: progress 0x%02x at %.1f ms\n", v, ms);
                 log::info("boot progress {:#04x} at {:.1f} ms", v, ms);
             }));
}

void Chipset::add_pci(Vm& vm, Bus& pio, Bus& mmio) {
    msi_ = std::make_unique<MsiRouter>(vm);
    pci_ = std::make_shared<devices::pci::PciBus>();
    // The reset control register (0xcf9) lives inside the config ports.
    static_assert(platform::kResetPort == 0xcf9);
    pio.add(0xcf8, 8, pci_->io_port_device(reset_));
    if (firmware_) {
        // Q35 as firmware expects it: ECAM moves to wherever the firmware
        // programs the MCH's PCIEXBAR, and ECAM and the BARs the firmware
        // assigns share one decode window from low RAM's end to the IOAPIC.
        auto mch = std::make_shared<devices::pci::Q35Mch>(
            [pci = pci_.get()](std::optional<uint64_t> base, uint64_t size) {
                pci->set_ecam(base, size);
                if (base) log::info("pci: ECAM at {:#x} ({} MiB)", *base, size >> 20);
                else log::info("pci: ECAM disabled");
            });
        pci_->add(0, mch);
        auto lpc = std::make_shared<devices::pci::Ich9Lpc>([](uint16_t port, bool enabled) {
            if (enabled && port != platform::kAcpiPmPort)
                log::warn("firmware put the ACPI PM block at port {:#x}; this VMM has it at {:#x} only", port,
                          platform::kAcpiPmPort);
        });
        pci_->add(kLpcSlot, lpc);
        const uint64_t low_end = layout_.ram[0].size;
        mmio.add(low_end, x86::kIoapicAddr - low_end, pci_->mmio_device(low_end));
    } else {
        pci_->add(0, devices::pci::make_host_bridge());
        mmio.add(layout_.ecam_base, x86::kPciEcamSize, pci_->ecam_device());
        mmio.add(layout_.pci_mmio32.start, layout_.pci_mmio32.size, pci_->mmio_device(layout_.pci_mmio32.start));
    }
    // The 64-bit window decodes too: a guest may move BARs up there.
    const auto& win64 = layout_.pci_mmio64;
    // Firmware chooses its own 64-bit aperture: OVMF's may sit near the top
    // of the CPU's physical address space. Decode everything above RAM then.
    const uint64_t end64 = firmware_ ? kMaxPhysAddr : win64.end();
    if (win64.size) mmio.add(win64.start, end64 - win64.start, pci_->mmio_device(win64.start));
}

x86::AcpiConfig acpi_config(const VmConfig& cfg, const x86::PlatformLayout& layout) {
    x86::AcpiConfig acpi;
    acpi.ncpus = cfg.cpus;
    acpi.pm_io_base = platform::kAcpiPmPort;
    acpi.sci_irq = platform::kAcpiSciIrq;
    acpi.reset_port = platform::kResetPort;
    acpi.reset_value = platform::kResetValue;
    acpi.s5_sleep_type = platform::kAcpiS5SleepType;
    acpi.pvpanic_port = cfg.pvpanic ? platform::kPvPanicPort : 0;
    acpi.serial_port = platform::kCom1Port;
    acpi.serial_irq = static_cast<uint8_t>(platform::kCom1Irq);
    acpi.rtc_port = platform::kCmosPort;
    acpi.rtc_irq = platform::kRtcIrq;
    acpi.pci_ecam_base = layout.ecam_base;
    acpi.pci_mmio32_start = layout.pci_mmio32.start;
    acpi.pci_mmio32_end = layout.pci_mmio32.end();
    acpi.pci_mmio64_start = layout.pci_mmio64.start;
    acpi.pci_mmio64_size = layout.pci_mmio64.size;
    return acpi;
}

// SMBIOS: the VMM's defaults, then the user's --smbios strings and --uuid.
// Direct boot always has a type 0 (nothing else would describe the BIOS);
// under firmware only a user's type=0 makes one, else the firmware adds its own.
x86::SmbiosConfig smbios_config(const VmConfig& cfg, const x86::PlatformLayout& layout,
                                const std::vector<kvm_cpuid_entry2>& cpuid) {
    x86::SmbiosConfig s;
    s.cpus = cfg.cpus;
    s.ram = layout.ram;
    for (auto& e : cpuid)
        if (e.function == 1 && e.index == 0) {
            s.cpuid_signature = e.eax;
            s.cpuid_features = e.edx;
        }
    if (!cfg.uuid.empty()) s.uuid = x86::parse_uuid(cfg.uuid);
    auto& st = s.strings;
    st.bios = cfg.firmware.empty();
    auto set = [](std::string& field, const std::string& v) {
        if (!v.empty()) field = v;
    };
    for (auto& t : cfg.smbios) {
        if (t.type == 0) {
            st.bios = true;
            set(st.bios_vendor, t.vendor);
            set(st.bios_version, t.version);
            set(st.bios_date, t.date);
        } else if (t.type == 1) {
            set(st.manufacturer, t.manufacturer);
            set(st.product, t.product);
            set(st.version, t.version);
            set(st.serial, t.serial);
            set(st.sku, t.sku);
            set(st.family, t.family);
        } else if (t.type == 3) {
            set(st.chassis_manufacturer, t.manufacturer);
            set(st.chassis_version, t.version);
            set(st.chassis_serial, t.serial);
            set(st.chassis_asset, t.asset);
            set(st.chassis_sku, t.sku);
        }
    }
    return s;
}

}  // namespace vmm
