// Disk image opening/locking and the two asynchronous I/O engines (io_uring
// and a thread pool). See disk.h for the contract.
#include "virtio/disk.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "virtio/qcow2.h"
#include "vmm/core/error.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/thread_role.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

constexpr uint64_t kSector = 512;
// A bounce buffer is only needed for O_DIRECT with misaligned guest buffers
// or for more segments than preadv takes; a guest cannot make us allocate more.
constexpr size_t kMaxBounce = 64u << 20;

bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

// How messages name the image: the option it came from and its path.
std::string label(const DiskOptions& o) { return fmt::format("{} path={}", o.option, o.path); }

std::string open_error(const DiskOptions& o, int e) {
    switch (e) {
    case ENOENT:
        return fmt::format("{}: no such file", label(o));
    case EACCES:
    case EPERM:
        // readonly=on helps only if the file can be read at all.
        return fmt::format("{}: permission denied{}", label(o),
                           !o.readonly && ::faccessat(AT_FDCWD, o.path.c_str(), R_OK, AT_EACCESS) == 0
                               ? " (it is readable: readonly=on may help)"
                               : "");
    case EROFS:
        return fmt::format("{}: read-only file system (use readonly=on)", label(o));
    case EISDIR:
        return fmt::format("{}: is a directory", label(o));
    case EINVAL:
        if (o.direct) return fmt::format("{}: direct=on (O_DIRECT) is not supported here", label(o));
        break;
    default:
        break;
    }
    return fmt::format("{}: {}", label(o), std::strerror(e));
}

// Finds the O_DIRECT alignment of a regular file by trying aligned reads.
uint32_t probe_direct_alignment(int fd, const std::string& what) {
    void* buf = std::aligned_alloc(4096, 4096);
    if (!buf) fail("{}: out of memory", what);
    uint32_t found = 0;
    for (uint32_t bs : {512u, 4096u}) {
        ssize_t r;
        do {
            r = ::pread(fd, buf, bs, 0);
        } while (r < 0 && errno == EINTR);
        if (r >= 0) {
            found = bs;
            break;
        }
        if (errno != EINVAL) {
            int e = errno;
            std::free(buf);
            fail("{}: direct read failed: {}", what, std::strerror(e));
        }
    }
    std::free(buf);
    if (!found) fail("{}: direct=on (O_DIRECT) is not supported by this file system", what);
    return found;
}

}  // namespace

// ---------------------------------------------------------------------------
// Formatted images: qcow2, and snapshot=on overlays.

struct DiskFormatLayer {
    std::mutex mu;  // one request at a time, from any of the disk's queues
    std::vector<std::unique_ptr<ImageFile>> files;  // outlive the images made on them
    std::unique_ptr<Qcow2Image> base;               // a qcow2 image under an overlay
    std::unique_ptr<Qcow2Image> image;              // what the guest sees
};

namespace {

// Whether the image starts with "QFI\xfb". One aligned 4 KiB read, so that
// it also works on an O_DIRECT descriptor; a read error is an error (guessing
// "raw" could let a guest overwrite a qcow2 image's metadata).
bool has_qcow2_magic(int fd, const std::string& what) {
    void* buf = std::aligned_alloc(4096, 4096);
    if (!buf) fail("{}: out of memory", what);
    ssize_t r;
    do {
        r = ::pread(fd, buf, 4096, 0);
    } while (r < 0 && errno == EINTR);
    int e = errno;
    const auto* m = static_cast<const uint8_t*>(buf);
    bool magic = r >= 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb;
    std::free(buf);
    if (r < 0) fail("{}: cannot read the first block: {}", what, std::strerror(e));
    return magic;
}

// A backing file of a qcow2 image: opened read-only, and read-locked, so a
// VM that has it open writable (or opens it so later) is refused.
std::unique_ptr<ImageFile> open_backing_file(const std::string& path, const std::string& what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: backing file {}: {}", what, path, std::strerror(errno));
    Fd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)))
        fail("{}: backing file {}: not a regular file or block device", what, path);
    struct flock lk {};
    lk.l_type = F_RDLCK;
    lk.l_whence = SEEK_SET;
    if (::fcntl(fd, F_OFD_SETLK, &lk) < 0 && (errno == EAGAIN || errno == EACCES))
        fail("{}: backing file {} is locked by another process (a VM writing it?)", what, path);
    return std::make_unique<FdImageFile>(std::move(owned));
}

