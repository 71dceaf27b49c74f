#include "vmm/machine.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <fstream>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/bootinfo.h"
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/kernel.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"
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
#include "vmm/core/error.h"
#include "vmm/core/irq.h"
#include "vmm/core/log.h"
#include "virtio/balloon.h"
#include "virtio/console.h"
#include "virtio/pci_transport.h"
#include "vmm/api.h"
#include "vmm/config_check.h"
#include "vmm/console_socket.h"
#include "vmm/guest_walk.h"
#include "vmm/input_file.h"
#include "vmm/irq_routing.h"
#include "vmm/serial_ports.h"
#include "vmm/virtio_devices.h"
#include "vmm/platform.h"

namespace vmm {

namespace x86 = arch::x86;

namespace {

constexpr int kKickSignal = SIGUSR1;
// The most physical address bits x86 has (52): the end of the PCI decode
// window under firmware.
constexpr uint64_t kMaxPhysAddr = uint64_t{1} << 52;

void write_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t r = ::write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return;  // console gone (EPIPE etc.): drop output, keep the VM
        p += r;
        n -= static_cast<size_t>(r);
    }
}

class KvmIrqLine : public IrqLine {
public:
    KvmIrqLine(Vm& vm, uint32_t irq) : vm_(vm), irq_(irq) {}
    void set_level(bool high) override {
        try {
            vm_.irq_line(irq_, high);
        } catch (const Error& e) {
            static log::RateLimit rl;
            if (rl.allow()) log::error("irq {}: {}", irq_, e.what());
        }
    }

private:
    Vm& vm_;
    uint32_t irq_;
};

void kick_handler(int) {}

}  // namespace

std::function<void(std::span<const uint8_t>)> fd_writer(int fd) {
    return [fd](std::span<const uint8_t> bytes) {
        if (fd >= 0) write_all(fd, bytes.data(), bytes.size());
    };
}

void install_vcpu_kick_handler() {
    struct sigaction sa {};
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kKickSignal, &sa, nullptr);
}

