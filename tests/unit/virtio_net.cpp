// virtio-net over a fake tap (a SOCK_SEQPACKET socketpair keeps packet
// boundaries as a tap fd does): transmit checks, receive with and without
// mergeable buffers (read straight into guest buffers or copied), back-pressure when the guest has no buffers, the
// control queue, and the transmit-header checks on their own.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <thread>

#include "test_util.h"
#include "virtio/net.h"
#include "virtq_builder.h"

namespace {

using namespace std::chrono_literals;
using test::virtq::feature;
using vmm::virtio::NetHdr;
namespace v = vmm::virtio;

struct FakeTap : v::NetBackend {
    std::vector<vmm::Fd> dev_ends, peers;
    v::TapOffloads caps;
    std::mutex mu;
    v::TapOffloads offloads;
    std::vector<bool> attached;

    explicit FakeTap(size_t queues, v::TapOffloads c = {true, true, true, true, false}) : caps(c), attached(queues, true) {
        for (size_t i = 0; i < queues; ++i) {
            int sv[2];
            REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
            fcntl(sv[0], F_SETFL, O_NONBLOCK);
            dev_ends.emplace_back(sv[0]);
            peers.emplace_back(sv[1]);
        }
    }
    const std::vector<vmm::Fd>& fds() const override { return dev_ends; }
    v::TapOffloads supported() const override { return caps; }
    void set_offloads(const v::TapOffloads& o) override {
        std::lock_guard lk(mu);
        offloads = o;
    }
    void set_queue_attached(size_t i, bool a) override {
        std::lock_guard lk(mu);
        attached.at(i) = a;
    }
    // What the VMM wrote to queue i's tap, or empty after `wait`.
    std::vector<uint8_t> host_read(size_t i, std::chrono::milliseconds wait = 1000ms) {
        pollfd p{peers[i].get(), POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(wait.count())) != 1) return {};
        std::vector<uint8_t> buf(70000);
        ssize_t n = read(peers[i].get(), buf.data(), buf.size());
        buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
        return buf;
    }
    void host_write(size_t i, const std::vector<uint8_t>& pkt) {
        REQUIRE(write(peers[i].get(), pkt.data(), pkt.size()) == static_cast<ssize_t>(pkt.size()));
    }
};

std::vector<uint8_t> packet(size_t frame_len, uint8_t seed, NetHdr h = {}) {
    std::vector<uint8_t> p(sizeof h + frame_len);
    std::memcpy(p.data(), &h, sizeof h);
    for (size_t i = 0; i < frame_len; ++i) p[sizeof h + i] = static_cast<uint8_t>(seed + i);
    return p;
}

// The bytes of guest buffers {address, length}, one after the other.
std::vector<uint8_t> gather(const test::virtq::FakeRam& ram, std::initializer_list<std::pair<uint64_t, size_t>> parts) {
    std::vector<uint8_t> out;
    for (auto [a, n] : parts) {
        auto b = ram.bytes(a, n);
        out.insert(out.end(), b.begin(), b.end());
    }
    return out;
}

uint16_t num_buffers(const std::vector<uint8_t>& received) {
    NetHdr h;
    std::memcpy(&h, received.data(), sizeof h);
    return h.num_buffers;
}

constexpr uint64_t kBase = feature(v::kFeatureVersion1) | feature(v::kNetFMac) | feature(v::kNetFStatus) |
                           feature(v::kNetFCtrlVq) | feature(v::kNetFCtrlRx) | feature(v::kNetFCsum) |
                           feature(v::kNetFHostTso4) | feature(v::kNetFGuestCsum) | feature(v::kNetFCtrlGuestOffloads);

struct NetRig {
    test::virtq::FakeRam ram;
    std::shared_ptr<FakeTap> tap;
    std::vector<std::unique_ptr<test::virtq::SplitRing>> rings;
    std::vector<std::shared_ptr<vmm::EventFd>> kicks;
    std::shared_ptr<test::virtq::CountingInterrupt> irq = std::make_shared<test::virtq::CountingInterrupt>();
    std::atomic<int> resets{0};
    std::unique_ptr<v::NetDevice> dev;

