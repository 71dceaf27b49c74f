// Multiport virtio-console (named serial ports): the control message
// parser, the PORT_ADD/READY/NAME/OPEN handshake over real rings, bytes on a
// named port both ways with bounded buffers, opens and closes from both
// sides, hostile control traffic, and that nothing changes without named
// ports.
#include <catch2/catch.hpp>

#include <chrono>
#include <random>
#include <thread>

#include "console_driver.h"

namespace {

using namespace std::chrono_literals;
using vmm::virtio::ConsoleControlRequest;
using vmm::virtio::ConsoleDevice;
using vmm::virtio::parse_console_control;
using test::console::Driver;
using test::console::Msg;
namespace vc = vmm::virtio;

ConsoleControlRequest parse(uint32_t id, uint16_t event, uint16_t value, uint32_t nr_ports = 3) {
    return parse_console_control(vc::console_control_message(id, event, value), nr_ports);
}

std::string msgs_text(const std::vector<Msg>& v) {
    std::string s;
    for (auto& m : v) s += test::console::to_string(m) + " ";
    return s;
}

}  // namespace

TEST_CASE("virtio-console control: every driver event parses", "[virtio][console][serial]") {
    using R = ConsoleControlRequest;
    CHECK(parse(0xffffffff, vc::kConsoleDeviceReady, 1).kind == R::DeviceReady);
    CHECK(parse(0xffffffff, vc::kConsoleDeviceReady, 0).kind == R::DeviceFailed);
    auto r = parse(2, vc::kConsolePortReady, 1);
    CHECK(r.kind == R::PortReady);
    CHECK(r.port == 2);
    CHECK(parse(1, vc::kConsolePortReady, 0).kind == R::PortFailed);
    CHECK(parse(0, vc::kConsolePortOpen, 1).kind == R::GuestOpen);
    r = parse(1, vc::kConsolePortOpen, 0);
    CHECK(r.kind == R::GuestClose);
    CHECK(r.port == 1);
    CHECK(r.event == vc::kConsolePortOpen);
}

TEST_CASE("virtio-console control: bad messages are Invalid with a reason", "[virtio][console][serial]") {
    using R = ConsoleControlRequest;
    // Events only the device sends.
    for (uint16_t e : {vc::kConsolePortAdd, vc::kConsolePortRemove, vc::kConsoleConsolePort, vc::kConsoleResize,
                       vc::kConsolePortName}) {
        INFO(e);
        auto r = parse(1, e, 1);
        CHECK(r.kind == R::Invalid);
        CHECK(r.error != nullptr);
    }
    // Unknown events.
    CHECK(parse(1, 8, 1).kind == R::Invalid);
    CHECK(parse(1, 0xffff, 1).kind == R::Invalid);
    // Port ids out of range, values other than 0/1.
    CHECK(parse(3, vc::kConsolePortReady, 1, 3).kind == R::Invalid);
    CHECK(parse(0xffffffff, vc::kConsolePortOpen, 1).kind == R::Invalid);
    CHECK(parse(1, vc::kConsolePortOpen, 2).kind == R::Invalid);
    CHECK(parse(1, vc::kConsolePortReady, 0x100).kind == R::Invalid);
    CHECK(parse(0, vc::kConsoleDeviceReady, 7).kind == R::Invalid);
    // Short and long messages.
    auto m = vc::console_control_message(1, vc::kConsolePortOpen, 1);
    for (size_t n = 0; n < 8; ++n) {
        INFO(n);
        auto r = parse_console_control(std::span(m.data(), n), 3);
        CHECK(r.kind == R::Invalid);
        CHECK(std::string(r.error).find("short") != std::string::npos);
    }
    m.push_back(0);
    CHECK(parse_console_control(m, 3).kind == R::Invalid);
    // Garbage: never anything but the three driver events, always in range.
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; ++i) {
        std::vector<uint8_t> g(8);
        for (auto& b : g) b = static_cast<uint8_t>(rng());
        if (i % 4 == 0) g[5] = 0, g[4] &= 7;  // many plausible events too
        auto r = parse_console_control(g, 3);
        if (r.kind == R::Invalid) {
            CHECK(r.error != nullptr);
            continue;
        }
        CHECK((r.event == vc::kConsoleDeviceReady || r.event == vc::kConsolePortReady || r.event == vc::kConsolePortOpen));
        if (r.event != vc::kConsoleDeviceReady) CHECK(r.port < 3);
    }
}

