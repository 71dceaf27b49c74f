// Command-line helpers shared by the configuration tests.
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <variant>
#include <vector>

#include "vmm/cli.h"
#include "vmm/core/error.h"

namespace test {

// The configuration `args` give; fails the test if they ask for something
// else (help, a printout).
inline vmm::VmConfig cli_config(const std::vector<std::string>& args) {
    auto r = vmm::parse_cli(args);
    REQUIRE(std::holds_alternative<vmm::VmConfig>(r));
    return std::get<vmm::VmConfig>(r);
}

// The message `args` are refused with; fails the test if they are accepted.
inline std::string cli_error(const std::vector<std::string>& args) {
    try {
        vmm::parse_cli(args);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    FAIL("no error for the given arguments");
    return {};
}

}  // namespace test
