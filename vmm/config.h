// The VM configuration model: plain data, filled from the command line today
// (and from JSON later, into this same struct, so defaults exist only once:
// in the member initialisers below). Devices never see this struct; the VM
// translates it into per-device parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm {

enum class SerialMode { Tty, File, Off };

// One virtio-blk disk (--disk).
struct DiskConfig {
    std::string path;
    bool readonly = false;
    std::string serial;  // GET_ID; empty: none
    uint16_t num_queues = 1;
    bool direct = false;  // O_DIRECT: bypass the host page cache
    int slot = -1;        // PCI slot; -1: the VMM chooses
};

struct VmConfig {
    std::string kernel;
    std::string initramfs;  // empty: none
    std::string cmdline = "console=ttyS0 panic=1";
    uint32_t cpus = 1;
    uint64_t memory = 512ull << 20;  // bytes
    SerialMode serial = SerialMode::Tty;
    std::string serial_path;  // for SerialMode::File
    // virtio-console port 0 (the guest's hvc0); off unless asked for.
    SerialMode console = SerialMode::Off;
    std::string console_path;  // for SerialMode::File
    std::vector<DiskConfig> disks;
    bool boot_report = false;   // print boot timing lines to stderr
    bool allow_reboot = false;  // restart the VM when the guest reboots
    std::string log_level = "warn";
};

// Exit statuses of the vmm binary (documented in README.md).
enum ExitStatus : int {
    kExitPowerOff = 0,
    kExitError = 1,    // VMM error or bad input
    kExitReboot = 2,   // guest rebooted and --reboot was not given
    kExitPanic = 3,    // guest panic (reserved for pvpanic)
    kExitCrash = 4,    // triple fault, emulation failure, internal error
    kExitTimeout = 5,  // reserved for --timeout
    kExitSignalBase = 128,
};

}  // namespace vmm