// A directory for snapshot overlays: big images' overlays can grow large,
// so not /tmp (often RAM) unless TMPDIR says so.
std::string overlay_dir() {
    const char* t = std::getenv("TMPDIR");
    return t && *t ? t : "/var/tmp";
}

}  // namespace

DiskImage::DiskImage(const DiskOptions& o) : path_(o.path), readonly_(o.readonly), direct_(o.direct) {
    if (o.path.empty()) fail("{}: path= is empty", o.option);
    // O_NONBLOCK so that a FIFO given by mistake cannot block the open; it is
    // cleared below and has no effect on regular files and block devices.
    int fd;
    if (o.file) {
        // The same open file description (its lock too), so a duplicate is
        // all it takes; the rest of the checks apply as for a path.
        if (o.direct) fail("{}: direct=on needs an image opened by path", label(o));
        fd = ::fcntl(o.file->get(), F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw_errno(fmt::format("{}: dup", label(o)));
    } else {
        if (o.direct && (o.snapshot || o.format == DiskFormat::Qcow2))
            fail("{}: direct=on works with raw images only, not with {}", label(o),
                 o.snapshot ? "snapshot=on" : "format=qcow2");
        const bool ro = o.readonly || o.snapshot;  // snapshot=on: the base is never written
        int flags = O_CLOEXEC | O_NONBLOCK | (ro ? O_RDONLY : O_RDWR) | (o.direct ? O_DIRECT : 0);
        fd = ::open(o.path.c_str(), flags);
        if (fd < 0) throw Error(open_error(o, errno));
    }
    fd_ = Fd(fd);

    struct stat st {};
    if (::fstat(fd, &st) < 0) throw_errno(fmt::format("{}: fstat", label(o)));
    if (S_ISDIR(st.st_mode)) fail("{}: is a directory", label(o));
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        fail("{}: not a regular file or block device", label(o));
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) throw_errno(fmt::format("{}: fcntl", label(o)));

    block_device_ = S_ISBLK(st.st_mode);
    if (block_device_) {
        uint64_t size = 0;
        if (::ioctl(fd, BLKGETSIZE64, &size) < 0) throw_errno(fmt::format("{}: BLKGETSIZE64", label(o)));
        size_ = size;
        int lbs = 0;
        unsigned int pbs = 0;
        if (::ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs >= 512 && is_pow2(static_cast<uint64_t>(lbs)))
            logical_block_ = static_cast<uint32_t>(lbs);
        if (::ioctl(fd, BLKPBSZGET, &pbs) == 0 && pbs >= logical_block_ && is_pow2(pbs)) physical_block_ = pbs;
        physical_block_ = std::max(physical_block_, logical_block_);
        discard_granularity_ = physical_block_;
    } else {
        size_ = static_cast<uint64_t>(st.st_size);
        uint64_t blk = static_cast<uint64_t>(st.st_blksize);
        discard_granularity_ = (is_pow2(blk) && blk >= 512 && blk <= (1u << 20)) ? static_cast<uint32_t>(blk) : 4096;
        if (o.direct) {
            logical_block_ = probe_direct_alignment(fd, label(o));
            physical_block_ = std::max(physical_block_, logical_block_);
        }
    }
    if (size_ == 0) fail("{}: image is empty", label(o));
    const bool magic = has_qcow2_magic(fd, label(o));
    if (o.format == DiskFormat::Qcow2 && !magic)
        fail("{}: format=qcow2, but the file does not start with the qcow2 magic", label(o));
    const bool qcow2 = o.format == DiskFormat::Qcow2 || (o.format == DiskFormat::Auto && magic);
    if (qcow2 && o.direct) fail("{}: direct=on works with raw images only, and this is a qcow2 image", label(o));
    // A qcow2 file's own size says nothing about the disk (open_format).
    if (!qcow2) {
        if (size_ < logical_block_) fail("{}: image is smaller than one {}-byte block", label(o), logical_block_);
        if (size_ % logical_block_)
            log::warn("{}: size {} is not a multiple of {}; the tail is not visible to the guest", label(o),
                      size_, logical_block_);
        size_ -= size_ % logical_block_;
    }

    // An OFD lock belongs to this open file description, so it also keeps a
    // second open in the same process out, and it goes away with the fd.
    struct flock lk {};
    lk.l_type = o.readonly || o.snapshot ? F_RDLCK : F_WRLCK;
    lk.l_whence = SEEK_SET;
    if (::fcntl(fd, F_OFD_SETLK, &lk) < 0) {
        if (errno == EAGAIN || errno == EACCES)
            fail("{}: image is locked by another process (in use by another VM?)", label(o));
        log::warn("{}: cannot lock the image ({}); continuing without a lock", label(o),
                  std::strerror(errno));
    }
    static_assert(kSector == 512);
    if (qcow2 || o.snapshot) open_format(o, qcow2);
}

