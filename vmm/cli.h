// Command-line parsing into VmConfig. Pure (no I/O besides the help text),
// so every error path is unit tested.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "vmm/config.h"

namespace vmm {

// Parses "512M", "2G", "1536MiB", "4096K", "1T"; a bare number means MiB
// (as with QEMU's -m). Throws vmm::Error naming `what` on bad input.
uint64_t parse_size(const std::string& text, const std::string& what);

struct CliHelp {
    std::string text;
};
// Either a config to run, or help text to print (exit 0). Throws vmm::Error
// with a one-line message for bad options.
std::variant<VmConfig, CliHelp> parse_cli(const std::vector<std::string>& args);

}  // namespace vmm
