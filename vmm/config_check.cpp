// The configuration's validation rules (see config_check.h): one
// implementation each, called by the CLI and the JSON loader.
#include "vmm/config_check.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <set>

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>
#include <tuple>

#include "arch/x86_64/smbios.h"
#include "vmm/core/error.h"
#include "vmm/core/fd.h"
#include "vmm/seccomp.h"

namespace vmm::check {

uint64_t parse_size(const std::string& text, const std::string& what) {
    size_t i = 0;
    uint64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        uint64_t d = static_cast<uint64_t>(text[i] - '0');
        if (n > (std::numeric_limits<uint64_t>::max() - d) / 10) fail("{}: \"{}\" is too large", what, text);
        n = n * 10 + d;
        ++i;
    }
    if (i == 0) fail("{}: \"{}\" is not a size (expected e.g. 512M or 2G)", what, text);
    std::string suffix;
    for (; i < text.size(); ++i) suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
    unsigned shift;
    if (suffix.empty() || suffix == "M" || suffix == "MB" || suffix == "MIB") shift = 20;
    else if (suffix == "K" || suffix == "KB" || suffix == "KIB") shift = 10;
    else if (suffix == "G" || suffix == "GB" || suffix == "GIB") shift = 30;
    else if (suffix == "T" || suffix == "TB" || suffix == "TIB") shift = 40;
    else fail("{}: \"{}\" is not a size (expected e.g. 512M or 2G)", what, text);
    if (n > (std::numeric_limits<uint64_t>::max() >> shift)) fail("{}: \"{}\" is too large", what, text);
    return n << shift;
}

uint64_t parse_uint(const std::string& text, const std::string& what, uint64_t lo, uint64_t hi) {
    uint64_t n = 0;
    // 19 digits cannot overflow 64 bits; anything longer is out of every range here.
    if (text.empty() || text.size() > 19) fail("{}: \"{}\" is not a number in {}..{}", what, text, lo, hi);
    for (char c : text) {
        if (!std::isdigit(static_cast<unsigned char>(c)))
            fail("{}: \"{}\" is not a number in {}..{}", what, text, lo, hi);
        n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return in_range(n, what, lo, hi);
}

uint64_t in_range(uint64_t n, const std::string& what, uint64_t lo, uint64_t hi) {
    if (n < lo || n > hi) fail("{}: {} is out of range ({}..{})", what, n, lo, hi);
    return n;
}

uint32_t cpus(uint64_t n, const std::string& what) {
    return static_cast<uint32_t>(in_range(n, what, kMinCpus, kMaxCpus));
}

namespace {

// `bytes` exactly, in the largest unit that divides it: a message about a
// limit must not round the value onto the limit ("1024 GiB is more than
// 1024 GiB").
std::string exact_size(uint64_t bytes) {
    static constexpr std::pair<int, const char*> units[] = {{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}};
    for (const auto& [shift, name] : units)
        if (bytes >> shift && bytes % (uint64_t{1} << shift) == 0) return fmt::format("{} {}", bytes >> shift, name);
    return fmt::format("{} bytes", bytes);
}

}  // namespace

uint64_t memory(uint64_t bytes, const std::string& what) {
    if (bytes < kMinMemory)
        fail("{}: {} is too little (at least {})", what, exact_size(bytes), exact_size(kMinMemory));
    if (bytes > kMaxMemory)
        fail("{}: {} is more than the supported {}", what, exact_size(bytes), exact_size(kMaxMemory));
    if (bytes % (1ull << 20)) fail("{}: {} bytes is not a whole number of MiB", what, bytes);
    return bytes;
}

uint64_t balloon_size(uint64_t bytes, uint64_t memory, const std::string& what) {
    if (bytes % 4096) fail("{}: {} bytes is not a whole number of 4 KiB pages", what, bytes);
    // The guest needs some memory left to run in (and to run its driver).
    if (bytes > memory - std::min(memory, kMinMemory))
        fail("{}: a balloon of {} MiB leaves the guest less than {} MiB of its {} MiB", what, bytes >> 20,
             kMinMemory >> 20, memory >> 20);
    return bytes;
}

const std::string& tap_name(const std::string& name, const std::string& what) {
    // IFNAMSIZ is 16 with the NUL; the kernel also refuses '/', ':' and spaces.
    if (name.empty() || name.size() > 15) fail("{}: tap name \"{}\" must have 1-15 characters", what, name);
    for (char c : name)
        if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || !std::isprint(static_cast<unsigned char>(c)))
            fail("{}: tap name \"{}\" may not contain '/', ':', spaces or control characters", what, name);
    // The kernel treats these as special: "." and ".." are not interface
    // names, and a '%' asks it to pick a free number ("tap%d" -> tap0),
    // so the interface would not be called what the user wrote.
    if (name == "." || name == "..") fail("{}: tap name \"{}\" is not a valid interface name", what, name);
    if (name.find('%') != std::string::npos)
        fail("{}: tap name \"{}\" may not contain '%' (the kernel would choose the name); give the exact name", what,
             name);
    return name;
}