void DiskImage::open_format(const DiskOptions& o, bool qcow2) {
    auto layer = std::make_shared<DiskFormatLayer>();
    const std::string what = label(o);
    auto dup_fd = [&] {
        int d = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
        if (d < 0) throw_errno(fmt::format("{}: dup", what));
        return Fd(d);
    };
    BackingOpener open_backing = [what](const std::string& path, const std::string&) {
        return open_backing_file(path, what);
    };
    if (qcow2) {
        layer->files.push_back(std::make_unique<FdImageFile>(dup_fd()));
        Qcow2Options qo;
        qo.path = o.path;
        qo.readonly = o.readonly || o.snapshot;
        qo.open_backing = open_backing;
        layer->base = Qcow2Image::open(*layer->files.back(), qo);
        size_ = layer->base->size() - layer->base->size() % logical_block_;
        if (size_ == 0) fail("{}: the qcow2 image's virtual size is less than one {}-byte block", what, logical_block_);
        discard_granularity_ = layer->base->cluster_size();
        format_name_ = "qcow2";
    }
    if (o.snapshot) {
        layer->base.reset();  // only its size was needed: the overlay opens it as its backing file
        const std::string dir = overlay_dir();
        // Absolute, so that the overlay's backing name needs no resolving.
        std::string base_path = o.path;
        if (base_path[0] != '/') {
            char cwd[PATH_MAX];
            if (!::getcwd(cwd, sizeof cwd)) throw_errno(fmt::format("{}: getcwd", what));
            base_path = std::string(cwd) + "/" + base_path;
        }
        int t = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (t < 0) fail("{}: snapshot=on: cannot make an overlay file in {}: {}", what, dir, std::strerror(errno));
        auto overlay = std::make_unique<FdImageFile>(Fd(t));
        // The overlay names its base by the path given; opening it hands over
        // the file already open (and locked) instead.
        Qcow2CreateOptions co;
        co.size = size_;
        co.backing_path = base_path;
        co.backing_format = qcow2 ? "qcow2" : "raw";
        Qcow2Image::create(*overlay, co);
        auto base_fd = std::make_shared<Fd>(dup_fd());
        Qcow2Options qo;
        qo.path = fmt::format("{} (snapshot overlay in {})", base_path, dir);
        qo.readonly = o.readonly;
        qo.barriers = false;  // nothing of it survives the VMM, a host crash included
        qo.open_backing = [base_fd, base = base_path, what](const std::string& path, const std::string&) {
            if (path != base) return open_backing_file(path, what);
            int d = ::fcntl(base_fd->get(), F_DUPFD_CLOEXEC, 0);
            if (d < 0) throw_errno(fmt::format("{}: dup", what));
            return std::unique_ptr<ImageFile>(std::make_unique<FdImageFile>(Fd(d)));
        };
        layer->files.push_back(std::move(overlay));
        layer->image = Qcow2Image::open(*layer->files.back(), qo);
        format_name_ += "+overlay";
        log::info("{}: snapshot=on: writes go to an unnamed overlay in {}", what, dir);
    } else {
        layer->image = std::move(layer->base);
    }
    format_ = std::move(layer);
}

