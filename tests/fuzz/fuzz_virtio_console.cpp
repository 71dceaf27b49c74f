// virtio-console's multiport control protocol, driver -> device, without
// threads: every message is cut to the bytes on_control_tx() would take
// from a control buffer (any length, any id/event/value), checked by
// parse_console_control() and handed to the device's handler
// (ConsoleDevice::handle_control, reached through the device's test friend
// since the device only calls it from its I/O thread) on an inactive device with
// 0..8 named ports, interleaved with the host side (connect/disconnect,
// input, output reads, reset). Queues are absent, so what the device wants
// to send to the driver piles up in its bounded control backlog.
// Bugs: a crash or sanitizer report; the parser accepting a message that is
// not exactly 8 bytes, an unknown event or value, or a port out of range;
// a rejected message without a reason; the backlog exceeding its bound;
// port state that contradicts the protocol (open without ready, ready
// without added); console_control_message() not encoding what it is given.
#include <cstring>
#include <string>

#include "fuzz_ram.h"
#include "virtio/console.h"
#include "vmm/core/bytes.h"

using namespace vmm::virtio;

// The device's friend for tests (virtio/console.h).
namespace vmm::virtio {
struct ConsoleDeviceTestAccess {
    static void handle(ConsoleDevice& d, const ConsoleControlRequest& r) { d.handle_control(r); }
    static bool& multiport(ConsoleDevice& d) { return d.use_multiport_; }
    static const std::deque<std::vector<uint8_t>>& backlog(ConsoleDevice& d) { return d.control_out_; }
};
}  // namespace vmm::virtio

namespace {
using Access = vmm::virtio::ConsoleDeviceTestAccess;

using R = ConsoleControlRequest;

void check_parse(std::span<const uint8_t> msg, uint32_t nr_ports, const R& r) {
    if (r.kind == R::Invalid) {
        if (!r.error || !*r.error) __builtin_trap();
        return;
    }
    if (r.error) __builtin_trap();
    if (msg.size() != kConsoleControlSize) __builtin_trap();
    const uint32_t id = vmm::load_le32(msg, 0);
    const uint16_t event = vmm::load_le16(msg, 4), value = vmm::load_le16(msg, 6);
    if (event != r.event || value > 1) __builtin_trap();
    switch (r.kind) {
        case R::DeviceReady: case R::DeviceFailed:
            if (event != kConsoleDeviceReady || (r.kind == R::DeviceReady) != (value == 1)) __builtin_trap();
            break;
        case R::PortReady: case R::PortFailed:
            if (event != kConsolePortReady || r.port != id || id >= nr_ports) __builtin_trap();
            if ((r.kind == R::PortReady) != (value == 1)) __builtin_trap();
            break;
        case R::GuestOpen: case R::GuestClose:
            if (event != kConsolePortOpen || r.port != id || id >= nr_ports) __builtin_trap();
            if ((r.kind == R::GuestOpen) != (value == 1)) __builtin_trap();
            break;
        default: __builtin_trap();
    }
}

// A control message as the guest would write it: mostly well formed, with
// ids near the port range, sometimes any bytes of any length.
std::vector<uint8_t> message(FuzzedDataProvider& in, uint32_t nr_ports) {
    if (in.ConsumeIntegralInRange(0, 7) == 0)
        return in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, kConsoleControlSize + 1));
    uint32_t id = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, nr_ports) : in.ConsumeIntegral<uint32_t>();
    uint16_t event = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint16_t>(0, 8) : in.ConsumeIntegral<uint16_t>();
    uint16_t value = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint16_t>(0, 2) : in.ConsumeIntegral<uint16_t>();
    return console_control_message(id, event, value);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);

    ConsoleConfig cfg;
    const int named = in.ConsumeIntegralInRange(0, 8);
    for (int i = 0; i < named; ++i) cfg.port_names.push_back("port" + std::to_string(i + 1));
    ConsoleDevice dev(cfg);
    const uint32_t nr = dev.nr_ports();
    if (nr != static_cast<uint32_t>(named) + 1) __builtin_trap();
    Access::multiport(dev) = in.ConsumeBool() || named > 0;  // what activate() records
    const auto& backlog = Access::backlog(dev);
    const size_t bound = 64 + 4 * nr;
    std::vector<bool> ready(nr, false), added(nr, false), ever_ready(nr, false);

    for (int ops = 0; ops < 256 && in.remaining_bytes() > 0; ++ops) {
        const uint32_t port = in.ConsumeIntegralInRange<uint32_t>(0, nr);  // nr: out of range
        switch (in.ConsumeIntegralInRange(0, 9)) {
            case 0: dev.set_host_connected(port, true); break;
            case 1: dev.set_host_connected(port, false); break;
            case 2: {
                auto bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 5000));
                size_t took = port == 0 ? dev.enqueue_input(bytes) : dev.enqueue_port_input(port, bytes);
                if (took > bytes.size()) __builtin_trap();
                break;
            }
            case 3: {
                std::vector<uint8_t> out(in.ConsumeIntegralInRange<size_t>(0, 256));
                if (dev.read_port_output(port, out) > out.size()) __builtin_trap();
                break;
            }
            case 4:
                if (in.ConsumeIntegralInRange(0, 15) == 0) {
                    dev.reset();
                    if (!backlog.empty()) __builtin_trap();
                    ready.assign(nr, false);
                    added.assign(nr, false);
                    ever_ready.assign(nr, false);
                }
                break;
            case 5: {  // the device -> driver encoder
                uint32_t id = in.ConsumeIntegral<uint32_t>();
                uint16_t ev = in.ConsumeIntegral<uint16_t>(), val = in.ConsumeIntegral<uint16_t>();
                std::string payload = in.ConsumeRandomLengthString(300);
                auto m = console_control_message(id, ev, val, payload);
                if (m.size() != kConsoleControlSize + payload.size() || vmm::load_le32(m, 0) != id ||
                    vmm::load_le16(m, 4) != ev || vmm::load_le16(m, 6) != val ||
                    std::memcmp(m.data() + kConsoleControlSize, payload.data(), payload.size()) != 0)
                    __builtin_trap();
                break;
            }
            default: {  // a control message from the driver
                auto msg = message(in, nr);
                R req = parse_console_control(msg, nr);
                check_parse(msg, nr, req);
                Access::handle(dev, req);
                // Shadow of the handshake the handler must follow.
                if (req.kind == R::DeviceReady) added.assign(nr, true);
                if (req.kind == R::PortReady && added[req.port]) ready[req.port] = ever_ready[req.port] = true;
                if (req.kind == R::PortFailed && added[req.port]) ready[req.port] = false;
                if ((req.kind == R::GuestOpen || req.kind == R::GuestClose) && req.port < nr) {
                    const bool open = dev.port_state(req.port).guest_open;
                    if (ready[req.port] && open != (req.kind == R::GuestOpen)) __builtin_trap();
                }
                break;
            }
        }
        if (backlog.size() > bound) __builtin_trap();
        for (uint32_t p = 0; p < nr; ++p)
            if (dev.port_state(p).guest_open && !ever_ready[p]) __builtin_trap();  // opened without being ready
    }
    return 0;
}
