// The VM configuration model: plain data, filled from a JSON file
// (--config) and/or the command line, which both write into this one struct
// through the option table (vmm/options.*), so defaults exist only once: in
// the member initialisers below. A new field gets its JSON key, option and
// help text there. Devices never see this struct; the VM translates it into
// per-device parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm {

// Where a console (COM1 or the virtio console) goes. Socket: a UNIX socket
// the VMM listens on; one client at a time gets the output and may type.
enum class SerialMode { Tty, File, Socket, Off };

// How long a disk's I/O thread busy-polls its queue and the host's
// completions before it sleeps (µs): what QEMU's iothreads do by default
// (poll-max-ns 32768). docs/benchmarks.md has what it buys and costs.
inline constexpr uint32_t kDefaultPollUs = 32;

// One virtio-blk disk (--disk).
struct DiskConfig {
    std::string path;
    bool readonly = false;
    std::string serial;  // GET_ID; empty: none
    uint16_t num_queues = 1;
    bool direct = false;  // O_DIRECT: bypass the host page cache
    int slot = -1;        // PCI slot; -1: the VMM chooses
    bool packed = true;   // offer the packed virtqueue layout (off: drivers use the split ring)
    int bootindex = -1;   // firmware boot order, lower first; -1: none (see kMaxBootIndex)
    uint32_t poll_us = kDefaultPollUs;  // I/O thread busy polling before sleeping; 0: off
    std::string format = "auto";  // "auto" (qcow2 if the file says so, else raw), "raw", "qcow2"
    bool snapshot = false;        // writes go to a throwaway overlay; the image stays untouched
};

// One virtio-net interface on a host tap (--net).
struct NetConfig {
    std::string tap;          // host tap interface; attached, or created if missing
    std::string mac;          // "52:54:00:12:34:56"; empty: derived from the tap name
    uint16_t num_queues = 1;  // queue pairs (multiqueue tap when > 1)
    bool packed = true;       // offer the packed virtqueue layout (off: drivers use the split ring)
    int bootindex = -1;       // firmware boot order (network boot); -1: none
    // Expansion ROM for network boot through firmware: "" (auto) Debian's
    // iPXE ROM for virtio-net when it is installed, "off" none, or a path.
    std::string rom;
};

// virtio-balloon (--balloon).
struct BalloonConfig {
    uint64_t size = 0;                  // initial balloon size in bytes (taken from the guest at boot)
    bool deflate_on_oom = false;        // the guest may shrink the balloon when it runs out of memory
    bool free_page_reporting = false;   // the guest reports free memory, which the VMM gives back to the host
    uint32_t stats_interval_s = 5;      // how often the guest's memory statistics are refreshed; 0: once
};

// One LUN of the virtio-scsi controller (--scsi-disk, --cdrom). All LUNs
// sit on target 0 of one controller; see README "SCSI disks and CD-ROMs".
struct ScsiLunConfig {
    std::string path;
    int lun = -1;           // 0..16383; -1: the lowest free LUN (assigned by check::scsi_luns)
    bool readonly = false;  // CD-ROMs are always read-only
    bool cdrom = false;     // CD-ROM: 2048-byte blocks, MMC commands
    int bootindex = -1;     // firmware boot order; -1: none
    bool direct = false;    // O_DIRECT: bypass the host page cache (disks only)
    std::string format = "auto";  // as DiskConfig::format
    bool snapshot = false;        // as DiskConfig::snapshot (disks only)
};

// One named virtio-serial port (--serial-port): the guest's
// /dev/vportXpN with name NAME (/dev/virtio-ports/NAME with udev). Its host
// side is a UNIX socket the VMM listens on (one client at a time) or, for
// output only, a file.
struct SerialPortConfig {
    std::string name;
    SerialMode mode = SerialMode::Socket;  // Socket or File
    std::string path;
};

// One fw_cfg file for the firmware (--fw-cfg): its content comes from a
// host file or is the string itself.
struct FwCfgItemConfig {
    std::string name;  // "opt/..."
    std::string file;  // host file; empty: use `text`
    std::string text;
};

// SMBIOS strings for one structure type (--smbios type=N,...): 0 BIOS,
// 1 system, 3 chassis. Empty strings keep the VMM's defaults; which keys a
// type takes is checked by check::smbios_list.
struct SmbiosTypeConfig {
    int type = -1;
    std::string vendor, version, date;                    // 0 (version: 1 and 3 too)
    std::string manufacturer, product, serial, sku, family, asset;  // 1 and 3
};

