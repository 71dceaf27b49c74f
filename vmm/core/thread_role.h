// What each of the VMM's threads is for. A thread announces its role once it
// starts (on_thread_start); the vmm layer hooks that to confine the thread
// with the role's seccomp filter (vmm/seccomp.h). The core only carries the
// announcement, so devices need not know about seccomp.
#pragma once

namespace vmm {

enum class ThreadRole {
    Main,  // the event loop: signals, timeouts, console input, device activation and reset
    Vcpu,  // KVM_RUN and the port/MMIO exits it returns
    Io,    // virtio queue workers, disk thread pools, the serial ports' host side
    Api,   // the control API server
};

const char* thread_role_name(ThreadRole role);

// For a thread-start hook that failed: prints "vmm: error: <role> thread:
// <what>" and ends the whole process at once (exit_group(1)). A thread that
// could not be confined must not run unconfined, nor unwind into code that
// assumes it was.
[[noreturn]] void thread_start_failed(ThreadRole role, const char* what);

using ThreadStartHook = void (*)(ThreadRole);
// Set once, before any thread starts; nullptr: no hook.
void set_thread_start_hook(ThreadStartHook hook);
// Called by each thread at its start (and by the main thread when set-up is done).
void on_thread_start(ThreadRole role);

}  // namespace vmm
