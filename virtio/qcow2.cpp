// qcow2 format layer. See qcow2.h for the contract and docs/qcow2.md for the
// layout support, the refusals and the write ordering.
#include "virtio/qcow2.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <list>
#include <cstring>
#include <new>

#include "vmm/core/bytes.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm::virtio {

namespace {

constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr unsigned kV2HeaderLength = 72;
constexpr unsigned kV3HeaderLength = 104;

constexpr uint64_t kIncompatDirty = 1u << 0;
constexpr uint64_t kIncompatCorrupt = 1u << 1;
constexpr uint64_t kIncompatDataFile = 1u << 2;
constexpr uint64_t kIncompatCompression = 1u << 3;
constexpr uint64_t kIncompatExtendedL2 = 1u << 4;
constexpr uint64_t kIncompatKnown = 0x1f;

// Header byte 104 (v3, header length above 104): how compressed clusters
// are compressed.
constexpr unsigned kCompressionZlib = 0;
constexpr unsigned kCompressionZstd = 1;
// QEMU writes each cluster as one frame whose window is at most the
// cluster; frames from other writers may declare more. Refusing windows
// above 8 MiB bounds what a hostile frame makes libzstd allocate.
constexpr int kZstdWindowLogMax = 23;

constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtCrypto = 0x0537be77;
constexpr uint32_t kExtDataFile = 0x44415441;

constexpr uint64_t kCopied = 1ull << 63;
constexpr uint64_t kCompressed = 1ull << 62;
constexpr uint64_t kZeroFlag = 1;
constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;  // bits 9..55
constexpr uint64_t kL1Reserved = 0x7f000000000001ffull;  // bits 0..8, 56..62
constexpr uint64_t kL2Reserved = 0x3f000000000001feull;  // bits 1..8, 56..61
constexpr uint64_t kRefTableReserved = 0x1ff;

// Sizes past these are hostile or absurd; QEMU refuses the same.
constexpr uint64_t kMaxL1Bytes = 32u << 20;
constexpr uint64_t kMaxRefTableBytes = 8u << 20;
constexpr uint64_t kMaxVirtualSize = 1ull << 56;
constexpr size_t kMaxBackingName = 1023;
constexpr uint64_t kMaxLeakedPastEnd = 65536;  // clusters

uint64_t div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

uint64_t be(const std::vector<uint8_t>& b, size_t off, size_t width) { return load_be(b, off, width); }

int full_read(ImageFile& f, void* buf, size_t len, uint64_t off) {
    int64_t r = f.pread(buf, len, off);
    if (r < 0) return static_cast<int>(r);
    return static_cast<size_t>(r) == len ? 0 : -EIO;
}

// Reads `len` bytes; past the end of the file reads zeros (a sparse tail).
int zero_tail_read(ImageFile& f, uint8_t* buf, size_t len, uint64_t off) {
    int64_t r = f.pread(buf, len, off);
    if (r < 0) return static_cast<int>(r);
    std::memset(buf + r, 0, len - static_cast<size_t>(r));
    return 0;
}

// Total length of a list of buffers.
uint64_t iov_bytes(std::span<const iovec> iov) {
    uint64_t n = 0;
    for (const auto& v : iov) n += v.iov_len;
    return n;
}

// Zeros the bytes of `iov` from byte `from` on.
void iov_zero_from(std::span<const iovec> iov, uint64_t from) {
    for (const auto& v : iov) {
        if (from >= v.iov_len) {
            from -= v.iov_len;
            continue;
        }
        std::memset(static_cast<uint8_t*>(v.iov_base) + from, 0, v.iov_len - from);
        from = 0;
    }
}

// The first `len` bytes of `iov` (a shortened copy).
std::vector<iovec> iov_head(std::span<const iovec> iov, uint64_t len) {
    std::vector<iovec> out;
    for (const auto& v : iov) {
        if (len == 0) break;
        size_t k = static_cast<size_t>(std::min<uint64_t>(len, v.iov_len));
        out.push_back({v.iov_base, k});
        len -= k;
    }
    return out;
}

// Drops the first `n` bytes of v[i..]: moves i past used-up buffers.
void iov_advance(std::vector<iovec>& v, size_t& i, size_t n) {
    while (n && i < v.size()) {
        size_t k = std::min(n, v[i].iov_len);
        v[i].iov_base = static_cast<uint8_t*>(v[i].iov_base) + k;
        v[i].iov_len -= k;
        n -= k;
        if (v[i].iov_len == 0) ++i;
    }
    while (i < v.size() && v[i].iov_len == 0) ++i;
}

// Like zero_tail_read, into a list of buffers.
int zero_tail_readv(ImageFile& f, std::span<const iovec> iov, uint64_t off) {
    int64_t r = f.preadv(iov.data(), iov.size(), off);
    if (r < 0) return static_cast<int>(r);
    iov_zero_from(iov, static_cast<uint64_t>(r));
    return 0;
}

int write_be64(ImageFile& f, uint64_t off, uint64_t v) {
    uint8_t b[8];
    store_be64(b, 0, v);
    return f.pwrite(b, sizeof b, off);
}

// Decompresses the zstd frame at the front of `in` into exactly `out_len`
// bytes. What follows the frame (the rest of its last sector, maybe the
// next compressed cluster) is ignored. Fails on any zstd error, on a frame
// that ends before `out` is full, and on one that would make more: libzstd
// never writes past `out_len`, and a frame that wants to is stuck with
// nowhere to put its bytes.
bool unzstd_cluster(ZSTD_DCtx* d, const uint8_t* in, size_t len, uint8_t* out, size_t out_len) {
    if (ZSTD_isError(ZSTD_DCtx_reset(d, ZSTD_reset_session_only))) return false;
    ZSTD_inBuffer src{in, len, 0};
    ZSTD_outBuffer dst{out, out_len, 0};
    for (;;) {
        size_t in_pos = src.pos, out_pos = dst.pos;
        size_t r = ZSTD_decompressStream(d, &dst, &src);
        if (ZSTD_isError(r)) return false;
        if (r == 0) return dst.pos == out_len;  // the frame is complete
        // More of the frame to come: with no progress the input is used up
        // (cut short) or the output full (more than a cluster).
        if (src.pos == in_pos && dst.pos == out_pos) return false;
    }
}

}  // namespace

// ---- image files ----

