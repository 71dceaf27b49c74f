// The user-facing configuration: a JSON VM config file (parse, apply to
// VmConfig, print back) and the command line (parse_cli). A bad input must
// end in vmm::Error with a message; any other exception (a raw nlohmann
// or CLI11 error, std::out_of_range...), a crash or a sanitizer report is a
// bug. A config that parses must also survive --print-config and read back
// to the same JSON.
#include <fuzzer/FuzzedDataProvider.h>

#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "vmm/cli.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"

using nlohmann::json;

namespace {

void round_trip(const vmm::VmConfig& cfg) {
    json doc = vmm::config_to_json(cfg);
    std::string text = vmm::config_to_text(cfg);
    vmm::VmConfig again;
    vmm::apply_json(again, vmm::parse_config_text(text, "printed"), "printed");
    if (vmm::config_to_json(again) != doc) __builtin_trap();  // --print-config must read back as itself
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const bool cli = data[0] & 1;
    std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        if (!cli) {
            vmm::VmConfig cfg;
            vmm::apply_json(cfg, vmm::parse_config_text(text, "fuzz.json"), "fuzz.json");
            round_trip(cfg);
        } else {
            // NUL-separated arguments. Options that open files by name are
            // left out: the fuzzer would find /dev/zero or a FIFO and measure
            // the file system, not the parser (files are fuzzed as JSON text).
            std::vector<std::string> args;
            size_t start = 0;
            for (size_t i = 0; i <= text.size(); ++i) {
                if (i == text.size() || text[i] == '\0') {
                    args.push_back(text.substr(start, i - start));
                    start = i + 1;
                }
            }
            for (const auto& a : args)
                if (a.find("config") != std::string::npos || a.find("/dev") != std::string::npos ||
                    a.find("/proc") != std::string::npos)
                    return 0;
            auto r = vmm::parse_cli(args);
            if (auto* cfg = std::get_if<vmm::VmConfig>(&r)) round_trip(*cfg);
        }
    } catch (const vmm::Error&) {
        // the expected answer to bad input
    }
    return 0;
}
