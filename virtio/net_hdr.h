// The virtio-net packet header (virtio 1.x section 5.1.6) and the checks a
// transmitted one must pass before it goes to the host's tap. The tap uses
// the same header (IFF_VNET_HDR with a 12-byte header), so a valid guest
// header is passed through unchanged; an invalid one drops the packet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace vmm::virtio {

// Feature bits (virtio 1.x 5.1.3).
inline constexpr unsigned kNetFCsum = 0;
inline constexpr unsigned kNetFGuestCsum = 1;
inline constexpr unsigned kNetFCtrlGuestOffloads = 2;
inline constexpr unsigned kNetFMac = 5;
inline constexpr unsigned kNetFGuestTso4 = 7;
inline constexpr unsigned kNetFGuestTso6 = 8;
inline constexpr unsigned kNetFGuestEcn = 9;
inline constexpr unsigned kNetFGuestUfo = 10;
inline constexpr unsigned kNetFHostTso4 = 11;
inline constexpr unsigned kNetFHostTso6 = 12;
inline constexpr unsigned kNetFHostEcn = 13;
inline constexpr unsigned kNetFHostUfo = 14;
inline constexpr unsigned kNetFMrgRxbuf = 15;
inline constexpr unsigned kNetFStatus = 16;
inline constexpr unsigned kNetFCtrlVq = 17;
inline constexpr unsigned kNetFCtrlRx = 18;
inline constexpr unsigned kNetFCtrlRxExtra = 20;
inline constexpr unsigned kNetFMq = 22;
inline constexpr unsigned kNetFCtrlMacAddr = 23;

#pragma pack(push, 1)
struct NetHdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;  // with VERSION_1 the header always has it
};
#pragma pack(pop)
static_assert(sizeof(NetHdr) == 12);

inline constexpr uint8_t kNetHdrFNeedsCsum = 1;
inline constexpr uint8_t kNetHdrFDataValid = 2;
inline constexpr uint8_t kNetGsoNone = 0;
inline constexpr uint8_t kNetGsoTcpv4 = 1;
inline constexpr uint8_t kNetGsoUdp = 3;
inline constexpr uint8_t kNetGsoTcpv6 = 4;
inline constexpr uint8_t kNetGsoEcn = 0x80;

// Largest frame (without the header) a guest may send or be given: a
// 64 KiB GSO packet plus the Ethernet and VLAN headers.
inline constexpr uint32_t kNetMaxFrame = 65536 + 14 + 4;
inline constexpr uint32_t kNetMinFrame = 14;  // an Ethernet header

// Why a transmitted packet (header + `frame_len` bytes of frame) must be
// dropped, or nullopt if it may go to the tap. `features` are the
// negotiated ones: a GSO type needs the matching HOST_* feature.
std::optional<std::string> check_tx_header(const NetHdr& h, uint32_t frame_len, uint64_t features);

}  // namespace vmm::virtio
