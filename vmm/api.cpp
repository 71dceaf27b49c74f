// The control API: the protocol (handle_request_line) and the UNIX-socket
// server that carries it (see api.h and docs/api.md).
#include "vmm/api.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/cli.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"

namespace vmm {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- protocol

// Nesting deeper than this is refused while parsing: nothing in the protocol
// needs it, and echoing a deeply nested id back would recurse in dump().
constexpr int kMaxDepth = 32;

// A request that is valid JSON but not a valid request: bad_request.
struct BadRequest {
    std::string message;
};

const char* const kCommands[] = {"balloon", "counters", "info",  "pause",    "ping",
                                 "power_button", "reboot", "resume", "shutdown", "stop"};

std::string command_list() {
    std::string s;
    for (const char* c : kCommands) s += (s.empty() ? "" : ", ") + std::string(c);
    return s;
}

bool is_command(const std::string& c) {
    for (const char* k : kCommands)
        if (c == k) return true;
    return false;
}

// Responses are dumped with invalid UTF-8 replaced: error messages may
// carry host paths in any encoding, and dump() must not throw.
std::string dump_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json error_response(const json& id, const char* code, const std::string& message) {
    return {{"id", id}, {"ok", false}, {"error", {{"code", code}, {"message", message}}}};
}

const char* state_name(VmState s) {
    switch (s) {
        case VmState::Running: return "running";
        case VmState::Paused: return "paused";
        case VmState::ShuttingDown: return "shutting_down";
    }
    return "unknown";
}

void no_args(const std::string& cmd, const json& args) {
    if (!args.empty()) throw BadRequest{"unknown argument \"" + args.begin().key() + "\" (" + cmd + " takes none)"};
}

uint64_t balloon_target(const json& args) {
    for (auto it = args.begin(); it != args.end(); ++it)
        if (it.key() != "target")
            throw BadRequest{"unknown argument \"" + it.key() + "\" for balloon (expected target)"};
    if (!args.contains("target")) throw BadRequest{"balloon: args.target is required (bytes, or a size such as \"512M\")"};
    const json& t = args["target"];
    if (t.is_number_unsigned()) return t.get<uint64_t>();
    if (t.is_string()) {
        try {
            return parse_size(t.get<std::string>(), "balloon target");
        } catch (const Error& e) {
            throw BadRequest{e.what()};
        }
    }
    throw BadRequest{"balloon: target must be a non-negative whole number of bytes or a size string such as \"512M\""};
}

json counters_json(const std::vector<DeviceCounters>& counters) {
    json devices = json::array();
    for (const auto& d : counters) {
        json values = json::object();
        for (const auto& [k, v] : d.values) values[k] = v;
        devices.push_back({{"device", d.device}, {"values", std::move(values)}});
    }
    return {{"devices", std::move(devices)}};
}

// Carries out a validated command; VmControl errors propagate.
json run_command(const std::string& cmd, const json& args, VmControl& vm) {
    if (cmd == "balloon") {
        uint64_t bytes = balloon_target(args);
        vm.set_balloon_target(bytes);
        return json::object();
    }
    no_args(cmd, args);
    if (cmd == "ping") return json::object();
    if (cmd == "info") {
        VmInfo i = vm.info();
        return {{"state", state_name(i.state)}, {"uptime_s", i.uptime_s}, {"config", config_to_json(i.config)}};
    }
    if (cmd == "counters") return counters_json(vm.counters());
    if (cmd == "pause") vm.pause();
    else if (cmd == "resume") vm.resume();
    else if (cmd == "power_button" || cmd == "shutdown") vm.power_button();
    else if (cmd == "stop") vm.stop();
    else if (cmd == "reboot") vm.reboot();
    return json::object();
}

json handle(std::string_view line, VmControl& vm) {
    json req;
    try {
        // Duplicate keys are refused as in config files: with nlohmann's
        // last-wins, {"cmd":"ping","cmd":"stop"} would look like a ping
        // to whoever reads the line and stop the VM.
        req = parse_strict_json(line, "request", kMaxDepth);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a huge number
        return error_response(nullptr, "bad_json", json_error_text(e.what()));
    } catch (const Error& e) {
        return error_response(nullptr, "bad_request", e.what());
    }
    if (!req.is_object()) return error_response(nullptr, "bad_request", "a request must be a JSON object");
    json id = req.contains("id") ? req["id"] : json(nullptr);
    try {
        for (auto it = req.begin(); it != req.end(); ++it)
            if (it.key() != "id" && it.key() != "cmd" && it.key() != "args")
                throw BadRequest{"unknown key \"" + it.key() + "\" in the request (expected id, cmd, args)"};
        if (!req.contains("cmd")) throw BadRequest{"the request has no \"cmd\""};
        if (!req["cmd"].is_string()) throw BadRequest{"\"cmd\" must be a string"};
        std::string cmd = req["cmd"].get<std::string>();
        if (!is_command(cmd))
            return error_response(id, "unknown_command",
                                  "unknown command \"" + cmd + "\" (valid: " + command_list() + ")");
        json args = json::object();
        if (req.contains("args")) {
            if (!req["args"].is_object()) throw BadRequest{"\"args\" must be a JSON object"};
            args = req["args"];
        }
        try {
            return {{"id", id}, {"ok", true}, {"result", run_command(cmd, args, vm)}};
        } catch (const BadRequest&) {
            throw;
        } catch (const Error& e) {
            return error_response(id, "failed", e.what());
        } catch (const std::exception& e) {
            return error_response(id, "failed", std::string("internal error: ") + e.what());
        }
    } catch (const BadRequest& e) {
        return error_response(id, "bad_request", e.message);
    }
}

}  // namespace