    explicit NetRig(size_t pairs = 1) : tap(std::make_shared<FakeTap>(pairs)) {
        dev = std::make_unique<v::NetDevice>(v::NetConfig{}, tap);
    }
    // Queues 0..n-1 enabled (rx0, tx0, then ctrl or more pairs).
    void activate(uint64_t features, size_t n) {
        v::ActivationContext ctx;
        ctx.mem = &ram.mem;
        ctx.features = features;
        ctx.interrupt = irq;
        ctx.needs_reset = [this] { ++resets; };
        for (size_t i = 0; i < n; ++i) {
            rings.push_back(std::make_unique<test::virtq::SplitRing>(ram, 32, features));
            kicks.push_back(std::make_shared<vmm::EventFd>());
            ctx.queues.push_back({static_cast<uint16_t>(i), v::Queue(ram.mem, rings[i]->config(), features), kicks[i]});
        }
        dev->activate(std::move(ctx));
    }
    uint64_t counter(const char* k) { return dev->counters().at(k); }
    // A transmit chain: header and frame in separate descriptors.
    void transmit(const std::vector<uint8_t>& pkt, size_t split = sizeof(NetHdr)) {
        uint64_t a = ram.alloc(pkt.size());
        ram.fill(a, pkt);
        if (split >= pkt.size()) rings[1]->add_chain({{a, static_cast<uint32_t>(pkt.size()), false}});
        else
            rings[1]->add_chain({{a, static_cast<uint32_t>(split), false},
                                 {a + split, static_cast<uint32_t>(pkt.size() - split), false}});
        kicks[1]->signal();
    }
    uint64_t post_rx(uint32_t len) {
        uint64_t a = ram.alloc(len);
        rings[0]->add_chain({{a, len, true}});
        kicks[0]->signal();
        return a;
    }
    uint8_t control(std::vector<uint8_t> cmd) {
        uint64_t a = ram.alloc(cmd.size() + 1);
        ram.fill(a, cmd);
        uint16_t before = rings[2]->used_idx();
        rings[2]->add_chain({{a, static_cast<uint32_t>(cmd.size()), false}, {a + cmd.size(), 1, true}});
        kicks[2]->signal();
        REQUIRE(test::wait_for([&] { return rings[2]->used_idx() == before + 1; }));
        return ram.get<uint8_t>(a + cmd.size());
    }
};

}  // namespace

TEST_CASE("virtio-net: transmit headers are checked", "[virtio][net]") {
    NetHdr h{};
    uint64_t f = kBase;
    CHECK_FALSE(v::check_tx_header(h, 60, f));
    CHECK(v::check_tx_header(h, 13, f));                  // shorter than Ethernet
    CHECK(v::check_tx_header(h, v::kNetMaxFrame + 1, f)); // too big
    h.flags = 0x80;
    CHECK(v::check_tx_header(h, 60, f));  // unknown flag
    h.flags = v::kNetHdrFNeedsCsum;
    h.csum_start = 34, h.csum_offset = 16;
    CHECK_FALSE(v::check_tx_header(h, 60, f));
    CHECK(v::check_tx_header(h, 51, f));  // the checksum field would end past the frame
    h.csum_start = 0xffff, h.csum_offset = 0xffff;
    CHECK(v::check_tx_header(h, 60, f));  // no 16-bit wrap
    CHECK(v::check_tx_header(h, 60, f & ~feature(v::kNetFCsum)));
    h.csum_start = 34, h.csum_offset = 16;
    h.gso_type = v::kNetGsoTcpv4, h.gso_size = 1448, h.hdr_len = 54;
    CHECK_FALSE(v::check_tx_header(h, 9000, f));
    CHECK(v::check_tx_header(h, 9000, f & ~feature(v::kNetFHostTso4)));  // not negotiated
    CHECK(v::check_tx_header(NetHdr{v::kNetHdrFNeedsCsum, v::kNetGsoTcpv6, 54, 1448, 34, 16, 0}, 9000, f));
    h.gso_size = 0;
    CHECK(v::check_tx_header(h, 9000, f));
    h.gso_size = 1448, h.hdr_len = 9001;
    CHECK(v::check_tx_header(h, 9000, f));
    h.hdr_len = 54, h.flags = 0;
    CHECK(v::check_tx_header(h, 9000, f));  // GSO needs a partial checksum
    h.flags = v::kNetHdrFNeedsCsum, h.gso_type = v::kNetGsoTcpv4 | v::kNetGsoEcn;
    CHECK(v::check_tx_header(h, 9000, f));  // ECN not negotiated
    h.gso_type = 2;
    CHECK(v::check_tx_header(h, 9000, f));  // unknown GSO type
    CHECK(v::check_tx_header(NetHdr{0, v::kNetGsoEcn, 0, 0, 0, 0, 0}, 60, f));
}

