// Host backend of virtio-blk and virtio-scsi: a disk image (raw regular file
// or host block device, or qcow2 through virtio/qcow2.h) and the
// asynchronous engines that run I/O on it.
//
// DiskImage opens and validates the image once (at VM setup, so a bad
// --disk option fails with a clear message before the guest starts) and
// holds an OFD lock on it so a second VMM cannot use the same image writable.
//
// A DiskEngine runs batches of requests on the image for one virtqueue's I/O
// thread: submit() a batch, wait for event_fd() to become readable, reap()
// the completions. Two implementations behind one interface:
//   - io_uring (liburing): one ring per engine, completions signalled through
//     a registered eventfd, one io_uring_submit per batch;
//   - a small thread pool (preadv/pwritev/fdatasync/fallocate), used when
//     io_uring is unavailable (seccomp, old kernel) or forced with
//     VMM_DISK_ENGINE=threads.
// Operations io_uring cannot express (BLKDISCARD, fallocate fallbacks) go to a
// one-thread pool that shares the engine's eventfd. A qcow2 image (and any
// image with snapshot=on) gets a third kind, the format engine: it runs each
// request synchronously on the queue's I/O thread through the format layer,
// which maps guest offsets to clusters and allocates them; the layer is
// shared by all queues of the disk and serialised by a mutex.
//
// An engine is used from one thread only (its queue's I/O thread).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/fd.h"

namespace vmm::virtio {

// How the image file is laid out: Auto looks for the qcow2 magic.
enum class DiskFormat : uint8_t { Auto, Raw, Qcow2 };

struct DiskOptions {
    std::string path;
    bool readonly = false;
    bool direct = false;            // O_DIRECT: bypass the host page cache
    std::string option = "--disk";  // the option it came from, for messages ("--scsi-disk", "--cdrom")
    // An image the VMM made itself (the cloud-init seed, a sealed memfd):
    // DiskImage uses its own duplicate of this descriptor instead of opening
    // `path`, which then only names the image in messages. Not with direct.
    std::shared_ptr<const Fd> file{};
    DiskFormat format = DiskFormat::Auto;
    // Throwaway overlay: the image is opened read-only and the guest's
    // writes go to a qcow2 overlay in $TMPDIR (or /var/tmp) that has no
    // name from the start, so nothing is left behind, even after SIGKILL.
    bool snapshot = false;
};

// A formatted image (qcow2, or any image under snapshot=on): the format
// layer that engines run requests through (virtio/disk.cpp).
struct DiskFormatLayer;

class DiskImage {
public:
    // Opens (or duplicates opts.file), sizes and locks the image. Throws
    // vmm::Error("<option> path=...: ...").
    explicit DiskImage(const DiskOptions& opts);
    DiskImage(DiskImage&&) noexcept = default;
    DiskImage& operator=(DiskImage&&) noexcept = default;

    int fd() const { return fd_.get(); }
    const std::string& path() const { return path_; }
    bool readonly() const { return readonly_; }
    bool direct() const { return direct_; }
    bool is_block_device() const { return block_device_; }
    uint64_t size_bytes() const { return size_; }
    uint32_t logical_block_size() const { return logical_block_; }
    uint32_t physical_block_size() const { return physical_block_; }
    // Granularity at which discard really frees space (file system block).
    uint32_t discard_granularity() const { return discard_granularity_; }
    // With direct=on: the alignment buffers and offsets need (else 1).
    uint32_t direct_alignment() const { return direct_ ? logical_block_ : 1; }
    // "raw", "qcow2", or "raw+overlay"/"qcow2+overlay" under snapshot=on.
    std::string format_name() const;
    // Null for a raw image used as it is: engines then use fd() directly.
    const std::shared_ptr<DiskFormatLayer>& format_layer() const { return format_; }

private:
    void open_format(const DiskOptions& o, bool qcow2);

    Fd fd_;
    std::string path_;
    bool readonly_ = false;
    bool direct_ = false;
    bool block_device_ = false;
    uint64_t size_ = 0;
    uint32_t logical_block_ = 512;
    uint32_t physical_block_ = 512;
    uint32_t discard_granularity_ = 512;
    std::shared_ptr<DiskFormatLayer> format_;
    std::string format_name_ = "raw";
};

enum class DiskOp : uint8_t { Read, Write, Flush, Discard, WriteZeroes };

struct DiskRequest {
    DiskOp op = DiskOp::Read;
    uint64_t offset = 0;      // bytes
    uint64_t length = 0;      // bytes, Discard/WriteZeroes (Read/Write: sum of iov)
    std::vector<iovec> iov;   // Read/Write: host buffers (guest RAM, already validated)
    bool unmap = false;       // WriteZeroes: the range may be deallocated
    uint64_t cookie = 0;      // returned unchanged in the completion
};

struct DiskCompletion {
    uint64_t cookie;
    int result;  // 0 on success, -errno on failure
};

class DiskEngine {
public:
    virtual ~DiskEngine() = default;
    virtual const char* name() const = 0;
    // Readable (EPOLLIN) when completions may be ready.
    virtual int event_fd() const = 0;
    // Starts a batch. Never throws for per-request failures: those complete
    // with a negative result. Requests are consumed (moved from).
    virtual void submit(std::span<DiskRequest> batch) = 0;
    // Appends every ready completion to `out` and clears the eventfd first,
    // so a completion that races with reap() re-signals it.
    virtual void reap(std::vector<DiskCompletion>& out) = 0;
    // Requests submitted and not yet reaped.
    virtual size_t in_flight() const = 0;
    // For an I/O thread that busy-polls (vmm/core/event_loop.h):
    // completions_ready() looks for finished requests without a system call
    // (false: only the eventfd tells); set_polling(true) stops the eventfd
    // signals while the thread spins, set_polling(false) re-arms them and
    // returns true if completions are already waiting.
    virtual bool completions_ready() const { return false; }
    virtual bool set_polling(bool) { return false; }
    // Blocks until every submitted request has completed (completions are
    // then available to reap()). Used before freeing a queue on reset.
    virtual void drain() = 0;
    // Read/Write requests that went through a bounce buffer (misaligned for
    // O_DIRECT or too many segments): should stay 0 for page-sized guest I/O.
    virtual uint64_t bounced() const = 0;
};

enum class DiskEngineKind { Auto, IoUring, Threads };

// Auto: io_uring unless VMM_DISK_ENGINE=threads or io_uring cannot be set up.
// `depth`: expected number of requests in flight (the queue size).
std::unique_ptr<DiskEngine> make_disk_engine(const DiskImage& disk, unsigned depth,
                                             DiskEngineKind kind = DiskEngineKind::Auto);

}  // namespace vmm::virtio