namespace {
std::optional<std::array<uint8_t, 6>> parse_mac(const std::string& mac) {
    std::array<uint8_t, 6> out{};
    if (mac.size() != 17) return std::nullopt;
    for (size_t i = 0; i < 6; ++i) {
        if (i && mac[i * 3 - 1] != ':') return std::nullopt;
        unsigned v = 0;
        for (size_t j = 0; j < 2; ++j) {
            char c = static_cast<char>(std::tolower(static_cast<unsigned char>(mac[i * 3 + j])));
            if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
            v = v * 16 + static_cast<unsigned>(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = static_cast<uint8_t>(v);
    }
    return out;
}
}  // namespace

const std::string& mac_address(const std::string& mac, const std::string& what) {
    if (mac.empty()) return mac;
    auto m = parse_mac(mac);
    if (!m) fail("{}: \"{}\" is not a MAC address like 52:54:00:12:34:56", what, mac);
    if ((*m)[0] & 1) fail("{}: {} is a multicast address; a NIC needs a unicast one", what, mac);
    if (*m == std::array<uint8_t, 6>{}) fail("{}: the all-zero MAC address is not usable", what);
    return mac;
}

uint16_t net_num_queues(uint64_t n, const std::string& what) {
    return static_cast<uint16_t>(in_range(n, what, 1, kMaxNetQueues));
}

void net_list(const std::vector<NetConfig>& nets, const std::string& what) {
    if (nets.size() > kMaxNets) fail("{}: {} interfaces given; at most {}", what, nets.size(), kMaxNets);
    for (size_t i = 0; i < nets.size(); ++i)
        for (size_t j = 0; j < i; ++j) {
            if (nets[i].tap == nets[j].tap) fail("{}: tap {} is given twice (interfaces {} and {})", what, nets[i].tap, j, i);
            if (effective_mac(nets[i]) == effective_mac(nets[j]))
                fail("{}: interfaces {} and {} have the same MAC address", what, j, i);
        }
}

std::array<uint8_t, 6> effective_mac(const NetConfig& net) {
    if (auto m = parse_mac(net.mac)) return *m;
    uint32_t h = 2166136261u;  // FNV-1a of the tap name
    for (char c : net.tap) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
    return {0x52, 0x54, 0x00, static_cast<uint8_t>(h >> 16), static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h)};
}

uint32_t timeout(uint64_t seconds, const std::string& what) {
    return static_cast<uint32_t>(in_range(seconds, what, 0, kMaxTimeout));
}

const std::string& log_level(const std::string& level, const std::string& what) {
    if (level != "error" && level != "warn" && level != "info" && level != "debug")
        fail("{}: \"{}\" is not one of error, warn, info, debug", what, level);
    return level;
}

const std::string& seccomp_mode(const std::string& mode, const std::string& what) {
    (void)seccomp::parse_mode(mode, what);  // the one list of modes
    return mode;
}

const std::string& path(const std::string& p, const std::string& what) {
    if (p.empty()) fail("{}: empty path", what);
    if (p.find('\0') != std::string::npos) fail("{}: path contains a NUL byte", what);
    return p;
}

void boot_indexes(const VmConfig& cfg, const std::string& where) {
    std::map<int, std::string> seen;
    auto add = [&](int index, const std::string& what) {
        if (index < 0) return;
        auto [it, fresh] = seen.emplace(index, what);
        if (!fresh) fail("{}bootindex {} is given twice ({} and {})", where, index, it->second, what);
    };
    for (auto& d : cfg.disks) add(d.bootindex, "disk " + d.path);
    for (auto& l : cfg.scsi) add(l.bootindex, (l.cdrom ? "CD-ROM " : "SCSI disk ") + l.path);
    for (auto& n : cfg.nets) add(n.bootindex, "interface " + n.tap);
}

std::vector<std::string> boot_order(const std::vector<std::string>& kinds, const std::string& what) {
    if (kinds.empty()) fail("{}: empty (expected kinds from cdrom, disk, net)", what);
    std::set<std::string> seen;
    for (auto& k : kinds) {
        if (k != "cdrom" && k != "disk" && k != "net")
            fail("{}: unknown device kind \"{}\" (expected cdrom, disk, net)", what, k);
        if (!seen.insert(k).second) fail("{}: \"{}\" is given twice", what, k);
    }
    return kinds;
}

void apply_boot_order(VmConfig& cfg) {
    int next = -1;
    for (auto& d : cfg.disks) next = std::max(next, d.bootindex);
    for (auto& l : cfg.scsi) next = std::max(next, l.bootindex);
    for (auto& n : cfg.nets) next = std::max(next, n.bootindex);
    auto give = [&](int& index) {
        if (index >= 0) return;
        if (next >= kMaxBootIndex) fail("--boot order: no bootindex left above {}", next);
        index = ++next;
    };
    for (auto& kind : cfg.boot_order) {
        if (kind == "cdrom") {
            for (auto& l : cfg.scsi)
                if (l.cdrom) give(l.bootindex);
        } else if (kind == "disk") {
            for (auto& d : cfg.disks) give(d.bootindex);
            for (auto& l : cfg.scsi)
                if (!l.cdrom) give(l.bootindex);
        } else if (kind == "net") {
            for (auto& n : cfg.nets) give(n.bootindex);
        }
    }
}

void fw_cfg_items(const std::vector<FwCfgItemConfig>& items, const std::string& what) {
    if (items.size() > kMaxFwCfgItems) fail("{}: {} items; at most {}", what, items.size(), kMaxFwCfgItems);
    std::set<std::string> names;
    for (auto& i : items) {
        if (i.name.rfind("opt/", 0) != 0 || i.name.size() <= 4)
            fail("{}: name \"{}\" must start with opt/ (other names are the VMM's own)", what, i.name);
        if (i.name.size() > 55) fail("{}: name \"{}\" is longer than 55 bytes", what, i.name);
        for (char c : i.name)
            if (c < 0x21 || c > 0x7e) fail("{}: name \"{}\" must be printable ASCII without spaces", what, i.name);
        if (!names.insert(i.name).second) fail("{}: name \"{}\" is given twice", what, i.name);
        if (!i.file.empty()) path(i.file, what + " file");
    }
}

std::string cloud_init_label(const std::string& key, const std::string& path, const std::string& where) {
    if (!where.empty()) return fmt::format("{}: cloud_init.{} {}", where, key, path);
    std::string opt = key;
    std::replace(opt.begin(), opt.end(), '_', '-');
    return fmt::format("--cloud-init {}={}", opt, path);
}

void cloud_init_files(const CloudInitConfig& ci, const std::string& where) {
    if (ci.user_data.empty())
        fail("{}: user-data is required", where.empty() ? "--cloud-init" : where + ": cloud_init");
    for (auto [key, p] : {std::pair{"user_data", &ci.user_data}, {"meta_data", &ci.meta_data},
                          {"network_config", &ci.network_config}}) {
        if (p->empty()) continue;
        const std::string what = cloud_init_label(key, *p, where);
        // Opened, not stat()ed, so that "readable" is what the VMM will find
        // (O_NONBLOCK: a FIFO fails the regular-file check instead of blocking).
        Fd fd(::open(p->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
        if (!fd) throw_errno(what);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) throw_errno(what);
        if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", what);
        if (static_cast<uint64_t>(st.st_size) > kMaxCloudInitFile)
            fail("{}: {} is too large for a cloud-init file (at most {})", what, exact_size(static_cast<uint64_t>(st.st_size)),
                 exact_size(kMaxCloudInitFile));
    }
}

bool rtc_base(const std::string& s, const std::string& what) {
    if (s == "utc") return false;
    if (s == "localtime") return true;
    fail("{}: \"{}\" is not utc or localtime", what, s);
}

const std::string& uuid(const std::string& s, const std::string& what) {
    if (!s.empty() && !arch::x86::parse_uuid(s))
        fail("{}: \"{}\" is not a UUID (expected 8-4-4-4-12 hex digits, e.g. "
             "\"4f1c2d3e-0a1b-4c5d-8e9f-0123456789ab\")",
             what, s);
    return s;
}

const std::string& smbios_string(const std::string& s, const std::string& what) {
    switch (arch::x86::smbios_string_error(s)) {
        case arch::x86::SmbiosStringError::None: break;
        case arch::x86::SmbiosStringError::TooLong:
            fail("{}: \"{}\" is longer than {} characters", what, s, arch::x86::kSmbiosMaxString);
        case arch::x86::SmbiosStringError::NotPrintable: fail("{}: \"{}\" must be printable ASCII", what, s);
    }
    return s;
}

void smbios_list(const std::vector<SmbiosTypeConfig>& list, const std::string& what) {
    std::set<int> seen;
    for (auto& t : list) {
        if (t.type != 0 && t.type != 1 && t.type != 3)
            fail("{}: type={} is not supported (0 BIOS, 1 system, 3 chassis)", what, t.type);
        if (!seen.insert(t.type).second) fail("{}: type={} is given twice", what, t.type);
        // key, value, the types that have it
        const std::tuple<const char*, const std::string&, std::set<int>> keys[] = {
            {"vendor", t.vendor, {0}},      {"version", t.version, {0, 1, 3}},
            {"date", t.date, {0}},          {"manufacturer", t.manufacturer, {1, 3}},
            {"product", t.product, {1}},    {"serial", t.serial, {1, 3}},
            {"sku", t.sku, {1, 3}},         {"family", t.family, {1}},
            {"asset", t.asset, {3}}};
        for (auto& [key, value, types] : keys)
            if (!value.empty() && !types.count(t.type))
                fail("{}: type={} has no {}= (type 0: vendor, version, date; type 1: manufacturer, product, "
                     "version, serial, sku, family; type 3: manufacturer, version, serial, asset, sku)",
                     what, t.type, key);
    }
}

const std::string& firmware(const std::string& spec, const std::string& what) {
    if (spec == "bios" || spec == "uefi") return spec;
    return path(spec, what);
}

void boot_source(const VmConfig& cfg) {
    if (cfg.firmware.empty()) {
        if (!cfg.firmware_vars.empty()) fail("boot.firmware_vars is set but no --firmware is given");
        if (cfg.kernel.empty())
            fail("--kernel: a path is required (on the command line or as boot.kernel in --config), "
                 "unless the guest boots through --firmware");
        return;
    }
    if (!cfg.firmware_vars.empty() && cfg.firmware == "bios")
        fail("--firmware bios,vars=...: only UEFI firmware keeps variables (use uefi or an OVMF image)");
    if (cfg.kernel.empty() && !cfg.initramfs.empty())
        fail("--initramfs with --firmware needs --kernel too (the firmware then boots that kernel)");
}

const std::string& disk_serial(const std::string& serial, const std::string& what) {
    // Printable ASCII keeps /sys/block/vdX/serial and udev's by-id links sane.
    if (serial.size() > kMaxDiskSerial)
        fail("{}: \"{}\" is longer than {} characters", what, serial, kMaxDiskSerial);
    for (char c : serial)
        if (c < 0x21 || c > 0x7e) fail("{}: \"{}\" must be printable ASCII without spaces", what, serial);
    return serial;
}

const std::string& disk_format(const std::string& format, const std::string& what) {
    if (format != "auto" && format != "raw" && format != "qcow2")
        fail("{}: \"{}\" is not an image format (auto, raw or qcow2)", what, format);
    return format;
}

uint16_t disk_num_queues(uint64_t n, const std::string& what) {
    return static_cast<uint16_t>(in_range(n, what, 1, kMaxDiskQueues));
}

int disk_slot(uint64_t n, const std::string& what) {
    return static_cast<int>(in_range(n, what, kMinSlot, kMaxSlot));
}

void disk_list(const std::vector<DiskConfig>& disks, const std::string& what) {
    if (disks.size() > kMaxDisks)
        fail("{}: {} disks given; at most {} fit on the PCI bus", what, disks.size(), kMaxDisks);
    for (size_t i = 0; i < disks.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (disks[i].slot >= 0 && disks[i].slot == disks[j].slot)
                fail("{}: PCI slot {} is given twice (disks {} and {})", what, disks[i].slot, j, i);
}

std::vector<uint32_t> scsi_luns(const std::vector<ScsiLunConfig>& luns, const std::string& what) {
    if (luns.size() > kMaxScsiLuns) fail("{}: {} LUNs given; at most {} are supported", what, luns.size(), kMaxScsiLuns);
    std::vector<bool> taken(kMaxScsiLun + 1, false);
    for (auto& l : luns) {
        if (l.lun < 0) continue;
        const char* kind = l.cdrom ? "--cdrom" : "--scsi-disk";
        if (static_cast<uint64_t>(l.lun) > kMaxScsiLun)
            fail("{}: {} {}: lun {} is out of range (0..{})", what, kind, l.path, l.lun, kMaxScsiLun);
        if (taken[static_cast<size_t>(l.lun)]) fail("{}: {} {}: lun {} is given twice", what, kind, l.path, l.lun);
        taken[static_cast<size_t>(l.lun)] = true;
    }
    std::vector<uint32_t> out;
    uint32_t next = 0;
    for (auto& l : luns) {
        if (l.lun >= 0) {
            out.push_back(static_cast<uint32_t>(l.lun));
            continue;
        }
        while (taken[next]) ++next;  // cannot run past the end: at most kMaxScsiLuns < kMaxScsiLun entries
        taken[next] = true;
        out.push_back(next);
    }
    return out;
}

const char* console_mode_name(SerialMode mode) {
    switch (mode) {
        case SerialMode::Tty: return "tty";
        case SerialMode::File: return "file";
        case SerialMode::Socket: return "socket";
        case SerialMode::Off: return "off";
    }
    return "off";
}

SerialMode console_mode(const std::string& name, const std::string& what) {
    for (SerialMode m : {SerialMode::Tty, SerialMode::File, SerialMode::Socket, SerialMode::Off})
        if (name == console_mode_name(m)) return m;
    fail("{}: \"{}\" is not one of tty, file, socket, off", what, name);
}

void console_path(SerialMode mode, const std::string& p, const std::string& what) {
    bool needs = mode == SerialMode::File || mode == SerialMode::Socket;
    if (needs && p.empty()) fail("{}: mode \"{}\" needs a path", what, console_mode_name(mode));
    if (needs) path(p, what);
    if (!needs && !p.empty())
        fail("{}: a path is only used with mode \"file\" or \"socket\", not \"{}\"", what, console_mode_name(mode));
}

const std::string& serial_port_name(const std::string& name, const std::string& what) {
    if (name.empty()) fail("{}: the port name is empty", what);
    if (name.size() > kMaxSerialPortName)
        fail("{}: port name \"{}\" is longer than {} characters", what, name, kMaxSerialPortName);
    if (name == "." || name == "..") fail("{}: \"{}\" is not a usable port name", what, name);
    for (char c : name)
        if (c < 0x21 || c > 0x7e || c == '/' || c == ',')
            fail("{}: port name \"{}\" must be printable ASCII without spaces, '/' or ','", what, name);
    return name;
}

void serial_port_list(const std::vector<SerialPortConfig>& ports, const std::string& what) {
    if (ports.size() > kMaxSerialPorts)
        fail("{}: {} serial ports given; at most {}", what, ports.size(), kMaxSerialPorts);
    for (size_t i = 0; i < ports.size(); ++i) {
        serial_port_name(ports[i].name, what);
        if (ports[i].mode != SerialMode::Socket && ports[i].mode != SerialMode::File)
            fail("{}: port \"{}\" needs socket=PATH or file=PATH", what, ports[i].name);
        path(ports[i].path, what + " " + ports[i].name);
        for (size_t j = 0; j < i; ++j)
            if (ports[i].name == ports[j].name) fail("{}: port name \"{}\" is given twice", what, ports[i].name);
    }
}

void serial_port_paths(const VmConfig& cfg, const std::string& what) {
    std::vector<std::pair<std::string, std::string>> paths{{"the serial console", cfg.serial_path},
                                                           {"the virtio console", cfg.console_path},
                                                           {"the API socket", cfg.api_socket},
                                                           {"the log file", cfg.log_file}};
    for (auto& p : cfg.serial_ports) paths.emplace_back("serial port " + p.name, p.path);
    distinct_paths(paths, what);
}

void distinct_paths(const std::vector<std::pair<std::string, std::string>>& paths, const std::string& what) {
    // Compared as the file they name: "w/c.txt" and "w/../w/c.txt" (or a
    // symlink to it) are one file even before it exists.
    auto canonical = [](const std::string& p) {
        std::error_code ec;
        auto c = std::filesystem::weakly_canonical(p, ec);
        return ec ? p : c.string();
    };
    std::vector<std::string> canon;
    for (const auto& p : paths) canon.push_back(p.second.empty() ? "" : canonical(p.second));
    for (size_t i = 0; i < paths.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (!canon[i].empty() && canon[i] == canon[j])
                fail("{}{}{} and {} are the same path \"{}\"", what, what.empty() ? "" : ": ", paths[j].first,
                     paths[i].first, paths[i].second);
}

}  // namespace vmm::check
