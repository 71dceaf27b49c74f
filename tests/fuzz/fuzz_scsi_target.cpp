// The virtio-scsi command layer (virtio/scsi_target.h) against any CDB a
// guest can send: the input describes a target with a few LUNs (disks,
// read-only disks, CD-ROMs; block size, capacity, serial) and then a series
// of commands, each a LUN number, a CDB of 6/10/12/16 bytes or a garbage
// length, and data-out bytes handed over as the device does (at most
// parameter_length() bytes, or fewer when the guest supplied fewer). The
// layer is pure (no files, no threads): the host I/O it asks for is only
// checked, not run. Nothing here may throw. A bug is a crash, a sanitizer
// report or an Outcome that breaks the contract: data-in longer than the
// CDB's allocation length, I/O outside the LUN's capacity or above the
// advertised limits, a write/unmap on a read-only LUN, CHECK CONDITION
// that still carries data or I/O.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz_ram.h"
#include "virtio/scsi_target.h"
#include "vmm/core/bytes.h"

using namespace vmm::virtio::scsi;

using vmm::load_be16;
using vmm::load_be32;

namespace {

// The most data-in a command may return: its allocation length (SPC-4
// 4.2.5.6), or the fixed size of commands without one. The CDB is at least
// as long as its group code says, or the command must fail.
uint64_t data_in_limit(const std::vector<uint8_t>& c) {
    switch (c[0]) {
    case 0x03: return c[4];                      // REQUEST SENSE
    case 0x12: return load_be16(c, 3);           // INQUIRY
    case 0x1a: return c[4];                      // MODE SENSE(6)
    case 0x5a: return load_be16(c, 7);           // MODE SENSE(10)
    case 0x25: return 8;                         // READ CAPACITY(10)
    case 0x9e: return load_be32(c, 10);          // READ CAPACITY(16)
    case 0xa0: return load_be32(c, 6);           // REPORT LUNS
    case 0x46: return load_be16(c, 7);           // GET CONFIGURATION
    case 0x43: return load_be16(c, 7);           // READ TOC
    case 0x4a: return load_be16(c, 7);           // GET EVENT STATUS NOTIFICATION
    case 0xbd: return load_be16(c, 8);           // MECHANISM STATUS
    case 0x51: return load_be16(c, 7);           // READ DISC INFORMATION
    default: return 0;
    }
}

// CDB length by group code (SPC-4 4.2.5.1), written here again on purpose:
// the harness checks the target against its own reading of the standard,
// not against the target's cdb_length().
size_t group_length(uint8_t op) {
    switch (op >> 5) {
    case 0: return 6;
    case 1:
    case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return 0;
    }
}

uint8_t opcode(FuzzedDataProvider& in) {
    static constexpr uint8_t kOps[] = {0x00, 0x03, 0x08, 0x0a, 0x12, 0x1a, 0x1b, 0x1e, 0x25, 0x28, 0x2a, 0x2f,
                                       0x35, 0x42, 0x43, 0x46, 0x4a, 0x51, 0x5a, 0x88, 0x8a, 0x91, 0x93, 0x9e,
                                       0xa0, 0xa8, 0xaa, 0xbd};
    return in.ConsumeBool() ? in.PickValueInArray(kOps) : in.ConsumeIntegral<uint8_t>();
}

LunInfo lun_info(FuzzedDataProvider& in) {
    static constexpr uint32_t kBlockSizes[] = {512, 512, 1024, 2048, 4096};
    LunInfo i;
    i.kind = in.ConsumeIntegralInRange<int>(0, 3) == 0 ? Kind::Cdrom : Kind::Disk;
    i.block_size = i.kind == Kind::Cdrom && in.ConsumeBool() ? 2048 : in.PickValueInArray(kBlockSizes);
    i.physical_block_size = in.ConsumeBool() ? i.block_size : in.PickValueInArray(kBlockSizes);
    // An image is at most 2^63-1 bytes (off_t), so blocks * block_size fits.
    const uint64_t max_blocks = uint64_t{std::numeric_limits<int64_t>::max()} / i.block_size;
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: i.blocks = 2048; break;
    case 1: i.blocks = in.ConsumeIntegralInRange<uint64_t>(0, 4096); break;
    case 2: i.blocks = max_blocks - in.ConsumeIntegralInRange<uint64_t>(0, 2); break;
    default: i.blocks = in.ConsumeIntegralInRange<uint64_t>(0, max_blocks); break;
    }
    i.readonly = in.ConsumeIntegralInRange<int>(0, 3) == 0;
    i.unmap_reads_zeroes = in.ConsumeBool();
    i.serial = in.ConsumeRandomLengthString(40);
    return i;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);

    Target target;
    std::vector<uint32_t> luns;
    const int nluns = in.ConsumeIntegralInRange(0, 3);
    for (int i = 0; i < nluns; ++i) {
        uint32_t n = i == 0 ? 0 : in.ConsumeBool() ? i : in.ConsumeIntegralInRange<uint32_t>(0, kMaxLun);
        LunInfo info = lun_info(in);
        if (target.has(n)) continue;
        target.add(n, info);
        luns.push_back(n);
    }

    const int ncmds = in.ConsumeIntegralInRange(1, 8);
    for (int k = 0; k < ncmds && in.remaining_bytes() > 0; ++k) {
        uint32_t lun;
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: lun = in.ConsumeIntegralInRange<uint32_t>(0, kMaxLun); break;
        case 1: lun = in.ConsumeIntegral<uint32_t>(); break;
        default: lun = luns.empty() ? 0 : luns[in.ConsumeIntegralInRange<size_t>(0, luns.size() - 1)]; break;
        }
        const uint8_t op = opcode(in);
        size_t len;
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: len = in.ConsumeIntegralInRange<size_t>(0, 32); break;  // garbage lengths (virtio cdb_size is 32)
        case 1: len = 16; break;
        default: len = group_length(op) ? group_length(op) : 6; break;
        }
        std::vector<uint8_t> cdb = in.ConsumeBytes<uint8_t>(len);
        cdb.resize(len, 0);
        if (!cdb.empty()) cdb[0] = op;

        const Lun* l = target.find(lun);
        const uint32_t block_size = l ? l->info().block_size : 512;
        const size_t want = parameter_length(cdb, block_size);
        ensure(want <= kMaxParameterList);
        std::vector<uint8_t> params;
        if (in.ConsumeBool()) {
            params = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, want));
        } else {
            // Mostly zeroes (WRITE SAME's block), the UNMAP header from the input.
            params.assign(in.ConsumeIntegralInRange<size_t>(0, want), 0);
            auto head = in.ConsumeBytes<uint8_t>(std::min<size_t>(params.size(), 8 + 16 * 4));
            std::copy(head.begin(), head.end(), params.begin());
        }

        Outcome o = target.execute(lun, cdb, params);

        ensure(o.status == kStatusGood || o.status == kStatusCheckCondition);
        if (o.check()) {
            ensure(o.data.empty() && o.io == Io::None && o.ranges.empty() && o.length == 0);
            ensure(o.sense.key != kKeyNoSense && o.sense.key <= 0x0f);
            ensure(fixed_sense(o.sense).size() == kFixedSenseSize);
            continue;
        }
        // Data-in only for a CDB the command accepted, and never longer than asked for.
        if (!o.data.empty()) {
            ensure(!cdb.empty() && cdb.size() >= group_length(cdb[0]) && group_length(cdb[0]) != 0);
            ensure(o.data.size() <= data_in_limit(cdb));
            ensure(o.io == Io::None);
        }
        const bool absent = l == nullptr;
        if (absent) {
            ensure(o.io == Io::None);
            continue;
        }
        const LunInfo& info = l->info();
        const uint64_t bytes = info.blocks * info.block_size;  // < 2^63
        auto inside = [&](uint64_t off, uint64_t n) {
            return off % info.block_size == 0 && n % info.block_size == 0 && off <= bytes && n <= bytes - off;
        };
        switch (o.io) {
        case Io::None:
            ensure(o.ranges.empty() && o.length == 0);
            break;
        case Io::Read:
        case Io::Write:
            ensure(o.io == Io::Read || !info.readonly);
            ensure(o.io == Io::Write || !o.fua);
            ensure(o.length <= kMaxTransferBytes);
            ensure(inside(o.offset, o.length));
            ensure(o.ranges.empty());
            break;
        case Io::Flush:
            ensure(!info.readonly && o.ranges.empty());
            break;
        case Io::Unmap:
        case Io::WriteZeroes:
            ensure(!info.readonly && info.kind == Kind::Disk);
            ensure(!o.ranges.empty() && o.ranges.size() <= kMaxUnmapDescriptors);
            ensure(o.io == Io::WriteZeroes || !o.unmap);
            for (const auto& r : o.ranges) {
                ensure(r.length > 0 && r.length <= kMaxUnmapBlocksBytes);
                ensure(inside(r.offset, r.length));
            }
            break;
        }
    }
    return 0;
}
