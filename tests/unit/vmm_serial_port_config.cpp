// --serial-port and the JSON "serial_ports" section: parsing, the name and
// path rules with their messages, precedence over a --config file.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/cli.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"

using Catch::Matchers::Contains;

namespace {

vmm::VmConfig cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--kernel", "k"});
    auto r = vmm::parse_cli(args);
    REQUIRE(std::holds_alternative<vmm::VmConfig>(r));
    return std::get<vmm::VmConfig>(r);
}

std::string cli_error(std::vector<std::string> args) {
    args.insert(args.begin(), {"--kernel", "k"});
    try {
        vmm::parse_cli(args);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    FAIL("no error");
    return {};
}

vmm::VmConfig json_cfg(const std::string& text) {
    vmm::VmConfig c;
    vmm::apply_json(c, vmm::parse_config_text(text, "vm.json"), "vm.json");
    return c;
}

std::string json_error(const std::string& text) {
    try {
        json_cfg(text);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    FAIL("no error for " << text);
    return {};
}

}  // namespace

TEST_CASE("cli: --serial-port", "[vmm][config][serial]") {
    CHECK(cli({}).serial_ports.empty());
    auto c = cli({"--serial-port", "name=org.test.one,socket=/run/one.sock", "--serial-port", "name=log,file=/tmp/l"});
    REQUIRE(c.serial_ports.size() == 2);
    CHECK(c.serial_ports[0].name == "org.test.one");
    CHECK(c.serial_ports[0].mode == vmm::SerialMode::Socket);
    CHECK(c.serial_ports[0].path == "/run/one.sock");
    CHECK(c.serial_ports[1].name == "log");
    CHECK(c.serial_ports[1].mode == vmm::SerialMode::File);
    CHECK(c.serial_ports[1].path == "/tmp/l");
    CHECK(c.console == vmm::SerialMode::Off);  // the console option is unchanged
    // Key order does not matter.
    CHECK(cli({"--serial-port", "socket=/s,name=x"}).serial_ports.at(0).name == "x");
}

TEST_CASE("cli: bad --serial-port values name what is wrong", "[vmm][config][serial]") {
    CHECK_THAT(cli_error({"--serial-port", "socket=/s"}), Contains("name=NAME is required"));
    CHECK_THAT(cli_error({"--serial-port", "name=x"}), Contains("socket=PATH or file=PATH is required"));
    CHECK_THAT(cli_error({"--serial-port", "name=x,socket=/s,file=/f"}), Contains("one of socket=PATH and file=PATH"));
    CHECK_THAT(cli_error({"--serial-port", "name=x,pipe=/s"}), Contains("unknown key \"pipe\""));
    CHECK_THAT(cli_error({"--serial-port", "name=,socket=/s"}), Contains("empty"));
    CHECK_THAT(cli_error({"--serial-port", "name=a b,socket=/s"}), Contains("without spaces"));
    CHECK_THAT(cli_error({"--serial-port", "name=a/b,socket=/s"}), Contains("'/'"));
    CHECK_THAT(cli_error({"--serial-port", "name=a\tb,socket=/s"}), Contains("printable"));
    CHECK_THAT(cli_error({"--serial-port", "name=..,socket=/s"}), Contains("not a usable port name"));
    CHECK_THAT(cli_error({"--serial-port", "name=" + std::string(65, 'n') + ",socket=/s"}),
               Contains("longer than 64"));
    CHECK(cli({"--serial-port", "name=" + std::string(64, 'n') + ",socket=/s"}).serial_ports.size() == 1);
    CHECK_THAT(cli_error({"--serial-port", "name=x,socket="}), Contains("--serial-port socket"));
    CHECK_THAT(cli_error({"--serial-port", "name=x,socket=/a", "--serial-port", "name=x,socket=/b"}),
               Contains("\"x\" is given twice"));
    CHECK_THAT(cli_error({"--serial-port", "name=x,socket=/a", "--serial-port", "name=y,socket=/a"}),
               Contains("same path"));
    CHECK_THAT(cli_error({"--api-socket", "/a", "--serial-port", "name=y,socket=/a"}), Contains("same path"));
    CHECK_THAT(cli_error({"--console", "file=/c", "--serial-port", "name=y,file=/c"}), Contains("same path"));
    std::vector<std::string> many;
    for (int i = 0; i < 31; ++i) many.insert(many.end(), {"--serial-port", fmt::format("name=p{},socket=/s{}", i, i)});
    CHECK_THAT(cli_error(many), Contains("at most 30"));
}

TEST_CASE("config json: serial_ports", "[vmm][config][serial]") {
    auto c = json_cfg(R"({"serial_ports": [{"name": "agent", "socket": "/run/a.sock"}, {"name": "log", "file": "/l"}]})");
    REQUIRE(c.serial_ports.size() == 2);
    CHECK(c.serial_ports[0].mode == vmm::SerialMode::Socket);
    CHECK(c.serial_ports[1].mode == vmm::SerialMode::File);
    CHECK(c.serial_ports[1].path == "/l");
    // Printed and read back.
    auto j = vmm::config_to_json(c);
    CHECK(j["serial_ports"][0]["socket"] == "/run/a.sock");
    CHECK(j["serial_ports"][1]["file"] == "/l");
    CHECK_FALSE(j["serial_ports"][1].contains("socket"));
    vmm::VmConfig back;
    vmm::apply_json(back, j, "print");
    REQUIRE(back.serial_ports.size() == 2);
    CHECK(back.serial_ports[1].name == "log");

    CHECK_THAT(json_error(R"({"serial_ports": {}})"), Contains("serial_ports: expected an array"));
    CHECK_THAT(json_error(R"({"serial_ports": [3]})"), Contains("serial_ports[0]: expected an object"));
    CHECK_THAT(json_error(R"({"serial_ports": [{"socket": "/s"}]})"), Contains("serial_ports[0]: missing \"name\""));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": "x"}]})"), Contains("exactly one of \"socket\" and \"file\""));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": "x", "socket": "/s", "file": "/f"}]})"),
               Contains("exactly one"));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": "x", "sockte": "/s"}]})"),
               Contains("serial_ports[0].sockte: unknown key (did you mean \"socket\"?)"));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": "a b", "socket": "/s"}]})"),
               Contains("serial_ports[0].name") && Contains("without spaces"));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": 5, "socket": "/s"}]})"), Contains("expected a string"));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": "x", "socket": ""}]})"), Contains("serial_ports[0].socket"));
    CHECK_THAT(json_error(R"({"serial_ports": [{"name": "x", "socket": "/a"}, {"name": "x", "file": "/b"}]})"),
               Contains("\"x\" is given twice"));
    CHECK_THAT(json_error(R"({"api": {"socket": "/a"}, "serial_ports": [{"name": "x", "socket": "/a"}]})"),
               Contains("same path"));
}

TEST_CASE("cli: --serial-port replaces the --config file's serial_ports", "[vmm][config][serial]") {
    char tmpl[] = "/tmp/vmm-serial-cfg-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    std::string text = R"({"serial_ports": [{"name": "from-file", "socket": "/f.sock"}]})";
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
    auto kept = cli({"--config", tmpl});
    REQUIRE(kept.serial_ports.size() == 1);
    CHECK(kept.serial_ports[0].name == "from-file");
    auto replaced = cli({"--config", tmpl, "--serial-port", "name=cli,socket=/c.sock"});
    REQUIRE(replaced.serial_ports.size() == 1);
    CHECK(replaced.serial_ports[0].name == "cli");
    // A clash between the file's port and an option is found after the merge.
    CHECK_THAT(cli_error({"--config", tmpl, "--api-socket", "/f.sock"}), Contains("same path"));
    ::unlink(tmpl);
}
