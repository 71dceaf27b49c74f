// virtio-balloon's guest-facing parsing (virtio/balloon.h), without threads:
// - scan_pfns() on inflate/deflate chains whose readable buffers lie mostly
//   inside fuzz::Ram (sometimes at its edges, sometimes anywhere), with the
//   frame numbers written into them: mostly pages of RAM, sometimes the
//   hole, the edges or anything;
// - scan_stats() on stats buffers of (le16 tag, le64 value) records, cut at
//   any length;
// - the config space: reads and writes of any offset and length.
// A buffer outside RAM is one the queue engine would have refused, so a
// QueueError is allowed only then (and not required: a buffer past the last
// whole frame number or record is never read). A bug is anything else: a crash or
// sanitizer report, an exception for a chain wholly in RAM, counts that
// disagree with the frame numbers in the chain (checked against a decoding
// of the same bytes here), a run of frames not wholly in RAM or not
// consecutive, a stats value that is not the last record of its tag, a
// config write that changes anything but `actual` or a read that
// disagrees with what was written.
#include <algorithm>
#include <map>
#include <string>

#include "fuzz_ram.h"
#include "virtio/balloon.h"
#include "virtio/queue.h"
#include "vmm/core/bytes.h"

using namespace vmm::virtio;

namespace {

constexpr uint64_t kPage = kBalloonPageSize;

// A frame number as a hostile driver would list it.
uint32_t frame(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: return in.ConsumeIntegralInRange<uint32_t>(0, fuzz::Ram::kLowSize / kPage);  // low RAM and its end
    case 1: return static_cast<uint32_t>(fuzz::Ram::kHighBase / kPage);                 // the high page
    case 2: return static_cast<uint32_t>(fuzz::Ram::kLowSize / kPage) + in.ConsumeIntegralInRange<uint32_t>(0, 16);
    case 3: return in.ConsumeIntegral<uint32_t>();
    default: return in.ConsumeIntegralInRange<uint32_t>(0, 40);
    }
}

struct Chain {
    DescriptorChain chain;
    bool in_ram = true;
};

Chain make_chain(FuzzedDataProvider& in, fuzz::Ram& ram, bool stats) {
    Chain c;
    uint64_t total = 0;
    const int n = in.ConsumeIntegralInRange(0, 4);
    for (int i = 0; i < n; ++i) {
        uint64_t addr = in.ConsumeBool() ? fuzz::Ram::address(in) : in.ConsumeIntegralInRange<uint64_t>(0, 0xff) * 64;
        uint32_t len;
        switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0: len = in.ConsumeIntegralInRange<uint32_t>(1, 128); break;
        case 1: len = 4 * in.ConsumeIntegralInRange<uint32_t>(1, 1024); break;  // whole frame numbers
        case 2: len = in.ConsumeIntegralInRange<uint32_t>(1, 4096); break;
        default: len = in.ConsumeIntegral<uint32_t>(); break;                    // almost always past RAM
        }
        if (total + len > UINT32_MAX) break;  // the queue engine refuses such chains
        total += len;
        if (!ram.mem.contains(addr, len)) c.in_ram = false;
        c.chain.readable.push_back({addr, len});
    }
    if (in.ConsumeBool()) c.chain.writable.push_back({fuzz::Ram::address(in), in.ConsumeIntegral<uint32_t>()});
    // Fill the readable bytes that are in RAM with frame numbers or records.
    uint64_t pos = 0;
    uint32_t cur = 0;  // the frame number being written, byte by byte
    for (const Buffer& b : c.chain.readable) {
        auto s = ram.mem.slice(b.addr, b.len);
        if (s) {
            // The first KiB of each buffer is chosen; the rest keeps what RAM
            // holds (zeros, or an earlier buffer's bytes).
            for (uint64_t off = 0; off < std::min<uint64_t>(b.len, 1024); ++off) {
                const uint64_t at = pos + off;
                uint8_t byte;
                if (stats) {
                    byte = in.ConsumeIntegral<uint8_t>();
                    if (at % 10 == 0 && in.ConsumeBool()) byte = in.ConsumeIntegralInRange<uint8_t>(0, 12);  // tags near the known ones
                } else {
                    if (at % 4 == 0) cur = frame(in);
                    byte = static_cast<uint8_t>(cur >> (8 * (at % 4)));
                }
                s->data()[off] = byte;
            }
        }
        pos += b.len;
    }
    return c;
}

