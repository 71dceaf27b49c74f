#include "vmm/machine.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstring>
#include <deque>

#include "devices/acpi_pm.h"
#include "devices/serial.h"
#include "virtio/balloon.h"
#include "virtio/console.h"
#include "vmm/api.h"
#include "vmm/boot_clock.h"
#include "vmm/config_check.h"
#include "vmm/console_socket.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/output_file.h"

namespace vmm {

namespace x86 = arch::x86;

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
    chipset_ = std::make_unique<Chipset>(cfg_, vm_, layout_, pio_, mmio_, exit_, fd_writer(console_out_));
    devices_ = std::make_unique<DeviceManager>(DeviceManager::Host{
        cfg_, vm_, mem_, layout_, chipset_->pci(), chipset_->msi(),
        [this](std::function<void()> task) { defer(std::move(task)); }});
    // One KVM_GET_SUPPORTED_CPUID per VM: SMBIOS and the vCPUs both use it.
    const auto cpuid = kvm_.supported_cpuid();
    load_boot_source(cpuid);
    log::debug("startup: {} loaded at {:.1f} ms", cfg_.firmware.empty() ? "kernel" : "firmware", ms_since_start());
    vcpus_ = std::make_unique<VcpuSet>(vm_, mem_, pio_, mmio_, exit_, cfg_.boot_report);
    vcpus_->create(cfg_.cpus, cpuid, kvm_.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0, *boot_);
    log::debug("startup: vCPUs ready at {:.1f} ms", ms_since_start());
    // Last, so a client never sees a half-built VM; a socket in use fails
    // the start before the guest runs.
    if (!cfg_.api_socket.empty()) api_ = std::make_unique<ApiServer>(cfg_.api_socket, *this);
}

Machine::~Machine() {
    if (api_) api_->stop();  // no control requests while the VM comes apart
    if (vcpus_) vcpus_->stop();
    // Devices stop their I/O threads before guest memory goes away.
    devices_.reset();
}

void Machine::setup_memory() {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (auto& r : layout_.ram) ranges.emplace_back(r.gpa, r.size);
    mem_ = GuestMemory::create_anonymous(ranges, true, cfg_.hugepages);
    uint32_t slot = 0;
    for (auto& r : mem_.regions()) vm_.set_user_memory_region(slot++, r.gpa, r.size, r.host);
}

void Machine::load_boot_source(const std::vector<kvm_cpuid_entry2>& cpuid) {
    auto acpi = acpi_config(cfg_, layout_);
    auto smbios = smbios_config(cfg_, layout_, cpuid);
    BootContext ctx{cfg_,  vm_,   mem_,  layout_, acpi, smbios, devices_->boot_devices(), pio_, mmio_,
                    static_cast<uint32_t>(mem_.regions().size()), exit_};
    boot_->load(ctx);
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
    devices::Serial8250& serial = chipset_->serial();
    virtio::ConsoleDevice* console = devices_->console();
    ConsoleSocket* serial_host = chipset_->serial_socket();
    ConsoleSocket* console_host = devices_->console_socket();
    auto to_serial = [&serial](std::span<const uint8_t> b) { return serial.enqueue_input(b); };
    auto to_console = [console](std::span<const uint8_t> b) { return console->enqueue_input(b); };
    struct Input {
        std::function<size_t(std::span<const uint8_t>)> sink;
        std::deque<uint8_t> pending;
    };
    Input tty{console && cfg_.console == SerialMode::Tty ? std::function<size_t(std::span<const uint8_t>)>(to_console)
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
        pollfd fds[9] = {{exit_.fd(), POLLIN, 0},
                         {sfd.get(), POLLIN, 0},
                         {in_open && tty.pending.empty() ? console_in_ : -1, POLLIN, 0},
                         {tasks_ready_.fd(), POLLIN, 0},
                         {serial_host ? serial_host->listen_fd() : -1, POLLIN, 0},
                         {serial_host && serial_sock.pending.empty() ? serial_host->client_fd() : -1, POLLIN, 0},
                         {console_host ? console_host->listen_fd() : -1, POLLIN, 0},
                         {console_host && console_sock.pending.empty() ? console_host->client_fd() : -1, POLLIN, 0},
                         {chipset_->rtc_timer_fd(), POLLIN, 0}};
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
        int r = ::poll(fds, 9, wait_ms);
        if (r < 0 && errno != EINTR) throw_errno("poll");
        if (fds[8].revents & POLLIN) chipset_->rtc_timer_fired();
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
        serve(serial_host, fds[4].revents, fds[5].revents, serial_sock);
        serve(console_host, fds[6].revents, fds[7].revents, console_sock);
        flush(tty);
        flush(serial_sock);
        if (console) flush(console_sock);
    }
}

VmInfo Machine::info() {
    VmInfo i;
    i.config = cfg_;
    i.uptime_s = (ms_since_start() - created_ms_) / 1000.0;
    i.state = exit_.requested() || vcpus_->stopping() ? VmState::ShuttingDown
              : vcpus_->paused()                      ? VmState::Paused
                                                      : VmState::Running;
    return i;
}

void Machine::pause() {
    if (exit_.requested()) fail("the VM is shutting down");
    vcpus_->pause();
}

void Machine::resume() {
    vcpus_->resume();
}

void Machine::power_button() {
    if (vcpus_->paused()) fail("the VM is paused: resume it first, or the guest cannot react");
    chipset_->acpi_pm().power_button();
    log::info("ACPI power button pressed");
}

void Machine::stop() {
    exit_.request(ExitReason::Stopped, "stopped through the control API");
}

void Machine::reboot() {
    exit_.request(ExitReason::Reboot, "reset through the control API");
}

std::vector<DeviceCounters> Machine::counters() {
    return devices_->counters();
}

void Machine::set_balloon_target(uint64_t bytes) {
    virtio::BalloonDevice* balloon = devices_->balloon();
    if (!balloon) fail("this VM has no balloon device (start it with --balloon)");
    check::balloon_size(bytes, cfg_.memory, "balloon target");
    balloon->set_target_pages(static_cast<uint32_t>(bytes / virtio::kBalloonPageSize));
    log::info("balloon target set to {} MiB", bytes >> 20);
}

ExitReason Machine::run() {
    vcpus_->start();
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
    vcpus_->stop();
    return exit_.reason();
}

}  // namespace vmm