TEST_CASE("virtio-console control: device messages are little-endian with the name after the header",
          "[virtio][console][serial]") {
    auto m = vc::console_control_message(0x01020304, vc::kConsolePortName, 1, "org.test");
    REQUIRE(m.size() == 16);
    CHECK(m[0] == 4);
    CHECK(m[3] == 1);
    CHECK(m[4] == 7);
    CHECK(m[5] == 0);
    CHECK(m[6] == 1);
    CHECK(std::string(m.begin() + 8, m.end()) == "org.test");
}

TEST_CASE("virtio-console: without named ports nothing changes", "[virtio][console][serial]") {
    ConsoleDevice dev({});
    CHECK(dev.device_features() == 0);
    CHECK(dev.queue_max_sizes().size() == 2);
    CHECK_FALSE(dev.multiport());
    std::vector<uint8_t> cfg(12, 0xaa);
    dev.read_config(0, cfg);
    CHECK(cfg == std::vector<uint8_t>(12, 0));
    auto c = dev.counters();
    CHECK(c.size() == 3);  // interrupts are the transport's per-queue counters
    CHECK(c.count("tx_bytes"));
    CHECK(c.count("rx_bytes"));
    CHECK(c.count("errors"));
    // The named-port calls are harmless no-ops.
    std::vector<uint8_t> b{1, 2};
    CHECK(dev.enqueue_port_input(1, b) == 0);
    CHECK(dev.read_port_output(1, b) == 0);
    dev.set_host_connected(1, true);
    CHECK_FALSE(dev.port_state(1).guest_open);
}

TEST_CASE("virtio-console: named ports offer MULTIPORT, max_nr_ports and the queues", "[virtio][console][serial]") {
    vc::ConsoleConfig cfg;
    cfg.port_names = {"alpha", "beta"};
    ConsoleDevice dev(cfg);
    CHECK(dev.device_features() == (uint64_t{1} << vc::kConsoleFeatureMultiport));
    CHECK(dev.queue_max_sizes().size() == 8);  // rx0 tx0 crx ctx rx1 tx1 rx2 tx2
    CHECK(dev.nr_ports() == 3);
    std::vector<uint8_t> cfgb(12);
    dev.read_config(0, cfgb);
    CHECK(test::rd(cfgb, 4, 4) == 3);
    CHECK(test::rd(cfgb, 0, 4) == 0);  // no SIZE: cols/rows zero
    std::vector<uint8_t> b4(4);
    dev.read_config(4, b4);
    CHECK(test::rd(b4, 0, 4) == 3);
    dev.read_config(12, b4);  // beyond the space
    CHECK(test::rd(b4, 0, 4) == 0);
    dev.read_config(6, b4);  // straddling the end of max_nr_ports
    CHECK(test::rd(b4, 0, 4) == 0);
    dev.read_config(UINT64_MAX - 1, b4);  // offset + i would wrap around
    CHECK(test::rd(b4, 0, 4) == 0);
    // A bad name is the VM's error to catch, but the device refuses it too.
    vc::ConsoleConfig bad;
    bad.port_names = {""};
    CHECK_THROWS(ConsoleDevice(bad));
}

