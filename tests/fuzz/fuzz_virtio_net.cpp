// virtio-net's guest-facing parsing, without a tap or threads:
// - check_tx_header() on any 12-byte header, frame length and feature set;
//   an accepted header must really satisfy what the device promises the tap
//   (frame length in range, checksum field inside the frame, GSO only with
//   its negotiated feature, NEEDS_CSUM and a segment size).
// - the control queue command handler (NetDevice::ctrl_command, reached
//   through the device's test friend since the device only calls it from
//   its control thread) on commands the guest writes into RAM, split over
//   readable buffers anywhere (in RAM, at its edges, in the hole).
// - the receive filter the commands program, on frames from the input,
//   checked against a shadow model of the virtio spec's rules that follows
//   the acks the device gave.
// QueueError (a buffer outside RAM) is the expected answer to garbage;
// anything else (a crash, a sanitizer report, an ack other than 0/1, the
// filter disagreeing with the model, an accepted bad header) is a bug.
#include <algorithm>
#include <memory>

#include "fuzz_ram.h"
#include "virtio/net.h"
#include "virtio/queue.h"

using namespace vmm::virtio;

// The device's friend for tests (virtio/net.h).
namespace vmm::virtio {
struct NetDeviceTestAccess {
    static uint8_t ctrl(NetDevice& d, uint8_t cls, uint8_t cmd, Reader& r) { return d.ctrl_command(cls, cmd, r); }
    static uint64_t& features(NetDevice& d) { return d.features_; }
    static RxFilter& filter(NetDevice& d) { return d.filter_; }
};
}  // namespace vmm::virtio

namespace {
using Access = vmm::virtio::NetDeviceTestAccess;

// A backend without fds that do anything: the device only counts them and
// records attach/offload calls here.
struct NullBackend : NetBackend {
    std::vector<vmm::Fd> fd_list;
    size_t max_attached = 0;
    explicit NullBackend(size_t n) : fd_list(n) {}
    const std::vector<vmm::Fd>& fds() const override { return fd_list; }
    TapOffloads supported() const override { return {true, true, true, true, true}; }
    void set_offloads(const TapOffloads&) override {}
    void set_queue_attached(size_t i, bool a) override {
        if (i >= fd_list.size()) __builtin_trap();  // the device attached a queue that does not exist
        if (a) max_attached = std::max(max_attached, i + 1);
    }
};

bool has(uint64_t f, unsigned bit) { return (f >> bit) & 1; }

// What the spec says the filter does, kept from the commands acked OK.
struct Model {
    MacAddress mac;
    bool promisc = true, all_multi = false, all_uni = false, no_multi = false, no_uni = false, no_bcast = false;
    std::vector<MacAddress> uni, multi;
    bool uni_over = false, multi_over = false;

