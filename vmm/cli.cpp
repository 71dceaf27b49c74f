// The command line: CLI11 collects the text of each option, then the given
// options are validated (with the shared rules of config_check.h) and
// overlaid on the --config file's configuration, or on the defaults.
#include "vmm/cli.h"

#include <CLI/CLI.hpp>

#include "vmm/config_json.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"

namespace vmm {

namespace {

// --serial / --console: tty, off, file=PATH or socket=PATH.
void parse_console_spec(const std::string& v, const std::string& what, SerialMode& mode, std::string& path) {
    size_t eq = v.find('=');
    std::string name = v.substr(0, eq);
    std::string p = eq == std::string::npos ? "" : v.substr(eq + 1);
    bool known = false;
    for (SerialMode m : {SerialMode::Tty, SerialMode::File, SerialMode::Socket, SerialMode::Off})
        if (name == check::console_mode_name(m)) mode = m, known = true;
    if (!known) fail("{}: \"{}\" is not one of tty, file=PATH, socket=PATH, off", what, v);
    if ((mode == SerialMode::File || mode == SerialMode::Socket) && p.empty())
        fail("{}: \"{}\" needs a path: {}=PATH", what, v, name);
    if (eq != std::string::npos && mode != SerialMode::File && mode != SerialMode::Socket)
        fail("{}: \"{}\" takes no path", what, v);
    check::console_path(mode, p, what);
    path = p;
}

bool parse_on_off(const std::string& v, const std::string& what) {
    if (v == "on" || v == "true" || v == "1") return true;
    if (v == "off" || v == "false" || v == "0") return false;
    fail("{}: \"{}\" is not on or off", what, v);
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

// --boot order=KIND[,KIND...]: a list, so not key=value pairs.
std::vector<std::string> parse_boot(const std::string& spec) {
    const std::string key = "order=";
    if (spec.rfind(key, 0) != 0)
        fail("--boot: expected order=KIND[,KIND...] with kinds cdrom, disk, net (got \"{}\")", spec);
    std::vector<std::string> kinds;
    size_t pos = key.size();
    while (true) {
        size_t comma = spec.find(',', pos);
        kinds.push_back(spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return check::boot_order(kinds, "--boot order");
}

// --firmware bios|uefi|PATH[,vars=PATH] | off
void parse_firmware(const std::string& spec, VmConfig& cfg) {
    cfg.firmware_vars.clear();
    if (spec == "off") {
        cfg.firmware.clear();
        return;
    }
    size_t comma = spec.find(',');
    cfg.firmware = check::firmware(spec.substr(0, comma), "--firmware");
    if (comma == std::string::npos) return;
    for (auto& [k, v] : split_kv(spec.substr(comma + 1), "--firmware")) {
        if (k == "vars") cfg.firmware_vars = check::path(v, "--firmware vars");
        else fail("--firmware: unknown key \"{}\" (expected vars)", k);
    }
}

int parse_bootindex(const std::string& v, const std::string& what) {
    return static_cast<int>(check::parse_uint(v, what, 0, check::kMaxBootIndex));
}

DiskConfig parse_disk(const std::string& spec) {
    DiskConfig d;
    for (auto& [k, v] : split_kv(spec, "--disk")) {
        std::string what = "--disk " + k;
        if (k == "path") {
            d.path = check::path(v, what);
        } else if (k == "readonly") {
            d.readonly = parse_on_off(v, what);
        } else if (k == "serial") {
            d.serial = check::disk_serial(v, what);
        } else if (k == "num_queues") {
            d.num_queues = check::disk_num_queues(check::parse_uint(v, what, 1, check::kMaxDiskQueues), what);
        } else if (k == "direct") {
            d.direct = parse_on_off(v, what);
        } else if (k == "packed") {
            d.packed = parse_on_off(v, what);
        } else if (k == "slot") {
            d.slot = v == "auto" ? -1 : check::disk_slot(check::parse_uint(v, what, check::kMinSlot, check::kMaxSlot), what);
        } else if (k == "bootindex") {
            d.bootindex = parse_bootindex(v, what);
        } else {
            fail("--disk: unknown key \"{}\" (expected path, readonly, serial, num_queues, direct, slot, packed, "
                 "bootindex)", k);
        }
    }
    if (d.path.empty()) fail("--disk \"{}\": path=FILE is required", spec);
    return d;
}

// --net tap=NAME[,mac=MAC][,num_queues=N][,packed=off]
NetConfig parse_net(const std::string& spec) {
    NetConfig n;
    for (auto& [k, v] : split_kv(spec, "--net")) {
        std::string what = "--net " + k;
        if (k == "tap") n.tap = check::tap_name(v, what);
        else if (k == "mac") n.mac = check::mac_address(v, what);
        else if (k == "num_queues") n.num_queues = check::net_num_queues(check::parse_uint(v, what, 1, check::kMaxNetQueues), what);
        else if (k == "packed") n.packed = parse_on_off(v, what);
        else if (k == "bootindex") n.bootindex = parse_bootindex(v, what);
        else if (k == "rom") n.rom = v == "auto" ? "" : v == "off" ? v : check::path(v, what);
        else fail("--net: unknown key \"{}\" (expected tap, mac, num_queues, packed, bootindex, rom)", k);
    }
    if (n.tap.empty()) fail("--net \"{}\": tap=NAME is required", spec);
    return n;
}

// --balloon size=SIZE[,deflate_on_oom=on][,free_page_reporting=on][,stats_interval=S]
BalloonConfig parse_balloon(const std::string& spec) {
    BalloonConfig b;
    for (auto& [k, v] : split_kv(spec, "--balloon")) {
        std::string what = "--balloon " + k;
        if (k == "size") {
            b.size = check::parse_size(v, what);
        } else if (k == "deflate_on_oom") {
            b.deflate_on_oom = parse_on_off(v, what);
        } else if (k == "free_page_reporting") {
            b.free_page_reporting = parse_on_off(v, what);
        } else if (k == "stats_interval") {
            b.stats_interval_s =
                static_cast<uint32_t>(check::parse_uint(v, what, 0, check::kMaxBalloonStatsInterval));
        } else {
            fail("--balloon: unknown key \"{}\" (expected size, deflate_on_oom, free_page_reporting, stats_interval)", k);
        }
    }
    return b;
}

// --scsi-disk path=FILE[,lun=N][,readonly=on]; --cdrom FILE or path=FILE[,lun=N].
ScsiLunConfig parse_scsi_lun(const std::string& spec, bool cdrom) {
    const char* opt = cdrom ? "--cdrom" : "--scsi-disk";
    ScsiLunConfig l;
    l.cdrom = cdrom;
    l.readonly = cdrom;
    if (cdrom && spec.rfind("path=", 0) != 0) {
        l.path = check::path(spec, opt);
        return l;
    }
    for (auto& [k, v] : split_kv(spec, opt)) {
        std::string what = std::string(opt) + " " + k;
        if (k == "path") l.path = check::path(v, what);
        else if (k == "lun") l.lun = static_cast<int>(check::parse_uint(v, what, 0, check::kMaxScsiLun));
        else if (k == "readonly" && !cdrom) l.readonly = parse_on_off(v, what);
        else if (k == "bootindex") l.bootindex = parse_bootindex(v, what);
        else fail("{}: unknown key \"{}\" (expected path, lun{}, bootindex)", opt, k, cdrom ? "" : ", readonly");
    }
    if (l.path.empty()) fail("{} \"{}\": path=FILE is required", opt, spec);
    return l;
}

// --fw-cfg name=opt/NAME,file=PATH | name=opt/NAME,string=TEXT
FwCfgItemConfig parse_fw_cfg(const std::string& spec) {
    FwCfgItemConfig f;
    bool have = false;
    for (auto& [k, v] : split_kv(spec, "--fw-cfg")) {
        if (k == "name") {
            f.name = v;
        } else if (k == "file" || k == "string") {
            if (have) fail("--fw-cfg \"{}\": give one of file=PATH and string=TEXT", spec);
            have = true;
            (k == "file" ? f.file : f.text) = v;
        } else {
            fail("--fw-cfg: unknown key \"{}\" (expected name, file, string)", k);
        }
    }
    if (f.name.empty() || !have) fail("--fw-cfg \"{}\": name=opt/NAME and file=PATH or string=TEXT are required", spec);
    return f;
}

// --serial-port name=NAME,socket=PATH | name=NAME,file=PATH
SerialPortConfig parse_serial_port(const std::string& spec) {
    SerialPortConfig p;
    bool have_path = false;
    for (auto& [k, v] : split_kv(spec, "--serial-port")) {
        std::string what = "--serial-port " + k;
        if (k == "name") {
            p.name = check::serial_port_name(v, what);
        } else if (k == "socket" || k == "file") {
            if (have_path) fail("--serial-port \"{}\": give one of socket=PATH and file=PATH", spec);
            have_path = true;
            p.mode = k == "socket" ? SerialMode::Socket : SerialMode::File;
            p.path = check::path(v, what);
        } else {
            fail("--serial-port: unknown key \"{}\" (expected name, socket, file)", k);
        }
    }
    if (p.name.empty()) fail("--serial-port \"{}\": name=NAME is required", spec);
    if (!have_path) fail("--serial-port \"{}\": socket=PATH or file=PATH is required", spec);
    return p;
}

}  // namespace

std::variant<VmConfig, CliHelp, PrintConfig> parse_cli(const std::vector<std::string>& args) {
    const VmConfig def;  // the defaults shown in --help
    CLI::App app{"vmm: a lightweight KVM virtual machine monitor", "vmm"};
    app.get_formatter()->column_width(34);
    // A repeated option takes its last value, so scripts can append overrides.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

    // Options are collected as given and only applied below when count() > 0,
    // so that an option not given leaves the --config file's value alone.
    std::string config_path, firmware, boot, kernel, initramfs, cmdline, cpus, memory, serial, console, log_level, log_file, api_socket,
        timeout, balloon;
    std::vector<std::string> disks, nets, scsi_disks, cdroms, serial_ports, fw_cfg;
    bool print_config = false, boot_report = false, reboot = false, hugepages = false, no_pvpanic = false,
         rng = false;

    auto* o_config = app.add_option("--config", config_path,
                                    "JSON VM configuration (README: Configuration file); options given on the "
                                    "command line override it")
                       ->type_name("FILE");
    app.add_flag("--print-config", print_config,
                 "Print the effective configuration as JSON (a valid --config file) and exit without starting a VM");
    auto* o_firmware = app.add_option("--firmware", firmware,
                                      "Boot through firmware: bios (Debian's SeaBIOS), uefi (Debian's OVMF) or the path "
                                      "of a firmware image; vars=PATH keeps UEFI variables there; it boots the disks and "
                                      "CD-ROMs, or --kernel")
                           ->type_name("bios|uefi|PATH[,vars=PATH]");
    auto* o_boot = app.add_option("--boot", boot,
                                  "Firmware boot order by device kind, for the devices without bootindex= "
                                  "(those with one go first): e.g. order=cdrom,disk,net")
                       ->type_name("order=KIND[,KIND...]");
    auto* o_kernel = app.add_option("--kernel", kernel,
                                    "Guest kernel: a bzImage (64-bit boot protocol >= 2.12) or a vmlinux ELF with a "
                                    "PVH entry note (required without --firmware, here or as boot.kernel in --config)")
                       ->type_name("PATH");
    auto* o_initramfs = app.add_option("--initramfs", initramfs, "Initial ramdisk loaded for the kernel")->type_name("PATH");
    auto* o_cmdline = app.add_option("--cmdline", cmdline, "Kernel command line")->type_name("STR")->default_str(def.cmdline);
    auto* o_cpus = app.add_option("--cpus", cpus,
                                  fmt::format("Number of vCPUs ({}-{}, and no more than KVM allows)", check::kMinCpus,
                                              check::kMaxCpus))
                       ->type_name("N")
                       ->default_str(std::to_string(def.cpus));
    auto* o_memory = app.add_option("--memory", memory, "Guest RAM, e.g. 512M, 2G (a bare number is MiB)")
                         ->type_name("SIZE")
                         ->default_str(fmt::format("{}M", def.memory >> 20));
    auto* o_hugepages = app.add_flag("--hugepages", hugepages, "Back guest RAM with huge pages (hugetlbfs, MAP_HUGETLB)");
    auto* o_serial = app.add_option("--serial", serial,
                                    "COM1 (ttyS0): tty (this terminal, with input), file=PATH, socket=PATH "
                                    "(a UNIX socket the VMM listens on), or off")
                         ->type_name("MODE")
                         ->default_str(check::console_mode_name(def.serial));
    auto* o_console = app.add_option("--console", console,
                                     "virtio-console (the guest's hvc0; use console=hvc0): tty (this terminal, with "
                                     "input), file=PATH, socket=PATH, or off")
                          ->type_name("MODE")
                          ->default_str(check::console_mode_name(def.console));
    auto* o_disk = app.add_option("--disk", disks,
                                  "virtio-blk disk: path=FILE[,readonly=on][,serial=ID][,num_queues=N][,direct=on]"
                                  "[,slot=N][,packed=off][,bootindex=N] (repeatable; /dev/vda, vdb, ... in order; replaces the --config disks)")
                       ->type_name("SPEC")
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                       ->allow_extra_args(false);
    auto* o_net = app.add_option("--net", nets,
                                 "virtio-net interface on a host tap: tap=NAME[,mac=MAC][,num_queues=N][,packed=off][,bootindex=N]"
                              "[,rom=auto|off|PATH] (repeatable; "
                                 "the tap is created if missing, which needs CAP_NET_ADMIN; replaces the --config list)")
                      ->type_name("SPEC")
                      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                      ->allow_extra_args(false);
    auto* o_scsi_disk = app.add_option("--scsi-disk", scsi_disks,
                                       "virtio-scsi disk: path=FILE[,lun=N][,readonly=on][,bootindex=N] (repeatable; one controller, "
                                       "target 0; LUNs in order when not given; replaces the --config scsi.disks)")
                            ->type_name("SPEC")
                            ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                            ->allow_extra_args(false);
    auto* o_cdrom = app.add_option("--cdrom", cdroms,
                                   "virtio-scsi CD-ROM (read-only, 2048-byte blocks): FILE or path=FILE[,lun=N][,bootindex=N] "
                                   "(repeatable; replaces the --config scsi.cdroms)")
                        ->type_name("FILE")
                        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                        ->allow_extra_args(false);
    auto* o_serial_port = app.add_option("--serial-port", serial_ports,
                                         "Named virtio-serial port beside hvc0: name=NAME,socket=PATH (a UNIX socket "
                                         "the VMM listens on) or name=NAME,file=PATH (output only); repeatable; the "
                                         "guest sees /dev/virtio-ports/NAME (replaces the --config serial_ports)")
                              ->type_name("SPEC")
                              ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                              ->allow_extra_args(false);
    auto* o_fw_cfg = app.add_option("--fw-cfg", fw_cfg,
                                    "Extra fw_cfg file for the firmware: name=opt/NAME,file=PATH or "
                                    "name=opt/NAME,string=TEXT (repeatable; replaces the --config fw_cfg list)")
                         ->type_name("SPEC")
                         ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                         ->allow_extra_args(false);
    auto* o_api = app.add_option("--api-socket", api_socket, "Serve the control API on this UNIX socket")
                      ->type_name("PATH");
    auto* o_timeout = app.add_option("--timeout", timeout, "Stop the VM after SECONDS (exit status 5); 0: never")
                          ->type_name("SECONDS")
                          ->default_str(std::to_string(def.timeout_s));
    auto* o_boot_report = app.add_flag("--boot-report", boot_report,
                                       "Print boot timing (first KVM_RUN, boot-progress port writes) to stderr");
    auto* o_reboot = app.add_flag("--reboot", reboot,
                                  "Restart the VM when the guest reboots (default: exit with status 2)");
    auto* o_no_pvpanic = app.add_flag("--no-pvpanic", no_pvpanic,
                                      "Leave out the pvpanic device (a guest panic then does not end the VMM with status 3)");
    auto* o_rng = app.add_flag("--rng", rng, "Add a virtio-rng device (the guest's /dev/hwrng, fed by getrandom())");
    auto* o_balloon = app.add_option("--balloon", balloon,
                                     "virtio-balloon: size=SIZE[,deflate_on_oom=on][,free_page_reporting=on]"
                                     "[,stats_interval=SECONDS] (initial balloon size; change it at run time "
                                     "with the API's balloon command; off removes a --config balloon)")
                          ->type_name("SPEC");
    auto* o_log_level = app.add_option("--log-level", log_level, "VMM log level: error, warn, info, debug")
                            ->type_name("LEVEL")
                            ->default_str(def.log_level);
    auto* o_log_file = app.add_option("--log-file", log_file, "Write the VMM's own messages to PATH (default: stderr)")
                           ->type_name("PATH");
    app.footer(
        "Flags take =false to undo a --config setting (e.g. --reboot=false).\n"
        "Exit status: 0 guest powered off, 1 VMM error or bad input, 2 guest rebooted,\n"
        "3 guest panic (pvpanic), 4 triple fault or KVM emulation failure, 5 --timeout ran out,\n"
        "6 hard stop through the control API, 7 the firmware found no bootable device,\n"
        "128+N after signal N.\n"
        "On the terminal, Ctrl-A x quits the VMM and Ctrl-A Ctrl-A sends Ctrl-A.");

    std::vector<std::string> rev(args.rbegin(), args.rend());  // CLI11 consumes a reversed vector
    try {
        app.parse(rev);
    } catch (const CLI::CallForHelp&) {
        return CliHelp{app.help()};
    } catch (const CLI::ParseError& e) {
        fail("{} (see --help)", e.what());
    }

    VmConfig cfg;
    if (o_config->count()) cfg = config_from_file(check::path(config_path, "--config"));
    auto given = [](const CLI::Option* o) { return o->count() > 0; };
    if (given(o_firmware)) parse_firmware(firmware, cfg);
    if (given(o_boot)) cfg.boot_order = parse_boot(boot);
    if (given(o_kernel)) cfg.kernel = check::path(kernel, "--kernel");
    if (given(o_initramfs)) cfg.initramfs = check::path(initramfs, "--initramfs");
    if (given(o_cmdline)) cfg.cmdline = cmdline;
    if (given(o_cpus)) cfg.cpus = check::cpus(check::parse_uint(cpus, "--cpus", check::kMinCpus, check::kMaxCpus), "--cpus");
    if (given(o_memory)) cfg.memory = check::memory(check::parse_size(memory, "--memory"), "--memory");
    if (given(o_hugepages)) cfg.hugepages = hugepages;
    if (given(o_serial)) parse_console_spec(serial, "--serial", cfg.serial, cfg.serial_path);
    if (given(o_console)) parse_console_spec(console, "--console", cfg.console, cfg.console_path);
    if (given(o_disk)) {
        cfg.disks.clear();
        for (auto& d : disks) cfg.disks.push_back(parse_disk(d));
        check::disk_list(cfg.disks, "--disk");
    }
    if (given(o_net)) {
        cfg.nets.clear();
        for (auto& n : nets) cfg.nets.push_back(parse_net(n));
        check::net_list(cfg.nets, "--net");
    }
    if (given(o_scsi_disk) || given(o_cdrom)) {
        // Disks first, then CD-ROMs: the order in which LUNs are assigned.
        std::vector<ScsiLunConfig> luns;
        for (auto& l : cfg.scsi)
            if (!l.cdrom && !given(o_scsi_disk)) luns.push_back(l);
        for (auto& d : scsi_disks) luns.push_back(parse_scsi_lun(d, false));
        for (auto& l : cfg.scsi)
            if (l.cdrom && !given(o_cdrom)) luns.push_back(l);
        for (auto& c : cdroms) luns.push_back(parse_scsi_lun(c, true));
        check::scsi_luns(luns, "--scsi-disk/--cdrom");
        cfg.scsi = std::move(luns);
    }
    if (given(o_serial_port)) {
        cfg.serial_ports.clear();
        for (auto& p : serial_ports) cfg.serial_ports.push_back(parse_serial_port(p));
        check::serial_port_list(cfg.serial_ports, "--serial-port");
    }
    if (given(o_fw_cfg)) {
        cfg.fw_cfg.clear();
        for (auto& f : fw_cfg) cfg.fw_cfg.push_back(parse_fw_cfg(f));
        check::fw_cfg_items(cfg.fw_cfg, "--fw-cfg");
    }
    if (given(o_api)) cfg.api_socket = check::path(api_socket, "--api-socket");
    if (given(o_timeout))
        cfg.timeout_s = check::timeout(check::parse_uint(timeout, "--timeout", 0, check::kMaxTimeout), "--timeout");
    if (given(o_boot_report)) cfg.boot_report = boot_report;
    if (given(o_reboot)) cfg.allow_reboot = reboot;
    if (given(o_no_pvpanic)) cfg.pvpanic = !no_pvpanic;
    if (given(o_rng)) cfg.rng = rng;
    if (given(o_balloon)) cfg.balloon = balloon == "off" ? std::nullopt : std::optional(parse_balloon(balloon));
    if (given(o_log_level)) cfg.log_level = check::log_level(log_level, "--log-level");
    if (given(o_log_file)) cfg.log_file = check::path(log_file, "--log-file");

    // Checks across options, after the merge (each source alone passed them).
    check::distinct_paths({{"--serial", cfg.serial_path},
                           {"--console", cfg.console_path},
                           {"--api-socket", cfg.api_socket},
                           {"--log-file", cfg.log_file}},
                          "");
    check::serial_port_paths(cfg, "");
    if (cfg.serial == SerialMode::Tty && cfg.console == SerialMode::Tty)
        log::debug("--serial tty and --console tty: terminal input goes to the virtio console");
    if (cfg.balloon)
        check::balloon_size(cfg.balloon->size, cfg.memory,
                            given(o_balloon) ? "--balloon size" : config_path + ": balloon.size");
    check::boot_source(cfg);
    check::boot_indexes(cfg, "");
    check::apply_boot_order(cfg);
    if (print_config) return PrintConfig{config_to_text(cfg)};
    return cfg;
}

}  // namespace vmm