std::unique_ptr<FdImageFile> FdImageFile::open(const std::string& path, bool readonly) {
    int fd = ::open(path.c_str(), (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) throw_errno(path);
    Fd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno(path);
    if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
    return std::make_unique<FdImageFile>(std::move(owned));
}

int64_t FdImageFile::pread(void* buf, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = ::pread(fd_.get(), static_cast<uint8_t*>(buf) + done, len - done,
                            static_cast<off_t>(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) break;
        done += static_cast<size_t>(r);
    }
    return static_cast<int64_t>(done);
}

int FdImageFile::pwrite(const void* buf, size_t len, uint64_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = ::pwrite(fd_.get(), static_cast<const uint8_t*>(buf) + done, len - done,
                             static_cast<off_t>(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) return -EIO;
        done += static_cast<size_t>(r);
    }
    size_ = std::max(size_, off + len);
    return 0;
}

int64_t ImageFile::preadv(const iovec* iov, size_t count, uint64_t off) {
    uint64_t done = 0;
    for (size_t i = 0; i < count; ++i) {
        int64_t r = pread(iov[i].iov_base, iov[i].iov_len, off + done);
        if (r < 0) return r;
        done += static_cast<uint64_t>(r);
        if (static_cast<size_t>(r) < iov[i].iov_len) break;
    }
    return static_cast<int64_t>(done);
}

int ImageFile::pwritev(const iovec* iov, size_t count, uint64_t off) {
    for (size_t i = 0; i < count; ++i) {
        if (int r = pwrite(iov[i].iov_base, iov[i].iov_len, off); r != 0) return r;
        off += iov[i].iov_len;
    }
    return 0;
}

namespace {

// preadv/pwritev until all of `iov` is done, EOF (reads) or an error:
// the bytes done or -errno; a write that makes no progress is -EIO.
int64_t fd_vectored(int fd, const iovec* iov, size_t count, uint64_t off, bool write) {
    std::vector<iovec> v(iov, iov + count);
    size_t i = 0;
    uint64_t done = 0;
    iov_advance(v, i, 0);
    while (i < v.size()) {
        int n = static_cast<int>(std::min<size_t>(v.size() - i, IOV_MAX));
        auto at = static_cast<off_t>(off + done);
        ssize_t r = write ? ::pwritev(fd, v.data() + i, n, at) : ::preadv(fd, v.data() + i, n, at);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) {
            if (write) return -EIO;
            break;
        }
        done += static_cast<uint64_t>(r);
        iov_advance(v, i, static_cast<size_t>(r));
    }
    return static_cast<int64_t>(done);
}

}  // namespace

int64_t FdImageFile::preadv(const iovec* iov, size_t count, uint64_t off) {
    return fd_vectored(fd_.get(), iov, count, off, false);
}

int FdImageFile::pwritev(const iovec* iov, size_t count, uint64_t off) {
    int64_t r = fd_vectored(fd_.get(), iov, count, off, true);
    if (r < 0) return static_cast<int>(r);
    size_ = std::max(size_, off + static_cast<uint64_t>(r));
    return 0;
}

FdImageFile::FdImageFile(Fd fd) : fd_(std::move(fd)) {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return;
    uint64_t bytes = 0;
    // A raw base on a host block device (the backing file of an overlay).
    if (S_ISBLK(st.st_mode))
        size_ = ::ioctl(fd_.get(), BLKGETSIZE64, &bytes) == 0 ? bytes : 0;
    else
        size_ = static_cast<uint64_t>(st.st_size);
}

uint64_t FdImageFile::size() const { return size_; }

int FdImageFile::set_size(uint64_t size) {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) return -errno;
    size_ = size;
    return 0;
}

int FdImageFile::flush() { return ::fdatasync(fd_.get()) == 0 ? 0 : -errno; }

std::string FdImageFile::identity() const {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return fmt::format("fd:{}", fd_.get());
    return fmt::format("file:{}:{}", st.st_dev, st.st_ino);
}

int64_t MemoryImageFile::pread(void* buf, size_t len, uint64_t off) {
    const auto& b = *bytes_;
    if (off >= b.size()) return 0;
    size_t n = static_cast<size_t>(std::min<uint64_t>(len, b.size() - off));
    std::memcpy(buf, b.data() + off, n);
    return static_cast<int64_t>(n);
}

int MemoryImageFile::pwrite(const void* buf, size_t len, uint64_t off) {
    if (off > max_size_ || len > max_size_ - off) return -ENOSPC;
    auto& b = *bytes_;
    if (off + len > b.size()) b.resize(off + len);
    std::memcpy(b.data() + off, buf, len);
    return 0;
}

int MemoryImageFile::set_size(uint64_t size) {
    if (size > max_size_) return -ENOSPC;
    bytes_->resize(size);
    return 0;
}

std::string MemoryImageFile::identity() const {
    return fmt::format("memory:{}", static_cast<const void*>(bytes_.get()));
}

// ---- the image ----

struct Qcow2Image::Mapping {
    enum Kind { Unallocated, Zero, Data, Compressed } kind = Unallocated;
    uint64_t host = 0;      // Data: host cluster offset
    uint64_t l2e = 0;       // the raw L2 entry (0 without an L2 table)
    uint64_t l2_off = 0;    // host offset of the L2 table, 0 without one
    size_t l2_index = 0;
};

// An L2 entry to set once the data it points at is in place; `old` is freed
// after that.
struct Qcow2Image::Pending {
    uint64_t l2_off;
    size_t l2_index;
    uint64_t entry;
    uint64_t old;
};

// Walks the guest buffers of one request in order.
class Qcow2Image::Cursor {
public:
    explicit Cursor(std::span<const iovec> iov) : iov_(iov) {}
    // Copies the next n bytes out of the buffers.
    void copy_out(uint8_t* dst, size_t n) {
        walk(n, [&](uint8_t* p, size_t k) {
            std::memcpy(dst, p, k);
            dst += k;
        });
    }
    // Copies n bytes into the next n bytes of the buffers.
    void copy_in(const uint8_t* src, size_t n) {
        walk(n, [&](uint8_t* p, size_t k) {
            std::memcpy(p, src, k);
            src += k;
        });
    }
    void zero(size_t n) {
        walk(n, [](uint8_t* p, size_t k) { std::memset(p, 0, k); });
    }
    // Appends the next n bytes of the buffers to `out`, as buffers.
    void take(size_t n, std::vector<iovec>& out) {
        walk(n, [&](uint8_t* p, size_t k) {
            if (!out.empty() && static_cast<uint8_t*>(out.back().iov_base) + out.back().iov_len == p)
                out.back().iov_len += k;
            else
                out.push_back({p, k});
        });
    }

private:
    template <typename F>
    void walk(size_t n, F&& f) {
        while (n) {
            const iovec& v = iov_[i_];
            size_t k = std::min(n, v.iov_len - off_);
            f(static_cast<uint8_t*>(v.iov_base) + off_, k);
            n -= k;
            off_ += k;
            if (off_ == v.iov_len) {
                ++i_;
                off_ = 0;
            }
        }
    }

    std::span<const iovec> iov_;
    size_t i_ = 0;
    size_t off_ = 0;
};

Qcow2Image::Qcow2Image(ImageFile& file, const Qcow2Options& opts)
    : file_(file),
      path_(opts.path),
      readonly_(opts.readonly),
      barriers_(opts.barriers),
      opener_(opts.open_backing),
      max_chain_(opts.max_chain),
      cache_bytes_(opts.cache_bytes) {}

