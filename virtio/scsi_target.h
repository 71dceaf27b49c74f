// The SCSI command layer of virtio-scsi: turns a CDB (plus a small
// parameter list for UNMAP / WRITE SAME) into a status, fixed-format sense
// data and either data-in bytes or one host I/O operation to run. It knows
// nothing of virtqueues or files, so every command and every hostile CDB is
// unit-testable (tests/unit/virtio_scsi_target.cpp).
//
// Commands: SPC-4 (INQUIRY with VPD pages, REPORT LUNS, REQUEST SENSE, TEST
// UNIT READY, MODE SENSE, ...), SBC-3 for disks (READ/WRITE 6/10/12/16, READ
// CAPACITY, SYNCHRONIZE CACHE, UNMAP, WRITE SAME(16)), MMC for CD-ROMs (GET
// CONFIGURATION, READ TOC, GET EVENT STATUS NOTIFICATION, MECHANISM STATUS).
// Anything else, a bad field, an LBA out of range or a write to a read-only
// unit ends in CHECK CONDITION with sense data; nothing here throws.
//
// Addressing (see docs/virtio.md): one target (0) with LUNs 0..kMaxLun. A
// command for an absent LUN of the target is answered at SCSI level as SPC
// asks (INQUIRY: peripheral qualifier 3; REPORT LUNS works; anything else:
// LOGICAL UNIT NOT SUPPORTED), so a configuration without LUN 0 still scans.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace vmm::virtio::scsi {

// SAM status codes.
inline constexpr uint8_t kStatusGood = 0x00;
inline constexpr uint8_t kStatusCheckCondition = 0x02;

// Sense keys.
inline constexpr uint8_t kKeyNoSense = 0x0;
inline constexpr uint8_t kKeyMediumError = 0x3;
inline constexpr uint8_t kKeyHardwareError = 0x4;
inline constexpr uint8_t kKeyIllegalRequest = 0x5;
inline constexpr uint8_t kKeyDataProtect = 0x7;

struct Sense {
    uint8_t key = kKeyNoSense;
    uint8_t asc = 0;
    uint8_t ascq = 0;
};

// The additional sense codes used here (SPC-4 table D.2).
inline constexpr Sense kInvalidOpcode{kKeyIllegalRequest, 0x20, 0x00};
inline constexpr Sense kLbaOutOfRange{kKeyIllegalRequest, 0x21, 0x00};
inline constexpr Sense kInvalidField{kKeyIllegalRequest, 0x24, 0x00};
inline constexpr Sense kLunNotSupported{kKeyIllegalRequest, 0x25, 0x00};
inline constexpr Sense kInvalidParamField{kKeyIllegalRequest, 0x26, 0x00};
inline constexpr Sense kParamListLength{kKeyIllegalRequest, 0x1a, 0x00};
inline constexpr Sense kSavingNotSupported{kKeyIllegalRequest, 0x39, 0x00};
inline constexpr Sense kWriteProtected{kKeyDataProtect, 0x27, 0x00};
inline constexpr Sense kReadError{kKeyMediumError, 0x11, 0x00};
inline constexpr Sense kWriteError{kKeyMediumError, 0x0c, 0x00};
inline constexpr Sense kInternalFailure{kKeyHardwareError, 0x44, 0x00};

inline constexpr size_t kFixedSenseSize = 18;
// Fixed-format sense data (response code 0x70, current error).
std::vector<uint8_t> fixed_sense(const Sense& s);

inline constexpr uint32_t kMaxLun = 16383;  // flat-space addressing: 14 bits

// The 8-byte virtio-scsi LUN field: byte 0 = 1, byte 1 = target, bytes 2-3
// the LUN in SAM peripheral (00b, bus 0) or flat (01b) form, bytes 4-7 zero.
struct Address {
    uint8_t target;
    uint32_t lun;
};
// nullopt-like: ok=false for any other encoding.
struct DecodedAddress {
    bool ok = false;
    Address addr{};
};
DecodedAddress decode_lun(std::span<const uint8_t, 8> field);
// How REPORT LUNS lists a LUN: peripheral form below 256, flat above.
void encode_lun(uint32_t lun, uint8_t out[8]);

enum class Kind { Disk, Cdrom };

