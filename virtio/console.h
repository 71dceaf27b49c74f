// virtio-console (virtio 1.x section 5.3).
//
// Port 0 is the guest's hvc0: queue 0 receives host input into the guest,
// queue 1 transmits guest output. Without named ports that is the whole
// device (no feature bits, config space all zero).
//
// With named ports (ConsoleConfig::port_names) the device offers
// VIRTIO_CONSOLE_F_MULTIPORT: max_nr_ports in the config space, control
// queues 2 (device -> driver) and 3 (driver -> device), and port N >= 1 on
// queues 2N+2 (receive) and 2N+3 (transmit). The control protocol:
//
//   driver: DEVICE_READY(1)      -> device: PORT_ADD for every port
//   driver: PORT_READY(id, 1)    -> device: CONSOLE_PORT for port 0 (hvc0),
//                                   PORT_NAME for a named port (Linux then
//                                   makes /dev/virtio-ports/NAME through
//                                   udev; /sys/class/virtio-ports/vportXpN/name
//                                   always), PORT_OPEN(host connected)
//   driver: PORT_OPEN(id, 0/1)   the guest closed/opened /dev/vportXpN
//   host:   set_host_connected() -> device: PORT_OPEN(id, 0/1)
//
// Named ports carry bytes through bounded buffers on both sides, so a slow
// or absent host client never stalls the I/O thread or another port: guest
// output stays in the guest's ring while the port's output buffer is full,
// and host input is refused (enqueue_port_input returns less) while its
// input buffer is full. Port 0 keeps its synchronous output callback.
//
// All queues are served by one I/O thread. Malformed control messages are
// counted and logged (rate-limited) and otherwise ignored; a broken ring
// asks for a device reset.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/device.h"
#include "virtio/served_queue.h"
#include "vmm/core/counters.h"
#include "vmm/core/event_loop.h"

namespace vmm::virtio {

inline constexpr unsigned kConsoleFeatureMultiport = 1;  // VIRTIO_CONSOLE_F_MULTIPORT

// Control message events (virtio 1.x 5.3.6.2).
enum ConsoleControlEvent : uint16_t {
    kConsoleDeviceReady = 0,
    kConsolePortAdd = 1,  // the spec's DEVICE_ADD
    kConsolePortRemove = 2,
    kConsolePortReady = 3,
    kConsoleConsolePort = 4,
    kConsoleResize = 5,
    kConsolePortOpen = 6,
    kConsolePortName = 7,
};

// struct virtio_console_control: id le32, event le16, value le16.
inline constexpr size_t kConsoleControlSize = 8;

// One driver -> device control message, checked (pure, unit-tested).
struct ConsoleControlRequest {
    enum Kind {
        Invalid,       // `error` says why
        DeviceReady,   // DEVICE_READY(1)
        DeviceFailed,  // DEVICE_READY(0): the driver gave up
        PortReady,     // PORT_READY(port, 1)
        PortFailed,    // PORT_READY(port, 0): the driver could not add it
        GuestOpen,     // PORT_OPEN(port, 1)
        GuestClose,    // PORT_OPEN(port, 0)
    } kind = Invalid;
    uint32_t port = 0;
    uint16_t event = 0;
    const char* error = nullptr;
};
ConsoleControlRequest parse_console_control(std::span<const uint8_t> msg, uint32_t nr_ports);
// A device -> driver control message: the 8-byte header plus `payload`
// (PORT_NAME's name, unterminated: the driver takes the buffer length).
std::vector<uint8_t> console_control_message(uint32_t id, uint16_t event, uint16_t value,
                                             std::string_view payload = {});

struct ConsoleConfig {
    std::string name = "virtio-console0";
    uint16_t queue_size = 256;
    // Receives port 0's (hvc0's) output, on the I/O thread. Empty: discard.
    std::function<void(std::span<const uint8_t>)> output;
    // Named ports 1..N (non-empty: MULTIPORT). The VM validates the names.
    std::vector<std::string> port_names;
};

class ConsoleDevice : public VirtioDevice {
public:
    static constexpr size_t kInputCapacity = 4096;       // per port, host -> guest
    static constexpr size_t kOutputCapacity = 64 * 1024;  // per named port, guest -> host
    static constexpr size_t kMaxNameLength = 255;         // fits any control buffer Linux posts (a page)

    explicit ConsoleDevice(ConsoleConfig cfg);
    ~ConsoleDevice() override;

