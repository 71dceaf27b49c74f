#include "devices/cfi_flash.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>

#include "vmm/core/error.h"

namespace vmm::devices {

namespace {

// A vars store is well under a MiB; this only stops a wrong path (a disk
// image, say) from being read into memory whole.
constexpr uint64_t kMaxSize = 64ull << 20;

// Block sizes the CFI geometry can describe (in 256-byte units, 16 bits).
constexpr uint64_t kMinBlock = 256;
constexpr uint64_t kMaxBlock = 256ull << 16;

// Transfers all `len` bytes with pread or pwrite, resuming after short
// transfers and EINTR; false on an error or at the end of the file.
template <typename Op, typename Byte>
bool transfer_all(Op op, int fd, Byte* buf, size_t len, off_t at) {
    while (len > 0) {
        ssize_t n = op(fd, buf, len, at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        buf += n;
        len -= static_cast<size_t>(n);
        at += n;
    }
    return true;
}

bool full_pread(int fd, uint8_t* buf, size_t len, off_t at) { return transfer_all(::pread, fd, buf, len, at); }
bool full_pwrite(int fd, const uint8_t* buf, size_t len, off_t at) { return transfer_all(::pwrite, fd, buf, len, at); }

}  // namespace

CfiFlash::CfiFlash(const std::string& path, uint64_t block_size) : path_(path), block_size_(block_size) {
    if (!std::has_single_bit(block_size) || block_size < kMinBlock || block_size > kMaxBlock)
        fail("flash {}: block size {} is not a power of two from {} to {}", path, block_size, kMinBlock, kMaxBlock);

    fd_ = Fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));  // a FIFO must not block
    if (!fd_) {
        if (errno == EACCES || errno == EROFS || errno == EPERM || errno == ETXTBSY)
            throw_errno(fmt::format("flash {}: cannot open it for writing, and UEFI variables must persist there",
                                    path));
        throw_errno(fmt::format("flash {}: cannot open", path));
    }
    struct stat st {};
    if (::fstat(fd_.get(), &st) < 0) throw_errno(fmt::format("flash {}: fstat", path));
    if (!S_ISREG(st.st_mode)) fail("flash {}: not a regular file", path);

    // An OFD lock belongs to this open file description: it keeps out
    // another VMM and a second open in this one, and goes away with the fd.
    struct flock lk {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    if (::fcntl(fd_.get(), F_OFD_SETLK, &lk) < 0) {
        if (errno == EAGAIN || errno == EACCES) fail("flash {}: the file is in use by another process", path);
        log::warn("flash {}: cannot lock the file ({}); continuing without a lock", path, std::strerror(errno));
    }

    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size == 0 || size % block_size != 0)
        fail("flash {}: size {} is not a non-zero multiple of the {}-byte block", path, size, block_size);
    if (size > kMaxSize) fail("flash {}: size {} is larger than the {} bytes a flash device may have", path, size,
                              kMaxSize);
    content_.resize(size);
    if (!full_pread(fd_.get(), content_.data(), content_.size(), 0))
        fail("flash {}: cannot read its {} bytes (did it shrink?)", path, size);
}

CfiFlash::~CfiFlash() {
    // Written-through bytes are in the page cache already; this only makes
    // them survive a host crash right after the VM stops.
    if (fd_) ::fdatasync(fd_.get());
}

void CfiFlash::reset() {
    std::lock_guard lk(mu_);
    mode_ = Mode::ReadArray;
    status_ = kStatusReady;
}

void CfiFlash::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lk(mu_);
    for (size_t i = 0; i < data.size(); ++i) {
        bool inside = offset < size() && i < size() - offset;
        data[i] = inside ? read_byte(offset + i) : 0xff;
    }
}

uint8_t CfiFlash::read_byte(uint64_t offset) const {
    switch (mode_) {
    case Mode::ReadArray:
        return content_[offset];
    case Mode::ReadId:
        return 0;
    case Mode::Query:
        return query_byte(offset);
    case Mode::ReadStatus:
    case Mode::Program:
    case Mode::EraseSetup:
        break;
    }
    return status_;
}

// The CFI identification string and geometry (JEDEC JESD68 layout, byte
// addresses of an x8 part): one uniform erase region covering the file.
uint8_t CfiFlash::query_byte(uint64_t offset) const {
    uint64_t blocks = std::min<uint64_t>(size() / block_size_ - 1, 0xffff);
    uint64_t units = block_size_ / 256;
    switch (offset & 0xff) {
    case 0x10: return 'Q';
    case 0x11: return 'R';
    case 0x12: return 'Y';
    case 0x13: return 0x01;  // primary command set: Intel/Sharp extended
    case 0x27: return static_cast<uint8_t>(std::bit_width(size() - 1));  // log2 of the size, rounded up
    case 0x2c: return 1;  // erase block regions
    case 0x2d: return static_cast<uint8_t>(blocks);
    case 0x2e: return static_cast<uint8_t>(blocks >> 8);
    case 0x2f: return static_cast<uint8_t>(units);
    case 0x30: return static_cast<uint8_t>(units >> 8);
    default: return 0;  // no extended tables, voltages, timings or buffered writes
    }
}

