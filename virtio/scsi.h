// virtio-scsi controller (virtio 1.x section 5.6): one target with up to
// 16384 LUNs (disks and CD-ROMs backed by raw images), served through the
// disk backend of virtio-blk (virtio/disk.h).
//
// Queues: 0 control (task management, asynchronous notification queries),
// 1 event (buffers are held: this device raises no events), 2.. request
// queues. The control queue and each request queue get their own I/O thread
// woken by the queue's kick eventfd. A request's CDB goes to the command
// layer (scsi_target.h), which answers it or names one host operation; the
// operation runs on a disk engine of the LUN (one per LUN and request queue,
// made on first use so 256 idle LUNs cost nothing) and completes
// asynchronously like a virtio-blk request.
//
// Guest errors: a request too short for its header, an unknown LUN
// encoding, a buffer too small for the transfer get a virtio-scsi response
// code (FAILURE, BAD_TARGET, OVERRUN); a chain too short for the response
// is returned with nothing written; a malformed ring stops the queue and
// asks the transport for DEVICE_NEEDS_RESET. All are counted and logged
// (rate-limited).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "virtio/device.h"
#include "virtio/disk.h"
#include "virtio/scsi_target.h"
#include "vmm/core/counters.h"

namespace vmm::virtio {

struct ScsiLunSpec {
    DiskOptions disk;  // path, readonly (forced on for CD-ROMs)
    uint32_t lun = 0;  // 0..scsi::kMaxLun, distinct
    bool cdrom = false;
};

struct ScsiConfig {
    std::vector<ScsiLunSpec> luns;
    uint16_t num_queues = 1;    // request queues
    uint16_t queue_size = 256;  // request queues; control and event queues take 64
    std::string name = "virtio-scsi0";
};

// Response codes (virtio 1.x 5.6.6.1, 5.6.6.2).
namespace scsi {
inline constexpr uint8_t kRespOk = 0;
inline constexpr uint8_t kRespOverrun = 1;
inline constexpr uint8_t kRespBadTarget = 3;
inline constexpr uint8_t kRespFailure = 9;
inline constexpr uint8_t kRespFunctionComplete = 0;
inline constexpr uint8_t kRespFunctionSucceeded = 10;
inline constexpr uint8_t kRespFunctionRejected = 11;
// Control request types and TMF subtypes.
inline constexpr uint32_t kCtrlTmf = 0;
inline constexpr uint32_t kCtrlAnQuery = 1;
inline constexpr uint32_t kCtrlAnSubscribe = 2;
inline constexpr uint32_t kTmfAbortTask = 0;
inline constexpr uint32_t kTmfAbortTaskSet = 1;
inline constexpr uint32_t kTmfClearAca = 2;
inline constexpr uint32_t kTmfClearTaskSet = 3;
inline constexpr uint32_t kTmfITNexusReset = 4;
inline constexpr uint32_t kTmfLunReset = 5;
inline constexpr uint32_t kTmfQueryTask = 6;
inline constexpr uint32_t kTmfQueryTaskSet = 7;
// Request header before the CDB: lun[8], id (8), task_attr, prio, crn.
inline constexpr size_t kCmdHeaderSize = 19;
// Response header before the sense bytes: sense_len, resid, status_qualifier, status, response.
inline constexpr size_t kRespHeaderSize = 12;
inline constexpr uint32_t kDefaultSenseSize = 96;
inline constexpr uint32_t kDefaultCdbSize = 32;
inline constexpr uint32_t kMaxSenseSize = 256;  // driver writes above this are ignored
inline constexpr uint32_t kMaxCdbSize = 256;
inline constexpr uint16_t kCtrlQueueSize = 64;
}  // namespace scsi

class ScsiDevice final : public VirtioDevice {
public:
    // Opens every image (throws vmm::Error naming the --scsi-disk / --cdrom).
    explicit ScsiDevice(ScsiConfig cfg);
    ~ScsiDevice() override;

    uint32_t device_type() const override { return kDeviceScsi; }
    std::string name() const override { return cfg_.name; }
    std::vector<uint16_t> queue_max_sizes() const override;
    uint64_t device_features() const override { return 0; }  // no INOUT, HOTPLUG, CHANGE, T10_PI
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    void activate(ActivationContext ctx) override;
    void reset() override;
    std::map<std::string, uint64_t> counters() const override;

    const scsi::Target& target() const { return target_; }
    static constexpr size_t kConfigSize = 36;

private:
    struct Worker;
    struct ControlWorker;
    struct Unit {
        std::unique_ptr<DiskImage> disk;
        uint32_t lun;
    };
    struct Counters {
        CounterSet set;
        std::atomic<uint64_t>& requests = set.add("requests");
        std::atomic<uint64_t>& read_bytes = set.add("read_bytes");
        std::atomic<uint64_t>& write_bytes = set.add("write_bytes");
        std::atomic<uint64_t>& check_conditions = set.add("check_conditions");
        std::atomic<uint64_t>& errors = set.add("errors");
        std::atomic<uint64_t>& bad_target = set.add("bad_target");
        std::atomic<uint64_t>& tmf = set.add("tmf");
    };

    void reset_threads();  // stops the I/O threads; keeps the driver-written config

    ScsiConfig cfg_;
    std::vector<Unit> units_;          // in cfg_.luns order
    std::map<uint32_t, size_t> unit_of_lun_;
    scsi::Target target_;
    std::atomic<uint32_t> sense_size_{scsi::kDefaultSenseSize};  // driver-writable config fields
    std::atomic<uint32_t> cdb_size_{scsi::kDefaultCdbSize};
    Counters counters_;
    std::atomic<uint64_t> inflight_{0};  // requests submitted to the host, all queues (for TMFs)
    ActivationContext ctx_;
    std::unique_ptr<ControlWorker> control_;
    std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace vmm::virtio