TEST_CASE("virtio-console: the port handshake over real rings", "[virtio][console][serial]") {
    Driver d({"alpha", "beta"});
    d.dev->set_host_connected(2, true);  // a client on beta before the guest is up
    d.activate();
    auto adds = d.handshake();
    CHECK(msgs_text(adds) == msgs_text({{0, vc::kConsolePortAdd, 0, ""},
                                        {1, vc::kConsolePortAdd, 0, ""},
                                        {2, vc::kConsolePortAdd, 0, ""}}));
    // PORT_READY answers: port 0 becomes the console (and is open), the
    // named ports get their names, beta also PORT_OPEN(1).
    auto got = d.wait_messages(5);
    INFO(msgs_text(got));
    CHECK(got.size() == 5);
    auto has = [&](Msg m) { return std::find(got.begin(), got.end(), m) != got.end(); };
    CHECK(has({0, vc::kConsoleConsolePort, 1, ""}));
    CHECK(has({0, vc::kConsolePortOpen, 1, ""}));
    CHECK(has({1, vc::kConsolePortName, 1, "alpha"}));
    CHECK(has({2, vc::kConsolePortName, 1, "beta"}));
    CHECK(has({2, vc::kConsolePortOpen, 1, ""}));
    // The host opens alpha, then closes it.
    d.dev->set_host_connected(1, true);
    CHECK(msgs_text(d.wait_messages(1)) == msgs_text({{1, vc::kConsolePortOpen, 1, ""}}));
    d.dev->set_host_connected(1, false);
    CHECK(msgs_text(d.wait_messages(1)) == msgs_text({{1, vc::kConsolePortOpen, 0, ""}}));
    CHECK(d.counter("port1.host_connects") == 1);
    CHECK(d.counter("port2.host_connects") == 1);
    CHECK(d.counter("control_errors") == 0);
    CHECK(d.counter("control_dropped") == 0);
    CHECK(d.resets == 0);
    // A second DEVICE_READY (a driver re-probing) adds the ports again.
    d.post(Driver::kCtrlRx, 3, 512);
    d.control(0xffffffff, vc::kConsoleDeviceReady, 1);
    CHECK(d.wait_messages(3).size() == 3);
}

TEST_CASE("virtio-console: bytes on a named port both ways, hvc0 beside it", "[virtio][console][serial]") {
    Driver d({"alpha", "beta"});
    d.activate();
    d.handshake();
    d.wait_messages(4);
    d.dev->set_host_connected(1, true);
    d.wait_messages(1);
    // Host input before the guest opens the port is held (Linux would drop it).
    std::string ping = "ping from the host";
    CHECK(d.dev->enqueue_port_input(1, std::span(reinterpret_cast<const uint8_t*>(ping.data()), ping.size())) ==
          ping.size());
    d.post(Driver::rx(1), 2, 64);
    std::this_thread::sleep_for(30ms);
    CHECK(d.used(Driver::rx(1)) == 0);
    d.control(1, vc::kConsolePortOpen, 1);  // the guest opens /dev/vport?p1
    REQUIRE(test::wait_for([&] { return d.used(Driver::rx(1)) == 1; }));
    CHECK(d.received_text(Driver::rx(1)) == ping);
    CHECK(d.dev->port_state(1).guest_open);
    CHECK(d.counter("port1.guest_opens") == 1);
    CHECK(d.counter("port1.rx_bytes") == ping.size());
    // Guest output on alpha reaches read_port_output, and only alpha's.
    d.send(Driver::tx(1), "pong from the guest");
    REQUIRE(test::wait_for([&] { return d.used(Driver::tx(1)) == 1; }));
    std::vector<uint8_t> out(100);
    size_t n = d.dev->read_port_output(1, out);
    CHECK(std::string(out.begin(), out.begin() + static_cast<long>(n)) == "pong from the guest");
    CHECK(d.dev->read_port_output(2, out) == 0);
    CHECK(d.counter("port1.tx_bytes") == n);
    CHECK(d.counter("port2.tx_bytes") == 0);
    // hvc0 keeps working on queues 0/1.
    d.send(Driver::tx(0), "hvc0 line");
    REQUIRE(test::wait_for([&] { return d.hvc_output() == "hvc0 line"; }));
    std::vector<uint8_t> in{'k'};
    CHECK(d.dev->enqueue_input(in) == 1);
    d.post(Driver::rx(0), 1, 8);
    REQUIRE(test::wait_for([&] { return d.used(Driver::rx(0)) == 1; }));
    CHECK(d.received_text(Driver::rx(0)) == "k");
    CHECK(d.counter("tx_bytes") == 9);
    CHECK(d.counter("rx_bytes") == 1);
    CHECK(d.resets == 0);
}

