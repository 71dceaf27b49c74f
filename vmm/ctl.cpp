// `vmm ctl`: the command-line client of the control API (see ctl.h).
#include "vmm/ctl.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "vmm/core/fd.h"

namespace vmm {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxReply = 16 << 20;  // far above any real reply; a bound against a runaway peer

using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) throw CtlError(fmt::format("poll: {}", std::strerror(errno)), kCtlError);
    }
}

std::string seconds(std::chrono::milliseconds t) {
    return t.count() % 1000 ? fmt::format("{:.1f} s", t.count() / 1000.0) : fmt::format("{} s", t.count() / 1000);
}

}  // namespace

json ctl_call(const std::string& socket, const json& request, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket.empty() || socket.size() >= sizeof addr.sun_path)
        throw CtlError(fmt::format("cannot connect to \"{}\": not a usable socket path", socket), kCtlNoConnect);
    std::memcpy(addr.sun_path, socket.data(), socket.size());
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw CtlError(fmt::format("socket: {}", std::strerror(errno)), kCtlError);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int e = errno;
        std::string why = e == EAGAIN ? "the VMM is not accepting connections (backlog full)" : std::strerror(e);
        throw CtlError(fmt::format("cannot connect to {}: {} (is a VMM running with --api-socket {}?)", socket, why,
                                   socket),
                       kCtlNoConnect);
    }

    std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    for (std::size_t done = 0; done < line.size();) {
        ssize_t n = ::send(fd.get(), line.data() + done, line.size() - done, MSG_NOSIGNAL);
        if (n >= 0) {
            done += static_cast<std::size_t>(n);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_for(fd.get(), POLLOUT, deadline))
                throw CtlError(fmt::format("timeout: the VMM at {} did not take the request within {}", socket,
                                           seconds(timeout)),
                               kCtlError);
        } else if (errno != EINTR) {
            throw CtlError(fmt::format("sending to {}: {}", socket, std::strerror(errno)), kCtlError);
        }
    }

    std::string reply;
    for (;;) {
        auto nl = reply.find('\n');
        if (nl != std::string::npos) {
            reply.resize(nl);
            break;
        }
        if (reply.size() > kMaxReply) throw CtlError("the VMM's reply is too long", kCtlError);
        char buf[16384];
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n > 0) {
            reply.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0) {
            throw CtlError(fmt::format("the VMM at {} closed the connection without replying", socket), kCtlError);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_for(fd.get(), POLLIN, deadline))
                throw CtlError(fmt::format("timeout: no reply from the VMM at {} within {}", socket, seconds(timeout)),
                               kCtlError);
        } else if (errno != EINTR) {
            throw CtlError(fmt::format("reading from {}: {}", socket, std::strerror(errno)), kCtlError);
        }
    }
    json resp = json::parse(reply, nullptr, false);
    if (resp.is_discarded() || !resp.is_object() || !resp.contains("ok") || !resp["ok"].is_boolean())
        throw CtlError("the VMM's reply is not a valid response", kCtlError);
    return resp;
}

int ctl_main(const std::vector<std::string>& args) { return ctl_main(args, std::cout, std::cerr); }

int ctl_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    CLI::App app{"vmm ctl: send one command to a running VMM's control API", "vmm ctl"};
    std::string socket, command, arg;
    std::string timeout_text = "10";
    app.add_option("--socket", socket, "The VMM's control socket (its --api-socket)")->required();
    // Parsed below rather than by CLI11, whose range message ("Value abc not
    // in range 0.100000 to 3600.000000") does not say what is wrong.
    app.add_option("--timeout", timeout_text, "Seconds to wait for the reply, 0.1 to 3600")->capture_default_str();
    app.add_option("command", command, "info, pause, resume, power_button (or shutdown), stop, reboot, counters, "
                                       "balloon SIZE, ping")
        ->required();
    app.add_option("arg", arg, "balloon: the target, in bytes with a suffix (512M, 1G) or a bare number of MiB");
    app.footer(
        "Prints the result as JSON. Exit status: 0 success, 1 error (from the VMM or the client),\n"
        "2 cannot connect to the socket.");
    std::vector<std::string> rev(args.rbegin(), args.rend());  // CLI11 consumes a reversed vector
    try {
        app.parse(rev);
    } catch (const CLI::CallForHelp&) {
        out << app.help();
        return kCtlOk;
    } catch (const CLI::ParseError& e) {
        err << "vmm ctl: error: " << e.what() << " (see vmm ctl --help)\n";
        return kCtlError;
    }

    double timeout_s = 0;
    {
        char* end = nullptr;
        errno = 0;
        timeout_s = std::strtod(timeout_text.c_str(), &end);
        if (timeout_text.empty() || *end || errno || !(timeout_s >= 0.1 && timeout_s <= 3600)) {
            err << "vmm ctl: error: --timeout " << timeout_text << ": expected seconds from 0.1 to 3600\n";
            return kCtlError;
        }
    }

    json request = {{"id", 1}, {"cmd", command}};
    if (command == "balloon" && !arg.empty()) {
        request["args"] = {{"target", arg}};
    } else if (!arg.empty()) {
        err << "vmm ctl: error: " << command << " takes no argument\n";
        return kCtlError;
    }
    try {
        auto timeout = std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
        json resp = ctl_call(socket, request, timeout);
        if (resp["ok"].get<bool>()) {
            out << (resp.contains("result") ? resp["result"] : json::object()).dump(2) << "\n";
            return kCtlOk;
        }
        const json& e = resp.contains("error") && resp["error"].is_object() ? resp["error"] : json::object();
        auto field = [&](const char* k) {
            return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string("?");
        };
        err << "vmm ctl: error: " << field("code") << ": " << field("message") << "\n";
        return kCtlError;
    } catch (const CtlError& e) {
        err << "vmm ctl: error: " << e.what() << "\n";
        return e.status;
    } catch (const std::exception& e) {
        err << "vmm ctl: error: " << e.what() << "\n";
        return kCtlError;
    }
}

}  // namespace vmm
