// Command-line parsing into VmConfig, on top of an optional JSON config
// (--config). Pure (reads only the --config file), so every error path is
// unit tested.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "vmm/config.h"
#include "vmm/config_check.h"

namespace vmm {

// The shared size parser (vmm/config_check.h), under its old name.
using check::parse_size;

struct CliHelp {
    std::string text;
};
// --print-config: the effective configuration as pretty JSON (exit 0, no VM).
struct PrintConfig {
    std::string json;
};
// A config to run, help text or the configuration to print. Throws
// vmm::Error with a one-line message for bad options or a bad --config file.
// Precedence: VmConfig's defaults, then the --config file, then every option
// given on the command line (a given --disk replaces the file's disk list).
std::variant<VmConfig, CliHelp, PrintConfig> parse_cli(const std::vector<std::string>& args);

}  // namespace vmm