    bool accepts(std::span<const uint8_t> f) const {
        if (promisc) return true;
        if (f.size() < 6) return false;
        MacAddress d;
        std::copy_n(f.begin(), 6, d.begin());
        auto in = [&](const std::vector<MacAddress>& t) { return std::find(t.begin(), t.end(), d) != t.end(); };
        if (d == MacAddress{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) return !no_bcast;
        if (d[0] & 1) return !no_multi && (all_multi || multi_over || in(multi));
        return !no_uni && (all_uni || uni_over || d == mac || in(uni));
    }
};

void check_header(FuzzedDataProvider& in) {
    NetHdr h;
    h.flags = in.ConsumeIntegral<uint8_t>();
    h.gso_type = in.ConsumeIntegral<uint8_t>();
    h.hdr_len = in.ConsumeIntegral<uint16_t>();
    h.gso_size = in.ConsumeIntegral<uint16_t>();
    h.csum_start = in.ConsumeIntegral<uint16_t>();
    h.csum_offset = in.ConsumeIntegral<uint16_t>();
    h.num_buffers = in.ConsumeIntegral<uint16_t>();
    const uint32_t len = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, kNetMaxFrame + 16)
                                          : in.ConsumeIntegral<uint32_t>();
    const uint64_t features = in.ConsumeIntegral<uint64_t>();
    auto why = check_tx_header(h, len, features);
    if (why) {
        if (why->empty()) __builtin_trap();  // a reason must say something
        return;
    }
    if (len < kNetMinFrame || len > kNetMaxFrame) __builtin_trap();
    if (h.flags & ~(kNetHdrFNeedsCsum | kNetHdrFDataValid)) __builtin_trap();
    if (h.flags & kNetHdrFNeedsCsum) {
        if (!has(features, kNetFCsum)) __builtin_trap();
        if (uint64_t{h.csum_start} + h.csum_offset + 2 > len) __builtin_trap();
    }
    const uint8_t gso = h.gso_type & ~kNetGsoEcn;
    if (gso != kNetGsoNone) {
        const unsigned need = gso == kNetGsoTcpv4 ? kNetFHostTso4 : gso == kNetGsoTcpv6 ? kNetFHostTso6 : kNetFHostUfo;
        if (gso != kNetGsoTcpv4 && gso != kNetGsoTcpv6 && gso != kNetGsoUdp) __builtin_trap();
        if (!has(features, need)) __builtin_trap();
        if ((h.gso_type & kNetGsoEcn) && !has(features, kNetFHostEcn)) __builtin_trap();
        if (!(h.flags & kNetHdrFNeedsCsum) || h.gso_size == 0 || h.hdr_len > len) __builtin_trap();
    } else if (h.gso_type & kNetGsoEcn) {
        __builtin_trap();
    }
}

// Lays `cmd` out in guest RAM at a fuzzed address, split into up to 4
// readable buffers (which may also point elsewhere, e.g. into the hole).
DescriptorChain place(FuzzedDataProvider& in, fuzz::Ram& ram, const std::vector<uint8_t>& cmd) {
    DescriptorChain c;
    size_t off = 0;
    const int parts = in.ConsumeIntegralInRange(1, 4);
    for (int i = 0; i < parts; ++i) {
        size_t n = i + 1 == parts ? cmd.size() - off : in.ConsumeIntegralInRange<size_t>(0, cmd.size() - off);
        uint64_t a = fuzz::Ram::address(in);
        ram.mem.write(a, {cmd.data() + off, n});  // fails silently outside RAM
        c.readable.push_back({a, static_cast<uint32_t>(n)});
        off += n;
    }
    if (in.ConsumeBool()) c.readable.push_back({fuzz::Ram::address(in), in.ConsumeIntegralInRange<uint32_t>(0, 64)});
    c.writable.push_back({0x8000, 1});  // the ack; never touched by ctrl_command
    return c;
}

void ctrl(FuzzedDataProvider& in, fuzz::Ram& ram, NetDevice& dev, NullBackend& be, Model& m, size_t pairs) {
    const uint8_t cls = in.ConsumeIntegralInRange<uint8_t>(0, 6);
    const uint8_t cmd = in.ConsumeIntegralInRange<uint8_t>(0, 7);
    auto payload = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 1024));
    DescriptorChain c = place(in, ram, payload);
    const uint64_t f = Access::features(dev);
    // What the guest really left in RAM (buffers may overlap), byte by
    // byte; -1 where a buffer is outside RAM.
    std::vector<int> d;
    for (const Buffer& b : c.readable)
        for (uint32_t i = 0; i < b.len; ++i) {
            auto s = ram.mem.slice(b.addr + i, 1);
            d.push_back(s ? (*s)[0] : -1);
        }
    // Byte i of the command, which an OK ack says the device could read.
    auto at = [&](size_t i) -> uint8_t {
        if (i >= d.size() || d[i] < 0) __builtin_trap();
        return static_cast<uint8_t>(d[i]);
    };
    Reader r(ram.mem, c);
    const size_t before = r.remaining();
    const size_t attached_before = be.max_attached;
    be.max_attached = 0;
    uint8_t ack;
    try {
        ack = Access::ctrl(dev, cls, cmd, r);
    } catch (const QueueError&) {
        return;  // the control thread catches this and asks for a reset
    }
    if (ack > 1) __builtin_trap();
    if (r.remaining() > before) __builtin_trap();
    if (ack != 0) {
        be.max_attached = attached_before;
        return;
    }
    // An OK ack must come from a valid command; mirror it in the model.
    switch (cls) {
        case 0:
            if (!has(f, kNetFCtrlRx) || cmd > 5 || (cmd > 1 && !has(f, kNetFCtrlRxExtra)) || d.empty())
                __builtin_trap();
            {
                bool on = at(0) != 0;
                bool* flag[] = {&m.promisc, &m.all_multi, &m.all_uni, &m.no_multi, &m.no_uni, &m.no_bcast};
                *flag[cmd] = on;
            }
            break;
        case 1:
            if (cmd == 1) {
                if (!has(f, kNetFCtrlMacAddr)) __builtin_trap();
                for (size_t i = 0; i < 6; ++i) m.mac[i] = at(i);
            } else {
                if (cmd != 0 || !has(f, kNetFCtrlRx)) __builtin_trap();
                size_t pos = 0;
                std::vector<MacAddress> t[2];
                bool over[2];
                for (int k = 0; k < 2; ++k) {
                    uint32_t n = at(pos) | at(pos + 1) << 8 | at(pos + 2) << 16 | uint32_t{at(pos + 3)} << 24;
                    pos += 4;
                    if (uint64_t{n} * 6 > d.size() - pos) __builtin_trap();
                    over[k] = n > RxFilter::kMaxEntries;
                    for (uint32_t i = 0; i < n && !over[k]; ++i) {
                        MacAddress a;
                        for (size_t j = 0; j < 6; ++j) a[j] = at(pos + 6 * i + j);
                        t[k].push_back(a);
                    }
                    pos += size_t{n} * 6;
                }
                m.uni = over[0] ? std::vector<MacAddress>{} : t[0];
                m.multi = over[1] ? std::vector<MacAddress>{} : t[1];
                m.uni_over = over[0];
                m.multi_over = over[1];
            }
            break;
        case 3:
            if (cmd != 0) __builtin_trap();
            break;
        case 4: {
            if (cmd != 0 || !has(f, kNetFMq)) __builtin_trap();
            size_t n = at(0) | at(1) << 8;
            if (n < 1 || n > pairs || be.max_attached != n) __builtin_trap();
            break;
        }
        case 5:
            if (cmd != 0 || !has(f, kNetFCtrlGuestOffloads)) __builtin_trap();
            for (size_t i = 0; i < 8; ++i) at(i);
            break;
        default:
            __builtin_trap();  // unknown class acked OK
    }
}

