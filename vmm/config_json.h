// JSON VM configs (--config FILE, --print-config): the only code that sees
// JSON. A document is overlaid on a VmConfig, so every default comes from
// VmConfig's member initialisers; the validation rules are the CLI's
// (vmm/config_check.h). The schema is declared in vmm/options.cpp and
// documented in docs/options.md.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "vmm/config.h"

namespace vmm {

// Overlays `doc` on `cfg`: keys present in the document replace the values
// in cfg, absent keys leave them alone; "disks" replaces the whole list.
// Throws vmm::Error "<source>: <json path>: <what is wrong>" for unknown
// keys (with a suggestion), unsupported sections, wrong types, nulls and
// values out of range. `source` names the document in messages (the file).
void apply_json(VmConfig& cfg, const nlohmann::json& doc, const std::string& source = "config");

// Parses JSON text strictly (no comments, no duplicate keys). Syntax errors
// become vmm::Error "<source>: line L, column C: <parser message>".
// A nlohmann exception's message without its "[json.exception.NAME.N] "
// prefix, which means nothing to a user or an API client.
std::string json_error_text(const char* what);

nlohmann::json parse_config_text(const std::string& text, const std::string& source);

// The strict parse behind parse_config_text, for other JSON the VMM reads
// (API requests): duplicate keys (nlohmann would keep the last one
// silently) and nesting deeper than `max_depth` throw vmm::Error naming
// `source` and the JSON path; malformed JSON throws nlohmann's parse_error.
nlohmann::json parse_strict_json(std::string_view text, const std::string& source, int max_depth);

// Reads, parses and applies the file on top of a default VmConfig. Errors
// name the file.
VmConfig config_from_file(const std::string& path);

// The complete configuration, every field, in the schema apply_json reads:
// apply_json(VmConfig{}, config_to_json(c)) gives back c.
nlohmann::json config_to_json(const VmConfig& cfg);
// config_to_json pretty-printed, with a final newline (--print-config).
std::string config_to_text(const VmConfig& cfg);

}  // namespace vmm
