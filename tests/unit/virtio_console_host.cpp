// The host side of named serial ports (vmm/serial_ports.*) against a real
// ConsoleDevice driven over rings: a UNIX-socket client is the host end of
// the port (connect = PORT_OPEN 1, disconnect = PORT_OPEN 0), bytes flow both
// ways, the guest closing the port gives the client EOF; file ports take
// output.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "console_driver.h"
#include "vmm/core/fd.h"
#include "vmm/serial_ports.h"

namespace {

using namespace std::chrono_literals;
using test::console::Driver;
using test::console::Msg;
namespace vc = vmm::virtio;

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/vmm-serial-test.XXXXXX";
        REQUIRE(::mkdtemp(t));
        path = t;
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

vmm::Fd connect_to(const std::string& path) {
    vmm::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

// Reads until `want` bytes or EOF/timeout (5 s); returns what came.
std::string read_some(int fd, size_t want) {
    std::string s;
    auto end = std::chrono::steady_clock::now() + 5s;
    while (s.size() < want && std::chrono::steady_clock::now() < end) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10) <= 0) continue;
        static char buf[64 * 1024];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        s.append(buf, static_cast<size_t>(n));
    }
    return s;
}

// True once the peer closed (recv returns 0) within 2 s.
bool sees_eof(int fd) {
    for (int i = 0; i < 200; ++i) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 10) <= 0) continue;
        char c;
        ssize_t n = ::recv(fd, &c, 1, 0);
        if (n == 0) return true;
        if (n < 0) return false;
    }
    return false;
}

bool has_msg(Driver& d, std::vector<Msg>& seen, const Msg& m) {
    return test::wait_for([&] {
        for (auto& x : d.messages()) seen.push_back(x);
        return std::find(seen.begin(), seen.end(), m) != seen.end();
    });
}

}  // namespace

