#include "vmm/sandbox.h"

#include <dirent.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "vmm/core/error.h"
#include "vmm/core/thread_role.h"

namespace vmm {

std::set<int> fds_named_in(std::string_view text) {
    std::set<int> fds;
    for (std::string_view prefix : {std::string_view("/dev/fd/"), std::string_view("/proc/self/fd/")}) {
        for (size_t at = text.find(prefix); at != std::string_view::npos; at = text.find(prefix, at + 1)) {
            size_t i = at + prefix.size();
            long long n = 0;
            size_t digits = 0;
            while (i < text.size() && text[i] >= '0' && text[i] <= '9' && n <= INT_MAX) {
                n = n * 10 + (text[i] - '0');
                ++i;
                ++digits;
            }
            if (digits > 0 && n > 2 && n <= INT_MAX) fds.insert(static_cast<int>(n));
        }
    }
    return fds;
}

void close_inherited_fds(const std::set<int>& keep) {
    // close_range (Linux 5.9) over the gaps between the kept descriptors.
    bool ranges_ok = true;
    unsigned lo = 3;
    for (int fd : keep) {
        if (fd < 3) continue;
        if (static_cast<unsigned>(fd) > lo && ::close_range(lo, static_cast<unsigned>(fd) - 1, 0) != 0) {
            ranges_ok = false;
            break;
        }
        lo = static_cast<unsigned>(fd) + 1;
    }
    if (ranges_ok && ::close_range(lo, ~0u, 0) == 0) return;
    // Older kernels: close what /proc lists (after reading it all).
    std::vector<int> fds;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (dirent* e = ::readdir(d)) {
            int fd = std::atoi(e->d_name);
            if (fd > 2 && fd != ::dirfd(d) && !keep.contains(fd)) fds.push_back(fd);
        }
        ::closedir(d);
    }
    for (int fd : fds) ::close(fd);
}

namespace {

struct Caps {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
};

Caps get_caps() {
    Caps c;
    if (::syscall(SYS_capget, &c.header, c.data) != 0) throw_errno("capget");
    return c;
}

bool any(const Caps& c) {
    for (const auto& d : c.data)
        if (d.effective | d.permitted | d.inheritable) return true;
    return false;
}

void thread_start(ThreadRole role) {
    try {
        drop_capabilities();
    } catch (const std::exception& e) {
        thread_start_failed(role, e.what());
    }
    seccomp::confine_current(role);
}

}  // namespace

bool has_capabilities() { return any(get_caps()); }

void drop_capabilities() {
    Caps c = get_caps();
    // A thread started by one that already dropped them (or a process of an
    // ordinary user) has nothing to drop, and may be under a filter that
    // allows neither capset nor prctl.
    if (!any(c)) return;
    // The bounding set limits what an execve could give back; emptying it
    // needs CAP_SETPCAP. NO_NEW_PRIVS already keeps execve from granting
    // anything, and the filters forbid execve: this is the third fence.
    if (c.data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP)) {
        for (int cap = 0; cap <= 63; ++cap)
            if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) break;  // EINVAL: past the kernel's last capability
    }
    Caps none;
    if (::syscall(SYS_capset, &none.header, none.data) != 0) throw_errno("capset (dropping capabilities)");
}

void confine_threads(seccomp::Mode mode) {
    seccomp::enable(mode);
    set_thread_start_hook(thread_start);
}

}  // namespace vmm
