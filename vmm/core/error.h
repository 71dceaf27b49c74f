// The one error type for setup and host failures. main() turns it into a
// one-line message and a non-zero exit status. Guest-controlled data paths
// never throw across a thread boundary; they log and keep the VMM alive.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace vmm {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Throws Error("<what>: <strerror(errno)>").
[[noreturn]] inline void throw_errno(const std::string& what) {
    int e = errno;
    throw Error(fmt::format("{}: {}", what, std::strerror(e)));
}

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
    throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vmm
