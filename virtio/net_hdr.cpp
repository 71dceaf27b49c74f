#include "virtio/net_hdr.h"

#include <fmt/format.h>

namespace vmm::virtio {

namespace {
bool has(uint64_t f, unsigned bit) { return (f >> bit) & 1; }
}  // namespace

std::optional<std::string> check_tx_header(const NetHdr& h, uint32_t frame_len, uint64_t features) {
    if (frame_len < kNetMinFrame) return fmt::format("frame of {} bytes is shorter than an Ethernet header", frame_len);
    if (frame_len > kNetMaxFrame) return fmt::format("frame of {} bytes is larger than {}", frame_len, kNetMaxFrame);
    if (h.flags & ~(kNetHdrFNeedsCsum | kNetHdrFDataValid)) return fmt::format("unknown header flags {:#x}", h.flags);
    if (h.flags & kNetHdrFNeedsCsum) {
        if (!has(features, kNetFCsum)) return std::string("NEEDS_CSUM without the CSUM feature");
        // The 2-byte checksum field must lie inside the frame.
        if (uint32_t{h.csum_start} + h.csum_offset + 2 > frame_len)
            return fmt::format("checksum at {}+{} is outside the {}-byte frame", h.csum_start, h.csum_offset, frame_len);
    }
    uint8_t gso = h.gso_type & ~kNetGsoEcn;
    if (gso == kNetGsoNone) {
        if (h.gso_type & kNetGsoEcn) return std::string("ECN bit without a GSO type");
        return std::nullopt;
    }
    unsigned need = gso == kNetGsoTcpv4 ? kNetFHostTso4 : gso == kNetGsoTcpv6 ? kNetFHostTso6 : gso == kNetGsoUdp ? kNetFHostUfo : 0;
    if (!need) return fmt::format("unknown GSO type {:#x}", h.gso_type);
    if (!has(features, need)) return fmt::format("GSO type {:#x} was not negotiated", h.gso_type);
    if ((h.gso_type & kNetGsoEcn) && !has(features, kNetFHostEcn)) return std::string("GSO ECN was not negotiated");
    if (!(h.flags & kNetHdrFNeedsCsum)) return std::string("a GSO packet without NEEDS_CSUM");
    if (h.gso_size == 0) return std::string("GSO with a segment size of 0");
    if (h.hdr_len > frame_len) return fmt::format("header length {} exceeds the {}-byte frame", h.hdr_len, frame_len);
    return std::nullopt;
}

}  // namespace vmm::virtio
