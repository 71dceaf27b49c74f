// TEMPORARY until branch h-config lands: the declaration of config_to_json
// from vmm/config_json.h, which the API's "info" command uses.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "vmm/config.h"

namespace vmm {
nlohmann::json config_to_json(const VmConfig& cfg);
}  // namespace vmm
