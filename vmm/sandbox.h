// Process-wide hardening done once, before the VM is built: which inherited
// descriptors survive, and (later) the privileges the process keeps.
#pragma once

#include <set>
#include <string_view>

namespace vmm {

// The descriptor numbers that `text` names as /dev/fd/N or /proc/self/fd/N
// (a shell's `<(...)`, or a file a parent opened for us). Numbers below 3
// and ones that do not fit an int are left out.
std::set<int> fds_named_in(std::string_view text);

// Closes every descriptor above 2 except those in `keep`: descriptors a
// shell or CI runner left open (without O_CLOEXEC) would otherwise stay
// open in the process the guest talks to.
void close_inherited_fds(const std::set<int>& keep);

}  // namespace vmm
