// virtio-blk request parsing: header, type dispatch, range checks.
#include "virtio/block_request.h"

#include <algorithm>
#include <array>
#include <limits>

namespace vmm::virtio::blk {

bool in_capacity(uint64_t sector, uint64_t bytes, uint64_t capacity) {
    // capacity * 512 fits in 64 bits (it came from a byte size), so compare
    // in bytes only after checking the sector against it.
    if (sector > capacity) return false;
    uint64_t cap_bytes = capacity << kSectorShift;
    uint64_t off = sector << kSectorShift;
    return bytes <= cap_bytes - off;
}

namespace {

Request fail(Request r, uint8_t status, const char* why) {
    r.action = Action::Complete;
    r.status = status;
    r.error = why;
    r.iov.clear();
    r.ranges.clear();
    r.data_written = 0;
    return r;
}

Request parse_segments(Request r, Reader& rd, const Limits& lim) {
    bool wz = r.type == kTypeWriteZeroes;
    if (lim.readonly) return fail(std::move(r), kStatusIoErr, "discard/write-zeroes on a read-only disk");
    size_t bytes = rd.remaining();
    if (bytes == 0 || bytes % sizeof(DiscardSegment))
        return fail(std::move(r), kStatusIoErr, "discard/write-zeroes payload is not a whole number of segments");
    size_t n = bytes / sizeof(DiscardSegment);
    if (n > (wz ? lim.max_write_zeroes_seg : lim.max_discard_seg))
        return fail(std::move(r), kStatusUnsupp, "too many discard/write-zeroes segments");
    uint32_t max_sectors = wz ? lim.max_write_zeroes_sectors : lim.max_discard_sectors;
    for (size_t i = 0; i < n; ++i) {
        auto seg = rd.read_obj<DiscardSegment>();
        if (!seg) return fail(std::move(r), kStatusIoErr, "short discard segment");
        uint32_t allowed = wz ? kWriteZeroesUnmap : 0;
        if (seg->flags & ~allowed) return fail(std::move(r), kStatusUnsupp, "unsupported discard/write-zeroes flags");
        if (seg->num_sectors > max_sectors)
            return fail(std::move(r), kStatusIoErr, "discard/write-zeroes segment larger than the maximum");
        if (!in_capacity(seg->sector, uint64_t{seg->num_sectors} << kSectorShift, lim.capacity))
            return fail(std::move(r), kStatusIoErr, "discard/write-zeroes beyond the end of the disk");
        if (seg->num_sectors == 0) continue;
        r.ranges.push_back({seg->sector << kSectorShift, uint64_t{seg->num_sectors} << kSectorShift,
                            (seg->flags & kWriteZeroesUnmap) != 0});
    }
    if (r.ranges.empty()) return fail(std::move(r), kStatusOk, nullptr);
    r.action = wz ? Action::WriteZeroes : Action::Discard;
    return r;
}

}  // namespace

Request parse(const GuestMemory& mem, const DescriptorChain& chain, const Limits& lim, std::string_view serial) {
    Request r;
    Writer data(mem, chain);
    if (auto tail = data.split_tail(1)) r.status_writer = std::make_unique<Writer>(std::move(*tail));
    if (!r.status_writer) {
        r.action = Action::Drop;
        r.error = "request without a status byte";
        return r;
    }
    Reader rd(mem, chain);
    auto hdr = rd.read_obj<RequestHeader>();
    if (!hdr) return fail(std::move(r), kStatusIoErr, "request header shorter than 16 bytes");
    r.type = hdr->type;

    switch (hdr->type) {
    case kTypeIn:
    case kTypeOut: {
        bool in = hdr->type == kTypeIn;
        if (!in && lim.readonly) return fail(std::move(r), kStatusIoErr, "write to a read-only disk");
        uint64_t len = in ? data.remaining() : rd.remaining();
        if (len % kSectorSize) return fail(std::move(r), kStatusIoErr, "data length is not a multiple of 512");
        if (!in_capacity(hdr->sector, len, lim.capacity))
            return fail(std::move(r), kStatusIoErr, "access beyond the end of the disk");
        if (len == 0) return fail(std::move(r), kStatusOk, nullptr);
        r.offset = hdr->sector << kSectorShift;
        r.length = len;
        r.iov = in ? data.take_iovecs(len) : rd.take_iovecs(len);
        r.data_written = in ? static_cast<uint32_t>(len) : 0;  // chain totals fit in 32 bits
        r.action = in ? Action::Read : Action::Write;
        return r;
    }
    case kTypeFlush:
        r.action = Action::Flush;
        return r;
    case kTypeGetId: {
        std::array<uint8_t, kIdBytes> id{};  // NUL-padded when shorter
        std::copy_n(serial.begin(), std::min(serial.size(), id.size()), id.begin());
        size_t n = std::min(data.remaining(), id.size());
        data.write({id.data(), n});
        r = fail(std::move(r), kStatusOk, nullptr);
        r.data_written = static_cast<uint32_t>(n);
        return r;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes:
        return parse_segments(std::move(r), rd, lim);
    default:
        return fail(std::move(r), kStatusUnsupp, "unsupported request type");
    }
}

uint32_t finish(Request& req, uint8_t status) {
    if (!req.status_writer) return 0;
    req.status_writer->write_obj(status);
    return (status == kStatusOk ? req.data_written : 0) + 1;
}

}  // namespace vmm::virtio::blk