TEST_CASE("virtio-console: opens and closes from both sides", "[virtio][console][serial]") {
    Driver d({"alpha"});
    d.activate();
    d.handshake();
    d.wait_messages(3);  // CONSOLE_PORT, PORT_OPEN(0), PORT_NAME(1)
    d.dev->set_host_connected(1, true);
    d.wait_messages(1);
    d.control(1, vc::kConsolePortOpen, 1);
    REQUIRE(test::wait_for([&] { return d.dev->port_state(1).guest_open; }));
    // The host disconnects with input still on its way: the guest hears
    // PORT_OPEN(0) only after the bytes are in its buffers (then EOF).
    std::vector<uint8_t> last{'b', 'y', 'e'};
    CHECK(d.dev->enqueue_port_input(1, last) == 3);
    d.dev->set_host_connected(1, false);
    std::this_thread::sleep_for(30ms);
    CHECK(d.messages().empty());
    d.post(Driver::rx(1), 1, 16);
    REQUIRE(test::wait_for([&] { return d.used(Driver::rx(1)) == 1; }));
    CHECK(d.received_text(Driver::rx(1)) == "bye");
    CHECK(msgs_text(d.wait_messages(1)) == msgs_text({{1, vc::kConsolePortOpen, 0, ""}}));
    // The guest closes: the host side sees it, held input is dropped, and
    // what the guest wrote just before closing is still taken.
    d.dev->set_host_connected(1, true);
    d.wait_messages(1);
    d.dev->enqueue_port_input(1, last);  // no buffers posted: stays in the device
    d.send(Driver::tx(1), "last words");
    d.control(1, vc::kConsolePortOpen, 0);
    REQUIRE(test::wait_for([&] { return d.dev->port_state(1).guest_closes == 1; }));
    CHECK_FALSE(d.dev->port_state(1).guest_open);
    std::vector<uint8_t> out(64);
    REQUIRE(test::wait_for([&] { return d.used(Driver::tx(1)) == 1; }));
    size_t n = d.dev->read_port_output(1, out);
    CHECK(std::string(out.begin(), out.begin() + static_cast<long>(n)) == "last words");
    d.post(Driver::rx(1), 1, 16);
    d.control(1, vc::kConsolePortOpen, 1);  // reopened: the dropped input does not come back
    REQUIRE(test::wait_for([&] { return d.dev->port_state(1).guest_open; }));
    std::this_thread::sleep_for(30ms);
    CHECK(d.used(Driver::rx(1)) == 1);
    CHECK(d.counter("port1.guest_opens") == 2);
    // A device reset closes the port for the host side too.
    d.dev->reset();
    CHECK_FALSE(d.dev->port_state(1).guest_open);
    CHECK(d.dev->port_state(1).guest_closes == 2);
    CHECK(d.counter("port1.guest_closes") == 2);  // reported too, the reset included
    CHECK(d.resets == 0);
}

TEST_CASE("virtio-console: a full port stalls only itself, with bounded buffers", "[virtio][console][serial]") {
    Driver d({"alpha", "beta"});
    d.activate();
    d.handshake();
    d.wait_messages(4);
    // Three 32 KiB writes on alpha: the 64 KiB output buffer takes two.
    std::string chunk(32 * 1024, 'a');
    for (int i = 0; i < 3; ++i) d.send(Driver::tx(1), chunk);
    REQUIRE(test::wait_for([&] { return d.used(Driver::tx(1)) == 2; }));
    std::this_thread::sleep_for(30ms);
    CHECK(d.used(Driver::tx(1)) == 2);
    // beta is not held up.
    d.send(Driver::tx(2), "beta still flows");
    REQUIRE(test::wait_for([&] { return d.used(Driver::tx(2)) == 1; }));
    // Reading alpha makes room; the third write completes once all is read.
    std::vector<uint8_t> out(16 * 1024);
    size_t total = 0;
    REQUIRE(test::wait_for([&] {
        total += d.dev->read_port_output(1, out);
        return total == 3 * chunk.size();
    }));
    CHECK(d.used(Driver::tx(1)) == 3);
    // One huge chain never holds more than the buffer in the VMM.
    std::string big(512 * 1024, 'z');
    d.send(Driver::tx(1), big);
    total = 0;
    REQUIRE(test::wait_for([&] {
        size_t n = d.dev->read_port_output(1, out);
        CHECK(n <= ConsoleDevice::kOutputCapacity);
        total += n;
        return total == big.size();
    }));
    CHECK(d.used(Driver::tx(1)) == 4);
    // Host input is bounded too: what does not fit is refused, not dropped.
    std::vector<uint8_t> lots(ConsoleDevice::kInputCapacity + 100, 'x');
    CHECK(d.dev->enqueue_port_input(2, lots) == ConsoleDevice::kInputCapacity);
    CHECK(d.dev->enqueue_port_input(2, lots) == 0);
    CHECK(d.resets == 0);
}