TEST_CASE("virtio-net: identity, features and config space", "[virtio][net]") {
    auto tap = std::make_shared<FakeTap>(2, v::TapOffloads{true, true, false, false, false});
    v::NetConfig cfg;
    cfg.mac = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
    v::NetDevice dev(cfg, tap);
    CHECK(dev.device_type() == 1);
    CHECK(dev.queue_max_sizes().size() == 5);  // 2 pairs + control
    uint64_t f = dev.device_features();
    for (unsigned b : {v::kNetFMac, v::kNetFStatus, v::kNetFMrgRxbuf, v::kNetFCtrlVq, v::kNetFCtrlRx, v::kNetFCtrlRxExtra,
                       v::kNetFCtrlMacAddr, v::kNetFCsum, v::kNetFHostTso4, v::kNetFGuestCsum, v::kNetFGuestTso4,
                       v::kNetFMq})
        CHECK((f & feature(b)) != 0);
    CHECK((f & feature(v::kNetFGuestTso6)) == 0);  // the tap cannot give us TSO6
    CHECK((f & feature(v::kNetFGuestUfo)) == 0);
    std::vector<uint8_t> c(16, 0xee);
    dev.read_config(0, c);
    CHECK(std::vector<uint8_t>(c.begin(), c.begin() + 6) == std::vector<uint8_t>{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc});
    CHECK(c[6] == 1);   // LINK_UP
    CHECK(c[8] == 2);   // max_virtqueue_pairs
    CHECK(c[12] == 0);  // past the end
    auto one = std::make_shared<FakeTap>(1, v::TapOffloads{});
    v::NetDevice plain(v::NetConfig{}, one);
    CHECK((plain.device_features() & (feature(v::kNetFMq) | feature(v::kNetFGuestCsum))) == 0);
    CHECK(plain.queue_max_sizes().size() == 3);
}

TEST_CASE("virtio-net: transmit to the tap, and what is dropped", "[virtio][net]") {
    NetRig r;
    r.activate(kBase, 3);
    auto pkt = packet(60, 7);
    r.transmit(pkt);
    CHECK(r.tap->host_read(0) == pkt);
    REQUIRE(test::wait_for([&] { return r.rings[1]->used_idx() == 1; }));
    CHECK(r.counter("tx_packets") == 1);
    CHECK(r.counter("tx_bytes") == 60);
    // Dropped: a chain shorter than a header, a runt frame, GSO without
    // NEEDS_CSUM. Each is returned to the guest and counted.
    r.transmit(std::vector<uint8_t>(8, 0));
    r.transmit(packet(10, 1));
    NetHdr gso{0, v::kNetGsoTcpv4, 54, 1448, 0, 0, 0};
    r.transmit(packet(3000, 2, gso));
    REQUIRE(test::wait_for([&] { return r.rings[1]->used_idx() == 4; }));
    CHECK(r.counter("tx_dropped") == 3);
    CHECK(r.tap->host_read(0, 50ms).empty());
    // A GSO packet split over descriptors anywhere goes out whole.
    NetHdr ok{v::kNetHdrFNeedsCsum, v::kNetGsoTcpv4, 54, 1448, 34, 16, 0};
    auto big = packet(20000, 3, ok);
    r.transmit(big, 5);
    CHECK(r.tap->host_read(0) == big);
    CHECK(r.resets.load() == 0);
    r.dev->reset();
}