Qcow2Image::~Qcow2Image() = default;

void Qcow2Image::ZstdFree::operator()(ZSTD_DCtx_s* d) const { ZSTD_freeDCtx(d); }

std::unique_ptr<Qcow2Image> Qcow2Image::open(ImageFile& file, const Qcow2Options& opts) {
    std::unique_ptr<Qcow2Image> img(new Qcow2Image(file, opts));
    std::vector<std::string> chain{file.identity()};
    img->load(chain);
    return img;
}

void Qcow2Image::load(std::vector<std::string>& chain) {
    const std::string& p = path_;
    uint64_t fs = file_.size();
    if (fs < kV2HeaderLength) fail("qcow2 image {}: too small for a qcow2 header ({} bytes)", p, fs);
    std::vector<uint8_t> h(kV3HeaderLength + 8, 0);
    if (file_.pread(h.data(), std::min<uint64_t>(fs, h.size()), 0) < static_cast<int64_t>(kV2HeaderLength))
        fail("qcow2 image {}: cannot read the header", p);
    if (be(h, 0, 4) != kMagic) fail("qcow2 image {}: not a qcow2 image (bad magic)", p);
    version_ = static_cast<unsigned>(be(h, 4, 4));
    if (version_ != 2 && version_ != 3) fail("qcow2 image {}: qcow2 version {} is not supported (2 or 3)", p, version_);
    uint64_t backing_off = be(h, 8, 8);
    uint64_t backing_len = be(h, 16, 4);
    cluster_bits_ = static_cast<unsigned>(be(h, 20, 4));
    if (cluster_bits_ < 9 || cluster_bits_ > 21)
        fail("qcow2 image {}: cluster_bits {} is out of range (9..21)", p, cluster_bits_);
    cluster_size_ = 1u << cluster_bits_;
    size_ = be(h, 24, 8);
    uint64_t crypt = be(h, 32, 4);
    uint64_t l1_size = be(h, 36, 4);
    l1_offset_ = be(h, 40, 8);
    refcount_table_offset_ = be(h, 48, 8);
    uint64_t rt_clusters = be(h, 56, 4);
    uint64_t nb_snapshots = be(h, 60, 4);
    uint64_t snapshots_off = be(h, 64, 8);

    uint64_t incompat = 0, autoclear = 0, refcount_order = 4, header_len = kV2HeaderLength;
    if (version_ == 3) {
        if (fs < kV3HeaderLength) fail("qcow2 image {}: too small for a version 3 header", p);
        incompat = be(h, 72, 8);
        autoclear = be(h, 88, 8);
        refcount_order = be(h, 96, 4);
        header_len = be(h, 100, 4);
        if (header_len < kV3HeaderLength || header_len % 8 || header_len > cluster_size_ || header_len > fs)
            fail("qcow2 image {}: header length {} is invalid", p, header_len);
    }
    if (incompat & ~kIncompatKnown)
        fail("qcow2 image {}: unknown incompatible feature bits {:#x}", p, incompat & ~kIncompatKnown);
    if (incompat & kIncompatExtendedL2) fail("qcow2 image {}: extended L2 entries (subclusters) are not supported", p);
    if (incompat & kIncompatDataFile) fail("qcow2 image {}: external data files are not supported", p);
    unsigned compression = header_len > kV3HeaderLength ? h[104] : 0;
    if (compression != 0 && !(incompat & kIncompatCompression))
        fail("qcow2 image {}: compression type {} without its feature bit", p, compression);
    if (compression == 0 && (incompat & kIncompatCompression))
        fail("qcow2 image {}: compression type feature bit set without a compression type", p);
    if (compression != kCompressionZlib && compression != kCompressionZstd)
        fail("qcow2 image {}: compression type {} is unknown (supported: 0 zlib, 1 zstd)", p, compression);
    compression_type_ = compression;
    if ((incompat & kIncompatDirty) && !readonly_)
        fail("qcow2 image {}: image was not closed cleanly (dirty bit): open it read-only or repair it "
             "(qemu-img check -r all)", p);
    if ((incompat & kIncompatCorrupt) && !readonly_)
        fail("qcow2 image {}: image is marked corrupt: it can only be opened read-only", p);
    if (refcount_order < 3 || refcount_order > 6)
        fail("qcow2 image {}: refcount_order {} is not supported (8- to 64-bit refcounts)", p, refcount_order);
    refcount_bytes_ = 1u << (refcount_order - 3);
    refcount_block_entries_ = uint64_t{cluster_size_} / refcount_bytes_;
    if (crypt != 0) fail("qcow2 image {}: encrypted images are not supported", p);
    if (nb_snapshots != 0 && !readonly_)
        fail("qcow2 image {}: image has {} internal snapshots: only read-only use is supported", p, nb_snapshots);
    if (nb_snapshots != 0 && (snapshots_off % cluster_size_ || snapshots_off >= fs))
        fail("qcow2 image {}: snapshot table offset {:#x} is invalid", p, snapshots_off);

    if (size_ > kMaxVirtualSize) fail("qcow2 image {}: virtual size {} is too large", p, size_);
    uint64_t per_l1 = 1ull << (2 * cluster_bits_ - 3);
    uint64_t l1_needed = div_up(size_, per_l1);
    if (l1_size * 8 > kMaxL1Bytes) fail("qcow2 image {}: L1 table of {} entries is too large", p, l1_size);
    if (l1_size < l1_needed)
        fail("qcow2 image {}: L1 table ({} entries) is too small for the virtual size {}", p, l1_size, size_);
    if (l1_offset_ % cluster_size_) fail("qcow2 image {}: L1 table offset {:#x} is not cluster aligned", p, l1_offset_);
    if (l1_size && (l1_offset_ == 0 || l1_offset_ > fs || l1_size * 8 > fs - l1_offset_))
        fail("qcow2 image {}: L1 table at {:#x} is outside the file", p, l1_offset_);
    if (rt_clusters == 0 || rt_clusters * cluster_size_ > kMaxRefTableBytes)
        fail("qcow2 image {}: refcount table of {} clusters is invalid", p, rt_clusters);
    if (refcount_table_offset_ % cluster_size_ || refcount_table_offset_ == 0)
        fail("qcow2 image {}: refcount table offset {:#x} is not cluster aligned", p, refcount_table_offset_);
    if (refcount_table_offset_ > fs || rt_clusters * cluster_size_ > fs - refcount_table_offset_)
        fail("qcow2 image {}: refcount table at {:#x} is outside the file", p, refcount_table_offset_);

    std::vector<uint8_t> first(std::min<uint64_t>(fs, cluster_size_));
    if (full_read(file_, first.data(), first.size(), 0) != 0) fail("qcow2 image {}: cannot read the header", p);
    std::string backing_format;
    parse_extensions(first, header_len, backing_format);

    std::string backing_name;
    if (backing_off != 0) {
        if (backing_len == 0 || backing_len > kMaxBackingName)
            fail("qcow2 image {}: backing file name length {} is invalid", p, backing_len);
        if (backing_off > fs || backing_len > fs - backing_off)
            fail("qcow2 image {}: backing file name is outside the file", p);
        backing_name.resize(backing_len);
        if (full_read(file_, backing_name.data(), backing_len, backing_off) != 0)
            fail("qcow2 image {}: cannot read the backing file name", p);
        if (backing_name.find('\0') != std::string::npos)
            fail("qcow2 image {}: backing file name contains a NUL byte", p);
    }

    std::vector<uint8_t> raw(l1_size * 8);
    if (l1_size && full_read(file_, raw.data(), raw.size(), l1_offset_) != 0)
        fail("qcow2 image {}: cannot read the L1 table", p);
    l1_.resize(l1_size);
    for (size_t i = 0; i < l1_size; ++i) l1_[i] = be(raw, i * 8, 8);
    raw.assign(rt_clusters * cluster_size_, 0);
    if (full_read(file_, raw.data(), raw.size(), refcount_table_offset_) != 0)
        fail("qcow2 image {}: cannot read the refcount table", p);
    refcount_table_.resize(raw.size() / 8);
    for (size_t i = 0; i < refcount_table_.size(); ++i) refcount_table_[i] = be(raw, i * 8, 8);

    // Bitmaps and the other autoclear features become stale as soon as we
    // write; clearing the bits tells the next user so.
    if (!readonly_ && autoclear != 0) {
        if (write_be64(file_, 88, 0) != 0 || file_.flush() != 0)
            fail("qcow2 image {}: cannot clear the autoclear feature bits", p);
    }

    cache_limit_ = std::max<size_t>(4, cache_bytes_ / cluster_size_);
    inflated_.resize(cluster_size_);
    if (!backing_name.empty()) open_backing(backing_name, backing_format, chain);
}