TEST_CASE("virtio-console: hostile control traffic is counted, never fatal", "[virtio][console][serial]") {
    Driver d({"alpha"});
    d.activate();
    d.post(Driver::kCtrlRx, 2, 512);  // just enough for the two PORT_ADDs
    // Before DEVICE_READY no port was added: PORT_READY is out of protocol.
    d.control(1, vc::kConsolePortReady, 1);
    // Short, long, unknown, out of range, device-only events.
    d.send(Driver::kCtrlTx, std::vector<uint8_t>{1, 2, 3, 4});
    d.send(Driver::kCtrlTx, std::vector<uint8_t>(64, 0));
    d.control(1, 99, 1);
    d.control(7, vc::kConsolePortOpen, 1);
    d.control(1, vc::kConsolePortName, 1);
    REQUIRE(test::wait_for([&] { return d.counter("control_errors") == 6; }));
    CHECK(d.messages().empty());
    // PORT_OPEN for a port that is added but not ready.
    d.control(0xffffffff, vc::kConsoleDeviceReady, 1);
    d.wait_messages(2);
    d.control(1, vc::kConsolePortOpen, 1);
    REQUIRE(test::wait_for([&] { return d.counter("control_errors") == 7; }));
    CHECK_FALSE(d.dev->port_state(1).guest_open);
    // A control buffer too small for PORT_NAME: that message is dropped and
    // the buffer comes back empty; the next message still gets through.
    CHECK(d.received(Driver::kCtrlRx).empty());
    d.post(Driver::kCtrlRx, 1, 10);  // 8 + "alpha" does not fit
    d.control(1, vc::kConsolePortReady, 1);
    REQUIRE(test::wait_for([&] { return d.counter("control_dropped") == 1; }));
    auto back = d.received(Driver::kCtrlRx);
    REQUIRE(back.size() == 1);
    CHECK(back[0].empty());
    d.post(Driver::kCtrlRx, 1, 64);
    d.dev->set_host_connected(1, true);
    CHECK(msgs_text(d.wait_messages(1)) == msgs_text({{1, vc::kConsolePortOpen, 1, ""}}));
    CHECK(d.resets == 0);
    CHECK(d.counter("errors") == 0);
    // A broken control ring asks for a reset.
    d.rings[Driver::kCtrlTx]->set_desc(0, test::virtq::FakeRam::kHole, 8, 0, 0);
    d.rings[Driver::kCtrlTx]->publish(0);
    d.kicks[Driver::kCtrlTx]->signal();
    REQUIRE(test::wait_for([&] { return d.resets == 1; }));
    CHECK(d.counter("errors") == 1);
}

TEST_CASE("virtio-console: a broken named-port ring asks for a reset", "[virtio][console][serial]") {
    Driver d({"alpha"});
    d.activate();
    d.rings[Driver::tx(1)]->set_desc(0, test::virtq::FakeRam::kHole, 16, 0, 0);
    d.rings[Driver::tx(1)]->publish(0);
    d.kicks[Driver::tx(1)]->signal();
    REQUIRE(test::wait_for([&] { return d.resets == 1; }));
    CHECK(d.counter("errors") == 1);
}

TEST_CASE("virtio-console: a driver without MULTIPORT gets port 0 only", "[virtio][console][serial]") {
    Driver d({"alpha"}, false);
    d.activate(2);
    d.send(Driver::tx(0), "plain hvc0");
    REQUIRE(test::wait_for([&] { return d.hvc_output() == "plain hvc0"; }));
    d.dev->set_host_connected(1, true);
    std::vector<uint8_t> b{'x'};
    d.dev->enqueue_port_input(1, b);
    std::this_thread::sleep_for(20ms);
    CHECK(d.resets == 0);
}