TEST_CASE("virtio-net: receive into mergeable buffers, read straight into them", "[virtio][net]") {
    // Whether or not the posted buffers could take a 64 KiB packet, a packet
    // that fits in them is read from the tap straight into them.
    const uint32_t buf = GENERATE(512u, 40000u);
    const size_t frame = buf == 512 ? 1000 : 50000;
    NetRig r;
    r.activate(kBase | feature(v::kNetFMrgRxbuf), 3);
    uint64_t b0 = r.post_rx(buf), b1 = r.post_rx(buf), b2 = r.post_rx(buf);
    auto pkt = packet(frame, 9);
    r.tap->host_write(0, pkt);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 2; }));
    const uint32_t tail = static_cast<uint32_t>(sizeof(NetHdr) + frame - buf);
    CHECK(r.rings[0]->used(0).len == buf);
    CHECK(r.rings[0]->used(1).len == tail);
    auto got = gather(r.ram, {{b0, buf}, {b1, tail}});
    CHECK(num_buffers(got) == 2);
    CHECK(std::equal(got.begin() + 12, got.end(), pkt.begin() + 12));
    CHECK(r.counter("rx_packets") == 1);
    CHECK(r.counter("rx_bytes") == frame);
    CHECK(test::wait_for([&] { return r.irq->queue[0].load() >= 1; }));
    auto small = packet(100, 4);
    r.tap->host_write(0, small);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 3; }));
    CHECK(r.rings[0]->used(2).len == 112);
    got = r.ram.bytes(b2, 112);
    CHECK(num_buffers(got) == 1);
    CHECK(std::equal(got.begin() + 12, got.end(), small.begin() + 12));
    CHECK(r.counter("rx_copied") == 0);
    CHECK(r.counter("rx_packets") == 2);
    CHECK(r.counter("rx_bytes") == frame + 100);
    r.dev->reset();
}

TEST_CASE("virtio-net: a packet larger than the buffers held waits for more, its tail copied", "[virtio][net]") {
    NetRig r;
    r.activate(kBase | feature(v::kNetFMrgRxbuf), 3);
    uint64_t b0 = r.post_rx(512);
    auto pkt = packet(2000, 3);  // 2012 bytes: 512 into b0 now, the rest into a host buffer
    r.tap->host_write(0, pkt);
    REQUIRE(test::wait_for([&] { return r.counter("rx_stalls") >= 1; }));
    CHECK(r.rings[0]->used_idx() == 0);
    uint64_t b1 = r.post_rx(1000), b2 = r.post_rx(1000);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 3; }));
    CHECK(r.rings[0]->used(0).len == 512);
    CHECK(r.rings[0]->used(1).len == 1000);
    CHECK(r.rings[0]->used(2).len == 500);
    auto got = gather(r.ram, {{b0, 512}, {b1, 1000}, {b2, 500}});
    CHECK(num_buffers(got) == 3);
    CHECK(std::equal(got.begin() + 12, got.end(), pkt.begin() + 12));
    CHECK(r.counter("rx_copied") == 1);
    CHECK(r.counter("rx_packets") == 1);
    CHECK(r.counter("rx_bytes") == 2000);
    r.dev->reset();
}

TEST_CASE("virtio-net: a header split across descriptors, and buffers too small for one", "[virtio][net]") {
    NetRig r;
    r.activate(kBase | feature(v::kNetFMrgRxbuf), 3);
    uint64_t tiny = r.ram.alloc(6);
    r.rings[0]->add_chain({{tiny, 6, true}});  // below the spec's minimum: returned unused
    uint64_t a = r.ram.alloc(4), b = r.ram.alloc(8), c = r.ram.alloc(70000);
    r.ram.fill(b, std::vector<uint8_t>(8, 0xee));  // num_buffers must be overwritten
    r.rings[0]->add_chain({{a, 4, true}, {b, 8, true}, {c, 70000, true}});
    r.kicks[0]->signal();
    auto pkt = packet(300, 7);
    r.tap->host_write(0, pkt);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 2; }));
    CHECK(r.rings[0]->used(0).len == 0);
    CHECK(r.rings[0]->used(1).len == 312);
    auto hdr = gather(r.ram, {{a, 4}, {b, 8}});
    CHECK(num_buffers(hdr) == 1);
    CHECK(std::equal(hdr.begin(), hdr.begin() + 10, pkt.begin()));
    auto body = r.ram.bytes(c, 300);
    CHECK(std::equal(body.begin(), body.end(), pkt.begin() + 12));
    CHECK(r.counter("errors") == 1);
    CHECK(r.counter("rx_copied") == 0);
    r.dev->reset();
}