std::string DiskImage::format_name() const { return format_name_; }

// ---------------------------------------------------------------------------
// Shared request state and the synchronous implementation of every op.

namespace {

struct Op {
    DiskRequest req;
    uint64_t done = 0;        // bytes transferred so far (Read/Write)
    std::vector<iovec> cur;   // what remains to transfer
    void* bounce = nullptr;   // aligned copy when guest buffers cannot be used directly

    ~Op() { std::free(bounce); }

    // Drops `n` transferred bytes from the front of `cur`.
    void advance(size_t n) {
        done += n;
        size_t i = 0;
        while (i < cur.size() && n >= cur[i].iov_len) n -= cur[i++].iov_len;
        cur.erase(cur.begin(), cur.begin() + static_cast<std::ptrdiff_t>(i));
        if (n && !cur.empty()) {
            cur.front().iov_base = static_cast<uint8_t*>(cur.front().iov_base) + n;
            cur.front().iov_len -= n;
        }
    }
};

// Prepares a Read/Write op: totals, bounce buffer if needed. Returns 0 or -errno.
int prepare(Op& op, uint32_t align) {
    if (op.req.op != DiskOp::Read && op.req.op != DiskOp::Write) return 0;
    uint64_t total = 0;
    bool aligned = true;
    for (auto& v : op.req.iov) {
        total += v.iov_len;
        if (reinterpret_cast<uintptr_t>(v.iov_base) % align || v.iov_len % align) aligned = false;
    }
    op.req.length = total;
    if (!aligned || op.req.iov.size() > IOV_MAX) {
        if (total > kMaxBounce) return -EINVAL;
        size_t size = (total + 4095) & ~size_t{4095};
        op.bounce = std::aligned_alloc(std::max<size_t>(align, 4096), std::max<size_t>(size, 4096));
        if (!op.bounce) return -ENOMEM;
        if (op.req.op == DiskOp::Write) {
            auto* p = static_cast<uint8_t*>(op.bounce);
            for (auto& v : op.req.iov) {
                std::memcpy(p, v.iov_base, v.iov_len);
                p += v.iov_len;
            }
        }
        op.cur = {iovec{op.bounce, total}};
    } else {
        op.cur = op.req.iov;
    }
    return 0;
}

// Builds the completion, copying a bounced read back into guest buffers.
DiskCompletion finish(Op& op, int res) {
    if (res == 0 && op.bounce && op.req.op == DiskOp::Read) {
        auto* p = static_cast<const uint8_t*>(op.bounce);
        for (auto& v : op.req.iov) {
            std::memcpy(v.iov_base, p, v.iov_len);
            p += v.iov_len;
        }
    }
    return {op.req.cookie, res};
}

bool unsupported(int e) { return e == EOPNOTSUPP || e == ENOTSUP || e == EINVAL || e == ENOSYS; }

int sys_fallocate(int fd, int mode, uint64_t off, uint64_t len) {
    int r;
    do {
        r = ::fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len));
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int write_zero_bytes(int fd, uint64_t off, uint64_t len) {
    // Aligned for O_DIRECT; offsets and lengths are block multiples there.
    alignas(4096) static const uint8_t zeros[64 * 1024] = {};
    while (len) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(len, sizeof zeros));
        ssize_t r = ::pwrite(fd, zeros, n, static_cast<off_t>(off));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -EIO;
        off += static_cast<uint64_t>(r);
        len -= static_cast<uint64_t>(r);
    }
    return 0;
}

int run_write_zeroes(int fd, bool blockdev, uint64_t off, uint64_t len, bool unmap) {
    (void)blockdev;  // fallocate modes work on both files and block devices (kernel >= 4.9)
    int r;
    if (unmap) {
        r = sys_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
        if (r == 0 || !unsupported(-r)) return r;
    }
    r = sys_fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
    if (r == 0 || !unsupported(-r)) return r;
    if (!unmap) {
        r = sys_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
        if (r == 0 || !unsupported(-r)) return r;
    }
    return write_zero_bytes(fd, off, len);
}

