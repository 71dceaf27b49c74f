// vmm: runs a guest on KVM (a kernel booted directly, or firmware). Parses
// the command line, builds the Machine and maps how it ended to the
// documented exit status. `vmm ctl ...` is the control API client instead.
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmm/boot_clock.h"
#include "vmm/cli.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/config_json.h"
#include "vmm/ctl.h"
#include "vmm/machine.h"
#include "vmm/output_file.h"
#include "vmm/sandbox.h"
#include "vmm/seccomp.h"
#include "vmm/terminal.h"

namespace {

vmm::log::Level parse_level(const std::string& s) {
    if (s == "error") return vmm::log::Level::Error;
    if (s == "info") return vmm::log::Level::Info;
    if (s == "debug") return vmm::log::Level::Debug;
    return vmm::log::Level::Warn;
}

int run(const vmm::VmConfig& cfg) {
    vmm::log::set_level(parse_level(cfg.log_level));
    // --log-file: the VMM's own messages go there (appended, with the
    // guest's console kept apart); fatal errors still reach stderr too.
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> log_file(nullptr, std::fclose);
    if (!cfg.log_file.empty()) {
        vmm::Fd fd = vmm::open_output(cfg.log_file, "--log-file", cfg, vmm::OutputMode::Append);
        log_file.reset(::fdopen(fd.get(), "a"));
        if (!log_file) vmm::throw_errno("--log-file " + cfg.log_file);
        fd.release();  // the FILE owns it now
        vmm::log::set_file(log_file.get());
    }
    struct ResetLog {
        ~ResetLog() { vmm::log::set_file(nullptr); }
    } reset_log;
    vmm::check_inputs_distinct(cfg);
    // Signals: the stop signals are blocked in every thread and read
    // through a signalfd by the main loop; SIGPIPE must not kill the VMM when
    // the console reader goes away.
    sigset_t set = vmm::stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    vmm::install_vcpu_kick_handler();

    int in = -1, out = -1;
    vmm::Fd serial_file;
    if (cfg.serial == vmm::SerialMode::Tty) {
        in = STDIN_FILENO;
        out = STDOUT_FILENO;
    } else if (cfg.serial == vmm::SerialMode::File) {
        serial_file = vmm::open_output(cfg.serial_path, "--serial file", cfg, vmm::OutputMode::Truncate);
        out = serial_file.get();
    }
    if (cfg.console == vmm::SerialMode::Tty) in = STDIN_FILENO;  // the virtio console takes the input
    std::optional<vmm::RawTerminal> raw;
    raw.emplace(in);

    for (;;) {
        vmm::ExitReason reason;
        std::string message;
        int status;
        {
            vmm::Machine m(cfg, in, out);
            reason = m.run();
            message = m.exit_control().message();
            status = m.exit_control().status();
        }
        if (reason == vmm::ExitReason::Reboot && cfg.allow_reboot) {
            vmm::log::info("guest rebooted: restarting the VM");
            continue;
        }
        raw.reset();  // messages below go to a sane terminal
        if (log_file) vmm::log::info("VM ended: {} (exit status {})", message.empty() ? "guest powered off" : message, status);
        switch (reason) {
            case vmm::ExitReason::PowerOff:
            case vmm::ExitReason::None:
                vmm::log::info("guest powered off");
                break;
            case vmm::ExitReason::Reboot:
                std::fprintf(stderr, "vmm: guest rebooted (%s); exiting with status %d (use --reboot to restart)\n",
                             message.c_str(), status);
                break;
            case vmm::ExitReason::Signal:
            case vmm::ExitReason::Stopped:
                std::fprintf(stderr, "vmm: %s\n", message.c_str());
                break;
            case vmm::ExitReason::Panic:
            case vmm::ExitReason::Timeout:
            case vmm::ExitReason::NoBootDevice:
                std::fprintf(stderr, "vmm: %s; exiting with status %d\n", message.c_str(), status);
                break;
            case vmm::ExitReason::Crash:
                std::fprintf(stderr, "vmm: error: guest crashed: %s", message.c_str());
                if (message.empty() || message.back() != '\n') std::fputc('\n', stderr);
                break;
            default:
                std::fprintf(stderr, "vmm: error: %s\n", message.c_str());
        }
        return status;
    }
}

}  // namespace

int main(int argc, char** argv) {
    (void)vmm::ms_since_start();
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "ctl") return vmm::ctl_main({args.begin() + 1, args.end()});  // the API client
    try {
        auto parsed = vmm::parse_cli(args);
        if (auto* help = std::get_if<vmm::CliHelp>(&parsed)) {
            std::fputs(help->text.c_str(), stdout);
            return 0;
        }
        if (auto* print = std::get_if<vmm::PrintConfig>(&parsed)) {
            std::fputs(print->json.c_str(), stdout);
            return 0;
        }
        const auto& cfg = std::get<vmm::VmConfig>(parsed);
        // Only the descriptors the options name as /dev/fd/N survive (the
        // config file, read above, may have been one itself).
        std::string named = vmm::config_to_json(cfg).dump();
        for (const auto& a : args) named += "\n" + a;
        vmm::close_inherited_fds(vmm::fds_named_in(named));
        vmm::confine_threads(vmm::seccomp::parse_mode(cfg.seccomp, "--seccomp"));
        return run(cfg);
    } catch (const std::exception& e) {
        vmm::RawTerminal::restore_now();
        std::fprintf(stderr, "vmm: error: %s\n", e.what());
        return vmm::kExitError;
    }
}