std::string handle_request_line(std::string_view line, VmControl& vm) {
    try {
        return dump_line(handle(line, vm));
    } catch (const std::exception& e) {
        // Out of memory and the like: still one well-formed line.
        return dump_line(error_response(nullptr, "failed", std::string("internal error: ") + e.what()));
    }
}

std::string too_long_response() {
    return dump_line(error_response(nullptr, "too_long",
                                    fmt::format("request line longer than {} bytes; closing the connection",
                                                kApiMaxLine)));
}

// ------------------------------------------------------------------ server

namespace {

constexpr std::size_t kMaxConns = 256;  // a bound on fds and buffers; far beyond real use
constexpr std::size_t kReadChunk = 16 * 1024;

sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());  // callers checked the length
    return a;
}

// Runs `f` at scope exit unless dismissed: undoes a half-made socket.
struct Cleanup {
    std::function<void()> f;
    ~Cleanup() {
        if (f) f();
    }
};

}  // namespace

ApiServer::ApiServer(std::string path, VmControl& vm) : path_(std::move(path)), vm_(vm) {
    create_socket();
    Cleanup undo{[this] { stop(); }};
    spare_ = Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    thread_.loop().add(listen_.get(), [this](uint32_t) { on_accept(); });
    thread_.start();
    undo.f = nullptr;
    log::info("control API listening on {}", path_);
}

ApiServer::~ApiServer() { stop(); }

// The socket is bound inside a fresh mode-0700 directory next to `path_`,
// made 0600, then renamed into place: at no moment can another user reach
// it, and the process-wide umask stays untouched (other threads may be
// creating files meanwhile).
void ApiServer::create_socket() {
    if (path_.empty()) fail("api socket: the path is empty");
    if (path_.size() >= sizeof(sockaddr_un{}.sun_path))
        fail("api socket {}: the path is too long (at most {} bytes)", path_, sizeof(sockaddr_un{}.sun_path) - 1);
    sockaddr_un addr = unix_addr(path_);

    struct stat st{};
    if (::lstat(path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) fail("api socket {}: the path exists and is not a socket", path_);
        Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!probe) throw_errno("api socket: socket");
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN)
            fail("api socket {} is in use (another process is listening on it)", path_);
        if (errno != ECONNREFUSED) throw_errno("api socket " + path_);
        // Nobody listens: a stale socket left by a VMM that did not exit cleanly.
        if (::unlink(path_.c_str()) != 0 && errno != ENOENT) throw_errno("api socket " + path_ + ": removing the stale socket");
        log::info("api socket {}: removed a stale socket", path_);
    } else if (errno != ENOENT) {
        throw_errno("api socket " + path_);
    }

    auto slash = path_.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    std::string tmpl = dir + (dir == "/" ? "" : "/") + ".vmm-api-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw_errno("api socket " + path_ + ": creating a private directory in " + dir);
    std::string tmpdir = buf.data();
    Cleanup rm_dir{[&] { ::rmdir(tmpdir.c_str()); }};
    Fd dirfd(::open(tmpdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd) throw_errno("api socket: " + tmpdir);
    // Bind by the short /proc path to the directory when the real one would not fit.
    std::string tmpsock = tmpdir + "/s";
    if (tmpsock.size() >= sizeof(addr.sun_path)) tmpsock = fmt::format("/proc/self/fd/{}/s", dirfd.get());
    Cleanup rm_sock{[&] { ::unlinkat(dirfd.get(), "s", 0); }};

    listen_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_) throw_errno("api socket: socket");
    sockaddr_un tmp_addr = unix_addr(tmpsock);
    if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&tmp_addr), sizeof tmp_addr) != 0)
        throw_errno("api socket " + path_ + ": bind");
    if (::fchmodat(dirfd.get(), "s", 0600, 0) != 0) throw_errno("api socket " + path_ + ": chmod");
    if (::listen(listen_.get(), 16) != 0) throw_errno("api socket " + path_ + ": listen");
    if (::renameat2(dirfd.get(), "s", AT_FDCWD, path_.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST) fail("api socket {} is in use (created by another process just now)", path_);
        // Filesystems without RENAME_NOREPLACE: the check above has to do.
        if ((errno != EINVAL && errno != ENOSYS) || ::renameat(dirfd.get(), "s", AT_FDCWD, path_.c_str()) != 0)
            throw_errno("api socket " + path_ + ": rename");
    }
    rm_sock.f = nullptr;

    if (::lstat(path_.c_str(), &st) != 0) throw_errno("api socket " + path_);
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    if (!S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0600) {
        ::unlink(path_.c_str());
        fail("api socket {}: mode is {:o}, not 0600", path_, st.st_mode & 07777);
    }
}

