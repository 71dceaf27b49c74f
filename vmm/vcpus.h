// The vCPUs of one VM: their KVM objects, one thread each running KVM_RUN,
// the dispatch of PIO and MMIO exits to the buses, and pause/resume for the
// control API. Application processors wait for INIT/SIPI in the in-kernel
// LAPIC; only the boot processor gets an entry state, from the boot source.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vmm/core/bus.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/exit_control.h"

namespace vmm {

class BootSource;

class VcpuSet {
public:
    // `boot_report`: print the time of the first KVM_RUN (--boot-report).
    VcpuSet(Vm& vm, const GuestMemory& mem, Bus& pio, Bus& mmio, ExitControl& exit, bool boot_report);
    ~VcpuSet();
    VcpuSet(const VcpuSet&) = delete;
    VcpuSet& operator=(const VcpuSet&) = delete;

    // Creates `count` vCPUs with `cpuid` (KVM_GET_SUPPORTED_CPUID, patched
    // per vCPU), the boot MSRs, FPU and LAPIC LINT set-up; `boot` sets up
    // vCPU 0's entry state.
    void create(uint32_t count, const std::vector<kvm_cpuid_entry2>& cpuid, bool tsc_deadline, BootSource& boot);
    // One thread per vCPU, from here until stop().
    void start();
    // Kicks every vCPU out of KVM_RUN and joins the threads. Idempotent.
    void stop();

    // Control API; thread-safe. pause() throws vmm::Error when the VM is
    // going down, already paused, or a vCPU did not park within 5 s.
    void pause();
    void resume();
    bool paused();
    bool stopping() const { return stopping_.load(); }

private:
    void loop(size_t index);
    bool handle_exit(size_t index);
    void crash(size_t index, const std::string& what);
    void park_if_paused(size_t index);

    Vm& vm_;
    const GuestMemory& mem_;
    Bus& pio_;
    Bus& mmio_;
    ExitControl& exit_;
    bool boot_report_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::thread> threads_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> first_run_reported_{false};
    // Pause: vCPU threads park on pause_cv_ while paused_ is set.
    std::mutex pause_mu_;
    std::condition_variable pause_cv_;
    bool paused_ = false;
    size_t parked_ = 0;
};

// Installs the no-op signal handler used to kick vCPU threads out of KVM_RUN.
void install_vcpu_kick_handler();

}  // namespace vmm