TEST_CASE("virtio-net: without mergeable buffers one big buffer is read into directly", "[virtio][net]") {
    NetRig r;
    r.activate(kBase, 3);
    uint64_t b = r.post_rx(sizeof(NetHdr) + v::kNetMaxFrame);
    auto pkt = packet(2000, 8);
    r.tap->host_write(0, pkt);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
    CHECK(r.rings[0]->used(0).len == 2012);
    auto got = r.ram.bytes(b, 2012);
    CHECK(num_buffers(got) == 1);
    CHECK(std::equal(got.begin() + 12, got.end(), pkt.begin() + 12));
    CHECK(r.counter("rx_copied") == 0);
    r.dev->reset();
}

TEST_CASE("virtio-net: without mergeable buffers a packet needs one big enough buffer", "[virtio][net]") {
    NetRig r;
    r.activate(kBase, 3);
    uint64_t b = r.post_rx(100);
    r.tap->host_write(0, packet(200, 1));  // does not fit: dropped, buffer kept
    auto small = packet(50, 2);
    r.tap->host_write(0, small);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
    CHECK(r.rings[0]->used(0).len == 62);
    auto got = r.ram.bytes(b + 12, 50);
    CHECK(std::equal(got.begin(), got.end(), small.begin() + 12));
    CHECK(r.counter("rx_dropped") == 1);
    r.dev->reset();
}

TEST_CASE("virtio-net: no receive buffers holds the packet until the driver posts one", "[virtio][net]") {
    NetRig r;
    r.activate(kBase | feature(v::kNetFMrgRxbuf), 3);
    auto pkt = packet(300, 5);
    r.tap->host_write(0, pkt);
    REQUIRE(test::wait_for([&] { return r.counter("rx_stalls") >= 1; }));
    CHECK(r.rings[0]->used_idx() == 0);
    uint64_t b = r.post_rx(2048);
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
    CHECK(r.rings[0]->used(0).len == 312);
    auto got = r.ram.bytes(b + 12, 300);
    CHECK(std::equal(got.begin(), got.end(), pkt.begin() + 12));
    CHECK(r.counter("rx_dropped") == 0);
    r.dev->reset();
}