int run_discard(int fd, bool blockdev, uint64_t off, uint64_t len) {
    int r;
    if (blockdev) {
        uint64_t range[2] = {off, len};
        r = ::ioctl(fd, BLKDISCARD, range) < 0 ? -errno : 0;
    } else {
        r = sys_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
    }
    // Discard is a hint: a backend that cannot deallocate just keeps the data.
    return (r < 0 && unsupported(-r)) ? 0 : r;
}

// Runs one prepared op through the format layer (qcow2, overlays).
int run_format(DiskFormatLayer& f, Op& op) {
    std::lock_guard lk(f.mu);
    Qcow2Image& q = *f.image;
    switch (op.req.op) {
    case DiskOp::Read:
        return q.read(op.req.offset, op.cur);
    case DiskOp::Write:
        return q.write(op.req.offset, op.cur);
    case DiskOp::Flush:
        return q.flush();
    case DiskOp::Discard:
        return q.discard(op.req.offset, op.req.length);
    case DiskOp::WriteZeroes:
        return q.write_zeroes(op.req.offset, op.req.length);
    }
    return -EINVAL;
}

// Runs one prepared op to completion on the calling thread.
int run_sync(int fd, bool blockdev, Op& op) {
    switch (op.req.op) {
    case DiskOp::Read:
    case DiskOp::Write:
        while (!op.cur.empty()) {
            int cnt = static_cast<int>(std::min<size_t>(op.cur.size(), IOV_MAX));
            off_t off = static_cast<off_t>(op.req.offset + op.done);
            ssize_t r = op.req.op == DiskOp::Read ? ::preadv(fd, op.cur.data(), cnt, off)
                                                  : ::pwritev(fd, op.cur.data(), cnt, off);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return -errno;
            if (r == 0) return -EIO;  // EOF: requests are bounds-checked, so the image shrank
            op.advance(static_cast<size_t>(r));
        }
        return 0;
    case DiskOp::Flush:
        return ::fdatasync(fd) < 0 ? -errno : 0;
    case DiskOp::Discard:
        return run_discard(fd, blockdev, op.req.offset, op.req.length);
    case DiskOp::WriteZeroes:
        return run_write_zeroes(fd, blockdev, op.req.offset, op.req.length, op.req.unmap);
    }
    return -EINVAL;
}

// ---------------------------------------------------------------------------
// Thread-pool engine.

class ThreadEngine final : public DiskEngine {
public:
    ThreadEngine(const DiskImage& disk, unsigned threads, std::shared_ptr<EventFd> efd = nullptr)
        : fd_(disk.fd()), blockdev_(disk.is_block_device()), align_(disk.direct_alignment()),
          efd_(efd ? std::move(efd) : std::make_shared<EventFd>()) {
        for (unsigned i = 0; i < std::max(1u, threads); ++i)
            workers_.emplace_back([this] {
                on_thread_start(ThreadRole::Io);
                work();
            });
    }
    ~ThreadEngine() override {
        {
            std::lock_guard lk(mu_);
            stop_ = true;  // workers finish the queued ops first
        }
        work_cv_.notify_all();
        for (auto& t : workers_) t.join();
    }

    const char* name() const override { return "threads"; }
    int event_fd() const override { return efd_->fd(); }

    void submit(std::span<DiskRequest> batch) override {
        std::vector<DiskCompletion> failed;
        std::vector<std::unique_ptr<Op>> ops;
        for (auto& r : batch) {
            auto op = std::make_unique<Op>();
            op->req = std::move(r);
            if (int e = prepare(*op, align_))
                failed.push_back({op->req.cookie, e});
            else {
                if (op->bounce) bounced_.fetch_add(1, std::memory_order_relaxed);
                ops.push_back(std::move(op));
            }
        }
        {
            std::lock_guard lk(mu_);
            in_flight_ += failed.size() + ops.size();
            pending_ += ops.size();
            for (auto& op : ops) queue_.push_back(std::move(op));
            done_.insert(done_.end(), failed.begin(), failed.end());
        }
        work_cv_.notify_all();
        if (!failed.empty()) efd_->signal();
    }

