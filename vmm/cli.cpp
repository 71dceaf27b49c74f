// The command line: CLI11 collects the text of each option of the option
// table (vmm/options.*), then the given options are validated (with the
// shared rules of config_check.h) and overlaid on the --config file's
// configuration, or on the defaults.
#include "vmm/cli.h"

#include <map>

#include <CLI/CLI.hpp>

#include "vmm/config_json.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/options.h"

namespace vmm {

namespace {

// The offset of the first byte that breaks UTF-8 in `s`, or npos. The
// configuration is JSON (--print-config, the API's info), which holds
// only UTF-8; a command line byte sequence that is not fails here, with
// the option's name, rather than later as a raw library error.
size_t invalid_utf8_at(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        if (n == 0 || i + n > s.size()) return i;
        uint32_t cp = n == 1 ? c : c & (0x7f >> n);
        for (size_t k = 1; k < n; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if ((b >> 6) != 0x2) return i;
            cp = (cp << 6) | (b & 0x3f);
        }
        // Overlong forms, UTF-16 surrogates and values past U+10FFFF.
        static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
        i += n;
    }
    return std::string_view::npos;
}

}  // namespace

std::variant<VmConfig, CliHelp, PrintConfig> parse_cli(const std::vector<std::string>& args) {
    CLI::App app{"vmm: a lightweight KVM virtual machine monitor", "vmm"};
    app.get_formatter()->column_width(34);
    // A repeated option takes its last value, so scripts can append overrides.
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

    // Every option of the table (vmm/options.cpp). Values are collected as
    // given and only applied when given, so that an option not given leaves
    // the --config file's value alone.
    std::map<std::string, std::string> text;
    std::map<std::string, std::vector<std::string>> lists;
    std::map<std::string, bool> flags;
    std::map<std::string, CLI::Option*> given_opts;
    for (const auto& o : options::cli_options()) {
        CLI::Option* opt;
        if (o.flag) {
            opt = app.add_flag(o.name, flags[o.name], o.help);
        } else if (o.repeatable) {
            opt = app.add_option(o.name, lists[o.name], o.help)
                      ->type_name(o.metavar)
                      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
                      ->allow_extra_args(false);
        } else {
            opt = app.add_option(o.name, text[o.name], o.help)->type_name(o.metavar);
        }
        if (!o.def.empty()) opt->default_str(o.def);
        given_opts[o.name] = opt;
    }
    bool markdown = false;
    app.add_flag("--print-options-markdown", markdown, "docs/options.md, generated from the option table")->group("");
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

    if (markdown) return CliHelp{options::reference_markdown()};

    // A repeated option takes its last value (scripts append overrides), but
    // not silently; two config files cannot both be meant.
    for (auto& [name, opt] : given_opts) {
        if (lists.count(name) || opt->count() < 2) continue;
        if (name == "--config") fail("--config is given {} times; give one file", opt->count());
        log::warn("{} is given {} times; the last one ({}) counts", name, opt->count(),
                  flags.count(name) ? (flags[name] ? "true" : "false") : text[name]);
    }

    const std::string& config_path = text["--config"];
    auto given = [&](const char* name) { return given_opts.at(name)->count() > 0; };
    VmConfig cfg;
    if (given("--config")) cfg = config_from_file(check::path(config_path, "--config"));
    std::map<std::string, std::vector<std::string>> values;
    for (auto& [name, opt] : given_opts) {
        if (!opt->count() || name == "--config" || name == "--print-config") continue;
        if (flags.count(name)) values[name] = {flags[name] ? "true" : "false"};
        else if (lists.count(name)) values[name] = lists[name];
        else values[name] = {text[name]};
        for (const auto& v : values[name])
            if (size_t at = invalid_utf8_at(v); at != std::string_view::npos)
                fail("{}: the value is not valid UTF-8 (byte {} is {:#04x})", name, at,
                     static_cast<unsigned char>(v[at]));
    }
    options::apply_cli(cfg, values);
    // An input the config file named is reported by its key there.
    if (!given("--kernel") && !cfg.kernel.empty() && given("--config")) cfg.kernel_what = config_path + ": boot.kernel";
    if (!given("--initramfs") && !cfg.initramfs.empty() && given("--config"))
        cfg.initramfs_what = config_path + ": boot.initramfs";

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
                            given("--balloon") ? "--balloon size" : config_path + ": balloon.size");
    check::boot_source(cfg);
    if (cfg.cloud_init) check::cloud_init_files(*cfg.cloud_init, given("--cloud-init") ? "" : config_path);
    check::boot_indexes(cfg, "");
    check::apply_boot_order(cfg);
    if (flags["--print-config"]) return PrintConfig{config_to_text(cfg)};
    return cfg;
}

}  // namespace vmm
