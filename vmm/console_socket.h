// A console on a UNIX socket (--serial socket=PATH, --console socket=PATH):
// the VMM listens, one client at a time receives the guest's output and may
// type; a newer client replaces the older one. Output while no client is
// connected is dropped (as on a disconnected serial line). The socket is
// created owner-only (0600) and removed when the VM ends.
#pragma once

#include <atomic>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/fd.h"

namespace vmm {

class ConsoleSocket {
public:
    // Throws vmm::Error naming `what` (e.g. "--serial socket=PATH").
    ConsoleSocket(std::string path, std::string what);
    ~ConsoleSocket();
    ConsoleSocket(const ConsoleSocket&) = delete;
    ConsoleSocket& operator=(const ConsoleSocket&) = delete;

    int listen_fd() const { return listen_.get(); }
    int client_fd() const;  // -1 when none
    // Accepts a pending connection (call when listen_fd() is readable).
    void accept_client();
    // Reads what the client typed; drops the client on EOF/error. Returns
    // the bytes read (possibly none).
    size_t read_input(std::span<uint8_t> buf);
    // Sends guest output to the client, if any (any thread). A client that
    // stops reading for a second is disconnected rather than stalling the
    // guest.
    void write_output(std::span<const uint8_t> bytes);

private:
    std::string path_;
    Fd listen_;
    mutable std::mutex mu_;
    Fd client_;
};

}  // namespace vmm
