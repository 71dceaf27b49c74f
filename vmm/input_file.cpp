#include "vmm/input_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "vmm/core/error.h"

namespace vmm {

InputFile::InputFile(const std::string& path, std::string what) : path_(path), what_(std::move(what)) {
    // O_NONBLOCK: a FIFO given by mistake fails the regular-file check below
    // instead of blocking open() (no effect on a regular file or its mmap).
    fd_ = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd_) throw_errno(fmt::format("{} {}", what_, path));
    struct stat st {};
    if (fstat(fd_.get(), &st) != 0) throw_errno(fmt::format("{} {}", what_, path));
    if (!S_ISREG(st.st_mode)) fail("{} {}: not a regular file", what_, path);
    if (st.st_size == 0) fail("{} {}: file is empty", what_, path);
    size_ = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_.get(), 0);
    if (p == MAP_FAILED) throw_errno(fmt::format("{} {}: mmap", what_, path));
    map_ = static_cast<const uint8_t*>(p);
}

InputFile::~InputFile() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

void InputFile::copy_to_guest(const GuestMemory& mem, uint64_t gpa, std::span<const uint8_t> part) const {
    auto dst = mem.slice(gpa, part.size());
    if (!dst) fail("{} {}: {} bytes at {:#x} do not fit in guest RAM", what_, path_, part.size(), gpa);
    copy_to(*dst, part);
}

void InputFile::copy_to(std::span<uint8_t> dst, std::span<const uint8_t> part) const {
    if (dst.size() != part.size() || part.data() < map_ || part.size() > size_ ||
        static_cast<size_t>(part.data() - map_) > size_ - part.size())
        fail("internal: {} {}: bad copy of {} bytes", what_, path_, part.size());
    size_t off = static_cast<size_t>(part.data() - map_);
    size_t done = 0;
    while (done < part.size()) {
        ssize_t r = ::pread(fd_.get(), dst.data() + done, part.size() - done, static_cast<off_t>(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw_errno(fmt::format("{} {}: read", what_, path_));
        if (r == 0) fail("{} {}: file shrank while loading", what_, path_);
        done += static_cast<size_t>(r);
    }
}

}  // namespace vmm