    uint32_t device_type() const override { return kDeviceConsole; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override;
    uint64_t device_features() const override;
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;

    // Port 0 host input for the guest (thread-safe). Accepts what fits in the
    // bounded input buffer and returns how many bytes it took; the caller
    // retries the rest later (flow control instead of dropping bytes).
    size_t enqueue_input(std::span<const uint8_t> bytes);

    // --- named ports (1..nr_ports()-1); all thread-safe ---------------------
    uint32_t nr_ports() const { return static_cast<uint32_t>(ports_.size()); }
    bool multiport() const { return ports_.size() > 1; }
    // Host -> guest bytes, as enqueue_input(). Held until the guest opens
    // the port (Linux drops data that arrives on a closed port).
    size_t enqueue_port_input(uint32_t port, std::span<const uint8_t> bytes);
    // Guest -> host bytes: moves up to out.size() buffered bytes out.
    size_t read_port_output(uint32_t port, std::span<uint8_t> out);
    // Whether a host client is connected; sent to the guest as PORT_OPEN
    // (now, or when the port becomes ready). A disconnect is sent once the
    // port's buffered input has reached the guest, so no byte arrives after
    // the guest saw EOF.
    void set_host_connected(uint32_t port, bool connected);
    struct PortState {
        bool guest_open = false;
        uint64_t guest_closes = 0;  // PORT_OPEN(0) count: spots a close+reopen between two looks
    };
    PortState port_state(uint32_t port) const;
    // Readable (eventfd) when a named port has new output, freed input room
    // or a guest open/close. The host side consumes it and looks at every port.
    int port_event_fd() const { return port_events_.fd(); }

    struct Stats {
        CounterSet set;
        std::atomic<uint64_t>& tx_bytes = set.add("tx_bytes");  // port 0 (the console)
        std::atomic<uint64_t>& rx_bytes = set.add("rx_bytes");
        std::atomic<uint64_t>& errors = set.add("errors");
        CounterSet multiport;  // reported only once MULTIPORT is negotiated
        // malformed or out-of-protocol control messages
        std::atomic<uint64_t>& control_errors = multiport.add("control_errors");
        // device -> driver messages that could not be sent
        std::atomic<uint64_t>& control_dropped = multiport.add("control_dropped");
    };
    const Stats& stats() const { return stats_; }
    std::map<std::string, uint64_t> counters() const override;

private:
    // tests/fuzz/fuzz_virtio_console.cpp: the control handler and the state it
    // changes, driven without activation or threads.
    friend struct ConsoleDeviceTestAccess;
    // Guest-side state of one port (I/O thread) plus its host-side buffers
    // and counters (shared, under mu_ / atomics).
    struct Port {
        explicit Port(uint32_t id) : prefix("port" + std::to_string(id) + ".") {}
        std::string name;  // "" for port 0
        // I/O thread only.
        bool added = false, ready = false;
        bool sent_open = false;  // the last PORT_OPEN value sent
        std::optional<DescriptorChain> tx_chain;  // partly consumed guest output
        size_t tx_off = 0;
        // Under mu_.
        std::deque<uint8_t> input, output;
        bool host_connected = false;
        // Any thread.
        std::atomic<bool> guest_open{false};
        std::string prefix;   // "portN." in the counter names
        CounterSet counters;  // named ports' only (port 0 counts in stats_)
        std::atomic<uint64_t>& guest_opens = counters.add(prefix + "guest_opens");
        std::atomic<uint64_t>& guest_closes = counters.add(prefix + "guest_closes");
        std::atomic<uint64_t>& host_connects = counters.add(prefix + "host_connects");
        std::atomic<uint64_t>& tx_bytes = counters.add(prefix + "tx_bytes");  // guest -> host
        std::atomic<uint64_t>& rx_bytes = counters.add(prefix + "rx_bytes");
    };

    uint16_t rx_index(uint32_t port) const { return port == 0 ? 0 : static_cast<uint16_t>(2 * port + 2); }
    uint16_t tx_index(uint32_t port) const { return port == 0 ? 1 : static_cast<uint16_t>(2 * port + 3); }
    ServedQueue* queue(uint16_t index);  // nullptr: not active
    void on_wake();
    void on_tx();  // port 0
    void on_rx();  // port 0
    size_t fill_rx(ServedQueue& q, std::mutex& mu, std::deque<uint8_t>& input);
    void on_port_tx(uint32_t port);
    void on_port_rx(uint32_t port);
    void on_control_tx();
    void flush_control();
    void send_control(uint32_t id, uint16_t event, uint16_t value, std::string_view payload = {});
    void handle_control(const ConsoleControlRequest& req);
    void sync_host_open(uint32_t port);
    void control_error(const char* fmt_what, uint32_t port, uint16_t event);

    ConsoleConfig cfg_;
    Stats stats_;
    std::mutex in_mu_;
    std::deque<uint8_t> input_;  // port 0
    EventFd input_ready_;        // port 0 input arrived
    mutable std::mutex mu_;      // named ports' buffers and host_connected
    std::vector<std::unique_ptr<Port>> ports_;  // [0] is the console; empty names beyond
    EventFd wake_;               // host side changed something of a named port
    EventFd port_events_;        // to the host side
    // Valid while active (owned by the I/O thread after activate()).
    const GuestMemory* mem_ = nullptr;
    bool use_multiport_ = false;  // negotiated
    std::vector<ServedQueue*> queues_;  // by index; owned by worker_
    std::deque<std::vector<uint8_t>> control_out_;  // to the driver, waiting for buffers
    std::unique_ptr<QueueWorker> worker_;  // last: its thread stops first
};

}  // namespace vmm::virtio
