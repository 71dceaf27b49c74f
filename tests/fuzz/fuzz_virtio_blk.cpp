// The virtio-blk request parser (virtio/block_request.h) against chains a
// hostile guest can build: the input picks the device Limits (capacity,
// read-only, discard / write-zeroes limits) and a few DescriptorChains whose
// readable and writable buffers lie mostly inside fuzz::Ram (sometimes at
// its edges, sometimes anywhere), and writes the request header and discard
// segments into the readable part; the rest of the input is guest RAM.
// Each chain is parsed, its host I/O is "run" (the iovecs are filled or
// read) and it is completed with finish(). A buffer outside RAM is one the
// queue engine would have refused, so a QueueError is expected only then.
// A bug is anything else: a crash or sanitizer report, an exception for a
// chain wholly in RAM, or a Request that breaks what the header promises
// (an I/O range past capacity*512, an iovec outside RAM or over the status
// byte, lengths that disagree, a write or discard on a read-only disk, a
// used length or status byte that finish() got wrong).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include "fuzz_ram.h"
#include "virtio/block_request.h"

using namespace vmm::virtio;
using namespace vmm::virtio::blk;

namespace {


uint32_t buffer_len(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: return in.ConsumeIntegralInRange<uint32_t>(1, 32);
    case 1: return 16;
    case 2: return in.ConsumeIntegralInRange<uint32_t>(1, 8) * 512;
    case 3: return in.ConsumeIntegralInRange<uint32_t>(1, 8) * 512 + in.ConsumeIntegralInRange<uint32_t>(0, 17);
    default: return in.ConsumeIntegral<uint32_t>();
    }
}

uint64_t sector(FuzzedDataProvider& in, uint64_t capacity) {
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return in.ConsumeIntegralInRange<uint64_t>(0, 16);
    case 1: return capacity - in.ConsumeIntegralInRange<uint64_t>(0, 16);  // wraps when capacity is small
    case 2: return in.ConsumeIntegralInRange<uint64_t>(0, capacity);
    default: return in.ConsumeIntegral<uint64_t>();
    }
}

uint32_t request_type(FuzzedDataProvider& in) {
    static constexpr uint32_t kTypes[] = {kTypeIn, kTypeOut, kTypeFlush, kTypeGetId, kTypeDiscard, kTypeWriteZeroes};
    if (in.ConsumeIntegralInRange<int>(0, 7) == 0) return in.ConsumeIntegral<uint32_t>();
    return in.PickValueInArray(kTypes);
}

template <typename T>
void append(std::vector<uint8_t>& v, const T& x) {
    const auto* p = reinterpret_cast<const uint8_t*>(&x);
    v.insert(v.end(), p, p + sizeof x);
}

struct Chain {
    DescriptorChain chain;
    std::vector<uint8_t> payload;  // header + segments written over the readable part
    bool in_ram = true;            // every buffer inside RAM: what the queue engine guarantees
};

// Host ranges [begin, end) of the RAM regions.
bool host_in_ram(const fuzz::Ram& ram, const void* p, size_t len) {
    auto a = reinterpret_cast<uintptr_t>(p);
    for (const auto& r : ram.mem.regions()) {
        auto b = reinterpret_cast<uintptr_t>(r.host);
        if (a >= b && a - b <= r.size && len <= r.size - (a - b)) return true;
    }
    return false;
}

