// `vmm ctl`: a small client of the control API (docs/api.md). Sends one
// request to a running VMM's socket and prints the result.
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vmm/core/error.h"

namespace vmm {

// Exit statuses of `vmm ctl`.
enum CtlStatus : int { kCtlOk = 0, kCtlError = 1, kCtlNoConnect = 2 };

// A failure of the client itself (not an error reply); `status` is the exit
// status it means.
class CtlError : public Error {
public:
    CtlError(const std::string& what, int status) : Error(what), status(status) {}
    int status;
};

// Connects to `socket`, sends `request` as one line and returns the one
// response line, parsed. Throws CtlError: kCtlNoConnect when nobody listens
// there, kCtlError on a timeout, a closed connection or a malformed reply.
nlohmann::json ctl_call(const std::string& socket, const nlohmann::json& request,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));

// `vmm ctl --socket PATH COMMAND [ARG]` (args without "ctl"). Prints the
// result (pretty JSON) to `out`, errors to `err` as
// "vmm ctl: error: <code>: <message>"; returns a CtlStatus. Never throws.
int ctl_main(const std::vector<std::string>& args);
int ctl_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace vmm