    // Queues an op that is already prepared (the io_uring engine's fallback).
    void submit_op(std::unique_ptr<Op> op) {
        {
            std::lock_guard lk(mu_);
            ++in_flight_;
            ++pending_;
            queue_.push_back(std::move(op));
        }
        work_cv_.notify_one();
    }

    void reap(std::vector<DiskCompletion>& out) override {
        efd_->consume();
        collect(out);
    }
    // Moves completions out without touching the eventfd.
    void collect(std::vector<DiskCompletion>& out) {
        std::lock_guard lk(mu_);
        out.insert(out.end(), done_.begin(), done_.end());
        in_flight_ -= done_.size();
        done_.clear();
    }
    size_t in_flight() const override {
        std::lock_guard lk(mu_);
        return in_flight_;
    }
    void drain() override {
        std::unique_lock lk(mu_);
        idle_cv_.wait(lk, [this] { return pending_ == 0; });
    }
    uint64_t bounced() const override { return bounced_.load(std::memory_order_relaxed); }

private:
    void work() {
        std::unique_lock lk(mu_);
        for (;;) {
            work_cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stop_ and nothing left
            auto op = std::move(queue_.front());
            queue_.pop_front();
            lk.unlock();
            int res = run_sync(fd_, blockdev_, *op);
            DiskCompletion c = finish(*op, res);
            op.reset();
            lk.lock();
            done_.push_back(c);
            if (--pending_ == 0) idle_cv_.notify_all();
            efd_->signal();
        }
    }

    int fd_;
    bool blockdev_;
    uint32_t align_;
    std::shared_ptr<EventFd> efd_;
    mutable std::mutex mu_;
    std::condition_variable work_cv_, idle_cv_;
    std::deque<std::unique_ptr<Op>> queue_;
    std::vector<DiskCompletion> done_;
    size_t in_flight_ = 0;  // submitted, not reaped
    size_t pending_ = 0;    // submitted, not completed
    bool stop_ = false;
    std::atomic<uint64_t> bounced_{0};
    std::vector<std::thread> workers_;
};

// ---------------------------------------------------------------------------
// Format engine: a qcow2 image or a snapshot overlay. The layer is
// synchronous and serialised per disk, so requests run right in submit() on
// the queue's I/O thread: a worker thread would add two thread switches per
// request and no parallelism (measured: docs/qcow2.md).

class FormatEngine final : public DiskEngine {
public:
    explicit FormatEngine(const DiskImage& disk) : format_(disk.format_layer()) {}

    const char* name() const override { return "format"; }
    int event_fd() const override { return efd_.fd(); }

    void submit(std::span<DiskRequest> batch) override {
        for (auto& r : batch) {
            Op op;
            op.req = std::move(r);
            int res = prepare(op, 1);
            if (op.bounce) ++bounced_;
            if (res == 0) res = run_format(*format_, op);
            done_.push_back(finish(op, res));
        }
        // A polling I/O thread finds them through completions_ready().
        if (!batch.empty() && !polling_) efd_.signal();
    }
    void reap(std::vector<DiskCompletion>& out) override {
        efd_.consume();
        out.insert(out.end(), done_.begin(), done_.end());
        done_.clear();
    }
    size_t in_flight() const override { return done_.size(); }
    bool completions_ready() const override { return !done_.empty(); }
    bool set_polling(bool on) override {
        polling_ = on;
        return !on && !done_.empty();
    }
    void drain() override {}  // nothing is ever in progress between calls
    uint64_t bounced() const override { return bounced_; }

private:
    std::shared_ptr<DiskFormatLayer> format_;
    EventFd efd_;
    std::vector<DiskCompletion> done_;
    bool polling_ = false;
    uint64_t bounced_ = 0;
};

// ---------------------------------------------------------------------------
// io_uring engine.

