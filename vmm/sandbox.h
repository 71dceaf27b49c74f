// Process-wide hardening done once, before the VM is built: which inherited
// descriptors survive, and what each thread gives up when it starts
// (capabilities, then the system calls its seccomp filter does not allow).
#pragma once

#include <set>
#include <string_view>

#include "vmm/seccomp.h"

namespace vmm {

// The descriptor numbers that `text` names as /dev/fd/N or /proc/self/fd/N
// (a shell's `<(...)`, or a file a parent opened for us). Numbers below 3
// and ones that do not fit an int are left out.
std::set<int> fds_named_in(std::string_view text);

// Closes every descriptor above 2 except those in `keep`: descriptors a
// shell or CI runner left open (without O_CLOEXEC) would otherwise stay
// open in the process the guest talks to.
void close_inherited_fds(const std::set<int>& keep);

// Empties the calling thread's capability sets (effective, permitted,
// inheritable, and with them the ambient set) and, if it may, its bounding
// set. Capabilities belong to threads in Linux, so every thread does this
// for itself; threads it starts afterwards inherit the empty sets. Does
// nothing (and makes no call but capget) when the sets are already empty.
// Throws vmm::Error if the kernel refuses.
void drop_capabilities();

// True if the calling thread holds any capability (effective, permitted or
// inheritable). For the tests and the docs' examples.
bool has_capabilities();

// Makes every thread that announces its role (vmm/core/thread_role.h) drop
// its capabilities and then install its role's seccomp filter (mode Off:
// only the former). Also sets PR_SET_NO_NEW_PRIVS. Call once, before the
// VM's threads start. A thread that cannot do either ends the process with
// status 1: it must not run with more than it should.
void confine_threads(seccomp::Mode mode);

}  // namespace vmm