TEST_CASE("virtio-net: control queue", "[virtio][net]") {
    NetRig r(2);
    uint64_t f = kBase | feature(v::kNetFMq) | feature(v::kNetFGuestTso4);
    r.activate(f, 5);  // rx0 tx0 rx1 tx1 ctrl
    // The control queue is queue 4 with MQ: move ring 2's role there.
    auto ctrl = [&](std::vector<uint8_t> cmd) {
        uint64_t a = r.ram.alloc(cmd.size() + 1);
        r.ram.fill(a, cmd);
        uint16_t before = r.rings[4]->used_idx();
        r.rings[4]->add_chain({{a, static_cast<uint32_t>(cmd.size()), false}, {a + cmd.size(), 1, true}});
        r.kicks[4]->signal();
        REQUIRE(test::wait_for([&] { return r.rings[4]->used_idx() == before + 1; }));
        return r.ram.get<uint8_t>(a + cmd.size());
    };
    {
        std::lock_guard lk(r.tap->mu);
        CHECK(r.tap->attached == std::vector<bool>{true, false});  // one pair until the driver asks for more
        CHECK(r.tap->offloads.csum);
        CHECK(r.tap->offloads.tso4);
        CHECK_FALSE(r.tap->offloads.tso6);
    }
    CHECK(ctrl({4, 0, 2, 0}) == 0);  // MQ VQ_PAIRS_SET 2
    {
        std::lock_guard lk(r.tap->mu);
        CHECK(r.tap->attached == std::vector<bool>{true, true});
    }
    CHECK(ctrl({4, 0, 3, 0}) == 1);   // more pairs than exist
    CHECK(ctrl({4, 0, 0, 0}) == 1);   // zero pairs
    CHECK(ctrl({4, 0, 2}) == 1);      // truncated
    CHECK(ctrl({0, 0, 1}) == 0);      // promiscuous on
    CHECK(ctrl({0, 9, 1}) == 1);      // unknown rx command
    CHECK(ctrl({1, 0, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0}) == 0);  // MAC table: 1 unicast, 0 multicast
    CHECK(ctrl({1, 0, 9, 0, 0, 0, 1, 2, 3}) == 1);                      // table longer than the command
    CHECK(ctrl({5, 0, 2, 0, 0, 0, 0, 0, 0, 0}) == 0);                    // guest offloads: csum only
    {
        std::lock_guard lk(r.tap->mu);
        CHECK(r.tap->offloads.csum);
        CHECK_FALSE(r.tap->offloads.tso4);
    }
    CHECK(ctrl({5, 0, 0, 1, 0, 0, 0, 0, 0, 0}) == 1);  // TSO6 (bit 8) was not negotiated
    CHECK(ctrl({77, 1}) == 1);
    CHECK(ctrl({4}) == 1);  // shorter than a header
    CHECK(r.counter("ctrl_errors") == 8);
    // No room for the ack: counted, returned with nothing written.
    uint64_t a = r.ram.alloc(4);
    r.ram.fill(a, {0, 0, 1});
    r.rings[4]->add_chain({{a, 3, false}});
    r.kicks[4]->signal();
    REQUIRE(test::wait_for([&] { return r.counter("ctrl_errors") == 9; }));
    CHECK(r.resets.load() == 0);
    r.dev->reset();
}

TEST_CASE("virtio-net: the driver's receive filter, on the direct and the copied path", "[virtio][net]") {
    // Room for a 64 KiB packet or not, the destination is checked in the
    // guest buffer the tap wrote.
    const uint32_t buf = GENERATE(70000u, 2048u);
    NetRig r;
    r.activate(kBase | feature(v::kNetFMrgRxbuf) | feature(v::kNetFCtrlRxExtra) | feature(v::kNetFCtrlMacAddr), 3);
    const std::vector<uint8_t> own{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, other{0x02, 0, 0, 0, 0, 9},
        mcast{0x01, 0x00, 0x5e, 0, 0, 0xfb}, bcast(6, 0xff);
    auto to = [](const std::vector<uint8_t>& dst, uint8_t seed) {
        auto p = packet(100, seed);
        std::copy(dst.begin(), dst.end(), p.begin() + sizeof(NetHdr));
        return p;
    };
    // Reset: promiscuous, like QEMU, until the driver says otherwise.
    uint64_t b0 = r.post_rx(buf);
    r.tap->host_write(0, to(other, 1));
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 1; }));
    CHECK(r.ram.bytes(b0 + 12, 6) == other);
    // Promiscuous off, multicast table {mcast}.
    CHECK(r.control({0, 0, 0}) == 0);
    CHECK(r.control({1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x01, 0x00, 0x5e, 0, 0, 0xfb}) == 0);
    uint64_t b1 = r.post_rx(buf);
    r.tap->host_write(0, to(other, 2));  // filtered: the buffer stays for the next
    r.tap->host_write(0, to(mcast, 3));
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 2; }));
    CHECK(r.ram.bytes(b1 + 12, 6) == mcast);
    CHECK(r.counter("rx_filtered") == 1);
    uint64_t b2 = r.post_rx(buf), b3 = r.post_rx(buf);
    r.tap->host_write(0, to(own, 4));
    r.tap->host_write(0, to(bcast, 5));
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 4; }));
    CHECK(r.ram.bytes(b2 + 12, 6) == own);
    CHECK(r.ram.bytes(b3 + 12, 6) == bcast);
    // NOBCAST (CTRL_RX_EXTRA), and a new MAC (CTRL_MAC_ADDR), which the
    // config space reports too.
    CHECK(r.control({0, 5, 1}) == 0);
    CHECK(r.control({1, 1, 0x02, 0, 0, 0, 0, 9}) == 0);
    std::vector<uint8_t> c(6);
    r.dev->read_config(0, c);
    CHECK(c == other);
    uint64_t b4 = r.post_rx(buf);
    r.tap->host_write(0, to(bcast, 6));
    r.tap->host_write(0, to(own, 7));
    r.tap->host_write(0, to(other, 8));
    REQUIRE(test::wait_for([&] { return r.rings[0]->used_idx() == 5; }));
    CHECK(r.ram.bytes(b4 + 12, 6) == other);
    CHECK(r.counter("rx_filtered") == 3);
    CHECK(r.counter("rx_packets") == 5);
    CHECK(r.counter("rx_copied") == 0);  // every frame fitted the buffers held
    // With no buffers posted at all the frame is read into the host buffer
    // and filtered there.
    r.tap->host_write(0, to(own, 9));
    REQUIRE(test::wait_for([&] { return r.counter("rx_filtered") == 4; }));
    CHECK(r.rings[0]->used_idx() == 5);
    // Malformed filter commands are refused.
    CHECK(r.control({1, 1, 0x02, 0, 0}) == 1);  // short MAC
    CHECK(r.control({1, 7, 0}) == 1);           // unknown MAC command
    CHECK(r.control({0, 6, 1}) == 1);           // unknown rx mode
    CHECK(r.control({0, 1}) == 1);              // no on/off byte
    // A device reset forgets all of it.
    r.dev->reset();
    r.dev->read_config(0, c);
    CHECK(c == own);
}

