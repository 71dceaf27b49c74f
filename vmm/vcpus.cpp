#include "vmm/vcpus.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "arch/x86_64/cpu.h"
#include "vmm/boot_clock.h"
#include "vmm/boot_source.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/core/thread_role.h"
#include "vmm/guest_walk.h"

namespace vmm {

namespace x86 = arch::x86;

namespace {

constexpr int kKickSignal = SIGUSR1;

void kick_handler(int) {}

}  // namespace

void install_vcpu_kick_handler() {
    struct sigaction sa {};
    sa.sa_handler = kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kKickSignal, &sa, nullptr);
}

VcpuSet::VcpuSet(Vm& vm, const GuestMemory& mem, Bus& pio, Bus& mmio, ExitControl& exit, bool boot_report)
    : vm_(vm), mem_(mem), pio_(pio), mmio_(mmio), exit_(exit), boot_report_(boot_report) {}

VcpuSet::~VcpuSet() { stop(); }

void VcpuSet::create(uint32_t count, const std::vector<kvm_cpuid_entry2>& cpuid, bool tsc_deadline,
                     BootSource& boot) {
    for (uint32_t i = 0; i < count; ++i) {
        auto v = std::make_unique<Vcpu>(vm_, i);
        auto entries = cpuid;
        x86::patch_cpuid(entries, i, count, tsc_deadline);
        v->set_cpuid(entries);
        v->set_msrs(x86::boot_msrs());
        v->set_fpu(x86::initial_fpu());
        auto lapic = v->get_lapic();
        x86::setup_lapic_lint(lapic);
        v->set_lapic(lapic);
        if (i == 0) boot.setup_boot_cpu(*v);
        vcpus_.push_back(std::move(v));
    }
}

void VcpuSet::start() {
    std::lock_guard lk(pause_mu_);  // pause() walks threads_ from the API thread
    for (size_t i = 0; i < vcpus_.size(); ++i) threads_.emplace_back(&VcpuSet::loop, this, i);
}

void VcpuSet::crash(size_t index, const std::string& what) {
    std::string state;
    try {
        state = describe_vcpu_state(mem_, vcpus_[index]->get_regs(), vcpus_[index]->get_sregs());
    } catch (const Error& e) {
        state = fmt::format("  (registers unavailable: {})\n", e.what());
    }
    exit_.request(ExitReason::Crash, fmt::format("vCPU {}: {}\n{}", index, what, state));
}

// Returns false when the vCPU loop must end.
bool VcpuSet::handle_exit(size_t index) {
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

void VcpuSet::loop(size_t index) {
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
                if (boot_report_) std::fprintf(stderr, "vmm: boot: first KVM_RUN at %.1f ms\n", ms);
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

void VcpuSet::park_if_paused(size_t index) {
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

void VcpuSet::stop() {
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

void VcpuSet::pause() {
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

void VcpuSet::resume() {
    {
        std::lock_guard lk(pause_mu_);
        if (!paused_) fail("the VM is not paused");
        paused_ = false;
    }
    pause_cv_.notify_all();
    log::info("VM resumed");
}

bool VcpuSet::paused() {
    std::lock_guard lk(pause_mu_);
    return paused_;
}

}  // namespace vmm
