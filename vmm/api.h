// The control API server: line-delimited JSON over a UNIX stream socket
// (protocol in docs/api.md). handle_request_line() is the whole protocol as
// a pure function of one line; ApiServer only moves lines between sockets
// and it, on one I/O thread ("vmm-api") that serves every client.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "vmm/core/event_loop.h"
#include "vmm/core/fd.h"
#include "vmm/core/log.h"
#include "vmm/vm_control.h"

namespace vmm {

// Longest request line (without its newline) the server accepts.
constexpr std::size_t kApiMaxLine = 64 * 1024;

// Answers one request line (without its newline) with one response line
// (without its newline). Calls `vm` only for a valid request; never throws.
std::string handle_request_line(std::string_view line, VmControl& vm);

// The response sent before closing a connection whose line is too long.
std::string too_long_response();

class ApiServer {
public:
    // Creates the socket at `path` (mode 0600) and starts serving on the
    // "vmm-api" thread. Throws vmm::Error if `path` is a live socket (another
    // VMM listens there), exists and is not a socket, or cannot be created.
    ApiServer(std::string path, VmControl& vm);
    ~ApiServer();  // stop()
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    // Joins the thread, closes every connection and removes the socket file
    // (if it is still ours). Idempotent.
    void stop();
    const std::string& path() const { return path_; }

private:
    struct Conn {
        Fd fd;
        std::string in;   // bytes after the last complete line (< kApiMaxLine + 1)
        std::string out;  // responses not yet written
        bool eof = false;      // the client closed its side: close once `out` is written
        bool closing = false;  // too long: close once `out` is written
        uint64_t last_active = 0;  // the server's activity_ count when this client last sent bytes
    };
    void create_socket();
    void on_accept();
    void on_conn(int fd);
    // Writes as much of `c.out` as the socket takes; false on a write error.
    bool flush(Conn& c);
    void close_conn(int fd);
    // At the client limit: closes the client that has been quiet longest.
    void evict_idlest();

    std::string path_;
    VmControl& vm_;
    Fd listen_;
    Fd spare_;  // a reserved fd, given up to accept (and drop) a client when out of fds
    dev_t dev_ = 0;
    ino_t ino_ = 0;  // our socket file, so stop() never removes another VMM's
    std::map<int, std::unique_ptr<Conn>> conns_;  // only touched on the API thread (or after it stopped)
    log::RateLimit warn_;
    uint64_t activity_ = 0;  // counts reads on any client: an order, not a time
    IoThread thread_{"vmm-api", ThreadRole::Api};
    bool stopped_ = false;
};

}  // namespace vmm