TEST_CASE("serial ports: a socket client is the host end of a named port", "[virtio][console][serial]") {
    TempDir dir;
    std::string sock = dir.path + "/alpha.sock";
    Driver d({"alpha"});
    auto host = std::make_unique<vmm::SerialPortHost>(d.dev, std::vector<vmm::SerialPortConfig>{
                                                                 {"alpha", vmm::SerialMode::Socket, sock}});
    struct stat st {};
    REQUIRE(::stat(sock.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    d.activate();
    d.handshake();
    std::vector<Msg> seen;
    REQUIRE(has_msg(d, seen, {1, vc::kConsolePortName, 1, "alpha"}));
    CHECK(std::find(seen.begin(), seen.end(), Msg{1, vc::kConsolePortOpen, 1, ""}) == seen.end());

    // Connect: the guest hears PORT_OPEN(1).
    auto c = connect_to(sock);
    REQUIRE(has_msg(d, seen, {1, vc::kConsolePortOpen, 1, ""}));
    // A second client is refused while the first is connected.
    auto c2 = connect_to(sock);
    CHECK(sees_eof(c2.get()));

    // The guest opens the port; bytes both ways.
    d.post(Driver::rx(1), 4, 64);
    d.control(1, vc::kConsolePortOpen, 1);
    std::string hello = "hello guest";
    REQUIRE(::send(c.get(), hello.data(), hello.size(), 0) == static_cast<ssize_t>(hello.size()));
    std::string got;
    REQUIRE(test::wait_for([&] {
        got += d.received_text(Driver::rx(1));
        return got == hello;
    }));
    d.send(Driver::tx(1), "hello host");
    CHECK(read_some(c.get(), 10) == "hello host");

    // The guest closes the port: the client reads EOF, the guest is told the
    // host side closed.
    d.control(1, vc::kConsolePortOpen, 0);
    CHECK(sees_eof(c.get()));
    REQUIRE(has_msg(d, seen, {1, vc::kConsolePortOpen, 0, ""}));

    // A new client; the guest reopens; the client disconnects after sending:
    // the guest gets the bytes, then PORT_OPEN(0) (its read returns EOF).
    seen.clear();
    auto c3 = connect_to(sock);
    REQUIRE(has_msg(d, seen, {1, vc::kConsolePortOpen, 1, ""}));
    d.control(1, vc::kConsolePortOpen, 1);
    REQUIRE(test::wait_for([&] { return d.dev->port_state(1).guest_open; }));
    ::send(c3.get(), "bye", 3, 0);
    c3.reset();
    got.clear();
    REQUIRE(test::wait_for([&] {
        got += d.received_text(Driver::rx(1));
        return got == "bye";
    }));
    REQUIRE(has_msg(d, seen, {1, vc::kConsolePortOpen, 0, ""}));
    CHECK(d.counter("port1.host_connects") == 2);
    CHECK(d.counter("port1.guest_opens") == 2);
    CHECK(d.counter("port1.rx_bytes") == hello.size() + 3);
    CHECK(d.counter("port1.tx_bytes") == 10);
    CHECK(d.resets == 0);

    // The socket is removed when the VM ends.
    host.reset();
    CHECK(::access(sock.c_str(), F_OK) != 0);
}

TEST_CASE("serial ports: a client that does not read stalls nothing else", "[virtio][console][serial]") {
    TempDir dir;
    Driver d({"slow", "fast"});
    vmm::SerialPortHost host(d.dev, {{"slow", vmm::SerialMode::Socket, dir.path + "/slow.sock"},
                                     {"fast", vmm::SerialMode::Socket, dir.path + "/fast.sock"}});
    d.activate();
    d.handshake();
    auto slow = connect_to(dir.path + "/slow.sock");
    auto fast = connect_to(dir.path + "/fast.sock");
    std::vector<Msg> seen;
    REQUIRE(has_msg(d, seen, {2, vc::kConsolePortOpen, 1, ""}));
    // The slow client never reads: far more than its socket buffer is written.
    std::string chunk(32 * 1024, 's');
    for (int i = 0; i < 14; ++i) d.send(Driver::tx(1), chunk);
    std::this_thread::sleep_for(200ms);
    CHECK(d.used(Driver::tx(1)) < 14);
    // The fast port still flows, and hvc0 too.
    d.send(Driver::tx(2), "fast bytes");
    CHECK(read_some(fast.get(), 10) == "fast bytes");
    d.send(Driver::tx(0), "console");
    REQUIRE(test::wait_for([&] { return d.hvc_output() == "console"; }));
    // Once the slow client reads, everything arrives.
    CHECK(read_some(slow.get(), 14 * chunk.size()).size() == 14 * chunk.size());
    CHECK(test::wait_for([&] { return d.used(Driver::tx(1)) == 14; }));
}

TEST_CASE("serial ports: a file port takes the guest's output", "[virtio][console][serial]") {
    TempDir dir;
    std::string path = dir.path + "/out.log";
    Driver d({"log"});
    vmm::SerialPortHost host(d.dev, {{"log", vmm::SerialMode::File, path}});
    d.activate();
    d.handshake();
    std::vector<Msg> seen;
    // A file counts as connected from the start.
    REQUIRE(has_msg(d, seen, {1, vc::kConsolePortOpen, 1, ""}));
    d.control(1, vc::kConsolePortOpen, 1);
    d.send(Driver::tx(1), "to the file\n");
    REQUIRE(test::wait_for([&] {
        std::ifstream f(path);
        std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        return s == "to the file\n";
    }));
}

TEST_CASE("serial ports: a socket path that cannot be bound is a clear error", "[virtio][console][serial]") {
    Driver d({"x"});
    CHECK_THROWS_WITH(vmm::SerialPortHost(d.dev, {{"x", vmm::SerialMode::Socket, "/nonexistent-dir/x.sock"}}),
                      Catch::Contains("--serial-port name=x"));
}
