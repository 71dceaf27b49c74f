// Parallel NOR flash with the basic Intel/Sharp command set (the "CFI 01"
// family): the persistent UEFI variable store that OVMF keeps just below its
// code image under 4 GiB. Its variable driver, QemuFlashFvbServicesRuntimeDxe,
// probes for flash, programs single bytes and erases whole blocks, and decides
// between persistent and RAM-only variables by how the probe answers.
//
// The whole region is MMIO (no KVM memory slot), so every access reaches us.
// A guest changes the content only through commands written as a byte to any
// address of the device:
//   0xff        read array: reads return the content
//   0x70        read status register
//   0x50        clear status (to 0x00) and go back to read array
//   0x10, 0x40  program: the next write ANDs its byte into the content
//   0x20, 0xd0  block erase: setup, then confirm at an address in the block
//   0x90        read identifier (all zeros: no identity, blocks unlocked)
//   0x98        CFI query (a small table: "QRY", Intel command set, geometry)
// 0x00 and 0xf0 are taken as read array too; anything else is logged
// (rate-limited) and also goes back to read array. After a program or an
// erase the device stays in read-status mode (bit 7, ready, set) until 0xff.
// The status register reads 0x00 after 0x50, which OVMF's probe requires.
//
// For a write wider than a byte only its low byte counts, as a command or as
// the byte to program at `offset`. Bytes of an access beyond the end read
// 0xff; a write whose low byte lies beyond the end is ignored.
//
// Backing: an existing regular file opened read-write and held under an OFD
// write lock for the device's lifetime. Its content is kept in memory; every
// programmed byte and erased block is written through to the file at once,
// and the file is never extended or shrunk.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/bus.h"
#include "vmm/core/fd.h"
#include "vmm/core/log.h"

namespace vmm::devices {

class CfiFlash : public vmm::BusDevice {
public:
    // Status register bits: ready (set by every program and erase), and the
    // errors reported when the file could not be written.
    enum : uint8_t { kStatusReady = 0x80, kStatusEraseError = 0x20, kStatusProgramError = 0x10 };
    static constexpr uint64_t kDefaultBlockSize = 4096;

    // Throws vmm::Error naming `path` when the file cannot be opened
    // read-write, is not a regular file, its size is not a non-zero multiple
    // of `block_size` (a power of two from 256 bytes to 16 MiB) or is over
    // 64 MiB, or another open of it holds the lock ("... is in use by
    // another process"). A file system without OFD locks only gets a warning.
    CfiFlash(const std::string& path, uint64_t block_size = kDefaultBlockSize);
    ~CfiFlash() override;

    // Copies `tmpl` to `vars` when `vars` does not exist yet; otherwise does
    // nothing. The copy is written under a temporary name in the same
    // directory (mode 0600) and then linked into place, so `vars` never
    // appears half-written and an existing file is never replaced. Throws
    // vmm::Error when the template cannot be read or `vars` not created.
    static void create_from_template(const std::string& vars, const std::string& tmpl);

    // Platform reset without recreating the device: read-array mode, status
    // ready, as the chip is after power-up. (A VMM that builds a new
    // CfiFlash per run must destroy the old one first: the lock is per open.)
    void reset();

    uint64_t size() const { return content_.size(); }
    uint64_t block_size() const { return block_size_; }

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "cfi-flash"; }

private:
    enum class Mode { ReadArray, ReadStatus, ReadId, Query, Program, EraseSetup };

    static std::optional<Mode> mode_for(uint8_t cmd);
    uint8_t read_byte(uint64_t offset) const;
    uint8_t query_byte(uint64_t offset) const;
    void command(uint64_t offset, uint8_t cmd);
    void program(uint64_t offset, uint8_t value);
    void erase(uint64_t offset);
    bool store(uint64_t offset, uint64_t len);  // content_[offset, +len) to the file

    std::string path_;
    uint64_t block_size_;
    Fd fd_;
    std::mutex mu_;
    std::vector<uint8_t> content_;  // the file's bytes; its size never changes
    Mode mode_ = Mode::ReadArray;
    uint8_t status_ = kStatusReady;
    log::RateLimit rl_;
};

}  // namespace vmm::devices