TEST_CASE("virtio-net: filter commands need their features", "[virtio][net]") {
    NetRig r;
    r.activate(kBase, 3);  // CTRL_RX, but not CTRL_RX_EXTRA or CTRL_MAC_ADDR
    CHECK(r.control({0, 2, 1}) == 1);                  // all-unicast needs CTRL_RX_EXTRA
    CHECK(r.control({1, 1, 0x02, 0, 0, 0, 0, 9}) == 1);  // MAC_ADDR_SET needs CTRL_MAC_ADDR
    std::vector<uint8_t> c(6);
    r.dev->read_config(0, c);
    CHECK(c == std::vector<uint8_t>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
    // A table of 65 entries (one over the maximum) is accepted as overflow.
    std::vector<uint8_t> cmd{1, 0, 65, 0, 0, 0};
    for (int i = 0; i < 65; ++i) cmd.insert(cmd.end(), {0x02, 0, 0, 0, 1, static_cast<uint8_t>(i)});
    cmd.insert(cmd.end(), {0, 0, 0, 0});
    CHECK(r.control(cmd) == 0);
    CHECK(r.counter("ctrl_errors") == 2);
    r.dev->reset();
}

TEST_CASE("virtio-net: without MQ the control queue is queue 2 and refuses pair changes", "[virtio][net]") {
    NetRig r(2);
    r.activate(kBase, 3);
    CHECK(r.control({0, 1, 1}) == 0);     // all-multicast on
    CHECK(r.control({4, 0, 1, 0}) == 1);  // MQ not negotiated
    std::lock_guard lk(r.tap->mu);
    CHECK(r.tap->attached == std::vector<bool>{true, false});
}

TEST_CASE("virtio-net: a broken transmit ring asks for a reset", "[virtio][net]") {
    NetRig r;
    r.activate(kBase, 3);
    r.rings[1]->set_desc(0, test::virtq::FakeRam::kHole, 64, 0, 0);
    r.rings[1]->publish(0);
    r.kicks[1]->signal();
    REQUIRE(test::wait_for([&] { return r.resets.load() == 1; }));
    CHECK(r.counter("errors") == 1);
    r.dev->reset();
}