void CfiFlash::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty() || offset >= size()) return;
    uint8_t v = data[0];
    std::lock_guard lk(mu_);
    switch (mode_) {
    case Mode::Program:
        program(offset, v);
        mode_ = Mode::ReadStatus;
        return;
    case Mode::EraseSetup:
        if (v == 0xd0) {
            erase(offset);
            mode_ = Mode::ReadStatus;
            return;
        }
        if (v != 0xff && rl_.allow())
            log::warn("flash {}: block erase at {:#x} not confirmed (got {:#04x}); back to read array", path_, offset,
                      v);
        mode_ = Mode::ReadArray;
        return;
    default:
        command(offset, v);
    }
}

// The mode each first-cycle command puts the device in.
std::optional<CfiFlash::Mode> CfiFlash::mode_for(uint8_t cmd) {
    switch (cmd) {
    case 0xff:  // read array
    case 0x00:  // QEMU's model takes it as read array; so may firmware
    case 0xf0:  // the AMD-style reset, harmless to accept
    case 0x50:  // clear status, then read array
        return Mode::ReadArray;
    case 0x70: return Mode::ReadStatus;
    case 0x10:
    case 0x40: return Mode::Program;
    case 0x20: return Mode::EraseSetup;
    case 0x90: return Mode::ReadId;
    case 0x98: return Mode::Query;
    default: return std::nullopt;
    }
}

void CfiFlash::command(uint64_t offset, uint8_t cmd) {
    std::optional<Mode> next = mode_for(cmd);
    if (!next && rl_.allow())
        log::warn("flash {}: unsupported command {:#04x} at {:#x}; back to read array", path_, cmd, offset);
    if (cmd == 0x50) status_ = 0;
    mode_ = next.value_or(Mode::ReadArray);
}

void CfiFlash::program(uint64_t offset, uint8_t value) {
    uint8_t old = content_[offset];
    uint8_t now = old & value;  // programming only clears bits; erase sets them
    if (now != old) {
        content_[offset] = now;
        if (!store(offset, 1)) status_ |= kStatusProgramError;
    }
    status_ |= kStatusReady;
}

void CfiFlash::erase(uint64_t offset) {
    uint64_t base = offset & ~(block_size_ - 1);
    std::fill_n(content_.begin() + static_cast<std::ptrdiff_t>(base), block_size_, uint8_t{0xff});
    if (!store(base, block_size_)) status_ |= kStatusEraseError;
    status_ |= kStatusReady;
}

bool CfiFlash::store(uint64_t offset, uint64_t len) {
    if (full_pwrite(fd_.get(), content_.data() + offset, len, static_cast<off_t>(offset))) return true;
    int e = errno;
    if (rl_.allow())
        log::error("flash {}: writing {} bytes at {:#x} failed: {}; the file no longer matches what the guest sees",
                   path_, len, offset, e ? std::strerror(e) : "short write");
    return false;
}

void CfiFlash::create_from_template(const std::string& vars, const std::string& tmpl) {
    struct stat st {};
    if (::lstat(vars.c_str(), &st) == 0) return;
    if (errno != ENOENT) throw_errno(fmt::format("flash {}", vars));

    Fd src(::open(tmpl.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!src) throw_errno(fmt::format("flash {}: cannot open the template {}", vars, tmpl));
    if (::fstat(src.get(), &st) < 0 || !S_ISREG(st.st_mode))
        fail("flash {}: the template {} is not a regular file", vars, tmpl);

    std::string tmp = vars + ".XXXXXX";
    Fd dst(::mkostemp(tmp.data(), O_CLOEXEC));  // mode 0600, O_EXCL
    if (!dst) throw_errno(fmt::format("flash {}: cannot create a file next to it", vars));
    struct Unlink {
        const std::string& p;
        ~Unlink() { ::unlink(p.c_str()); }
    } unlink_tmp{tmp};

    std::vector<uint8_t> buf(1 << 16);
    for (off_t at = 0;;) {
        ssize_t n = ::read(src.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno(fmt::format("flash {}: reading the template {}", vars, tmpl));
        if (n == 0) break;
        if (!full_pwrite(dst.get(), buf.data(), static_cast<size_t>(n), at))
            throw_errno(fmt::format("flash {}: writing {}", vars, tmp));
        at += n;
    }
    if (::fsync(dst.get()) < 0) throw_errno(fmt::format("flash {}: fsync of {}", vars, tmp));

    // link() never replaces: when `vars` appeared meanwhile, that one stays.
    if (::link(tmp.c_str(), vars.c_str()) < 0 && errno != EEXIST)
        throw_errno(fmt::format("flash {}: cannot create it from the template {}", vars, tmpl));
}

}  // namespace vmm::devices
