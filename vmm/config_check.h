// Validation rules of the configuration, shared by the command line and
// JSON configs (the option table in vmm/options.cpp refers to them), so
// that each rule and its limits exist once. Every function throws vmm::Error whose message
// starts with `what`: the option (`--cpus`) or the JSON path
// (`vm.json: machine.cpus`) the value came from.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vmm/config.h"

namespace vmm::check {

inline constexpr uint32_t kMinCpus = 1;
inline constexpr uint32_t kMaxCpus = 254;  // one xAPIC ID for the IOAPIC, 0xff is broadcast
inline constexpr uint64_t kMinMemory = 32ull << 20;
inline constexpr uint64_t kMaxMemory = 1ull << 40;  // 1 TiB: far beyond these hosts, below every mmap limit
inline constexpr uint16_t kMaxDiskQueues = 64;
inline constexpr int kMinSlot = 1;  // slot 0 is the host bridge
inline constexpr int kMaxSlot = 31;
inline constexpr size_t kMaxDisks = 24;
inline constexpr size_t kMaxDiskSerial = 20;  // GET_ID returns at most 20 bytes
inline constexpr uint32_t kMaxTimeout = UINT32_MAX;
inline constexpr uint32_t kMaxPollUs = 1000;  // a disk's busy-polling window

// Parses "512M", "2G", "1536MiB", "4096K", "1T"; a bare number means MiB
// (as with QEMU's -m).
uint64_t parse_size(const std::string& text, const std::string& what);

// A decimal number without sign in lo..hi (for command-line text).
uint64_t parse_uint(const std::string& text, const std::string& what, uint64_t lo, uint64_t hi);

// "{what}: N is out of range (lo..hi)" unless lo <= n <= hi.
uint64_t in_range(uint64_t n, const std::string& what, uint64_t lo, uint64_t hi);

uint32_t cpus(uint64_t n, const std::string& what);
uint64_t memory(uint64_t bytes, const std::string& what);
uint32_t timeout(uint64_t seconds, const std::string& what);
// One of error, warn, info, debug.
const std::string& log_level(const std::string& level, const std::string& what);
const std::string& seccomp_mode(const std::string& mode, const std::string& what);
// Paths given for a file, socket, kernel, ...: not empty, no NUL byte.
const std::string& path(const std::string& p, const std::string& what);

// bootindex= on disks, LUNs and interfaces: the order in which firmware
// tries them (lower first); each value at most once across the VM.
inline constexpr int kMaxBootIndex = 9999;
void boot_indexes(const VmConfig& cfg, const std::string& where);
// --boot order=cdrom,disk,net / boot.order: each kind once, from "cdrom"
// (--cdrom), "disk" (--disk and --scsi-disk) and "net" (--net).
std::vector<std::string> boot_order(const std::vector<std::string>& kinds, const std::string& what);
// Gives the devices without a bootindex= one, kind by kind in
// cfg.boot_order and in configuration order within a kind, counting up from
// above the largest explicit bootindex (an explicit value always wins).
// Devices of kinds not listed get none. Idempotent.
void apply_boot_order(VmConfig& cfg);

// --fw-cfg: names start with "opt/" (the rest of the name space is the
// VMM's), at most 55 bytes, printable, each once; at most kMaxFwCfgItems.
inline constexpr size_t kMaxFwCfgItems = 32;
void fw_cfg_items(const std::vector<FwCfgItemConfig>& items, const std::string& what);

// --cloud-init: every file given exists and is a readable regular file of
// at most kMaxCloudInitFile bytes (user-data is required by the option's
// SPEC). `where` is "" for the command line, whose messages name
// "--cloud-init user-data=PATH", else the --config file, whose messages name
// "<file>: cloud_init.user_data PATH". Run on the merged configuration; the
// seed builder reads the files again when the VM starts.
inline constexpr uint64_t kMaxCloudInitFile = 16 << 20;
void cloud_init_files(const CloudInitConfig& ci, const std::string& where);
// How messages name one of its files: "--cloud-init user-data=PATH" or
// "<where>: cloud_init.user_data PATH". `key` is the JSON key ("user_data").
std::string cloud_init_label(const std::string& key, const std::string& path, const std::string& where);

// --rtc base=: "utc" (false) or "localtime" (true).
bool rtc_base(const std::string& s, const std::string& what);
// --uuid: the 8-4-4-4-12 hex form.
const std::string& uuid(const std::string& s, const std::string& what);
// --smbios: a string is printable ASCII, at most 64 characters.
const std::string& smbios_string(const std::string& s, const std::string& what);
// The list: type 0, 1 or 3, each once, with only the keys that type has.
void smbios_list(const std::vector<SmbiosTypeConfig>& list, const std::string& what);

// --firmware / boot.firmware: "bios", "uefi" or the path of a firmware image.
const std::string& firmware(const std::string& spec, const std::string& what);
// The merged configuration boots something: a kernel, firmware, or a kernel
// through firmware (an initramfs only with a kernel).
void boot_source(const VmConfig& cfg);

// Disk fields.
const std::string& disk_serial(const std::string& serial, const std::string& what);
// format=: "auto", "raw" or "qcow2".
const std::string& disk_format(const std::string& format, const std::string& what);
uint16_t disk_num_queues(uint64_t n, const std::string& what);
int disk_slot(uint64_t n, const std::string& what);
// The list as a whole: how many fit, no PCI slot twice.
void disk_list(const std::vector<DiskConfig>& disks, const std::string& what);

// Balloon: size (and run-time targets) below guest RAM; stats interval.
inline constexpr uint32_t kMaxBalloonStatsInterval = 3600;
uint64_t balloon_size(uint64_t bytes, uint64_t memory, const std::string& what);
// Network interfaces: tap name, MAC, queue pairs, the list as a whole.
inline constexpr uint16_t kMaxNetQueues = 16;
inline constexpr size_t kMaxNets = 8;
const std::string& tap_name(const std::string& name, const std::string& what);
const std::string& mac_address(const std::string& mac, const std::string& what);  // "" is accepted
uint16_t net_num_queues(uint64_t n, const std::string& what);
void net_list(const std::vector<NetConfig>& nets, const std::string& what);
// The MAC a NetConfig gets: its own, or 52:54:00 plus three bytes derived
// from the tap name (stable across runs, so DHCP leases stay).
std::array<uint8_t, 6> effective_mac(const NetConfig& net);
// virtio-scsi LUNs: each LUN in 0..kMaxScsiLun and given once, at most
// kMaxScsiLuns of them. Returns the LUN of each entry, in order: an entry
// without one gets the lowest LUN no entry claims (disks, then CD-ROMs).
inline constexpr uint32_t kMaxScsiLun = 16383;  // flat-space LUN addressing
inline constexpr size_t kMaxScsiLuns = 1024;
std::vector<uint32_t> scsi_luns(const std::vector<ScsiLunConfig>& luns, const std::string& what);

// Console modes: "tty", "file", "socket", "off".
const char* console_mode_name(SerialMode mode);
SerialMode console_mode(const std::string& name, const std::string& what);
// A file or socket mode needs a path; tty and off take none.
void console_path(SerialMode mode, const std::string& path, const std::string& what);

// Named virtio-serial ports (--serial-port, "serial_ports").
inline constexpr size_t kMaxSerialPorts = 30;  // named ports; 31 with hvc0 (QEMU's default too)
inline constexpr size_t kMaxSerialPortName = 64;
// 1-64 printable ASCII characters without space, '/' or ',' (the guest makes
// /dev/virtio-ports/NAME of it), and not "." or "..".
const std::string& serial_port_name(const std::string& name, const std::string& what);
// The list: at most kMaxSerialPorts, unique names, each a socket or a file
// with a path.
void serial_port_list(const std::vector<SerialPortConfig>& ports, const std::string& what);
// Each port's path differs from the others' and from the consoles', the API
// socket's and the log file's (a second distinct_paths pass, after it).
void serial_port_paths(const VmConfig& cfg, const std::string& what);

// Files and sockets the VMM creates must differ: two consoles writing one
// file, or a console socket bound over the API socket, would clobber each
// other. Each entry is (name for the message, path); empty paths are unused.
// `what` prefixes the message unless empty.
void distinct_paths(const std::vector<std::pair<std::string, std::string>>& paths, const std::string& what);

}  // namespace vmm::check