struct LunInfo {
    Kind kind = Kind::Disk;
    uint32_t block_size = 512;        // 2048 for CD-ROMs
    uint64_t blocks = 0;              // capacity in blocks
    uint32_t physical_block_size = 512;
    bool readonly = false;            // CD-ROMs are always read-only
    bool unmap_reads_zeroes = true;   // LBPRZ: punched holes read as zeroes (regular files)
    std::string serial;               // VPD 0x80 / 0x83; at most 32 characters are used
};

// What the device must do with a command.
enum class Io { None, Read, Write, Flush, Unmap, WriteZeroes };

struct Range {
    uint64_t offset;  // bytes
    uint64_t length;  // bytes
};

struct Outcome {
    uint8_t status = kStatusGood;
    Sense sense{};               // meaningful with CHECK CONDITION
    std::vector<uint8_t> data;   // data-in of a non-I/O command, already cut to the allocation length
    Io io = Io::None;
    uint64_t offset = 0;         // Read/Write: byte range of the image
    uint64_t length = 0;         //   (length: bytes to transfer; 0 is allowed)
    bool fua = false;            // Write: flush before reporting completion
    std::vector<Range> ranges;   // Unmap / WriteZeroes (WRITE SAME)
    bool unmap = false;          // WriteZeroes: may deallocate

    bool check() const { return status == kStatusCheckCondition; }
};

Outcome check_condition(const Sense& s);

// Limits this implementation advertises (VPD 0xB0) and enforces.
inline constexpr uint32_t kMaxTransferBytes = 0xffffu * 512;  // = virtio config max_sectors
inline constexpr uint32_t kMaxUnmapDescriptors = 64;
inline constexpr uint32_t kMaxUnmapBlocksBytes = 1u << 30;      // per descriptor / WRITE SAME, in bytes
inline constexpr size_t kMaxParameterList = 64 * 1024;

// Bytes of data-out the command wants handed to execute() as its parameter
// list (UNMAP list, WRITE SAME block); 0 for every other command. The device
// copies min(this, data-out available) bytes.
size_t parameter_length(std::span<const uint8_t> cdb, uint32_t block_size);

// One logical unit. Stateless after construction (sense is reported with
// each command: autosense), so execute() may run on several threads.
class Lun {
public:
    explicit Lun(LunInfo info);
    const LunInfo& info() const { return info_; }
    Outcome execute(std::span<const uint8_t> cdb, std::span<const uint8_t> params) const;

private:
    Outcome inquiry(std::span<const uint8_t> cdb) const;
    Outcome vpd(uint8_t page) const;
    Outcome mode_sense(std::span<const uint8_t> cdb, bool ten) const;
    Outcome read_capacity10(std::span<const uint8_t> cdb) const;
    Outcome read_capacity16(std::span<const uint8_t> cdb) const;
    Outcome rw(std::span<const uint8_t> cdb, bool write) const;
    Outcome sync_cache(std::span<const uint8_t> cdb) const;
    Outcome unmap(std::span<const uint8_t> cdb, std::span<const uint8_t> params) const;
    Outcome write_same16(std::span<const uint8_t> cdb, std::span<const uint8_t> params) const;
    Outcome get_configuration(std::span<const uint8_t> cdb) const;
    Outcome read_toc(std::span<const uint8_t> cdb) const;
    Outcome event_status(std::span<const uint8_t> cdb) const;
    Outcome mechanism_status(std::span<const uint8_t> cdb) const;
    Outcome read_disc_info(std::span<const uint8_t> cdb) const;
    bool in_range(uint64_t lba, uint64_t count) const;

    LunInfo info_;
};

// Target 0: its LUNs, and the commands a target answers for any LUN
// (REPORT LUNS, and the SPC rules for absent LUNs).
class Target {
public:
    void add(uint32_t lun, LunInfo info);  // lun <= kMaxLun, not yet present
    bool has(uint32_t lun) const { return luns_.count(lun) != 0; }
    bool empty() const { return luns_.empty(); }
    const Lun* find(uint32_t lun) const;
    Outcome execute(uint32_t lun, std::span<const uint8_t> cdb, std::span<const uint8_t> params) const;

private:
    Outcome report_luns(std::span<const uint8_t> cdb) const;
    std::map<uint32_t, Lun> luns_;
};

}  // namespace vmm::virtio::scsi
