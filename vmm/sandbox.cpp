#include "vmm/sandbox.h"

#include <dirent.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

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

}  // namespace vmm
