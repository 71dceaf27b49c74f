// qcow2 disk images: the format layer a disk backend puts between guest
// requests and the image file. docs/qcow2.md describes what is supported,
// what is refused, the order of metadata writes and the cache.
//
// The layer is synchronous and has no threads: one Qcow2Image (with its
// backing chain) is used from one thread at a time. Opening validates the
// header and throws vmm::Error naming the image; I/O on a damaged image
// returns -EIO and never touches anything but the image file.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "vmm/core/fd.h"

struct ZSTD_DCtx_s;  // libzstd's decompression context (zstd.h: ZSTD_DCtx)

namespace vmm::virtio {

// Random access to the bytes of an image file.
class ImageFile {
public:
    virtual ~ImageFile() = default;
    // Reads up to `len` bytes: the count read (short only at the end of the
    // file) or -errno.
    virtual int64_t pread(void* buf, size_t len, uint64_t off) = 0;
    // Writes all `len` bytes, growing the file if needed: 0 or -errno.
    virtual int pwrite(const void* buf, size_t len, uint64_t off) = 0;
    // The same for a list of buffers (one system call where the file can).
    // The defaults go through pread/pwrite buffer by buffer.
    virtual int64_t preadv(const iovec* iov, size_t count, uint64_t off);
    virtual int pwritev(const iovec* iov, size_t count, uint64_t off);
    virtual uint64_t size() const = 0;
    virtual int set_size(uint64_t size) = 0;
    // Makes every completed pwrite durable: 0 or -errno.
    virtual int flush() = 0;
    // Names the underlying file so a backing chain that loops can be
    // recognised (device and inode for a host file).
    virtual std::string identity() const = 0;
};

// A host file or block device. Its size is read once and then kept up to
// date by pwrite and set_size: the layer asks for it on every metadata
// access, and the image is locked, so nobody else changes it.
class FdImageFile : public ImageFile {
public:
    explicit FdImageFile(Fd fd);
    // Throws vmm::Error("<path>: ...").
    static std::unique_ptr<FdImageFile> open(const std::string& path, bool readonly);
    int64_t pread(void* buf, size_t len, uint64_t off) override;
    int pwrite(const void* buf, size_t len, uint64_t off) override;
    int64_t preadv(const iovec* iov, size_t count, uint64_t off) override;
    int pwritev(const iovec* iov, size_t count, uint64_t off) override;
    uint64_t size() const override;
    int set_size(uint64_t size) override;
    int flush() override;
    std::string identity() const override;

private:
    Fd fd_;
    uint64_t size_ = 0;
};

// An image in memory (tests, fuzzing). Copies share the same bytes; a write
// that would grow it past `max_size` fails with -ENOSPC.
class MemoryImageFile : public ImageFile {
public:
    explicit MemoryImageFile(std::vector<uint8_t> bytes = {}, uint64_t max_size = 1ull << 30)
        : bytes_(std::make_shared<std::vector<uint8_t>>(std::move(bytes))), max_size_(max_size) {}
    int64_t pread(void* buf, size_t len, uint64_t off) override;
    int pwrite(const void* buf, size_t len, uint64_t off) override;
    uint64_t size() const override { return bytes_->size(); }
    int set_size(uint64_t size) override;
    int flush() override { return 0; }
    std::string identity() const override;
    std::vector<uint8_t>& bytes() { return *bytes_; }

private:
    std::shared_ptr<std::vector<uint8_t>> bytes_;
    uint64_t max_size_;
};

// Opens a backing file read-only. `path` is the header's name, resolved
// against the image's directory when relative; `format` is the header's
// backing format ("raw", "qcow2", or "" when the image names none). Throws
// vmm::Error to refuse.
using BackingOpener =
    std::function<std::unique_ptr<ImageFile>(const std::string& path, const std::string& format)>;

struct Qcow2Options {
    std::string path;              // names the image in messages; base of relative backing names
    bool readonly = false;
    BackingOpener open_backing;    // unset: an image with a backing file is refused
    unsigned max_chain = 16;       // images in a backing chain, this one included
    size_t cache_bytes = 2u << 20; // L2 tables and refcount blocks kept in memory
    // flush() between the steps of an allocation (docs/qcow2.md): off only
    // for throw-away overlays whose state after a host crash does not matter.
    bool barriers = true;
};

struct Qcow2CreateOptions {
    uint64_t size = 0;             // virtual size, bytes
    unsigned cluster_bits = 16;
    unsigned version = 3;          // 2 (qemu compat=0.10) or 3
    std::string backing_path;      // stored as given
    std::string backing_format;    // "" (not recorded), "raw" or "qcow2"
    // Refcount table clusters; 0 sizes the table for the image fully
    // allocated. Tests set 1 (as QEMU does) to make the table grow.
    unsigned refcount_table_clusters = 0;
};

class Qcow2Image {
public:
    // Throws vmm::Error("qcow2 image <path>: ..."). `file` must outlive the
    // image; backing files are owned by it.
    static std::unique_ptr<Qcow2Image> open(ImageFile& file, const Qcow2Options& opts);
    // Writes an empty image (header, refcount table and block, L1 table) to
    // `file`, which is truncated first. Throws vmm::Error.
    static void create(ImageFile& file, const Qcow2CreateOptions& opts);