// True if host [p, p+len) lies inside one buffer of `bufs`.
bool host_in_buffers(const fuzz::Ram& ram, const std::vector<Buffer>& bufs, const void* p, size_t len) {
    auto a = reinterpret_cast<uintptr_t>(p);
    for (const auto& b : bufs) {
        auto s = ram.mem.slice(b.addr, b.len);
        if (!s) continue;
        auto h = reinterpret_cast<uintptr_t>(s->data());
        if (a >= h && a - h <= b.len && len <= b.len - (a - h)) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    fuzz::Ram ram;

    Limits lim;
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: lim.capacity = in.ConsumeIntegralInRange<uint64_t>(0, 4096); break;
    case 1: lim.capacity = 2048; break;
    // The largest capacity a byte size gives: capacity * 512 fits in 64 bits.
    case 2: lim.capacity = (std::numeric_limits<uint64_t>::max() >> kSectorShift) - in.ConsumeIntegralInRange<uint64_t>(0, 4); break;
    default: lim.capacity = in.ConsumeIntegralInRange<uint64_t>(0, std::numeric_limits<uint64_t>::max() >> kSectorShift); break;
    }
    lim.readonly = in.ConsumeIntegralInRange<int>(0, 3) == 0;
    if (in.ConsumeBool()) {
        lim.max_discard_sectors = in.ConsumeIntegral<uint32_t>();
        lim.max_discard_seg = in.ConsumeIntegralInRange<uint32_t>(0, 300);
        lim.max_write_zeroes_sectors = in.ConsumeIntegral<uint32_t>();
        lim.max_write_zeroes_seg = in.ConsumeIntegralInRange<uint32_t>(0, 300);
    } else {
        lim.max_discard_sectors = 1024;
        lim.max_discard_seg = 4;
        lim.max_write_zeroes_sectors = 1024;
        lim.max_write_zeroes_seg = 2;
    }
    const std::string serial = in.ConsumeBool() ? "fuzz-serial-0123456789abcdef" : in.ConsumeRandomLengthString(24);

    std::vector<Chain> chains(in.ConsumeIntegralInRange<size_t>(1, 4));
    for (auto& c : chains) {
        uint64_t readable = 0, writable = 0;
        auto add = [&](bool w) {
            uint64_t addr = in.ConsumeBool() ? fuzz::Ram::address(in) : in.ConsumeIntegralInRange<uint64_t>(0, 0xff) * 256;
            uint32_t len = buffer_len(in);
            if (len == 0) return;  // the queue engine skips empty descriptors
            uint64_t& total = w ? writable : readable;
            if (total + len > UINT32_MAX) return;  // the queue engine refuses such chains
            total += len;
            if (!ram.mem.contains(addr, len)) c.in_ram = false;
            (w ? c.chain.writable : c.chain.readable).push_back({addr, len});
        };
        int nr = in.ConsumeIntegralInRange(0, 4), nw = in.ConsumeIntegralInRange(0, 4);
        for (int i = 0; i < nr; ++i) add(false);
        for (int i = 0; i < nw; ++i) add(true);

        uint32_t type = request_type(in);
        append(c.payload, RequestHeader{type, in.ConsumeIntegral<uint32_t>(), sector(in, lim.capacity)});
        if (type == kTypeDiscard || type == kTypeWriteZeroes) {
            int n = in.ConsumeIntegralInRange(0, 6);
            for (int i = 0; i < n; ++i) {
                DiscardSegment s{};
                s.sector = sector(in, lim.capacity);
                s.num_sectors = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 2048) : in.ConsumeIntegral<uint32_t>();
                s.flags = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 1) : in.ConsumeIntegral<uint32_t>();
                append(c.payload, s);
            }
        }
    }
    const uint8_t finish_status = in.ConsumeIntegralInRange<int>(0, 3) == 0 ? in.ConsumeIntegral<uint8_t>() : 0xff;
    ram.load(in.ConsumeRemainingBytes<uint8_t>());

    // Write each chain's header/segments over its readable part, as the guest would.
    for (auto& c : chains) {
        if (!c.in_ram) continue;
        DescriptorChain as_writable;
        as_writable.writable = c.chain.readable;
        Writer w(ram.mem, as_writable);
        size_t n = std::min(w.remaining(), c.payload.size());
        ensure(w.write({c.payload.data(), n}));
    }

    std::vector<uint8_t> scratch;
    for (auto& c : chains) {
        const uint64_t rbytes = c.chain.readable_bytes(), wbytes = c.chain.writable_bytes();
        Request r;
        try {
            r = parse(ram.mem, c.chain, lim, serial);
        } catch (const QueueError&) {
            ensure(!c.in_ram);  // "never throws for anything the guest wrote"
            continue;
        }
        ensure(r.error == nullptr || r.action == Action::Drop || r.action == Action::Complete);
        switch (r.action) {
        case Action::Drop:
            ensure(wbytes == 0 && !r.status_writer && r.iov.empty());
            ensure(finish(r, kStatusOk) == 0);
            continue;
        case Action::Complete:
            ensure(r.iov.empty() && r.ranges.empty());
            ensure(r.status == kStatusOk || r.status == kStatusIoErr || r.status == kStatusUnsupp);
            ensure(r.status == kStatusOk || r.data_written == 0);
            ensure(r.data_written <= kIdBytes && r.data_written < wbytes);
            if (r.data_written) ensure(r.type == kTypeGetId);
            break;
        case Action::Read:
        case Action::Write: {
            const bool rd = r.action == Action::Read;
            ensure(r.type == (rd ? kTypeIn : kTypeOut));
            ensure(rd || !lim.readonly);
            ensure(r.length > 0 && r.length % kSectorSize == 0 && r.offset % kSectorSize == 0);
            ensure(in_capacity(r.offset >> kSectorShift, r.length, lim.capacity));
            ensure(r.offset <= (lim.capacity << kSectorShift) && r.length <= (lim.capacity << kSectorShift) - r.offset);
            // All the data: for IN every writable byte but the status, for OUT every readable byte after the header.
            ensure(rd ? r.length == wbytes - 1 : r.length == rbytes - sizeof(RequestHeader));
            ensure(r.data_written == (rd ? r.length : 0));
            uint64_t sum = 0;
            for (const auto& v : r.iov) {
                ensure(v.iov_len > 0);
                ensure(host_in_ram(ram, v.iov_base, v.iov_len));
                if (c.in_ram) ensure(host_in_buffers(ram, rd ? c.chain.writable : c.chain.readable, v.iov_base, v.iov_len));
                sum += v.iov_len;
            }
            ensure(sum == r.length);
            break;
        }
        case Action::Flush:
            ensure(r.type == kTypeFlush && r.iov.empty() && r.ranges.empty());
            break;
        case Action::Discard:
        case Action::WriteZeroes: {
            const bool wz = r.action == Action::WriteZeroes;
            ensure(r.type == (wz ? kTypeWriteZeroes : kTypeDiscard));
            ensure(!lim.readonly && r.iov.empty() && !r.ranges.empty());
            ensure(r.ranges.size() <= (wz ? lim.max_write_zeroes_seg : lim.max_discard_seg));
            uint64_t max_bytes = uint64_t{wz ? lim.max_write_zeroes_sectors : lim.max_discard_sectors} << kSectorShift;
            for (const auto& g : r.ranges) {
                ensure(g.length > 0 && g.length <= max_bytes);
                ensure(g.offset % kSectorSize == 0 && g.length % kSectorSize == 0);
                ensure(in_capacity(g.offset >> kSectorShift, g.length, lim.capacity));
                ensure(wz || !g.unmap);
            }
            break;
        }
        }

        // Completion: the status byte is the chain's last writable byte, and
        // running the I/O (filling or reading the iovecs) must not touch it.
        ensure(r.status_writer != nullptr && wbytes > 0);
        if (!c.in_ram) continue;  // finish() may rightly throw for a buffer the queue would have refused
        const Buffer& last = c.chain.writable.back();
        auto status_span = ram.mem.slice(last.addr + last.len - 1, 1);
        ensure(status_span.has_value());
        uint8_t status = finish_status == 0xff ? r.status : finish_status;
        uint32_t used = finish(r, status);
        ensure(used == (status == kStatusOk ? r.data_written : 0) + 1);
        ensure(used <= wbytes);
        ensure((*status_span)[0] == status);
        for (const auto& v : r.iov) {
            if (r.action == Action::Read) {
                std::memset(v.iov_base, 0x5a, v.iov_len);  // preadv
            } else {
                scratch.resize(v.iov_len);
                std::memcpy(scratch.data(), v.iov_base, v.iov_len);  // pwritev
            }
        }
        // Writable buffers the guest made overlap may legitimately share the status byte.
        bool overlap = false;
        for (size_t i = 0; i < c.chain.writable.size(); ++i)
            for (size_t j = i + 1; j < c.chain.writable.size(); ++j) {
                const Buffer &a = c.chain.writable[i], &b = c.chain.writable[j];
                if (a.addr < b.addr + b.len && b.addr < a.addr + a.len) overlap = true;
            }
        if (!overlap) ensure((*status_span)[0] == status);
    }
    return 0;
}