Machine::Machine(const VmConfig& cfg, int console_in, int console_out)
    : cfg_(cfg),
      console_in_(console_in),
      console_out_(console_out),
      kvm_(),
      vm_(kvm_),
      layout_(x86::platform_layout(cfg.memory, !cfg.firmware.empty())),
      boot_(cfg.firmware.empty() ? make_direct_kernel_boot() : make_firmware_boot()) {
    created_ms_ = ms_since_start();
    kvm_.require(KVM_CAP_IRQCHIP, "an in-kernel irqchip");
    kvm_.require(KVM_CAP_USER_MEMORY, "user memory regions");
    kvm_.require(KVM_CAP_SET_TSS_ADDR, "KVM_SET_TSS_ADDR");
    kvm_.require(KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_SET_IDENTITY_MAP_ADDR");
    kvm_.require(KVM_CAP_PIT2, "an in-kernel PIT");
    kvm_.require(KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID");
    kvm_.require(KVM_CAP_IMMEDIATE_EXIT, "immediate_exit");
    kvm_.require(KVM_CAP_IOEVENTFD, "ioeventfd");
    kvm_.require(KVM_CAP_IRQFD, "irqfd");
    kvm_.require(KVM_CAP_IRQ_ROUTING, "interrupt routing (KVM_CAP_IRQ_ROUTING)");
    int max = kvm_.max_vcpus();
    if (cfg_.cpus > static_cast<uint32_t>(max))
        fail("--cpus {}: this host's KVM allows at most {} vCPUs", cfg_.cpus, max);

    log::debug("startup: KVM opened at {:.1f} ms", ms_since_start());
    vm_.set_identity_map_addr(x86::kKvmIdentityMapAddr);
    vm_.set_tss_addr(x86::kKvmTssAddr);
    vm_.create_irqchip();
    vm_.create_pit2();

    log::debug("startup: VM created at {:.1f} ms", ms_since_start());
    setup_memory();
    log::debug("startup: memory mapped at {:.1f} ms", ms_since_start());
    setup_devices();
    load_boot_source();
    log::debug("startup: {} loaded at {:.1f} ms", cfg_.firmware.empty() ? "kernel" : "firmware", ms_since_start());
    setup_vcpus();
    log::debug("startup: vCPUs ready at {:.1f} ms", ms_since_start());
    // Last, so a client never sees a half-built VM; a socket in use fails
    // the start before the guest runs.
    if (!cfg_.api_socket.empty()) api_ = std::make_unique<ApiServer>(cfg_.api_socket, *this);
}

Machine::~Machine() {
    if (api_) api_->stop();  // no control requests while the VM comes apart
    stop_vcpus();
    // Devices stop their I/O threads before guest memory goes away.
    for (auto& t : virtio_) t->shutdown();
}

void Machine::setup_memory() {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (auto& r : layout_.ram) ranges.emplace_back(r.gpa, r.size);
    mem_ = GuestMemory::create_anonymous(ranges, true, cfg_.hugepages);
    uint32_t slot = 0;
    for (auto& r : mem_.regions()) vm_.set_user_memory_region(slot++, r.gpa, r.size, r.host);
}

x86::AcpiConfig Machine::acpi_config() const {
    x86::AcpiConfig acpi;
    acpi.ncpus = cfg_.cpus;
    acpi.pm_io_base = platform::kAcpiPmPort;
    acpi.sci_irq = platform::kAcpiSciIrq;
    acpi.reset_port = platform::kResetPort;
    acpi.reset_value = platform::kResetValue;
    acpi.s5_sleep_type = platform::kAcpiS5SleepType;
    acpi.pvpanic_port = cfg_.pvpanic ? platform::kPvPanicPort : 0;
    acpi.serial_port = platform::kCom1Port;
    acpi.serial_irq = static_cast<uint8_t>(platform::kCom1Irq);
    acpi.pci_ecam_base = layout_.ecam_base;
    acpi.pci_mmio32_start = layout_.pci_mmio32.start;
    acpi.pci_mmio32_end = layout_.pci_mmio32.end();
    acpi.pci_mmio64_start = layout_.pci_mmio64.start;
    acpi.pci_mmio64_size = layout_.pci_mmio64.size;
    return acpi;
}

// SMBIOS: the VMM's defaults, then the user's --smbios strings and --uuid.
// Direct boot always has a type 0 (nothing else would describe the BIOS);
// under firmware only a user's type=0 makes one, else the firmware adds its own.
x86::SmbiosConfig Machine::smbios_config() const {
    x86::SmbiosConfig s;
    s.cpus = cfg_.cpus;
    s.ram = layout_.ram;
    for (auto& e : kvm_.supported_cpuid())
        if (e.function == 1 && e.index == 0) {
            s.cpuid_signature = e.eax;
            s.cpuid_features = e.edx;
        }
    if (!cfg_.uuid.empty()) s.uuid = x86::parse_uuid(cfg_.uuid);
    auto& st = s.strings;
    st.bios = !firmware();
    auto set = [](std::string& field, const std::string& v) {
        if (!v.empty()) field = v;
    };
    for (auto& t : cfg_.smbios) {
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

void Machine::load_boot_source() {
    auto acpi = acpi_config();
    auto smbios = smbios_config();
    BootContext ctx{cfg_,  vm_,   mem_,  layout_, acpi, smbios, boot_devices_, pio_, mmio_,
                    static_cast<uint32_t>(mem_.regions().size()), exit_};
    boot_->load(ctx);
}

void Machine::setup_devices() {
    std::function<void(std::span<const uint8_t>)> serial_out;
    if (cfg_.serial == SerialMode::Socket) {
        serial_sock_ = std::make_unique<ConsoleSocket>(cfg_.serial_path, "--serial socket=" + cfg_.serial_path);
        serial_out = [s = serial_sock_.get()](std::span<const uint8_t> b) { s->write_output(b); };
    } else {
        serial_out = fd_writer(console_out_);
    }
    serial_ = std::make_shared<devices::Serial8250>(std::make_shared<KvmIrqLine>(vm_, platform::kCom1Irq),
                                                    std::move(serial_out));
    pio_.add(platform::kCom1Port, 8, serial_);
    pio_.add(platform::kI8042Port, 5, std::make_shared<devices::I8042>([this] {
                 exit_.request(ExitReason::Reboot, "guest reset through the i8042 controller");
             }));
    uint64_t below = layout_.ram[0].size;
    auto cmos = std::make_shared<devices::Cmos>(below, cfg_.memory - below,
                                                devices::Cmos::host_clock(cfg_.rtc_localtime));
    // SeaBIOS waits until it has seen this many APs (the CPU count - 1).
    cmos->set_byte(0x5f, static_cast<uint8_t>(cfg_.cpus - 1));
    // SeaBIOS's default boot order on QEMU machines comes from CMOS: one
    // nibble per place (3 CD-ROM, 2 disk, 4 network), 0x3d the first two,
    // 0x38's high nibble the third; 0x38 bit 0 skips the floppy check.
    cmos->set_byte(0x3d, 0x23);
    cmos->set_byte(0x38, 0x41);
    pio_.add(platform::kCmosPort, 2, cmos);
    acpi_pm_ = std::make_shared<devices::AcpiPm>(
        platform::kAcpiS5SleepType, [this] { exit_.request(ExitReason::PowerOff); },
        std::make_shared<KvmIrqLine>(vm_, platform::kAcpiSciIrq));
    pio_.add(platform::kAcpiPmPort, 12, acpi_pm_);
    if (cfg_.pvpanic) {
        pio_.add(platform::kPvPanicPort, 1, std::make_shared<devices::PvPanic>([this](uint8_t events) {
                     if (events & devices::PvPanic::kPanicked)
                         exit_.request(ExitReason::Panic, "the guest kernel panicked (pvpanic)");
                     else
                         log::warn("guest loaded a crash kernel after a panic (pvpanic CRASH_LOADED)");
                 }));
    }
    reset_ = std::make_shared<devices::ResetControl>(
        [this] { exit_.request(ExitReason::Reboot, "guest reset through the reset control register"); });
    bool report = cfg_.boot_report;
    pio_.add(platform::kBootProgressPort, 1, std::make_shared<devices::BootProgress>([report](uint8_t v) {
                 double ms = ms_since_start();
                 if (report) std::fprintf(stderr, "vmm: boot: progress 0x%02x at %.1f ms\n", v, ms);
                 log::info("boot progress {:#04x} at {:.1f} ms", v, ms);
             }));
    setup_pci();
}

void Machine::setup_pci() {
    msi_ = std::make_unique<MsiRouter>(vm_);
    pci_ = std::make_shared<devices::pci::PciBus>();
    // The reset control register (0xcf9) lives inside the config ports.
    static_assert(platform::kResetPort == 0xcf9);
    pio_.add(0xcf8, 8, pci_->io_port_device(reset_));
    if (firmware()) {
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
        mmio_.add(low_end, x86::kIoapicAddr - low_end, pci_->mmio_device(low_end));
    } else {
        pci_->add(0, devices::pci::make_host_bridge());
        mmio_.add(layout_.ecam_base, x86::kPciEcamSize, pci_->ecam_device());
        mmio_.add(layout_.pci_mmio32.start, layout_.pci_mmio32.size, pci_->mmio_device(layout_.pci_mmio32.start));
    }
    // The 64-bit window decodes too: a guest may move BARs up there.
    const auto& win64 = layout_.pci_mmio64;
    // Firmware chooses its own 64-bit aperture: OVMF's may sit near the top
    // of the CPU's physical address space. Decode everything above RAM then.
    const uint64_t end64 = firmware() ? kMaxPhysAddr : win64.end();
    if (win64.size) mmio_.add(win64.start, end64 - win64.start, pci_->mmio_device(win64.start));
    next_bar_ = layout_.pci_mmio32.start;

    for (const VirtioKind& kind : virtio_kinds()) (this->*kind.attach)(kind);
}

unsigned Machine::add_virtio(const VirtioKind& kind, std::shared_ptr<virtio::VirtioDevice> dev, int slot,
                             bool packed, std::shared_ptr<const std::vector<uint8_t>> rom) {
    if (dev->device_type() != kind.device_id)
        fail("{}: virtio device ID {} registered as {} ({})", dev->name(), dev->device_type(), kind.name,
             kind.device_id);
    unsigned s = slot >= 0 ? static_cast<unsigned>(slot) : pci_->free_slot();
    // Under firmware the BAR starts unassigned (0) and the firmware assigns it.
    uint64_t bar = firmware() ? 0 : next_bar_;
    if (!firmware()) {
        if (bar + virtio::PciTransport::kBarSize > layout_.pci_mmio32.end())
            fail("{}: the 32-bit PCI window is full", dev->name());
        next_bar_ += virtio::PciTransport::kBarSize;
    }
    virtio::PciTransport::Platform p;
    p.mem = &mem_;
    p.ioeventfd = [this](int efd, uint64_t addr, bool assign) { vm_.ioeventfd(efd, addr, 0, false, !assign); };
    p.msi = [this] { return msi_->allocate(); };
    uint32_t gsi = x86::pci_intx_gsi(s, 0);  // INTA#
    p.intx = std::make_shared<KvmIrqLine>(vm_, gsi);
    p.intx_line = static_cast<uint8_t>(gsi);
    p.defer = [this](std::function<void()> task) { defer(std::move(task)); };
    p.offer_packed = packed;
    p.assigned = !firmware();
    p.rom = std::move(rom);
    p.class_code = kind.pci_class;
    auto t = std::make_shared<virtio::PciTransport>(dev, std::move(p), bar);
    pci_->add(s, t);
    // The BAR decodes from the start (as firmware would leave it), so the
    // queue notify ioeventfds are registered now.
    t->bars_changed(t->decoded_bars());
    virtio_.push_back(t);
    log::info("{} at PCI 00:{:02x}.0, BAR0 {:#x}, INTx GSI {}", dev->name(), s, bar, gsi);
    return s;
}

void Machine::defer(std::function<void()> task) {
    {
        std::lock_guard lk(tasks_mu_);
        tasks_.push_back(std::move(task));
    }
    tasks_ready_.signal();
}

void Machine::run_deferred() {
    tasks_ready_.consume();
    for (;;) {
        std::function<void()> task;
        {
            std::lock_guard lk(tasks_mu_);
            if (tasks_.empty()) return;
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        task();
    }
}

void Machine::setup_vcpus() {
    auto cpuid = kvm_.supported_cpuid();
    const bool tsc_deadline = kvm_.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    for (uint32_t i = 0; i < cfg_.cpus; ++i) {
        auto v = std::make_unique<Vcpu>(vm_, i);
        auto entries = cpuid;
        x86::patch_cpuid(entries, i, cfg_.cpus, tsc_deadline);
        v->set_cpuid(entries);
        v->set_msrs(x86::boot_msrs());
        v->set_fpu(x86::initial_fpu());
        auto lapic = v->get_lapic();
        x86::setup_lapic_lint(lapic);
        v->set_lapic(lapic);
        // Application processors wait for INIT/SIPI in the in-kernel
        // LAPIC; only the boot processor gets an entry state.
        if (i == 0) boot_->setup_boot_cpu(*v);
        vcpus_.push_back(std::move(v));
    }
}

void Machine::crash(size_t index, const std::string& what) {
    std::string state;
    try {
        state = describe_vcpu_state(mem_, vcpus_[index]->get_regs(), vcpus_[index]->get_sregs());
    } catch (const Error& e) {
        state = fmt::format("  (registers unavailable: {})\n", e.what());
    }
    exit_.request(ExitReason::Crash, fmt::format("vCPU {}: {}\n{}", index, what, state));
}

// Returns false when the vCPU loop must end.
bool Machine::handle_exit(size_t index) {
    kvm_run* run = vcpus_[index]->run_struct();
    static log::RateLimit unclaimed_rl;
    switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            // KVM guarantees data_offset/size/count describe a buffer inside
            // the kvm_run mapping; size is 1, 2 or 4.
            auto* base = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
            for (uint32_t i = 0; i < run->io.count; ++i) {
                std::span<uint8_t> d(base + size_t(i) * run->io.size, run->io.size);
                bool ok = run->io.direction == KVM_EXIT_IO_OUT ? pio_.write(run->io.port, d) : pio_.read(run->io.port, d);
                if (!ok && log::level() >= log::Level::Debug && unclaimed_rl.allow())
                    log::debug("unclaimed PIO {} port {:#x} size {}", run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read",
                               run->io.port, run->io.size);
            }
            return true;
        }
        case KVM_EXIT_MMIO: {
            uint32_t len = std::min<uint32_t>(run->mmio.len, sizeof run->mmio.data);
            std::span<uint8_t> d(run->mmio.data, len);
            bool ok = run->mmio.is_write ? mmio_.write(run->mmio.phys_addr, d) : mmio_.read(run->mmio.phys_addr, d);
            if (!ok && unclaimed_rl.allow())
                log::debug("unclaimed MMIO {} at {:#x} len {}", run->mmio.is_write ? "write" : "read",
                           run->mmio.phys_addr, len);
            return true;
        }
        case KVM_EXIT_SHUTDOWN: {
            std::string what = "triple fault (KVM_EXIT_SHUTDOWN): the guest CPU shut down after an unhandled fault";
            try {
                // AMD SVM reinitialises the vCPU on a shutdown intercept, so the
                // faulting state is gone and the registers show the reset vector.
                auto r = vcpus_[index]->get_regs();
                auto s = vcpus_[index]->get_sregs();
                if (r.rip == 0xfff0 && s.cs.base == 0xffff0000)
                    what += " (the host's KVM reset the vCPU on shutdown, as on AMD SVM: the registers below are the "
                            "reset state, not the faulting one)";
            } catch (const Error&) {
            }
            crash(index, what);
            return false;
        }
        case KVM_EXIT_FAIL_ENTRY:
            crash(index, fmt::format("KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason {:#x})",
                                     run->fail_entry.hardware_entry_failure_reason));
            return false;
        case KVM_EXIT_INTERNAL_ERROR: {
            std::string what = fmt::format("KVM internal error (KVM_EXIT_INTERNAL_ERROR, suberror {})",
                                           run->internal.suberror);
            if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
                what += ": the host's KVM could not emulate the instruction below. On nested hosts without "
                        "hardware virtualization underneath (see tests/guest/README.md), guest ring-0 code is emulated and "
                        "instructions such as int3, iretq or xrstor are not; run the guest inside the "
                        "software-emulated test host (tests/guest/testhost.sh) or on a machine with VT-x/AMD-V";
            crash(index, what);
            return false;
        }
        case KVM_EXIT_SYSTEM_EVENT:
            switch (run->system_event.type) {
                case KVM_SYSTEM_EVENT_SHUTDOWN: exit_.request(ExitReason::PowerOff); break;
                case KVM_SYSTEM_EVENT_RESET: exit_.request(ExitReason::Reboot, "guest reset (system event)"); break;
                case KVM_SYSTEM_EVENT_CRASH: exit_.request(ExitReason::Panic, "guest crash (system event)"); break;
                default: crash(index, fmt::format("unknown system event {}", run->system_event.type));
            }
            return false;
        case KVM_EXIT_HLT:
            // Only reachable without an in-kernel LAPIC, which we always create.
            crash(index, "vCPU halted with no way to wake up (KVM_EXIT_HLT)");
            return false;
        default:
            crash(index, fmt::format("unexpected KVM exit reason {}", run->exit_reason));
            return false;
    }
}

void Machine::vcpu_loop(size_t index) {
    char name[16];
    std::snprintf(name, sizeof name, "vcpu%zu", index);
    pthread_setname_np(pthread_self(), name);
    on_thread_start(ThreadRole::Vcpu);
    Vcpu& v = *vcpus_[index];
    try {
        while (!stopping_.load()) {
            if (index == 0 && !first_run_reported_.exchange(true)) {
                // Time of entering the guest for the first time (not of the
                // first exit, which comes after the kernel decompressed itself).
                double ms = ms_since_start();
                if (cfg_.boot_report) std::fprintf(stderr, "vmm: boot: first KVM_RUN at %.1f ms\n", ms);
            }
            park_if_paused(index);
            if (stopping_.load()) break;
            int r = v.run();
            if (r < 0) continue;  // EINTR/EAGAIN: kicked; re-check stopping_ and paused_
            if (!handle_exit(index)) break;
        }
    } catch (const std::exception& e) {
        exit_.request(ExitReason::Error, fmt::format("vCPU {}: {}", index, e.what()));
    }
}

void Machine::park_if_paused(size_t index) {
    std::unique_lock lk(pause_mu_);
    if (!paused_) return;
    ++parked_;
    pause_cv_.notify_all();
    pause_cv_.wait(lk, [this] { return !paused_ || stopping_.load(); });
    --parked_;
    // The kick that parked us set immediate_exit; clear it or KVM_RUN
    // returns at once forever.
    vcpus_[index]->run_struct()->immediate_exit = 0;
}

void Machine::stop_vcpus() {
    {
        std::lock_guard lk(pause_mu_);
        stopping_.store(true);
    }
    pause_cv_.notify_all();
    for (size_t i = 0; i < threads_.size(); ++i) {
        if (!threads_[i].joinable()) continue;
        // immediate_exit covers a kick that lands just before KVM_RUN.
        vcpus_[i]->run_struct()->immediate_exit = 1;
        pthread_kill(threads_[i].native_handle(), kKickSignal);
    }
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR2, SIGALRM}) sigaddset(&set, s);
    return set;
}

void Machine::event_loop() {
    sigset_t set = stop_signals();
    Fd sfd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sfd) throw_errno("signalfd");

    // Console input: the terminal (with the Ctrl-A escape) and the console
    // sockets. Each keeps what its device had no room for yet (flow control
    // instead of dropping keystrokes).
    auto to_serial = [this](std::span<const uint8_t> b) { return serial_->enqueue_input(b); };
    auto to_console = [this](std::span<const uint8_t> b) { return console_->enqueue_input(b); };
    struct Input {
        std::function<size_t(std::span<const uint8_t>)> sink;
        std::deque<uint8_t> pending;
    };
    Input tty{console_ && cfg_.console == SerialMode::Tty ? std::function<size_t(std::span<const uint8_t>)>(to_console)
                                                          : to_serial,
              {}};
    Input serial_sock{to_serial, {}}, console_sock{to_console, {}};
    bool escape = false;  // saw Ctrl-A
    bool in_open = console_in_ >= 0;
    auto flush = [](Input& in) {
        while (!in.pending.empty()) {
            std::vector<uint8_t> chunk(in.pending.begin(), in.pending.end());
            size_t took = in.sink(chunk);
            in.pending.erase(in.pending.begin(), in.pending.begin() + static_cast<long>(took));
            if (took == 0) break;
        }
    };
    while (!exit_.requested()) {
        bool waiting = !tty.pending.empty() || !serial_sock.pending.empty() || !console_sock.pending.empty();
        pollfd fds[8] = {{exit_.fd(), POLLIN, 0},
                         {sfd.get(), POLLIN, 0},
                         {in_open && tty.pending.empty() ? console_in_ : -1, POLLIN, 0},
                         {tasks_ready_.fd(), POLLIN, 0},
                         {serial_sock_ ? serial_sock_->listen_fd() : -1, POLLIN, 0},
                         {serial_sock_ && serial_sock.pending.empty() ? serial_sock_->client_fd() : -1, POLLIN, 0},
                         {console_sock_ ? console_sock_->listen_fd() : -1, POLLIN, 0},
                         {console_sock_ && console_sock.pending.empty() ? console_sock_->client_fd() : -1, POLLIN, 0}};
        int wait_ms = waiting ? 10 : -1;
        if (cfg_.timeout_s) {
            // Counted from the VMM's start, not this boot's, so that it also
            // ends a --reboot loop.
            double left = cfg_.timeout_s * 1000.0 - ms_since_start();
            if (left <= 0) {
                exit_.request(ExitReason::Timeout, fmt::format("the VM ran longer than --timeout {} s", cfg_.timeout_s));
                break;
            }
            int l = static_cast<int>(left) + 1;
            wait_ms = wait_ms < 0 ? l : std::min(wait_ms, l);
        }
        int r = ::poll(fds, 8, wait_ms);
        if (r < 0 && errno != EINTR) throw_errno("poll");
        if (fds[3].revents & POLLIN) run_deferred();
        if (fds[1].revents & POLLIN) {
            signalfd_siginfo si{};
            if (::read(sfd.get(), &si, sizeof si) == sizeof si)
                exit_.request(ExitReason::Signal, fmt::format("stopped by signal {}", strsignal(static_cast<int>(si.ssi_signo))),
                              static_cast<int>(si.ssi_signo));
        }
        if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[256];
            ssize_t n = ::read(console_in_, buf, sizeof buf);
            if (n <= 0) {
                if (n == 0 || (errno != EINTR && errno != EAGAIN)) in_open = false;
            } else {
                for (ssize_t i = 0; i < n; ++i) {
                    uint8_t c = buf[i];
                    if (escape) {
                        escape = false;
                        if (c == 'x' || c == 'X') {
                            exit_.request(ExitReason::Signal, "quit from the console (Ctrl-A x)", SIGINT);
                            break;
                        }
                        if (c != 0x01) tty.pending.push_back(0x01);
                        tty.pending.push_back(c);
                    } else if (c == 0x01) {
                        escape = true;
                    } else {
                        tty.pending.push_back(c);
                    }
                }
            }
        }
        auto serve = [](ConsoleSocket* sock, short listen_ev, short client_ev, Input& in) {
            if (!sock) return;
            if (listen_ev & POLLIN) sock->accept_client();
            if (client_ev & (POLLIN | POLLHUP | POLLERR)) {
                uint8_t buf[256];
                size_t n = sock->read_input(buf);
                in.pending.insert(in.pending.end(), buf, buf + n);
            }
        };
        serve(serial_sock_.get(), fds[4].revents, fds[5].revents, serial_sock);
        serve(console_sock_.get(), fds[6].revents, fds[7].revents, console_sock);
        flush(tty);
        flush(serial_sock);
        if (console_) flush(console_sock);
    }
}

