// The seccomp sandbox: one allow-list per thread role (vmm/core/thread_role.h),
// installed by each thread itself when it announces its role. The tables and
// the reasons for each entry are in seccomp.cpp; docs/security.md has them
// for users.
#pragma once

#include <string>
#include <vector>

#include "vmm/core/thread_role.h"

namespace vmm::seccomp {

enum class Mode {
    On,   // a forbidden call is reported on stderr and the VMM exits with status 1
    Log,  // a forbidden call is allowed and logged by the kernel (audit, dmesg)
    Off,  // no filters
};

// "on", "log", "off"; throws vmm::Error on anything else.
Mode parse_mode(const std::string& text, const std::string& what);

// Prepares the filters of `mode` (mode Off: nothing) and the SIGSYS report.
// Call once, before the VM's threads start. Also sets PR_SET_NO_NEW_PRIVS for
// the process, whatever the mode. vmm/sandbox.h's confine_threads calls it
// and makes each thread call confine_current.
void enable(Mode mode);

// Installs the calling thread's role filter in the mode enable() was given;
// a thread that cannot be confined ends the process with status 1.
void confine_current(ThreadRole role);

// The system calls a role may make (names; some only with the argument
// conditions listed in docs/security.md). For the docs and the tests.
std::vector<std::string> allowed(ThreadRole role);

// Installs `role`'s filter on the calling thread now (what the hook does).
// Throws vmm::Error if the kernel refuses it.
void confine(ThreadRole role, Mode mode);

}  // namespace vmm::seccomp
