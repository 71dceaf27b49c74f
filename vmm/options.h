// The VM options, declared once (vmm/options.cpp): for each its JSON key,
// its command-line spelling, type, range, default and help text. The JSON
// reader with its unknown-key check, --print-config, the command-line
// options and --help, and docs/options.md are all derived from that table;
// the validation rules stay in vmm/config_check.h.
//
// Adding an option: a VmConfig field (vmm/config.h), one entry in the table
// in vmm/options.cpp, `build/vmm --print-options-markdown > docs/options.md`,
// and the code that uses it.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vmm/config.h"

namespace vmm::options {

// One command-line option as CLI11 gets it.
struct CliOption {
    std::string name;     // "--cpus"
    std::string metavar;  // "N", "SPEC"; empty for flags
    std::string help;     // the --help line
    std::string def;      // default shown by --help; empty: none
    bool flag = false;    // takes no value (but =true/=false)
    bool repeatable = false;
};

// Every option of the table, in table order (the order of --help), after
// --config and --print-config.
const std::vector<CliOption>& cli_options();

// Applies the options given on the command line, in table order, on top of
// cfg. `given` maps an option's name to its values (flags: "true" or
// "false"; repeatable options: every value, others: the last). Each value
// is checked with the rules of config_check.h; errors name the option.
void apply_cli(VmConfig& cfg, const std::map<std::string, std::vector<std::string>>& given);

// The JSON schema: reads a document over cfg (keys present replace values;
// unknown keys fail with a suggestion), and the complete configuration.
void read_json(VmConfig& cfg, const nlohmann::json& doc, const std::string& source);
nlohmann::json to_json(const VmConfig& cfg);

// Every JSON key the reader accepts, as "machine.cpus", "disks[].path",
// "scsi.cdroms[].lun" (sections and lists themselves too: "disks").
std::vector<std::string> json_keys();

// docs/options.md: the option and key reference, generated from the table
// (`build/vmm --print-options-markdown`).
std::string reference_markdown();

}  // namespace vmm::options