    ~Qcow2Image();
    Qcow2Image(const Qcow2Image&) = delete;
    Qcow2Image& operator=(const Qcow2Image&) = delete;

    uint64_t size() const { return size_; }
    bool readonly() const { return readonly_; }
    unsigned version() const { return version_; }
    uint32_t cluster_size() const { return cluster_size_; }
    // Resolved backing path, "" without one.
    const std::string& backing_path() const { return backing_path_; }

    // Byte-granular I/O inside [0, size()): 0, or -EINVAL (out of range),
    // -EROFS (read-only), -EIO (damaged image), -ENOSPC, or the file's -errno.
    int read(uint64_t offset, std::span<const iovec> iov);
    int write(uint64_t offset, std::span<const iovec> iov);
    // Whole clusters in the range are freed and become zero clusters (v3
    // over a backing file) or unallocated (no backing file); the rest is
    // written with zeros. v2 over a backing file writes zeros everywhere.
    int write_zeroes(uint64_t offset, uint64_t length);
    // Whole clusters are dropped as by write_zeroes (they read as zeros
    // afterwards); partial ones, and all in v2 over a backing file, stay.
    int discard(uint64_t offset, uint64_t length);
    // Makes every completed write durable.
    int flush();

private:
    struct Mapping;
    struct Pending;
    class Cursor;

    Qcow2Image(ImageFile& file, const Qcow2Options& opts);
    void load(std::vector<std::string>& chain);
    void parse_extensions(const std::vector<uint8_t>& first, uint64_t start, std::string& backing_format);
    void open_backing(const std::string& name, const std::string& format, std::vector<std::string>& chain);

    int read_buf(uint64_t off, uint8_t* buf, size_t len);
    int read_iov(uint64_t off, std::span<const iovec> iov, uint64_t len);
    int read_backing(uint64_t off, uint8_t* buf, size_t len);
    int read_backing(uint64_t off, std::vector<iovec>& iov, uint64_t len);
    int inflate_cluster(uint64_t l2e);
    int lookup(uint64_t off, bool allocate_l2, Mapping& m);
    int old_cluster(uint64_t vstart, const Mapping& m, uint8_t* cluster);
    int zero_range(uint64_t offset, uint64_t length, bool whole_only);
    int free_entry(uint64_t l2e);

    int table_get(uint64_t table_off, size_t index, unsigned width, uint64_t& value);
    int table_set(uint64_t table_off, size_t index, unsigned width, std::span<const uint64_t> values);
    int table_set(uint64_t table_off, size_t index, unsigned width, uint64_t value) {
        return table_set(table_off, index, width, {&value, 1});
    }
    int cached_table(uint64_t table_off, std::vector<uint8_t>*& data);
    int refcount_get(uint64_t cluster, uint64_t& value);
    int refcount_add(uint64_t cluster, int delta);
    int alloc_cluster(uint64_t& host);
    int grow_refcount_table(uint64_t cluster);
    int write_l1(size_t index, uint64_t value);
    int barrier();
    bool host_range_ok(uint64_t off, uint64_t len) const;

    ImageFile& file_;
    std::string path_;
    bool readonly_;
    bool barriers_;
    unsigned version_ = 0;
    unsigned cluster_bits_ = 0;
    uint32_t cluster_size_ = 0;
    uint64_t size_ = 0;
    unsigned refcount_bytes_ = 2;
    uint64_t refcount_block_entries_ = 0;
    uint64_t l1_offset_ = 0;
    std::vector<uint64_t> l1_;
    uint64_t refcount_table_offset_ = 0;
    std::vector<uint64_t> refcount_table_;
    uint64_t free_hint_ = 1;
    bool warned_table_full_ = false;

    struct CacheEntry {
        std::vector<uint8_t> data;
        uint64_t stamp = 0;
    };
    std::unordered_map<uint64_t, CacheEntry> cache_;
    size_t cache_limit_ = 0;
    uint64_t cache_clock_ = 0;
    uint64_t inflated_l2e_ = 0;  // the compressed cluster in `inflated_`
    std::vector<uint8_t> inflated_;
    unsigned compression_type_ = 0;  // header byte 104: 0 zlib, 1 zstd
    struct ZstdFree {
        void operator()(ZSTD_DCtx_s* d) const;
    };
    std::unique_ptr<ZSTD_DCtx_s, ZstdFree> zstd_;  // made on the first zstd cluster, reused

    std::string backing_path_;
    std::unique_ptr<ImageFile> backing_file_;
    std::unique_ptr<Qcow2Image> backing_qcow2_;
    BackingOpener opener_;
    unsigned max_chain_;
    size_t cache_bytes_;
};

}  // namespace vmm::virtio
