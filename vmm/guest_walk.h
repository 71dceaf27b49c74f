// Decoding guest state for crash reports: linear -> guest-physical address
// translation through the guest's own page tables (read via GuestMemory, so
// a corrupt table can only yield "not mapped"), and a register dump.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <string>

#include "vmm/core/guest_memory.h"

namespace vmm {

// Supports paging off, 32-bit (with 4 MiB pages), PAE and 4-level long mode.
std::optional<uint64_t> translate_linear(const GuestMemory& mem, const kvm_sregs& s, uint64_t linear);

// Multi-line register dump plus up to 16 instruction bytes at CS:RIP.
std::string describe_vcpu_state(const GuestMemory& mem, const kvm_regs& r, const kvm_sregs& s);

}  // namespace vmm
