#include "vmm/cli.h"

#include <CLI/CLI.hpp>

#include <cctype>
#include <limits>

#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm {

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

namespace {

constexpr uint64_t kMinMemory = 32ull << 20;
constexpr uint64_t kMaxMemory = 1ull << 40;  // 1 TiB: far beyond these hosts, below every mmap limit
constexpr uint32_t kMaxCpus = 254;           // one xAPIC ID for the IOAPIC, 0xff is broadcast

void parse_serial(const std::string& v, VmConfig& cfg) {
    if (v == "tty") {
        cfg.serial = SerialMode::Tty;
    } else if (v == "off") {
        cfg.serial = SerialMode::Off;
    } else if (v.rfind("file=", 0) == 0 && v.size() > 5) {
        cfg.serial = SerialMode::File;
        cfg.serial_path = v.substr(5);
    } else {
        fail("--serial: \"{}\" is not one of tty, file=PATH, off", v);
    }
}

bool parse_on_off(const std::string& v, const std::string& what) {
    if (v == "on" || v == "true" || v == "1") return true;
    if (v == "off" || v == "false" || v == "0") return false;
    fail("{}: \"{}\" is not on or off", what, v);
}

uint64_t parse_uint(const std::string& v, const std::string& what, uint64_t lo, uint64_t hi) {
    uint64_t n = 0;
    if (v.empty() || v.size() > 10) fail("{}: \"{}\" is not a number in {}..{}", what, v, lo, hi);
    for (char c : v) {
        if (!std::isdigit(static_cast<unsigned char>(c))) fail("{}: \"{}\" is not a number in {}..{}", what, v, lo, hi);
        n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n < lo || n > hi) fail("{}: {} is out of range ({}..{})", what, n, lo, hi);
    return n;
}

// "key=value,key=value"; a value cannot contain a comma.
std::vector<std::pair<std::string, std::string>> split_kv(const std::string& spec, const std::string& what) {
    std::vector<std::pair<std::string, std::string>> out;
    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        size_t eq = item.find('=');
        if (item.empty() || eq == std::string::npos || eq == 0)
            fail("{}: \"{}\" is not key=value (in \"{}\")", what, item, spec);
        out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

DiskConfig parse_disk(const std::string& spec) {
    DiskConfig d;
    for (auto& [k, v] : split_kv(spec, "--disk")) {
        std::string what = "--disk " + k;
        if (k == "path") {
            if (v.empty()) fail("--disk path: empty path");
            d.path = v;
        } else if (k == "readonly") {
            d.readonly = parse_on_off(v, what);
        } else if (k == "serial") {
            // GET_ID returns at most 20 bytes; printable ASCII keeps
            // /sys/block/vdX/serial and udev's by-id links sane.
            if (v.size() > 20) fail("--disk serial: \"{}\" is longer than 20 characters", v);
            for (char c : v)
                if (c < 0x21 || c > 0x7e) fail("--disk serial: \"{}\" must be printable ASCII without spaces", v);
            d.serial = v;
        } else if (k == "num_queues") {
            d.num_queues = static_cast<uint16_t>(parse_uint(v, what, 1, 64));
        } else if (k == "direct") {
            d.direct = parse_on_off(v, what);
        } else if (k == "slot") {
            d.slot = static_cast<int>(parse_uint(v, what, 1, 31));
        } else {
            fail("--disk: unknown key \"{}\" (expected path, readonly, serial, num_queues, direct, slot)", k);
        }
    }
    if (d.path.empty()) fail("--disk \"{}\": path=FILE is required", spec);
    return d;
}

void parse_console(const std::string& v, VmConfig& cfg) {
    if (v == "tty") {
        cfg.console = SerialMode::Tty;
    } else if (v == "off") {
        cfg.console = SerialMode::Off;
    } else if (v.rfind("file=", 0) == 0 && v.size() > 5) {
        cfg.console = SerialMode::File;
        cfg.console_path = v.substr(5);
    } else {
        fail("--console: \"{}\" is not one of tty, file=PATH, off", v);
    }
}

}  // namespace

std::variant<VmConfig, CliHelp> parse_cli(const std::vector<std::string>& args) {
    VmConfig cfg;
    CLI::App app{"vmm: a lightweight KVM virtual machine monitor", "vmm"};
    app.get_formatter()->column_width(34);
    // A repeated option takes its last value, so scripts can append overrides.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    std::string memory, serial = "tty";
    app.add_option("--kernel", cfg.kernel,
                   "Guest kernel: a bzImage (64-bit boot protocol >= 2.12) or a vmlinux ELF with a PVH entry note")
        ->required();
    app.add_option("--initramfs", cfg.initramfs, "Initial ramdisk loaded for the kernel");
    app.add_option("--cmdline", cfg.cmdline, "Kernel command line")->capture_default_str();
    app.add_option("--cpus", cfg.cpus, fmt::format("Number of vCPUs (1-{}, and no more than KVM allows)", kMaxCpus))
        ->capture_default_str();
    app.add_option("--memory", memory, "Guest RAM, e.g. 512M, 2G (a bare number is MiB)")->default_str("512M");
    app.add_option("--serial", serial,
                   "COM1 (ttyS0) output: tty (this terminal, with input), file=PATH, or off")
        ->default_str("tty");
    std::string console = "off";
    std::vector<std::string> disks;
    app.add_option("--console", console,
                   "virtio-console (the guest's hvc0; use console=hvc0): tty (this terminal, with input), "
                   "file=PATH, or off")
        ->default_str("off");
    app.add_option("--disk", disks,
                   "virtio-blk disk: path=FILE[,readonly=on][,serial=ID][,num_queues=N][,direct=on][,slot=N] "
                   "(repeatable; /dev/vda, vdb, ... in order)")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->allow_extra_args(false);
    app.add_flag("--boot-report", cfg.boot_report,
                 "Print boot timing (first KVM_RUN, boot-progress port writes) to stderr");
    app.add_flag("--reboot", cfg.allow_reboot,
                 "Restart the VM when the guest reboots (default: exit with status 2)");
    app.add_option("--log-level", cfg.log_level, "VMM log level: error, warn, info, debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}))
        ->capture_default_str();
    app.footer(
        "Exit status: 0 guest powered off, 1 VMM error or bad input, 2 guest rebooted,\n"
        "4 triple fault or KVM emulation failure, 128+N after signal N.\n"
        "On the terminal, Ctrl-A x quits the VMM and Ctrl-A Ctrl-A sends Ctrl-A.");

    std::vector<std::string> rev(args.rbegin(), args.rend());  // CLI11 consumes a reversed vector
    try {
        app.parse(rev);
    } catch (const CLI::CallForHelp&) {
        return CliHelp{app.help()};
    } catch (const CLI::ParseError& e) {
        fail("{} (see --help)", e.what());
    }
    if (!memory.empty()) cfg.memory = parse_size(memory, "--memory");
    parse_serial(serial, cfg);
    parse_console(console, cfg);
    for (auto& d : disks) cfg.disks.push_back(parse_disk(d));
    if (cfg.disks.size() > 24) fail("--disk: {} disks given; at most 24 fit on the PCI bus", cfg.disks.size());
    for (size_t i = 0; i < cfg.disks.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            if (cfg.disks[i].slot >= 0 && cfg.disks[i].slot == cfg.disks[j].slot)
                fail("--disk: PCI slot {} is given twice", cfg.disks[i].slot);
    if (cfg.serial == SerialMode::Tty && cfg.console == SerialMode::Tty)
        log::debug("--serial tty and --console tty: terminal input goes to the virtio console");
    if (cfg.cpus < 1 || cfg.cpus > kMaxCpus) fail("--cpus: {} is out of range (1-{})", cfg.cpus, kMaxCpus);
    if (cfg.memory < kMinMemory) fail("--memory: {} MiB is too little (at least {} MiB)", cfg.memory >> 20, kMinMemory >> 20);
    if (cfg.memory > kMaxMemory) fail("--memory: {} GiB is more than the supported {} GiB", cfg.memory >> 30, kMaxMemory >> 30);
    if (cfg.memory % (1ull << 20)) fail("--memory: must be a whole number of MiB");
    if (cfg.kernel.empty()) fail("--kernel: a path is required");
    return cfg;
}

}  // namespace vmm