void Qcow2Image::parse_extensions(const std::vector<uint8_t>& first, uint64_t start, std::string& backing_format) {
    uint64_t pos = start;
    while (pos + 8 <= first.size()) {
        uint32_t type = static_cast<uint32_t>(be(first, pos, 4));
        uint64_t len = be(first, pos + 4, 4);
        if (type == kExtEnd) return;
        if (len > first.size() - pos - 8) fail("qcow2 image {}: header extension {:#x} overruns the first cluster", path_, type);
        const uint8_t* data = first.data() + pos + 8;
        switch (type) {
        case kExtBackingFormat:
            if (len > kMaxBackingName) fail("qcow2 image {}: backing format name is too long", path_);
            backing_format.assign(reinterpret_cast<const char*>(data), len);
            break;
        case kExtCrypto:
            fail("qcow2 image {}: encrypted images are not supported", path_);
        case kExtDataFile:
            fail("qcow2 image {}: external data files are not supported", path_);
        default:
            break;  // feature name table, bitmaps, unknown: not needed to read or write
        }
        pos += 8 + div_up(len, 8) * 8;
    }
}

void Qcow2Image::open_backing(const std::string& name, const std::string& format, std::vector<std::string>& chain) {
    if (!opener_) fail("qcow2 image {}: has a backing file ({}) but backing files are not allowed here", path_, name);
    if (!format.empty() && format != "raw" && format != "qcow2")
        fail("qcow2 image {}: backing format '{}' is not supported (raw or qcow2)", path_, format);
    std::string resolved = name;
    auto slash = path_.rfind('/');
    if (name[0] != '/' && slash != std::string::npos) resolved = path_.substr(0, slash + 1) + name;
    if (chain.size() >= max_chain_)
        fail("qcow2 image {}: backing chain is longer than {} images", path_, max_chain_);
    std::unique_ptr<ImageFile> f;
    try {
        f = opener_(resolved, format);
    } catch (const Error& e) {
        fail("qcow2 image {}: backing file: {}", path_, e.what());
    }
    if (!f) fail("qcow2 image {}: backing file {} could not be opened", path_, resolved);
    std::string id = f->identity();
    if (std::find(chain.begin(), chain.end(), id) != chain.end())
        fail("qcow2 image {}: backing chain loops back to {}", path_, resolved);
    chain.push_back(id);
    // Without a recorded format the magic decides, as QEMU does for old
    // images; a caller that must not probe refuses format "" itself.
    bool qcow2 = format == "qcow2";
    if (format.empty()) {
        uint8_t m[4] = {};
        qcow2 = f->pread(m, 4, 0) == 4 && load_be32(m, 0) == kMagic;
    }
    backing_path_ = resolved;
    if (qcow2) {
        Qcow2Options bo;
        bo.path = resolved;
        bo.readonly = true;
        bo.open_backing = opener_;
        bo.max_chain = max_chain_;
        bo.cache_bytes = cache_bytes_;
        std::unique_ptr<Qcow2Image> b(new Qcow2Image(*f, bo));
        try {
            b->load(chain);
        } catch (const Error& e) {
            fail("qcow2 image {}: backing file: {}", path_, e.what());
        }
        backing_qcow2_ = std::move(b);
    }
    backing_file_ = std::move(f);
}

// ---- metadata access ----

bool Qcow2Image::host_range_ok(uint64_t off, uint64_t len) const {
    uint64_t fs = file_.size();
    return off <= fs && len <= fs - off;
}

int Qcow2Image::barrier() { return barriers_ ? file_.flush() : 0; }

int Qcow2Image::cached_table(uint64_t table_off, std::vector<uint8_t>*& data) {
    auto it = cache_.find(table_off);
    if (it == cache_.end()) {
        if (cache_.size() >= cache_limit_) {
            auto victim = std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
                return a.second.stamp < b.second.stamp;
            });
            cache_.erase(victim);
        }
        CacheEntry e;
        e.data.resize(cluster_size_);
        if (int r = full_read(file_, e.data.data(), cluster_size_, table_off); r != 0) return r;
        it = cache_.emplace(table_off, std::move(e)).first;
    }
    it->second.stamp = ++cache_clock_;
    data = &it->second.data;
    return 0;
}

int Qcow2Image::table_get(uint64_t table_off, size_t index, unsigned width, uint64_t& value) {
    std::vector<uint8_t>* d = nullptr;
    if (int r = cached_table(table_off, d); r != 0) return r;
    value = load_be(*d, index * width, width);
    return 0;
}