VmInfo Machine::info() {
    VmInfo i;
    i.config = cfg_;
    i.uptime_s = (ms_since_start() - created_ms_) / 1000.0;
    std::lock_guard lk(pause_mu_);
    i.state = exit_.requested() || stopping_.load() ? VmState::ShuttingDown
              : paused_                             ? VmState::Paused
                                                    : VmState::Running;
    return i;
}

void Machine::pause() {
    std::unique_lock lk(pause_mu_);
    if (stopping_.load() || exit_.requested()) fail("the VM is shutting down");
    if (paused_) fail("the VM is already paused");
    paused_ = true;
    for (size_t i = 0; i < threads_.size(); ++i) {
        vcpus_[i]->run_struct()->immediate_exit = 1;
        pthread_kill(threads_[i].native_handle(), kKickSignal);
    }
    // Every vCPU thread that is still running parks; one that already ended
    // (the VM is going down) never will, hence the deadline.
    if (!pause_cv_.wait_for(lk, std::chrono::seconds(5), [this] { return stopping_.load() || parked_ == threads_.size(); })) {
        paused_ = false;
        pause_cv_.notify_all();
        fail("not every vCPU stopped within 5 s; the VM keeps running");
    }
    log::info("VM paused");
}

void Machine::resume() {
    {
        std::lock_guard lk(pause_mu_);
        if (!paused_) fail("the VM is not paused");
        paused_ = false;
    }
    pause_cv_.notify_all();
    log::info("VM resumed");
}