// The readable bytes of a chain in RAM, in order.
std::vector<uint8_t> bytes_of(fuzz::Ram& ram, const DescriptorChain& chain) {
    std::vector<uint8_t> out;
    for (const Buffer& b : chain.readable) {
        auto s = ram.mem.slice(b.addr, b.len);
        ensure(s.has_value());
        out.insert(out.end(), s->begin(), s->end());
    }
    return out;
}

void check_pfns(fuzz::Ram& ram, const Chain& c) {
    uint64_t run_pages = 0, runs = 0;
    PfnScan got;
    try {
        got = scan_pfns(ram.mem, c.chain, [&](uint64_t first, uint64_t count) {
            ensure(count > 0);
            ensure(ram.mem.contains(first * kPage, count * kPage));  // a run lies in one region
            run_pages += count;
            ++runs;
        });
    } catch (const QueueError&) {
        ensure(!c.in_ram);
        return;
    }
    if (!c.in_ram) return;  // never read the buffer outside RAM (it was past the last whole frame)
    const auto bytes = bytes_of(ram, c.chain);
    ensure(got.trailing == bytes.size() % 4);
    uint64_t good = 0, bad = 0;
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) {
        const uint64_t pfn = vmm::load_le32(bytes, i);
        (ram.mem.contains(pfn * kPage, kPage) ? good : bad)++;
    }
    ensure(got.good == good && got.bad == bad);
    ensure(run_pages == good);
    ensure(runs <= good);
}

void check_stats(fuzz::Ram& ram, const Chain& c) {
    StatsScan got;
    try {
        got = scan_stats(ram.mem, c.chain);
    } catch (const QueueError&) {
        ensure(!c.in_ram);
        return;
    }
    if (!c.in_ram) return;  // never read the buffer outside RAM (past the last whole record)
    const auto bytes = bytes_of(ram, c.chain);
    ensure(got.trailing == bytes.size() % 10);
    std::map<std::string, uint64_t> want;
    for (size_t i = 0; i + 10 <= bytes.size(); i += 10)
        if (const char* n = BalloonDevice::stat_name(vmm::load_le16(bytes, i)))
            want[std::string("guest_") + n] = vmm::load_le64(bytes, i + 2);
    ensure(got.values == want);
}

void check_config(FuzzedDataProvider& in, BalloonDevice& dev, uint32_t& actual) {
    const uint64_t offset = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 24) : in.ConsumeIntegral<uint64_t>();
    std::vector<uint8_t> data(in.ConsumeIntegralInRange<size_t>(0, 12));
    if (in.ConsumeBool()) {
        for (auto& b : data) b = in.ConsumeIntegral<uint8_t>();
        const uint32_t target = dev.target_pages();
        dev.write_config(offset, data);
        // Only the bytes of `actual` (offsets 4..7) a write covers change.
        for (size_t i = 0; i < data.size(); ++i) {
            if (offset > UINT64_MAX - i) break;  // past the end of the address space: not config
            const uint64_t at = offset + i;
            if (at >= 4 && at < 8) actual = (actual & ~(0xffu << (8 * (at - 4)))) | (uint32_t{data[i]} << (8 * (at - 4)));
        }
        ensure(dev.actual_pages() == actual);
        ensure(dev.target_pages() == target);
    } else {
        dev.read_config(offset, data);
        uint8_t cfg[16] = {};
        vmm::store_le32(cfg, 0, dev.target_pages());
        vmm::store_le32(cfg, 4, actual);
        for (size_t i = 0; i < data.size(); ++i) {
            const bool inside = offset <= UINT64_MAX - i && offset + i < sizeof cfg;
            ensure(data[i] == (inside ? cfg[offset + i] : 0));
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    fuzz::Ram ram;
    BalloonConfig cfg;
    cfg.target_pages = in.ConsumeIntegral<uint32_t>();
    BalloonDevice dev(cfg);
    uint32_t actual = 0;
    for (int ops = 0; ops < 8 && in.remaining_bytes() > 0; ++ops) {
        switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0: check_config(in, dev, actual); break;
        case 1: check_stats(ram, make_chain(in, ram, true)); break;
        default: check_pfns(ram, make_chain(in, ram, false)); break;
        }
    }
    return 0;
}
