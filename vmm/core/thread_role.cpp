#include "vmm/core/thread_role.h"

#include <atomic>

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

void set_thread_start_hook(ThreadStartHook hook) { g_hook.store(hook); }

void on_thread_start(ThreadRole role) {
    if (auto hook = g_hook.load()) hook(role);
}

}  // namespace vmm
