#include "vmm/serial_ports.h"
#include "vmm/output_file.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "virtio/console.h"
#include "vmm/console_socket.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm {

SerialPortHost::SerialPortHost(std::shared_ptr<virtio::ConsoleDevice> dev, const std::vector<SerialPortConfig>& ports,
                               const VmConfig& vm)
    : dev_(std::move(dev)) {
    for (size_t i = 0; i < ports.size(); ++i) {
        const SerialPortConfig& c = ports[i];
        auto p = std::make_unique<Port>();
        p->id = static_cast<uint32_t>(i + 1);
        p->what = "serial port " + c.name;
        if (c.mode == SerialMode::Socket) {
            p->sock = std::make_unique<ConsoleSocket>(c.path, fmt::format("--serial-port name={},socket={}", c.name, c.path));
        } else {
            p->file = open_output(c.path, fmt::format("--serial-port name={},file", c.name), vm, OutputMode::Truncate);
            dev_->set_host_connected(p->id, true);  // a file always takes output
        }
        ports_.push_back(std::move(p));
    }
    auto& loop = thread_.loop();
    loop.add(dev_->port_event_fd(), [this](uint32_t) {
        // Consumed through a read of the eventfd: any port may have changed.
        uint64_t v;
        [[maybe_unused]] ssize_t r = ::read(dev_->port_event_fd(), &v, sizeof v);
        for (auto& p : ports_) service(*p);
    });
    for (auto& p : ports_)
        if (p->sock) loop.add(p->sock->listen_fd(), [this, port = p.get()](uint32_t) { on_accept(*port); });
    thread_.start();
}

SerialPortHost::~SerialPortHost() {
    thread_.stop();  // before the sockets and fds go
}

void SerialPortHost::on_accept(Port& p) {
    int fd = ::accept4(p.sock->listen_fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    if (p.client) {
        // One client at a time: a second would interleave with the first.
        log::info("{}: a client is already connected; another one was refused", p.what);
        ::close(fd);
        return;
    }
    p.client = Fd(fd);
    p.client_events = 0;
    p.disconnect_pending = false;
    log::info("{}: client connected", p.what);
    dev_->set_host_connected(p.id, true);
    update_interest(p);
    service(p);
}

void SerialPortHost::on_client(Port& p, uint32_t events) {
    if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        // Gone: take everything it sent (bounded by the socket buffer), then drop it.
        read_client(p, true);
        if (p.client) drop_client(p, "client disconnected");
    } else if (events & EPOLLIN) {
        read_client(p, false);
    }
    service(p);
}

// Reads client input into `in` up to kMaxPendingInput (beyond it with
// `all`: the client hung up and the socket buffer bounds what is left).
void SerialPortHost::read_client(Port& p, bool all) {
    uint8_t buf[4096];
    while (p.client && (all || p.in.size() < kMaxPendingInput)) {
        ssize_t n = ::recv(p.client.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            p.in.insert(p.in.end(), buf, buf + n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        drop_client(p, n == 0 ? "client disconnected" : "client read error");
    }
}

void SerialPortHost::feed_input(Port& p) {
    std::vector<uint8_t> chunk;
    while (!p.in.empty()) {
        chunk.assign(p.in.begin(), p.in.begin() + static_cast<long>(std::min<size_t>(p.in.size(), 4096)));
        size_t took = dev_->enqueue_port_input(p.id, chunk);
        p.in.erase(p.in.begin(), p.in.begin() + static_cast<long>(took));
        if (took < chunk.size()) break;  // the device is full: it signals when it has room
    }
    if (p.disconnect_pending && p.in.empty()) {
        p.disconnect_pending = false;
        dev_->set_host_connected(p.id, false);
    }
}

void SerialPortHost::drain_output(Port& p) {
    for (;;) {
        if (p.out_off == p.out.size()) {
            p.out.resize(16 * 1024);
            p.out.resize(dev_->read_port_output(p.id, p.out));
            p.out_off = 0;
            if (p.out.empty()) return;
        }
        std::span<const uint8_t> rest(p.out.data() + p.out_off, p.out.size() - p.out_off);
        if (p.file) {
            ssize_t n = ::write(p.file.get(), rest.data(), rest.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                static log::RateLimit rl;
                if (rl.allow()) log::warn("{}: write: {}; output dropped", p.what, n < 0 ? std::strerror(errno) : "no progress");
                n = static_cast<ssize_t>(rest.size());
            }
            p.out_off += static_cast<size_t>(n);
            continue;
        }
        if (!p.client) {  // nobody to read it (see the header)
            p.out_off = p.out.size();
            continue;
        }
        ssize_t n = ::send(p.client.get(), rest.data(), rest.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p.out_off += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT resumes
        drop_client(p, "client write error");
    }
}

void SerialPortHost::drop_client(Port& p, const char* why) {
    if (!p.client) return;
    log::info("{}: {}; connection closed", p.what, why);
    thread_.loop().remove(p.client.get());
    p.client.reset();
    p.client_events = 0;
    p.out.clear();
    p.out_off = 0;
    // The guest hears about it once the client's last bytes reached it.
    p.disconnect_pending = true;
}

void SerialPortHost::service(Port& p) {
    auto st = dev_->port_state(p.id);
    if (st.guest_closes != p.closes_seen) {
        p.closes_seen = st.guest_closes;
        p.in.clear();  // the guest will not read it any more
        if (p.client) {
            drain_output(p);  // best effort, never blocking
            drop_client(p, "the guest closed the port");
        }
    }
    feed_input(p);
    drain_output(p);
    update_interest(p);
}

void SerialPortHost::update_interest(Port& p) {
    if (!p.client) return;
    uint32_t want = 0;
    if (p.in.size() < kMaxPendingInput) want |= EPOLLIN;
    if (p.out_off < p.out.size()) want |= EPOLLOUT;
    want |= EPOLLRDHUP;
    if (want == p.client_events) return;
    auto& loop = thread_.loop();
    loop.remove(p.client.get());
    loop.add(p.client.get(), [this, port = &p](uint32_t ev) { on_client(*port, ev); }, want);
    p.client_events = want;
}

}  // namespace vmm