void filter(FuzzedDataProvider& in, NetDevice& dev, const Model& m) {
    const RxFilter& f = Access::filter(dev);
    std::vector<uint8_t> frame;
    switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0: frame = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 64)); break;
        case 1: frame.assign(m.mac.begin(), m.mac.end()); break;  // our own address
        case 2: frame.assign(6, 0xff); break;                      // broadcast
        default:  // an address from a table
            if (!m.uni.empty()) frame.assign(m.uni.front().begin(), m.uni.front().end());
            else if (!m.multi.empty()) frame.assign(m.multi.back().begin(), m.multi.back().end());
            break;
    }
    if (in.ConsumeBool()) frame.resize(frame.size() + 8, 0x5a);
    if (f.mac() != m.mac) __builtin_trap();
    if (f.accepts(frame) != m.accepts(frame)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    fuzz::Ram ram;

    const size_t pairs = in.ConsumeIntegralInRange<size_t>(1, 4);
    // The features a driver could negotiate, chosen bit by bit.
    uint64_t features = uint64_t{1} << kFeatureVersion1;
    const uint32_t pick = in.ConsumeIntegral<uint32_t>();
    for (unsigned b : {kNetFCsum, kNetFGuestCsum, kNetFCtrlGuestOffloads, kNetFMac, kNetFGuestTso4, kNetFGuestTso6,
                       kNetFGuestEcn, kNetFGuestUfo, kNetFHostTso4, kNetFHostTso6, kNetFHostEcn, kNetFHostUfo,
                       kNetFMrgRxbuf, kNetFStatus, kNetFCtrlVq, kNetFCtrlRx, kNetFCtrlRxExtra, kNetFMq,
                       kNetFCtrlMacAddr})
        if (pick >> (b % 32) & 1) features |= uint64_t{1} << b;

    auto backend = std::make_shared<NullBackend>(pairs);
    NetConfig cfg;
    NetDevice dev(cfg, backend);
    Access::features(dev) = features;  // what activate() records, without its threads
    Model model;
    model.mac = cfg.mac;

    for (int ops = 0; ops < 64 && in.remaining_bytes() > 0; ++ops) {
        switch (in.ConsumeIntegralInRange(0, 2)) {
            case 0: check_header(in); break;
            case 1: ctrl(in, ram, dev, *backend, model, pairs); break;
            default: filter(in, dev, model); break;
        }
    }
    return 0;
}