class UringEngine final : public DiskEngine {
public:
    UringEngine(const DiskImage& disk, unsigned depth)
        : disk_(disk), fd_(disk.fd()), align_(disk.direct_alignment()), efd_(std::make_shared<EventFd>()) {
        unsigned entries = 1;
        while (entries < std::clamp(depth, 4u, 4096u)) entries <<= 1;
        int r = io_uring_queue_init(entries, &ring_, 0);
        if (r < 0) {
            errno = -r;
            throw_errno("io_uring_queue_init");
        }
        cq_entries_ = ring_.cq.ring_entries;
        r = io_uring_register_eventfd(&ring_, efd_->fd());
        if (r < 0) {
            io_uring_queue_exit(&ring_);
            errno = -r;
            throw_errno("io_uring_register_eventfd");
        }
        if (io_uring_probe* p = io_uring_get_probe_ring(&ring_)) {
            fallocate_ok_ = io_uring_opcode_supported(p, IORING_OP_FALLOCATE);
            fsync_ok_ = io_uring_opcode_supported(p, IORING_OP_FSYNC);
            io_uring_free_probe(p);
        }
    }
    ~UringEngine() override {
        drain();
        sync_.reset();
        io_uring_queue_exit(&ring_);
    }

    const char* name() const override { return "io_uring"; }
    int event_fd() const override { return efd_->fd(); }

    bool completions_ready() const override { return io_uring_cq_ready(&ring_) > 0 || !ready_.empty(); }
    bool set_polling(bool on) override {
        io_uring_cq_eventfd_toggle(&ring_, !on);
        return !on && completions_ready();
    }

    void submit(std::span<DiskRequest> batch) override {
        for (auto& r : batch) {
            auto op = std::make_unique<Op>();
            op->req = std::move(r);
            ++in_flight_;
            if (int e = prepare(*op, align_)) {
                ready_.push_back({op->req.cookie, e});
                efd_->signal();
                continue;
            }
            if (op->bounce) ++bounced_;
            route(std::move(op));
        }
        pump();
    }

    void reap(std::vector<DiskCompletion>& out) override {
        efd_->consume();
        process_cqes(false);
        pump();
        if (sync_) sync_->collect(ready_);
        in_flight_ -= ready_.size();
        out.insert(out.end(), ready_.begin(), ready_.end());
        ready_.clear();
    }

    size_t in_flight() const override { return in_flight_; }
    uint64_t bounced() const override { return bounced_; }

    void drain() override {
        for (;;) {
            pump();
            if (in_ring_ > 0) {
                process_cqes(true);
                continue;
            }
            // Ops the ring would not take even when empty: give up on them.
            for (Op* op : backlog_) {
                ready_.push_back(finish(*op, -EIO));
                delete op;
            }
            backlog_.clear();
            if (sync_) {
                sync_->drain();
                sync_->collect(ready_);
            }
            break;
        }
        if (!ready_.empty()) efd_->signal();  // completions stay available to reap()
    }

private:
    // Sends an op to the ring or, if the ring cannot express it, to the helper thread.
    void route(std::unique_ptr<Op> op) {
        bool ring_ok = true;
        switch (op->req.op) {
        case DiskOp::Flush:
            ring_ok = fsync_ok_;
            break;
        case DiskOp::Discard:
            ring_ok = fallocate_ok_ && !disk_.is_block_device();  // BLKDISCARD is an ioctl
            break;
        case DiskOp::WriteZeroes:
            ring_ok = fallocate_ok_;
            break;
        default:
            break;
        }
        if (!ring_ok) {
            if (!sync_) sync_ = std::make_unique<ThreadEngine>(disk_, 1, efd_);
            sync_->submit_op(std::move(op));  // completes through sync_->collect(ready_)
            return;
        }
        backlog_.push_back(op.release());
    }

    // Moves ops from the backlog into the ring, keeping at most cq_entries_ in
    // flight so the completion ring cannot overflow; one submit per call.
    void pump() {
        bool queued = false;
        while (!backlog_.empty() && in_ring_ < cq_entries_) {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
            if (!sqe) {
                io_uring_submit(&ring_);
                sqe = io_uring_get_sqe(&ring_);
                if (!sqe) break;
            }
            Op* op = backlog_.front();
            backlog_.pop_front();
            prep(sqe, *op);
            io_uring_sqe_set_data(sqe, op);
            ++in_ring_;
            queued = true;
        }
        if (queued) {
            int r = io_uring_submit(&ring_);
            if (r < 0 && r != -EAGAIN && r != -EBUSY && rl_.allow())
                log::error("{}: io_uring_submit: {}", disk_.path(), std::strerror(-r));
        }
    }

