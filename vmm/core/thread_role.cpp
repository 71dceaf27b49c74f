#include "vmm/core/thread_role.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace vmm {

namespace {
std::atomic<ThreadStartHook> g_hook{nullptr};
}

const char* thread_role_name(ThreadRole role) {
    switch (role) {
        case ThreadRole::Main: return "main";
        case ThreadRole::Vcpu: return "vcpu";
        case ThreadRole::Io: return "io";
        case ThreadRole::Api: return "api";
    }
    return "?";
}

void thread_start_failed(ThreadRole role, const char* what) {
    std::fprintf(stderr, "vmm: error: %s thread: %s\n", thread_role_name(role), what);
    std::fflush(stderr);
    ::syscall(SYS_exit_group, 1);
    __builtin_unreachable();
}

void set_thread_start_hook(ThreadStartHook hook) { g_hook.store(hook); }

void on_thread_start(ThreadRole role) {
    if (auto hook = g_hook.load()) hook(role);
}

}  // namespace vmm
