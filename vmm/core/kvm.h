// RAII wrappers of the KVM file descriptors: the system fd (/dev/kvm), a VM
// fd and a vCPU fd with its mmap'ed kvm_run. Only thin, checked ioctls here:
// what the VM does with them lives in vmm/.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/core/fd.h"

namespace vmm {

class Kvm {
public:
    // Opens /dev/kvm (or `path`), checks the API version. Throws vmm::Error
    // with a hint when the device is missing or not accessible.
    explicit Kvm(const std::string& path = "/dev/kvm");
    int fd() const { return fd_.get(); }
    int check_extension(long cap) const;
    // Throws "KVM lacks <name> (KVM_CAP_...)" if the capability is missing.
    void require(long cap, const char* name) const;
    int max_vcpus() const;
    size_t vcpu_mmap_size() const;
    std::vector<kvm_cpuid_entry2> supported_cpuid() const;

private:
    Fd fd_;
};

class Vcpu;

class Vm {
public:
    explicit Vm(const Kvm& kvm);
    int fd() const { return fd_.get(); }
    const Kvm& kvm() const { return kvm_; }

    void set_tss_addr(uint64_t addr);
    void set_identity_map_addr(uint64_t addr);
    void create_irqchip();
    void create_pit2();
    void set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags = 0);
    // Drive a legacy IRQ line of the in-kernel PIC/IOAPIC.
    void irq_line(uint32_t irq, bool level);
    void signal_msi(uint64_t address, uint32_t data);
    // Register eventfds with KVM (ioeventfd on a PIO/MMIO address, irqfd on a GSI).
    void ioeventfd(int efd, uint64_t addr, uint32_t len, bool pio, bool deassign = false);
    void irqfd(int efd, uint32_t gsi, bool deassign = false);
    void set_gsi_routing(const std::vector<kvm_irq_routing_entry>& entries);

private:
    const Kvm& kvm_;
    Fd fd_;
};

class Vcpu {
public:
    Vcpu(const Vm& vm, uint32_t id);
    Vcpu(const Vcpu&) = delete;
    Vcpu& operator=(const Vcpu&) = delete;
    ~Vcpu();
    uint32_t id() const { return id_; }
    int fd() const { return fd_.get(); }
    kvm_run* run_struct() const { return run_; }

    // KVM_RUN; returns 0, or -errno for EINTR/EAGAIN (caller decides).
    // Throws on any other error.
    int run();

    kvm_regs get_regs() const;
    void set_regs(const kvm_regs& r);
    kvm_sregs get_sregs() const;
    void set_sregs(const kvm_sregs& s);
    kvm_fpu get_fpu() const;
    void set_fpu(const kvm_fpu& f);
    void set_msrs(const std::vector<kvm_msr_entry>& msrs);
    void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    kvm_lapic_state get_lapic() const;
    void set_lapic(const kvm_lapic_state& l);
    kvm_mp_state get_mp_state() const;

private:
    uint32_t id_;
    Fd fd_;
    kvm_run* run_ = nullptr;
    size_t run_size_ = 0;
};

// Request numbers of the ioctls this file issues with its own struct
// layouts (see kvm.cpp); <linux/kvm.h>'s differ in C++. Seccomp filters
// must list these.
unsigned long kvm_set_gsi_routing_request();

}  // namespace vmm