// Sets consecutive entries from `index` on, with one write. Write-through:
// the cache never holds anything the file does not.
int Qcow2Image::table_set(uint64_t table_off, size_t index, unsigned width, std::span<const uint64_t> values) {
    std::vector<uint8_t>* d = nullptr;
    if (int r = cached_table(table_off, d); r != 0) return r;
    if ((index + values.size()) * width > d->size()) return -EIO;
    for (size_t k = 0; k < values.size(); ++k) store_be(*d, (index + k) * width, width, values[k]);
    return file_.pwrite(d->data() + index * width, values.size() * width, table_off + index * width);
}

int Qcow2Image::write_l1(size_t index, uint64_t value) {
    l1_[index] = value;
    return write_be64(file_, l1_offset_ + index * 8, value);
}

int Qcow2Image::refcount_get(uint64_t cluster, uint64_t& value) {
    value = 0;
    uint64_t t = cluster / refcount_block_entries_;
    if (t >= refcount_table_.size()) return 0;
    uint64_t block = refcount_table_[t];
    if (block & kRefTableReserved) return -EIO;
    if (block == 0) return 0;
    if (!host_range_ok(block, cluster_size_)) return -EIO;
    return table_get(block, cluster % refcount_block_entries_, refcount_bytes_, value);
}

int Qcow2Image::refcount_add(uint64_t cluster, int delta) {
    uint64_t t = cluster / refcount_block_entries_;
    size_t i = cluster % refcount_block_entries_;
    // alloc_cluster grows the table before counting past it; anything else
    // out there is a damaged image (an entry pointing past what is counted).
    if (t >= refcount_table_.size()) return -EIO;
    uint64_t block = refcount_table_[t];
    if (block & kRefTableReserved) return -EIO;
    if (block == 0) {
        if (delta < 0) return -EIO;
        // Nothing in this block's range is in use, so the block can sit next
        // to the cluster it is created for and count itself.
        uint64_t self = i + 1 < refcount_block_entries_ ? cluster + 1 : cluster - 1;
        if (self >= (kOffsetMask >> cluster_bits_)) return -ENOSPC;
        std::vector<uint8_t> data(cluster_size_, 0);
        store_be(data, (self % refcount_block_entries_) * refcount_bytes_, refcount_bytes_, 1);
        store_be(data, i * refcount_bytes_, refcount_bytes_, static_cast<uint64_t>(delta));
        uint64_t off = self << cluster_bits_;
        if (int r = file_.pwrite(data.data(), data.size(), off); r != 0) return r;
        if (int r = barrier(); r != 0) return r;
        refcount_table_[t] = off;
        if (int r = write_be64(file_, refcount_table_offset_ + t * 8, off); r != 0) return r;
        cache_.erase(off);
        return 0;
    }
    if (!host_range_ok(block, cluster_size_)) return -EIO;
    uint64_t v = 0;
    if (int r = table_get(block, i, refcount_bytes_, v); r != 0) return r;
    uint64_t max = refcount_bytes_ == 8 ? ~0ull : (1ull << (8 * refcount_bytes_)) - 1;
    if (delta > 0 && v > max - static_cast<uint64_t>(delta)) return -EIO;
    if (delta < 0 && v < static_cast<uint64_t>(-delta)) return -EIO;
    v += static_cast<uint64_t>(static_cast<int64_t>(delta));
    if (delta < 0 && v == 0) free_hint_ = std::min(free_hint_, cluster);
    return table_set(block, i, refcount_bytes_, v);
}

// First cluster with refcount 0 (never cluster 0, the header); its refcount
// is 1 on return. Clusters past the end of the file can be counted only
// when a crash came between raising a refcount and writing the cluster, so
// a few are skipped; a hostile image with many ends the search early.
int Qcow2Image::alloc_cluster(uint64_t& host) {
    for (uint64_t c = std::max<uint64_t>(free_hint_, 1);; ++c) {
        uint64_t eof = div_up(file_.size(), cluster_size_);
        if (c >= std::min(kOffsetMask >> cluster_bits_, eof + kMaxLeakedPastEnd)) return -ENOSPC;
        if (c >= refcount_table_.size() * refcount_block_entries_) {
            if (int r = grow_refcount_table(c); r != 0) return r;
        }
        uint64_t v = 0;
        if (int r = refcount_get(c, v); r != 0) return r;
        if (v != 0) continue;
        if (int r = refcount_add(c, 1); r != 0) return r;
        free_hint_ = c + 1;
        host = c << cluster_bits_;
        return 0;
    }
}

// Makes the refcount table count cluster `c`, the first one past what it
// counts now. Nothing from `c` on is in use (it is not counted), so the new
// refcount blocks and the new, larger table go there: blocks first, each
// counting the new clusters in its range, then the table (the old entries
// plus the new blocks), made durable, then the header switched to the new
// table in one 12-byte write (offset and size are adjacent), made durable,
// and only then the old table freed. A crash before the header write leaves
// uncounted clusters past the old table's reach, after it at most the old
// table leaked.
int Qcow2Image::grow_refcount_table(uint64_t c) {
    const uint64_t cs = cluster_size_, per_block = refcount_block_entries_;
    const uint64_t old_clusters = refcount_table_.size() * 8 / cs;
    uint64_t tables = std::max<uint64_t>(1, old_clusters * 2), blocks = 0;
    for (;;) {
        uint64_t last = c + blocks + tables - 1;
        uint64_t nb = last / per_block - c / per_block + 1;
        uint64_t nt = std::max(tables, div_up((last / per_block + 1) * 8, cs));
        if (nb == blocks && nt == tables) break;
        blocks = nb;
        tables = nt;
    }
    uint64_t end = c + blocks + tables;
    if (tables * cs > kMaxRefTableBytes || end >= (kOffsetMask >> cluster_bits_)) {
        if (!warned_table_full_)
            log::warn("qcow2 image {}: the refcount table cannot grow past {} bytes; the image is full", path_,
                      kMaxRefTableBytes);
        warned_table_full_ = true;
        return -ENOSPC;
    }
    std::vector<uint8_t> data(blocks * cs, 0);
    for (uint64_t k = c; k < end; ++k) {
        uint64_t b = k / per_block - c / per_block;
        store_be(data, b * cs + (k % per_block) * refcount_bytes_, refcount_bytes_, 1);
    }
    if (int r = file_.pwrite(data.data(), data.size(), c * cs); r != 0) return r;
    std::vector<uint64_t> table = refcount_table_;
    table.resize(tables * cs / 8, 0);
    for (uint64_t b = 0; b < blocks; ++b) table[c / per_block + b] = (c + b) * cs;
    data.assign(tables * cs, 0);
    for (size_t i = 0; i < table.size(); ++i) store_be64(data, i * 8, table[i]);
    uint64_t table_off = (c + blocks) * cs;
    if (int r = file_.pwrite(data.data(), data.size(), table_off); r != 0) return r;
    if (int r = barrier(); r != 0) return r;
    uint8_t hdr[12];
    store_be64(hdr, 0, table_off);
    store_be32(hdr, 8, static_cast<uint32_t>(tables));
    if (int r = file_.pwrite(hdr, sizeof hdr, 48); r != 0) return r;
    if (int r = barrier(); r != 0) return r;
    uint64_t old_off = refcount_table_offset_;
    refcount_table_offset_ = table_off;
    refcount_table_ = std::move(table);
    for (uint64_t k = c; k < end; ++k) cache_.erase(k * cs);
    for (uint64_t k = 0; k < old_clusters; ++k)
        if (int r = refcount_add(old_off / cs + k, -1); r != 0) return r;
    return 0;
}

