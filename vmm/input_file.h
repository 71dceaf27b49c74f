// A read-only view of a file the VMM puts into the guest (kernel, initramfs,
// firmware image). Parsers see it as a span (touching only the pages they
// read); payloads go straight from the file into guest RAM with pread, so
// the VMM never holds a second copy of a 60 MiB kernel in its own memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "vmm/core/fd.h"
#include "vmm/core/guest_memory.h"

namespace vmm {

class InputFile {
public:
    // `what` names the option in error messages ("--kernel").
    InputFile(const std::string& path, std::string what);
    ~InputFile();
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    std::span<const uint8_t> bytes() const { return {map_, size_}; }
    size_t size() const { return size_; }

    // Copies `part` (a sub-span of bytes()) into guest RAM at `gpa`.
    void copy_to_guest(const GuestMemory& mem, uint64_t gpa, std::span<const uint8_t> part) const;
    // Copies `part` into host memory `dst` (same size).
    void copy_to(std::span<uint8_t> dst, std::span<const uint8_t> part) const;

private:
    std::string path_;
    std::string what_;
    Fd fd_;
    const uint8_t* map_ = nullptr;
    size_t size_ = 0;
};

}  // namespace vmm
