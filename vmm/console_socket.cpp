#include "vmm/console_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm {

ConsoleSocket::ConsoleSocket(std::string path, std::string what) : path_(std::move(path)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.empty() || path_.size() >= sizeof addr.sun_path)
        fail("{}: the socket path must be 1-{} bytes", what, sizeof addr.sun_path - 1);
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    listen_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_) throw_errno(what + ": socket");
    // A leftover socket file from an earlier run is replaced; a live one
    // (someone accepts connections there) is not.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) fail("{}: {} exists and is not a socket", what, path_);
        Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
            fail("{}: {} is in use by another process", what, path_);
        ::unlink(path_.c_str());
    }
    // umask makes the socket owner-only from the moment it exists.
    mode_t old = ::umask(0077);
    int r = ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int e = errno;
    ::umask(old);
    errno = e;
    if (r != 0) throw_errno(fmt::format("{}: bind {}", what, path_));
    // The umask gave 0700; 0600 as documented (a socket needs no x bit).
    if (::chmod(path_.c_str(), 0600) != 0) throw_errno(fmt::format("{}: chmod {}", what, path_));
    if (::listen(listen_.get(), 4) != 0) throw_errno(what + ": listen");
}

ConsoleSocket::~ConsoleSocket() {
    ::unlink(path_.c_str());
}

int ConsoleSocket::client_fd() const {
    std::lock_guard lk(mu_);
    return client_.get();
}

void ConsoleSocket::accept_client() {
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    // Output sends block (up to the timeout); input reads stay non-blocking
    // through MSG_DONTWAIT.
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    std::lock_guard lk(mu_);
    if (client_) log::info("console socket {}: a new client replaces the previous one", path_);
    client_ = Fd(fd);
}

size_t ConsoleSocket::read_input(std::span<uint8_t> buf) {
    std::lock_guard lk(mu_);
    if (!client_) return 0;
    ssize_t n = ::recv(client_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) client_.reset();
    return 0;
}

void ConsoleSocket::write_output(std::span<const uint8_t> bytes) {
    std::lock_guard lk(mu_);
    while (client_ && !bytes.empty()) {
        ssize_t n = ::send(client_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            log::warn("console socket {}: client not reading ({}); disconnected", path_,
                      n < 0 ? std::strerror(errno) : "closed");
            client_.reset();
            return;
        }
        bytes = bytes.subspan(static_cast<size_t>(n));
    }
}

}  // namespace vmm