int Qcow2Image::free_entry(uint64_t l2e) {
    if (l2e & kCompressed) {
        unsigned x = 62 - (cluster_bits_ - 8);
        uint64_t off = l2e & ((1ull << x) - 1);
        uint64_t sectors = (l2e >> x) & ((1ull << (cluster_bits_ - 8)) - 1);
        uint64_t len = (sectors + 1) * 512 - (off & 511);
        inflated_l2e_ = 0;  // its bytes may be reused from now on
        for (uint64_t c = off >> cluster_bits_; c <= (off + len - 1) >> cluster_bits_; ++c)
            if (int r = refcount_add(c, -1); r != 0) return r;
        return 0;
    }
    uint64_t host = l2e & kOffsetMask;
    return host ? refcount_add(host >> cluster_bits_, -1) : 0;
}

// Finds the L2 entry for guest offset `off`. With allocate_l2 a missing L2
// table is created (written, then made durable, then linked from L1).
int Qcow2Image::lookup(uint64_t off, bool allocate_l2, Mapping& m) {
    m = Mapping{};
    uint64_t vcl = off >> cluster_bits_;
    unsigned l2_bits = cluster_bits_ - 3;
    uint64_t l1i = vcl >> l2_bits;
    m.l2_index = vcl & ((1ull << l2_bits) - 1);
    if (l1i >= l1_.size()) return -EIO;
    uint64_t l1e = l1_[l1i];
    if (l1e & kL1Reserved) return -EIO;
    uint64_t l2_off = l1e & kOffsetMask;
    if (l2_off == 0) {
        if (!allocate_l2) return 0;
        if (int r = alloc_cluster(l2_off); r != 0) return r;
        std::vector<uint8_t> zeros(cluster_size_, 0);
        if (int r = file_.pwrite(zeros.data(), zeros.size(), l2_off); r != 0) return r;
        if (int r = barrier(); r != 0) return r;
        if (int r = write_l1(l1i, l2_off | kCopied); r != 0) return r;
        cache_.erase(l2_off);
    } else {
        if (l2_off % cluster_size_ || !host_range_ok(l2_off, cluster_size_)) return -EIO;
        // A shared L2 table belongs to an internal snapshot too; images with
        // snapshots are read-only, so this is a damaged image.
        if (allocate_l2 && !(l1e & kCopied)) return -EIO;
    }
    m.l2_off = l2_off;
    uint64_t e = 0;
    if (int r = table_get(l2_off, m.l2_index, 8, e); r != 0) return r;
    m.l2e = e;
    if (e & kCompressed) {
        if (e & kCopied) return -EIO;
        m.kind = Mapping::Compressed;
        return 0;
    }
    if (e & kL2Reserved) return -EIO;
    m.host = e & kOffsetMask;
    if (m.host % cluster_size_) return -EIO;
    // The zero flag is reserved in version 2; reading zeros for it is what
    // QEMU does and is harmless.
    if (e & kZeroFlag) m.kind = Mapping::Zero;
    else if (m.host == 0) m.kind = Mapping::Unallocated;
    else if (m.host >= file_.size()) return -EIO;
    else m.kind = Mapping::Data;
    return 0;
}

// ---- reading ----

// Inflates the compressed cluster (zlib or zstd, as the header says) into
// inflated_, which keeps the last one (sequential reads of a compressed
// image hit it once per request chunk).
int Qcow2Image::inflate_cluster(uint64_t l2e) {
    if (l2e == inflated_l2e_ && l2e != 0) return 0;
    unsigned x = 62 - (cluster_bits_ - 8);
    uint64_t off = l2e & ((1ull << x) - 1);
    uint64_t sectors = (l2e >> x) & ((1ull << (cluster_bits_ - 8)) - 1);
    uint64_t len = (sectors + 1) * 512 - (off & 511);
    uint64_t fs = file_.size();
    if (off >= fs) return -EIO;
    len = std::min(len, fs - off);  // the last compressed cluster may end before its last sector
    std::vector<uint8_t> in(len);
    if (int r = full_read(file_, in.data(), len, off); r != 0) return r;
    if (compression_type_ == kCompressionZstd) {
        if (!zstd_) {
            std::unique_ptr<ZSTD_DCtx_s, ZstdFree> d(ZSTD_createDCtx());
            if (!d) throw std::bad_alloc();  // as a failed vector allocation would
            if (ZSTD_isError(ZSTD_DCtx_setParameter(d.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax))) return -EIO;
            zstd_ = std::move(d);
        }
        bool ok = unzstd_cluster(zstd_.get(), in.data(), in.size(), inflated_.data(), cluster_size_);
        inflated_l2e_ = ok ? l2e : 0;
        return ok ? 0 : -EIO;
    }
    z_stream z{};
    if (inflateInit2(&z, -15) != Z_OK) return -EIO;
    z.next_in = in.data();
    z.avail_in = static_cast<uInt>(len);
    z.next_out = inflated_.data();
    z.avail_out = cluster_size_;
    int zr = inflate(&z, Z_FINISH);
    bool ok = (zr == Z_STREAM_END || zr == Z_OK || zr == Z_BUF_ERROR) && z.avail_out == 0;
    inflateEnd(&z);
    if (!ok) {
        inflated_l2e_ = 0;
        return -EIO;
    }
    inflated_l2e_ = l2e;
    return 0;
}

int Qcow2Image::read_backing(uint64_t off, uint8_t* buf, size_t len) {
    std::vector<iovec> v{{buf, len}};
    return read_backing(off, v, len);
}

// `len` bytes of the backing file at `off` into `iov`; zeros past its end.
int Qcow2Image::read_backing(uint64_t off, std::vector<iovec>& iov, uint64_t len) {
    uint64_t bsize = !backing_file_ ? 0 : backing_qcow2_ ? backing_qcow2_->size() : backing_file_->size();
    uint64_t n = off >= bsize ? 0 : std::min<uint64_t>(len, bsize - off);
    iov_zero_from(iov, n);
    if (n == 0) return 0;
    std::vector<iovec> head;
    std::span<const iovec> part(iov);
    if (n < len) {
        head = iov_head(iov, n);
        part = head;
    }
    if (backing_qcow2_) return backing_qcow2_->read_iov(off, part, n);
    return zero_tail_readv(*backing_file_, part, off);
}