    void prep(io_uring_sqe* sqe, Op& op) {
        uint64_t off = op.req.offset + op.done;
        unsigned cnt = static_cast<unsigned>(std::min<size_t>(op.cur.size(), IOV_MAX));
        switch (op.req.op) {
        case DiskOp::Read:
            io_uring_prep_readv(sqe, fd_, op.cur.data(), cnt, off);
            break;
        case DiskOp::Write:
            io_uring_prep_writev(sqe, fd_, op.cur.data(), cnt, off);
            break;
        case DiskOp::Flush:
            io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
            break;
        case DiskOp::Discard:
            io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, op.req.length);
            break;
        case DiskOp::WriteZeroes:
            io_uring_prep_fallocate(sqe, fd_,
                                    (op.req.unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE,
                                    off, op.req.length);
            break;
        }
    }

    void process_cqes(bool wait) {
        io_uring_cqe* cqe = nullptr;
        if (wait) {
            int r;
            do {
                r = io_uring_wait_cqe(&ring_, &cqe);
            } while (r == -EINTR);
        }
        while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
            std::unique_ptr<Op> op(static_cast<Op*>(io_uring_cqe_get_data(cqe)));
            int res = cqe->res;
            io_uring_cqe_seen(&ring_, cqe);
            --in_ring_;
            on_cqe(std::move(op), res);
        }
    }

    void on_cqe(std::unique_ptr<Op> op, int res) {
        switch (op->req.op) {
        case DiskOp::Read:
        case DiskOp::Write:
            if (res == -EINTR || res == -EAGAIN) {
                backlog_.push_back(op.release());
                return;
            }
            if (res == 0) res = -EIO;  // EOF: the image shrank under us
            if (res > 0) {
                op->advance(static_cast<size_t>(res));
                if (!op->cur.empty()) {  // short transfer: go on with the rest
                    backlog_.push_back(op.release());
                    return;
                }
                res = 0;
            }
            break;
        case DiskOp::Flush:
            break;
        case DiskOp::Discard:
            if (res < 0 && unsupported(-res)) res = 0;
            break;
        case DiskOp::WriteZeroes:
            if (res < 0 && unsupported(-res)) {  // full fallback chain on the helper thread
                if (!sync_) sync_ = std::make_unique<ThreadEngine>(disk_, 1, efd_);
                sync_->submit_op(std::move(op));
                return;
            }
            break;
        }
        ready_.push_back(finish(*op, res > 0 ? 0 : res));
    }

    const DiskImage& disk_;
    int fd_;
    uint32_t align_;
    std::shared_ptr<EventFd> efd_;
    io_uring ring_{};
    unsigned cq_entries_ = 0;
    bool fallocate_ok_ = false;
    bool fsync_ok_ = false;
    std::deque<Op*> backlog_;  // owned; not yet in the ring
    size_t in_ring_ = 0;
    size_t in_flight_ = 0;
    std::vector<DiskCompletion> ready_;
    uint64_t bounced_ = 0;
    std::unique_ptr<ThreadEngine> sync_;
    log::RateLimit rl_;
};

}  // namespace

std::unique_ptr<DiskEngine> make_disk_engine(const DiskImage& disk, unsigned depth, DiskEngineKind kind) {
    if (disk.format_layer()) return std::make_unique<FormatEngine>(disk);
    if (kind == DiskEngineKind::Auto) {
        const char* env = std::getenv("VMM_DISK_ENGINE");
        if (env && std::string_view(env) == "threads") kind = DiskEngineKind::Threads;
    }
    if (kind != DiskEngineKind::Threads) {
        try {
            return std::make_unique<UringEngine>(disk, depth);
        } catch (const Error& e) {
            if (kind == DiskEngineKind::IoUring) throw;
            static log::RateLimit rl(1, std::chrono::hours(1));
            if (rl.allow()) log::warn("{}: {}; using the thread-pool disk engine", disk.path(), e.what());
        }
    }
    return std::make_unique<ThreadEngine>(disk, 4);
}

}  // namespace vmm::virtio