// A cloud-init NoCloud seed (--cloud-init): the VMM builds an ISO 9660
// volume labelled "cidata" from these host files and attaches it as a
// read-only CD-ROM (vmm/cloud_init.h). Paths; empty: not given.
struct CloudInitConfig {
    std::string user_data;       // required
    std::string meta_data;       // empty: instance-id and local-hostname made up by the VMM
    std::string network_config;  // empty: none (cloud-init's default, DHCP on the first NIC)
};

struct VmConfig {
    // How the guest starts: "" boots `kernel` directly (no firmware);
    // "bios" runs Debian's SeaBIOS and "uefi" Debian's OVMF (both found at
    // run time), any other value is the path of a firmware image (README:
    // Firmware boot).
    std::string firmware;
    // UEFI variable store (a CFI flash below the firmware): created from the
    // firmware's template when missing; empty: a throwaway copy.
    std::string firmware_vars;
    std::string kernel;  // required unless firmware is given
    std::string initramfs;  // empty: none
    // How messages name the two: the option, or where in the --config file
    // they came from ("vm.json: boot.kernel"). Set by parse_cli; not config.
    std::string kernel_what = "--kernel", initramfs_what = "--initramfs";
    std::string cmdline = "console=ttyS0 panic=1";
    uint32_t cpus = 1;
    uint64_t memory = 512ull << 20;  // bytes
    SerialMode serial = SerialMode::Tty;
    std::string serial_path;  // for SerialMode::File and Socket
    // virtio-console port 0 (the guest's hvc0); off unless asked for.
    SerialMode console = SerialMode::Off;
    std::string console_path;  // for SerialMode::File and Socket
    bool hugepages = false;    // back guest RAM with hugetlbfs pages (MAP_HUGETLB)
    bool rtc_localtime = false;  // the RTC shows the host's local time (Windows), not UTC
    std::string uuid;          // SMBIOS system UUID, "8-4-4-4-12" hex; empty: not set
    std::vector<SmbiosTypeConfig> smbios;  // SMBIOS string overrides, one entry per type
    std::vector<DiskConfig> disks;
    bool boot_report = false;   // print boot timing lines to stderr
    bool allow_reboot = false;  // restart the VM when the guest reboots
    std::string log_level = "warn";
    std::string log_file;       // the VMM's own messages; empty: stderr
    std::string seccomp = "on";  // seccomp filters per thread: on, log, off (vmm/seccomp.h)
    std::string api_socket;     // control API UNIX socket; empty: none
    uint32_t timeout_s = 0;     // stop the VM after this many seconds; 0: never
    bool pvpanic = true;        // pvpanic device (guest panic -> exit status 3)
    bool rng = false;           // virtio-rng (host getrandom() for the guest's /dev/hwrng)
    std::optional<BalloonConfig> balloon;  // virtio-balloon; none unless asked for
    std::vector<NetConfig> nets;           // virtio-net interfaces
    std::vector<ScsiLunConfig> scsi;  // virtio-scsi LUNs, disks first; empty: no controller
    // Named virtio-serial ports beside hvc0 (they bring the virtio console
    // device along even with console off).
    std::vector<SerialPortConfig> serial_ports;
    std::vector<FwCfgItemConfig> fw_cfg;  // extra fw_cfg files (firmware boot only)
    std::optional<CloudInitConfig> cloud_init;  // NoCloud seed CD-ROM; none unless asked for
    // --boot order=: device kinds ("cdrom", "disk", "net") in the order the
    // firmware tries them; check::apply_boot_order turns it into bootindex
    // values for the devices that have none.
    std::vector<std::string> boot_order;
};

// Exit statuses of the vmm binary (documented in README.md).
enum ExitStatus : int {
    kExitPowerOff = 0,
    kExitError = 1,    // VMM error or bad input
    kExitReboot = 2,   // guest rebooted and --reboot was not given
    kExitPanic = 3,    // guest panic (pvpanic)
    kExitCrash = 4,    // triple fault, emulation failure, internal error
    kExitTimeout = 5,  // --timeout ran out
    kExitStopped = 6,  // hard stop through the control API
    kExitNoBootDevice = 7,  // the firmware found nothing to boot
    kExitSignalBase = 128,
};

}  // namespace vmm