int Qcow2Image::read_buf(uint64_t off, uint8_t* buf, size_t len) {
    iovec v{buf, len};
    return read_iov(off, {&v, 1}, len);
}

// Reads [off, off + len) into `iov` (bounds already checked). Runs of
// clusters that are contiguous in the image file (or all unallocated, so
// contiguous in the backing file) are read with one vectored call each.
int Qcow2Image::read_iov(uint64_t off, std::span<const iovec> iov, uint64_t len) {
    Cursor cur(iov);
    enum class Src { None, File, Backing } src = Src::None;
    uint64_t run_start = 0, run_end = 0;  // in the file, or guest offsets for the backing file
    std::vector<iovec> run;
    auto finish = [&]() -> int {
        int r = 0;
        if (src == Src::File) r = zero_tail_readv(file_, run, run_start);
        else if (src == Src::Backing) r = read_backing(run_start, run, run_end - run_start);
        src = Src::None;
        run.clear();
        return r;
    };
    for (uint64_t pos = off, end = off + len; pos < end;) {
        uint64_t in = pos & (cluster_size_ - 1);
        size_t n = static_cast<size_t>(std::min<uint64_t>(cluster_size_ - in, end - pos));
        Mapping m;
        if (int r = lookup(pos, false, m); r != 0) return r;
        Src s = Src::None;
        uint64_t at = 0;
        if (m.kind == Mapping::Data) s = Src::File, at = m.host + in;
        else if (m.kind == Mapping::Unallocated) s = Src::Backing, at = pos;
        if (src != Src::None && (s != src || at != run_end)) {
            if (int r = finish(); r != 0) return r;
        }
        if (s != Src::None) {
            if (src == Src::None) src = s, run_start = at;
            cur.take(n, run);
            run_end = at + n;
        } else if (m.kind == Mapping::Zero) {
            cur.zero(n);
        } else {
            if (int r = inflate_cluster(m.l2e); r != 0) return r;
            cur.copy_in(inflated_.data() + in, n);
        }
        pos += n;
    }
    return finish();
}

int Qcow2Image::read(uint64_t offset, std::span<const iovec> iov) {
    uint64_t total = iov_bytes(iov);
    if (offset > size_ || total > size_ - offset) return -EINVAL;
    return read_iov(offset, iov, total);
}

// ---- writing ----

// The cluster's current content, for copy-on-write.
int Qcow2Image::old_cluster(uint64_t vstart, const Mapping& m, uint8_t* cluster) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(cluster_size_, size_ - vstart));
    std::memset(cluster + n, 0, cluster_size_ - n);
    switch (m.kind) {
    case Mapping::Unallocated:
        return read_backing(vstart, cluster, n);
    case Mapping::Zero:
        std::memset(cluster, 0, n);
        return 0;
    case Mapping::Data:
        return zero_tail_read(file_, cluster, cluster_size_, m.host);
    case Mapping::Compressed:
        if (int r = inflate_cluster(m.l2e); r != 0) return r;
        std::memcpy(cluster, inflated_.data(), cluster_size_);
        return 0;
    }
    return -EIO;
}

int Qcow2Image::write(uint64_t offset, std::span<const iovec> iov) {
    if (readonly_) return -EROFS;
    uint64_t total = iov_bytes(iov);
    if (offset > size_ || total > size_ - offset) return -EINVAL;
    Cursor cur(iov);
    std::list<std::vector<uint8_t>> partial;  // new clusters only partly written by the guest
    std::vector<Pending> pending;
    // Data goes out in runs that are contiguous in the file (clusters
    // written in place, and new clusters, which are usually allocated one
    // after the other): one vectored write per run.
    std::vector<iovec> run;
    uint64_t run_start = 0, run_end = 0;
    auto finish = [&]() -> int {
        int r = run.empty() ? 0 : file_.pwritev(run.data(), run.size(), run_start);
        run.clear();
        return r;
    };
    for (uint64_t pos = offset, end = offset + total; pos < end;) {
        uint64_t vstart = pos & ~uint64_t{cluster_size_ - 1};
        size_t in = static_cast<size_t>(pos - vstart);
        size_t n = static_cast<size_t>(std::min<uint64_t>(cluster_size_ - in, end - pos));
        Mapping m;
        if (int r = lookup(pos, true, m); r != 0) return r;
        uint64_t at = 0;
        std::vector<iovec> piece;
        if (m.kind == Mapping::Data && (m.l2e & kCopied)) {
            at = m.host + in;
            cur.take(n, piece);
        } else {
            // A new cluster: old content around the new bytes, written before
            // anything points at it.
            if (n < cluster_size_) {
                auto& buf = partial.emplace_back(cluster_size_);
                if (int r = old_cluster(vstart, m, buf.data()); r != 0) return r;
                cur.copy_out(buf.data() + in, n);
                piece.push_back({buf.data(), cluster_size_});
            } else {
                cur.take(n, piece);
            }
            if (int r = alloc_cluster(at); r != 0) return r;
            pending.push_back({m.l2_off, m.l2_index, at | kCopied, m.l2e});
        }
        if (!run.empty() && at != run_end) {
            if (int r = finish(); r != 0) return r;
        }
        if (run.empty()) run_start = at;
        run.insert(run.end(), piece.begin(), piece.end());
        run_end = at + iov_bytes(piece);
        pos += n;
    }
    if (int r = finish(); r != 0) return r;
    if (pending.empty()) return 0;
    if (int r = barrier(); r != 0) return r;
    bool frees = false;
    std::vector<uint64_t> entries;
    // Entries of one table that follow each other are written together.
    for (size_t i = 0; i < pending.size();) {
        size_t j = i;
        entries.clear();
        do {
            entries.push_back(pending[j].entry);
            frees |= (pending[j].old & (kCompressed | kOffsetMask)) != 0;
            ++j;
        } while (j < pending.size() && pending[j].l2_off == pending[i].l2_off &&
                 pending[j].l2_index == pending[j - 1].l2_index + 1);
        if (int r = table_set(pending[i].l2_off, pending[i].l2_index, 8, entries); r != 0) return r;
        i = j;
    }
    if (!frees) return 0;
    // Only once no L2 entry can point at them may the old clusters be reused.
    if (int r = barrier(); r != 0) return r;
    for (const auto& p : pending)
        if (int r = free_entry(p.old); r != 0) return r;
    return 0;
}

