#include "vmm/cli.h"

#include <CLI/CLI.hpp>

#include <cctype>
#include <limits>

#include "vmm/core/error.h"

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
    if (cfg.cpus < 1 || cfg.cpus > kMaxCpus) fail("--cpus: {} is out of range (1-{})", cfg.cpus, kMaxCpus);
    if (cfg.memory < kMinMemory) fail("--memory: {} MiB is too little (at least {} MiB)", cfg.memory >> 20, kMinMemory >> 20);
    if (cfg.memory > kMaxMemory) fail("--memory: {} GiB is more than the supported {} GiB", cfg.memory >> 30, kMaxMemory >> 30);
    if (cfg.memory % (1ull << 20)) fail("--memory: must be a whole number of MiB");
    if (cfg.kernel.empty()) fail("--kernel: a path is required");
    return cfg;
}

}  // namespace vmm