void Machine::power_button() {
    {
        std::lock_guard lk(pause_mu_);
        if (paused_) fail("the VM is paused: resume it first, or the guest cannot react");
    }
    acpi_pm_->power_button();
    log::info("ACPI power button pressed");
}

void Machine::stop() {
    exit_.request(ExitReason::Stopped, "stopped through the control API");
}

void Machine::reboot() {
    exit_.request(ExitReason::Reboot, "reset through the control API");
}

std::vector<DeviceCounters> Machine::counters() {
    std::vector<DeviceCounters> out;
    for (auto& t : virtio_) out.push_back({t->device().name(), t->counters()});
    return out;
}

void Machine::set_balloon_target(uint64_t bytes) {
    if (!balloon_) fail("this VM has no balloon device (start it with --balloon)");
    check::balloon_size(bytes, cfg_.memory, "balloon target");
    balloon_->set_target_pages(static_cast<uint32_t>(bytes / virtio::kBalloonPageSize));
    log::info("balloon target set to {} MiB", bytes >> 20);
}

ExitReason Machine::run() {
    {
        std::lock_guard lk(pause_mu_);  // pause() walks threads_ from the API thread
        for (size_t i = 0; i < vcpus_.size(); ++i) threads_.emplace_back(&Machine::vcpu_loop, this, i);
    }
    // Set-up is done: from here the main thread only serves the event loop
    // and the devices' activation and reset. Under --reboot it rebuilds the
    // whole VM (opening files, creating a new KVM VM) at every reboot, so it
    // stays unconfined then (docs/security.md).
    if (!cfg_.allow_reboot) on_thread_start(ThreadRole::Main);
    try {
        event_loop();
    } catch (const std::exception& e) {
        exit_.request(ExitReason::Error, e.what());
    }
    stop_vcpus();
    return exit_.reason();
}

}  // namespace vmm