int Qcow2Image::zero_range(uint64_t offset, uint64_t length, bool discard) {
    if (readonly_) return -EROFS;
    if (offset > size_ || length > size_ - offset) return -EINVAL;
    bool backing = backing_file_ != nullptr;
    std::vector<uint8_t> zeros;
    std::vector<Pending> pending;
    auto commit = [&]() -> int {
        for (const auto& p : pending)
            if (int r = table_set(p.l2_off, p.l2_index, 8, p.entry); r != 0) return r;
        if (int r = barrier(); r != 0) return r;
        for (const auto& p : pending)
            if (int r = free_entry(p.old); r != 0) return r;
        pending.clear();
        return 0;
    };
    for (uint64_t pos = offset, end = offset + length; pos < end;) {
        uint64_t vstart = pos & ~uint64_t{cluster_size_ - 1};
        size_t in = static_cast<size_t>(pos - vstart);
        size_t n = static_cast<size_t>(std::min<uint64_t>(cluster_size_ - in, end - pos));
        bool whole = in == 0 && (n == cluster_size_ || pos + n == size_);
        // Version 2 cannot say "zero" over a backing file.
        bool expressible = version_ == 3 || !backing;
        if (!whole || !expressible) {
            if (!discard) {
                zeros.resize(cluster_size_);
                iovec v{zeros.data(), n};
                if (int r = write(pos, {&v, 1}); r != 0) return r;
            }
            pos += n;
            continue;
        }
        uint64_t target = backing ? kZeroFlag : 0;
        Mapping m;
        if (int r = lookup(pos, target != 0, m); r != 0) return r;
        if (m.l2_off == 0) {
            // No L2 table: the whole range it would map is already unallocated.
            uint64_t span = uint64_t{cluster_size_} << (cluster_bits_ - 3);
            pos = std::min(end, (pos & ~(span - 1)) + span);
            continue;
        }
        if (m.l2e != target) pending.push_back({m.l2_off, m.l2_index, target, m.l2e});
        if (pending.size() >= 4096) {
            if (int r = commit(); r != 0) return r;
        }
        pos += n;
    }
    return commit();
}

int Qcow2Image::write_zeroes(uint64_t offset, uint64_t length) { return zero_range(offset, length, false); }

int Qcow2Image::discard(uint64_t offset, uint64_t length) { return zero_range(offset, length, true); }

int Qcow2Image::flush() { return readonly_ ? 0 : file_.flush(); }

// ---- creating ----

void Qcow2Image::create(ImageFile& file, const Qcow2CreateOptions& o) {
    if (o.cluster_bits < 9 || o.cluster_bits > 21) fail("qcow2 create: cluster_bits {} is out of range (9..21)", o.cluster_bits);
    if (o.version != 2 && o.version != 3) fail("qcow2 create: version {} is not supported (2 or 3)", o.version);
    if (o.size > kMaxVirtualSize) fail("qcow2 create: virtual size {} is too large", o.size);
    if (o.backing_path.size() > kMaxBackingName) fail("qcow2 create: backing file name is too long");
    if (!o.backing_format.empty() && o.backing_format != "raw" && o.backing_format != "qcow2")
        fail("qcow2 create: backing format '{}' is not supported", o.backing_format);
    const uint64_t cs = 1ull << o.cluster_bits;
    const uint64_t block_entries = cs / 2;  // 16-bit refcounts
    uint64_t l1_size = div_up(o.size, 1ull << (2 * o.cluster_bits - 3));
    if (l1_size * 8 > kMaxL1Bytes) fail("qcow2 create: virtual size {} is too large for {}-byte clusters", o.size, cs);
    uint64_t l1_clusters = std::max<uint64_t>(1, div_up(l1_size * 8, cs));

    // The refcount table is sized for the image fully allocated, so that it
    // never has to grow (growing works, but costs a pause and leaves the
    // old table to be reused).
    uint64_t rt = std::max(1u, o.refcount_table_clusters);
    for (int i = 0; i < 8 && o.refcount_table_clusters == 0; ++i) {
        uint64_t total = 1 + rt + l1_clusters + l1_size + div_up(o.size, cs);
        uint64_t blocks = div_up(total, block_entries - 1);
        rt = std::max(rt, div_up(blocks * 8, cs));
    }
    if (rt * cs > kMaxRefTableBytes) fail("qcow2 create: virtual size {} is too large for {}-byte clusters", o.size, cs);
    uint64_t blocks = 1;
    while (div_up(1 + rt + blocks + l1_clusters, block_entries) > blocks) ++blocks;
    uint64_t used = 1 + rt + blocks + l1_clusters;
    if (blocks > rt * cs / 8) fail("qcow2 create: a refcount table of {} clusters is too small", rt);

    std::vector<uint8_t> hdr(cs, 0);
    store_be32(hdr, 0, kMagic);
    store_be32(hdr, 4, o.version);
    store_be32(hdr, 20, o.cluster_bits);
    store_be64(hdr, 24, o.size);
    store_be32(hdr, 36, static_cast<uint32_t>(l1_size));
    store_be64(hdr, 40, (1 + rt + blocks) * cs);
    store_be64(hdr, 48, cs);
    store_be32(hdr, 56, static_cast<uint32_t>(rt));
    uint64_t pos = kV2HeaderLength;
    if (o.version == 3) {
        store_be32(hdr, 96, 4);
        store_be32(hdr, 100, kV3HeaderLength);
        pos = kV3HeaderLength;
    }
    uint64_t ext_len = o.backing_format.empty() ? 0 : 8 + div_up(o.backing_format.size(), 8) * 8;
    if (pos + ext_len + 8 + o.backing_path.size() > cs) fail("qcow2 create: backing file name does not fit the header cluster");
    if (!o.backing_format.empty()) {
        store_be32(hdr, pos, kExtBackingFormat);
        store_be32(hdr, pos + 4, static_cast<uint32_t>(o.backing_format.size()));
        std::memcpy(hdr.data() + pos + 8, o.backing_format.data(), o.backing_format.size());
        pos += ext_len;
    }
    pos += 8;  // end of extensions: type 0, length 0
    if (!o.backing_path.empty()) {
        store_be64(hdr, 8, pos);
        store_be32(hdr, 16, static_cast<uint32_t>(o.backing_path.size()));
        std::memcpy(hdr.data() + pos, o.backing_path.data(), o.backing_path.size());
    }

    std::vector<uint8_t> table(rt * cs, 0);
    for (uint64_t b = 0; b < blocks; ++b) store_be64(table, b * 8, (1 + rt + b) * cs);
    std::vector<uint8_t> refblocks(blocks * cs, 0);
    for (uint64_t c = 0; c < used; ++c) store_be16(refblocks, c * 2, 1);

    int r = file.set_size(0);
    if (r == 0) r = file.set_size(used * cs);
    if (r == 0) r = file.pwrite(table.data(), table.size(), cs);
    if (r == 0) r = file.pwrite(refblocks.data(), refblocks.size(), (1 + rt) * cs);
    if (r == 0) r = file.flush();
    // The header last: until it is written the file is no qcow2 image.
    if (r == 0) r = file.pwrite(hdr.data(), hdr.size(), 0);
    if (r == 0) r = file.flush();
    if (r != 0) fail("qcow2 create: {}", std::strerror(-r));
}

}  // namespace vmm::virtio
