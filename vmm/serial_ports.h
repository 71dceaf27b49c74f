// The host side of the named virtio-serial ports (--serial-port): for each
// port a UNIX socket the VMM listens on (created 0600, removed at exit, via
// ConsoleSocket) or an output file, served on one thread of its own
// ("serial-ports") so a slow client never blocks the main loop, the device's
// I/O thread or another port.
//
// Socket semantics, one client at a time (a second one is refused while the
// first is connected):
//   client connects          -> the guest sees the host open (PORT_OPEN 1)
//   client disconnects (EOF) -> PORT_OPEN 0 once the client's last bytes
//                               reached the guest: its read() returns EOF
//   guest closes the port    -> the VMM sends what the guest wrote (best
//                               effort, without blocking) and closes the
//                               connection: the client reads EOF
// Guest output while no client is connected is dropped (Linux blocks the
// guest's write() while the host is closed, so this is only what was in
// flight). A file port counts as always connected; it has no input.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "vmm/config.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/fd.h"

namespace vmm {

namespace virtio {
class ConsoleDevice;
}
class ConsoleSocket;

class SerialPortHost {
public:
    // Port i of `ports` is the device's port i+1. Creates the sockets and
    // files (throws vmm::Error naming the option) and starts the thread.
    // `vm`: the VM's configuration, whose input files a port's output file
    // must not be (vmm/output_file.h).
    SerialPortHost(std::shared_ptr<virtio::ConsoleDevice> dev, const std::vector<SerialPortConfig>& ports,
                   const VmConfig& vm = {});
    ~SerialPortHost();
    SerialPortHost(const SerialPortHost&) = delete;
    SerialPortHost& operator=(const SerialPortHost&) = delete;

    // Client input buffered here beyond the device's own buffer.
    static constexpr size_t kMaxPendingInput = 64 * 1024;

private:
    struct Port {
        uint32_t id = 0;
        std::string what;  // "serial port NAME" for messages
        std::unique_ptr<ConsoleSocket> sock;
        Fd file;
        Fd client;
        uint32_t client_events = 0;  // epoll interest registered for the client
        std::vector<uint8_t> out;    // guest output taken from the device, not yet sent
        size_t out_off = 0;
        std::deque<uint8_t> in;      // client input the device had no room for yet
        bool disconnect_pending = false;  // client gone; tell the guest once `in` is delivered
        uint64_t closes_seen = 0;         // the device's guest_closes last looked at
    };

    void service(Port& p);
    void on_accept(Port& p);
    void on_client(Port& p, uint32_t events);
    void read_client(Port& p, bool all);
    void feed_input(Port& p);
    void drain_output(Port& p);
    void drop_client(Port& p, const char* why);
    void update_interest(Port& p);

    std::shared_ptr<virtio::ConsoleDevice> dev_;
    std::vector<std::unique_ptr<Port>> ports_;
    IoThread thread_{"serial-ports"};
};

}  // namespace vmm
