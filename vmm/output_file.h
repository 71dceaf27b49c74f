// Files the VMM writes: the serial and virtio-console logs, named serial
// ports' files and the log file. Opening one must never destroy data or
// hang:
// - an output that is one of this VM's inputs (kernel, initramfs, firmware,
//   UEFI variable store, disk and SCSI images), compared by file identity
//   (device and inode, so "w/a.img" and "w/../w/a.img" are the same), is
//   refused before anything is written;
// - a regular file gets the same OFD write lock disk images take, so an
//   image another running VMM holds (or an output another VMM writes) is
//   refused instead of truncated, and is truncated only once locked;
// - it is opened non-blocking, so a FIFO without a reader is an error, not
//   an open() that never returns with the termination signals masked;
// - a new file is created owner-only (0600): guest console output may be
//   private.
// Character devices (/dev/null, a terminal) and FIFOs with a reader are
// written as they are, without truncation or lock.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "vmm/config.h"
#include "vmm/core/fd.h"

namespace vmm {

enum class OutputMode { Truncate, Append };

// A file `cfg` reads, as messages name it ("--kernel /boot/vmlinuz",
// "--disk path=a.img"), and whether the VM may also write it (a disk
// without readonly=on, the UEFI variable store).
struct InputPath {
    std::string label, path;
    bool writes = false;
};
std::vector<InputPath> input_paths(const VmConfig& cfg);

// Refuses a configuration that names one file twice among its inputs when
// either use writes it (a disk or SCSI disk without readonly=on), compared
// by identity as above: the second open would otherwise fail with the lock
// message meant for a file another VM holds. Inputs that do not exist are
// left to the code that opens them.
void check_inputs_distinct(const VmConfig& cfg);

// Opens `path` for writing; `what` names the option in messages
// ("--serial file"). Throws vmm::Error with a user-facing message.
Fd open_output(const std::string& path, const std::string& what, const VmConfig& cfg, OutputMode mode);

// An output sink for a console: the VMM's stdout (tty) or a file; output
// to a console that went away (EPIPE) is dropped, the VM keeps running.
std::function<void(std::span<const uint8_t>)> fd_writer(int fd);

}  // namespace vmm
