// virtio-blk request parsing and validation (virtio 1.x section 5.2.6),
// kept free of I/O so every guest-controlled path is unit-testable.
//
// parse() turns one descriptor chain into a Request: either a final status
// (bad header, out of range, read-only, unsupported type, GET_ID) or the host
// operation(s) to run, with iovecs that point into guest RAM (validated by the
// queue engine). The status byte is the last writable byte of the chain; a
// chain without one cannot be answered and is returned with 0 bytes written.
#pragma once

#include <sys/uio.h>

#include <bit>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/queue.h"
#include "vmm/core/guest_memory.h"

namespace vmm::virtio::blk {

static_assert(std::endian::native == std::endian::little, "virtio structures are little-endian");

// Request types.
inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;

// Status codes.
inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupp = 2;

inline constexpr uint64_t kSectorSize = 512;
inline constexpr unsigned kSectorShift = 9;
inline constexpr size_t kIdBytes = 20;
inline constexpr uint32_t kWriteZeroesUnmap = 1;

struct RequestHeader {
    uint32_t type;
    uint32_t reserved;  // "ioprio" in older drivers; ignored
    uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

struct DiscardSegment {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};
static_assert(sizeof(DiscardSegment) == 16);

// What the device offers (and the parser enforces).
struct Limits {
    uint64_t capacity = 0;  // in 512-byte sectors
    bool readonly = false;
    uint32_t max_discard_sectors = 0;
    uint32_t max_discard_seg = 0;
    uint32_t max_write_zeroes_sectors = 0;
    uint32_t max_write_zeroes_seg = 0;
};

enum class Action {
    Complete,     // `status` is final; nothing to run
    Drop,         // no status byte: return the chain with 0 bytes written
    Read,         // preadv into `iov` at `offset`
    Write,        // pwritev from `iov` at `offset`
    Flush,
    Discard,      // one host op per entry of `ranges`
    WriteZeroes,  // likewise
};

struct ByteRange {
    uint64_t offset;  // bytes
    uint64_t length;  // bytes
    bool unmap;
};

struct Request {
    Action action = Action::Complete;
    uint32_t type = 0;
    uint8_t status = kStatusOk;     // with Action::Complete
    uint64_t offset = 0;            // Read/Write, bytes
    uint64_t length = 0;            // Read/Write, bytes
    std::vector<iovec> iov;         // Read/Write
    std::vector<ByteRange> ranges;  // Discard/WriteZeroes
    uint32_t data_written = 0;      // bytes put before the status on success (IN data, GET_ID)
    std::unique_ptr<Writer> status_writer;  // the last writable byte (heap: keeps Request assignable)
    const char* error = nullptr;    // why the request failed, for a rate-limited log line
};

// True if [sector, sector + bytes/512) lies inside `capacity` sectors (overflow-safe).
bool in_capacity(uint64_t sector, uint64_t bytes, uint64_t capacity);

// Never throws for anything the guest wrote.
Request parse(const GuestMemory& mem, const DescriptorChain& chain, const Limits& limits, std::string_view serial);

// Writes the status byte and returns the used length to report: the data
// bytes (only on success) plus the status byte. 0 for a dropped request.
uint32_t finish(Request& req, uint8_t status);

}  // namespace vmm::virtio::blk