void ApiServer::stop() {
    if (stopped_) return;
    stopped_ = true;
    thread_.stop();
    for (auto& [fd, c] : conns_) thread_.loop().remove(fd);
    conns_.clear();
    if (listen_) thread_.loop().remove(listen_.get());
    listen_.reset();
    // Only our own socket: another VMM may have replaced a file we lost.
    struct stat st{};
    if (ino_ && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) ::unlink(path_.c_str());
}

void ApiServer::on_accept() {
    for (;;) {
        int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if ((errno == EMFILE || errno == ENFILE) && spare_) {
                // Out of fds: give up the spare to accept and drop the client, or
                // the pending connection would wake this (level-triggered) handler forever.
                spare_.reset();
                Fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC)).reset();
                // The new spare is a copy of the listening socket: no open()
                // here, which this thread's seccomp filter does not allow.
                spare_ = Fd(::fcntl(listen_.get(), F_DUPFD_CLOEXEC, 0));
                if (warn_.allow()) log::warn("api socket {}: out of file descriptors; dropped a client", path_);
                continue;
            }
            if (warn_.allow()) log::warn("api socket {}: accept: {}", path_, std::strerror(errno));
            return;
        }
        Fd conn(fd);
        // Full: the newcomer gets the place of the quietest client, so
        // clients that connect and never finish a line cannot lock `vmm
        // ctl` out (each open connection is bounded in memory anyway).
        if (conns_.size() >= kMaxConns) evict_idlest();
        auto c = std::make_unique<Conn>();
        c->fd = std::move(conn);
        c->last_active = ++activity_;
        // Edge-triggered: on_conn reads until EAGAIN and writes until done or EAGAIN.
        thread_.loop().add(fd, [this, fd](uint32_t) { on_conn(fd); }, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        conns_.emplace(fd, std::move(c));
    }
}

bool ApiServer::flush(Conn& c) {
    std::size_t done = 0;
    while (done < c.out.size()) {
        ssize_t n = ::send(c.fd.get(), c.out.data() + done, c.out.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    c.out.erase(0, done);
    return true;
}

void ApiServer::evict_idlest() {
    auto idlest = conns_.begin();
    for (auto it = conns_.begin(); it != conns_.end(); ++it)
        if (it->second->last_active < idlest->second->last_active) idlest = it;
    if (idlest == conns_.end()) return;
    if (warn_.allow())
        log::warn("api socket {}: {} clients connected; closed the one quiet longest to accept another", path_,
                  kMaxConns);
    close_conn(idlest->first);
}

void ApiServer::close_conn(int fd) {
    thread_.loop().remove(fd);
    conns_.erase(fd);
}

// One wake-up of a client: write what is pending, then read and answer
// requests until the socket has nothing more. Nothing is read while
// responses are pending, so a client that does not read its responses
// stalls only itself and its buffers stay bounded.
void ApiServer::on_conn(int fd) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    Conn& c = *it->second;
    char buf[kReadChunk];
    for (;;) {
        if (!flush(c)) return close_conn(fd);
        if (!c.out.empty()) return;  // EPOLLOUT resumes us
        if (c.closing || c.eof) return close_conn(fd);
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            return close_conn(fd);
        }
        if (n == 0) {
            // Only newline-terminated requests count: a client that went away
            // mid-line has its partial request dropped, not executed.
            c.eof = true;
            if (!c.in.empty()) log::debug("api socket {}: client closed mid-request; {} bytes dropped", path_, c.in.size());
            c.in.clear();
            continue;
        }
        c.last_active = ++activity_;
        std::string_view data(buf, static_cast<std::size_t>(n));
        while (!data.empty()) {
            auto nl = data.find('\n');
            std::string_view piece = data.substr(0, nl);
            if (c.in.size() + piece.size() > kApiMaxLine) {
                c.out += too_long_response() + "\n";
                c.closing = true;
                c.in.clear();
                break;
            }
            if (nl == std::string_view::npos) {
                c.in.append(piece);
                break;
            }
            std::string response;
            if (c.in.empty()) {
                response = handle_request_line(piece, vm_);
            } else {
                c.in.append(piece);
                response = handle_request_line(c.in, vm_);
                c.in.clear();
            }
            c.out += response;
            c.out += '\n';
            data.remove_prefix(nl + 1);
        }
    }
}

}  // namespace vmm
