// JSON VM configs (vmm/config_json.*) and their merge with the command line
// (vmm/cli.*): every error path with its message, precedence, the
// --print-config round trip and the examples/ files.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "vmm/cli.h"
#include "vmm/config_check.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using nlohmann::json;

namespace {

vmm::VmConfig load(const std::string& text) {
    vmm::VmConfig cfg;
    vmm::apply_json(cfg, vmm::parse_config_text(text, "vm.json"), "vm.json");
    return cfg;
}

std::string error_of_json(const std::string& text) {
    try {
        load(text);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    FAIL("no error for " << text);
    return {};
}



// Field-by-field equality; a new VmConfig field must be added here and to
// config_to_json (the round-trip tests then cover it).
bool same(const vmm::VmConfig& a, const vmm::VmConfig& b) {
    auto disk_eq = [](const vmm::DiskConfig& x, const vmm::DiskConfig& y) {
        return x.path == y.path && x.readonly == y.readonly && x.serial == y.serial && x.num_queues == y.num_queues &&
               x.direct == y.direct && x.slot == y.slot && x.packed == y.packed && x.bootindex == y.bootindex &&
               x.poll_us == y.poll_us && x.format == y.format && x.snapshot == y.snapshot;
    };
    auto balloon_eq = [](const std::optional<vmm::BalloonConfig>& x, const std::optional<vmm::BalloonConfig>& y) {
        if (!x || !y) return x.has_value() == y.has_value();
        return x->size == y->size && x->deflate_on_oom == y->deflate_on_oom &&
               x->free_page_reporting == y->free_page_reporting && x->stats_interval_s == y->stats_interval_s;
    };
    auto net_eq = [](const vmm::NetConfig& x, const vmm::NetConfig& y) {
        return x.tap == y.tap && x.mac == y.mac && x.num_queues == y.num_queues && x.packed == y.packed &&
               x.bootindex == y.bootindex && x.rom == y.rom;
    };
    return balloon_eq(a.balloon, b.balloon) &&
           std::equal(a.nets.begin(), a.nets.end(), b.nets.begin(), b.nets.end(), net_eq) && a.firmware == b.firmware && a.firmware_vars == b.firmware_vars && a.boot_order == b.boot_order && a.kernel == b.kernel && a.initramfs == b.initramfs && a.cmdline == b.cmdline && a.cpus == b.cpus &&
           a.memory == b.memory && a.serial == b.serial && a.serial_path == b.serial_path && a.console == b.console &&
           a.console_path == b.console_path && a.hugepages == b.hugepages && a.boot_report == b.boot_report &&
           a.allow_reboot == b.allow_reboot && a.log_level == b.log_level && a.log_file == b.log_file &&
           a.api_socket == b.api_socket && a.timeout_s == b.timeout_s && a.pvpanic == b.pvpanic && a.rng == b.rng &&
           std::equal(a.disks.begin(), a.disks.end(), b.disks.begin(), b.disks.end(), disk_eq) &&
           std::equal(a.scsi.begin(), a.scsi.end(), b.scsi.begin(), b.scsi.end(), [](auto& x, auto& y) {
               return x.path == y.path && x.lun == y.lun && x.readonly == y.readonly && x.cdrom == y.cdrom &&
                      x.bootindex == y.bootindex && x.direct == y.direct && x.format == y.format &&
                      x.snapshot == y.snapshot;
           }) &&
           std::equal(a.fw_cfg.begin(), a.fw_cfg.end(), b.fw_cfg.begin(), b.fw_cfg.end(),
                      [](auto& x, auto& y) { return x.name == y.name && x.file == y.file && x.text == y.text; }) &&
           a.uuid == b.uuid && a.rtc_localtime == b.rtc_localtime &&
           a.cloud_init.has_value() == b.cloud_init.has_value() &&
           (!a.cloud_init || (a.cloud_init->user_data == b.cloud_init->user_data &&
                              a.cloud_init->meta_data == b.cloud_init->meta_data &&
                              a.cloud_init->network_config == b.cloud_init->network_config)) &&
           std::equal(a.smbios.begin(), a.smbios.end(), b.smbios.begin(), b.smbios.end(),
                      [](auto& x, auto& y) {
                          return x.type == y.type && x.vendor == y.vendor && x.version == y.version &&
                                 x.date == y.date && x.manufacturer == y.manufacturer && x.product == y.product &&
                                 x.serial == y.serial && x.sku == y.sku && x.family == y.family && x.asset == y.asset;
                      }) &&
           std::equal(a.serial_ports.begin(), a.serial_ports.end(), b.serial_ports.begin(), b.serial_ports.end(),
                      [](const vmm::SerialPortConfig& x, const vmm::SerialPortConfig& y) {
                          return x.name == y.name && x.mode == y.mode && x.path == y.path;
                      });
}

// A scratch directory under /tmp, removed with its files.
struct TempDir {
    std::string path;
    std::vector<std::string> files;
    TempDir() {
        char tmpl[] = "/tmp/vmm-config-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        for (auto& f : files) ::unlink(f.c_str());
        ::rmdir(path.c_str());
    }
    std::string write(const std::string& name, const std::string& text) {
        std::string p = path + "/" + name;
        std::ofstream(p) << text;
        files.push_back(p);
        return p;
    }
};

// A config with every field away from its default.
vmm::VmConfig everything() {
    vmm::VmConfig c;
    c.kernel = "/k/bzImage";
    c.initramfs = "/k/initrd";
    c.cmdline = "console=hvc0 \"quoted\" x=1";
    c.cpus = 7;
    c.memory = 1536ull << 20;
    c.serial = vmm::SerialMode::Socket;
    c.serial_path = "/run/s.sock";
    c.console = vmm::SerialMode::File;
    c.console_path = "/var/log/hvc0";
    c.hugepages = true;
    c.disks.push_back({"/a.img", false, "", 1, false, -1});
    c.disks.push_back({"/b.img", true, "SN-2", 4, true, 9});
    c.boot_report = true;
    c.allow_reboot = true;
    c.log_level = "debug";
    c.log_file = "/var/log/vmm.log";
    c.api_socket = "/run/vmm.sock";
    c.timeout_s = 3600;
    c.pvpanic = false;
    c.scsi.push_back({"/s0.img", -1, false, false});
    c.scsi.push_back({"/s1.img", 7, true, false});
    c.scsi.push_back({"/cd.iso", 300, true, true});
    c.serial_ports.push_back({"org.test.agent", vmm::SerialMode::Socket, "/run/agent.sock"});
    c.serial_ports.push_back({"log", vmm::SerialMode::File, "/var/log/guest-port.log"});
    return c;
}

}  // namespace

TEST_CASE("config json: every section is read", "[vmm][config]") {
    auto c = load(R"({
        "machine": {"cpus": 4, "memory": "2G", "hugepages": true},
        "boot": {"kernel": "/k", "initramfs": "/i", "cmdline": "quiet"},
        "disks": [{"path": "/a.img"}, {"path": "/b.img", "readonly": true, "serial": "S1", "num_queues": 3,
                   "direct": true, "slot": 5, "packed": false}],
        "serial": {"mode": "socket", "path": "/s.sock"},
        "console": {"mode": "file", "path": "/c.log"},
        "api": {"socket": "/api.sock"},
        "logging": {"level": "debug", "file": "/vmm.log"},
        "run": {"timeout_s": 30, "reboot": true, "boot_report": true},
        "devices": {"pvpanic": false},
        "rng": {"enabled": true},
        "balloon": {"size": "256M", "deflate_on_oom": true, "free_page_reporting": true, "stats_interval_s": 2},
        "net": [{"tap": "tap0"}, {"tap": "vmmtap1", "mac": "52:54:00:AB:cd:01", "num_queues": 4, "packed": false}]
    })");
    CHECK(c.cpus == 4);
    CHECK(c.memory == 2ull << 30);
    CHECK(c.hugepages);
    CHECK(c.kernel == "/k");
    CHECK(c.initramfs == "/i");
    CHECK(c.cmdline == "quiet");
    REQUIRE(c.disks.size() == 2);
    CHECK(c.disks[0].path == "/a.img");
    CHECK(c.disks[0].slot == -1);
    CHECK(c.disks[0].num_queues == 1);
    CHECK(c.disks[1].readonly);
    CHECK(c.disks[1].serial == "S1");
    CHECK(c.disks[1].num_queues == 3);
    CHECK(c.disks[1].direct);
    CHECK(c.disks[1].slot == 5);
    CHECK(c.disks[0].packed);
    CHECK_FALSE(c.disks[1].packed);
    CHECK(c.serial == vmm::SerialMode::Socket);
    CHECK(c.serial_path == "/s.sock");
    CHECK(c.console == vmm::SerialMode::File);
    CHECK(c.console_path == "/c.log");
    CHECK(c.api_socket == "/api.sock");
    CHECK(c.log_level == "debug");
    CHECK(c.log_file == "/vmm.log");
    CHECK(c.timeout_s == 30);
    CHECK(c.allow_reboot);
    CHECK(c.boot_report);
    CHECK_FALSE(c.pvpanic);
    CHECK(c.rng);
    REQUIRE(c.balloon);
    CHECK(c.balloon->size == 256ull << 20);
    CHECK(c.balloon->deflate_on_oom);
    CHECK(c.balloon->free_page_reporting);
    CHECK(c.balloon->stats_interval_s == 2);
    REQUIRE(c.nets.size() == 2);
    CHECK(c.nets[0].tap == "tap0");
    CHECK(c.nets[0].mac.empty());
    CHECK(c.nets[0].num_queues == 1);
    CHECK(c.nets[0].packed);
    CHECK(c.nets[1].mac == "52:54:00:AB:cd:01");
    CHECK(c.nets[1].num_queues == 4);
    CHECK_FALSE(c.nets[1].packed);

    // Memory as an integer is bytes; as a string a bare number is MiB (like --memory).
    CHECK(load(R"({"machine": {"memory": 1073741824}})").memory == 1ull << 30);
    CHECK(load(R"({"machine": {"memory": "768"}})").memory == 768ull << 20);
    CHECK(load(R"({"disks": [{"path": "/a", "slot": "auto"}]})").disks.at(0).slot == -1);
}

TEST_CASE("config json: absent keys keep the defaults, as absent options do", "[vmm][config]") {
    CHECK(same(load("{}"), vmm::VmConfig{}));
    // The same defaults through the CLI (kernel aside, which is required there).
    auto from_cli = test::cli_config({"--kernel", "/k"});
    auto from_json = load(R"({"boot": {"kernel": "/k"}})");
    CHECK(same(from_cli, from_json));
    vmm::VmConfig expect;
    expect.kernel = "/k";
    CHECK(same(from_json, expect));
    // Empty sections change nothing either.
    CHECK(same(load(R"({"machine": {}, "boot": {}, "serial": {}, "console": {}, "api": {}, "logging": {}, "run": {},
                        "devices": {}})"),
               vmm::VmConfig{}));
}

TEST_CASE("config json: syntax errors give line and column", "[vmm][config]") {
    CHECK_THAT(error_of_json("{\n  \"machine\": {\n    \"cpus\": x\n  }\n}"),
               Contains("vm.json: line 3, column 13: ") && Contains("invalid literal"));
    CHECK_THAT(error_of_json("{\"machine\": {}"), Contains("vm.json: line 1, column 15: ") && Contains("end of input"));
    CHECK_THAT(error_of_json(""), Contains("vm.json: line 1, column 1: "));
    CHECK_THAT(error_of_json("{\n\"run\": {},\n}\n"), Contains("vm.json: line 3, column 1: "));
    // The parser's own prefix is gone: one clean line.
    auto msg = error_of_json("{,}");
    CHECK(msg.find("json.exception") == std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
    // Strict JSON: no comments, no duplicate keys (nlohmann would keep the last silently).
    CHECK_THAT(error_of_json("{ // c\n}"), Contains("vm.json: line 1, column"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": 1, "cpus": 2}})"),
               Equals("vm.json: machine.cpus: duplicate key"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a"}, {"path": "/b", "path": "/c"}]})"),
               Equals("vm.json: disks[1].path: duplicate key"));
    CHECK_THAT(error_of_json(std::string(40, '[') + std::string(40, ']')), Contains("nested more than"));
}

TEST_CASE("config json: wrong types name the path and what was expected", "[vmm][config]") {
    CHECK_THAT(error_of_json("[]"), Equals("vm.json: expected an object at the top level, got an array"));
    CHECK_THAT(error_of_json("3"), Contains("expected an object at the top level, got 3"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": "four"}})"),
               Equals(R"(vm.json: machine.cpus: expected an integer in 1..254, got "four")"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": 1.5}})"),
               Equals("vm.json: machine.cpus: expected an integer in 1..254, got 1.5"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": 2.0}})"), Contains("machine.cpus: expected an integer"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": -1}})"),
               Equals("vm.json: machine.cpus: expected an integer in 1..254, got -1"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": null}})"),
               Equals("vm.json: machine.cpus: expected an integer in 1..254, got null"));
    CHECK_THAT(error_of_json(R"({"machine": null})"), Equals("vm.json: machine: expected an object, got null"));
    CHECK_THAT(error_of_json(R"({"machine": [1]})"), Equals("vm.json: machine: expected an object, got an array"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": "12Q"}})"),
               Equals(R"(vm.json: machine.memory: "12Q" is not a size (expected e.g. 512M or 2G))"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": -5}})"),
               Contains("machine.memory: expected a size such as \"512M\" or an integer number of bytes, got -5"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": true}})"), Contains("machine.memory: expected a size"));
    CHECK_THAT(error_of_json(R"({"machine": {"hugepages": "yes"}})"),
               Equals(R"(vm.json: machine.hugepages: expected true or false, got "yes")"));
    CHECK_THAT(error_of_json(R"({"boot": {"kernel": 7}})"), Equals("vm.json: boot.kernel: expected a string, got 7"));
    CHECK_THAT(error_of_json(R"({"boot": {"cmdline": null}})"),
               Equals("vm.json: boot.cmdline: expected a string, got null"));
    CHECK_THAT(error_of_json(R"({"disks": {"path": "/a"}})"),
               Equals("vm.json: disks: expected an array of disks, got an object"));
    CHECK_THAT(error_of_json(R"({"disks": ["/a.img"]})"),
               Equals(R"(vm.json: disks[0]: expected an object, got "/a.img")"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a"}, {"readonly": true}]})"),
               Equals(R"(vm.json: disks[1]: missing "path")"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": ""}]})"), Equals("vm.json: disks[0].path: empty path"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "readonly": "on"}]})"),
               Contains("disks[0].readonly: expected true or false"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "slot": "7"}]})"),
               Equals(R"(vm.json: disks[0].slot: expected "auto" or an integer in 1..31, got "7")"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "num_queues": 1.0}]})"),
               Contains("disks[0].num_queues: expected an integer in 1..64"));
    CHECK_THAT(error_of_json(R"({"serial": {"mode": 1}})"), Equals("vm.json: serial.mode: expected a string, got 1"));
    CHECK_THAT(error_of_json(R"({"serial": {"mode": "pty"}})"),
               Equals(R"(vm.json: serial.mode: "pty" is not one of tty, file, socket, off)"));
    CHECK_THAT(error_of_json(R"({"logging": {"level": "loud"}})"),
               Equals(R"(vm.json: logging.level: "loud" is not one of error, warn, info, debug)"));
    CHECK_THAT(error_of_json(R"({"run": {"reboot": 1}})"), Equals("vm.json: run.reboot: expected true or false, got 1"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t", "packed": "off"}]})"),
               Equals(R"(vm.json: net[0].packed: expected true or false, got "off")"));
    CHECK_THAT(error_of_json(R"({"run": {"timeout_s": -3}})"),
               Equals("vm.json: run.timeout_s: expected an integer in 0..4294967295, got -3"));
    CHECK_THAT(error_of_json(R"({"devices": {"pvpanic": "off"}})"), Contains("devices.pvpanic: expected true or false"));
    CHECK_THAT(error_of_json(R"({"api": {"socket": false}})"), Contains("api.socket: expected a string"));
}

TEST_CASE("config json: values out of range use the CLI's rules", "[vmm][config]") {
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": 0}})"), Equals("vm.json: machine.cpus: 0 is out of range (1..254)"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": 255}})"), Contains("machine.cpus: 255 is out of range"));
    CHECK_THAT(error_of_json(R"({"machine": {"cpus": 18446744073709551615}})"), Contains("out of range"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": "16M"}})"),
               Equals("vm.json: machine.memory: 16 MiB is too little (at least 32 MiB)"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": "2048G"}})"), Contains("machine.memory: 2 TiB is more than the supported 1 TiB"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": 33554433}})"),
               Contains("machine.memory: 33554433 bytes is not a whole number of MiB"));
    CHECK_THAT(error_of_json(R"({"machine": {"memory": "99999999999T"}})"), Contains("too large"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "num_queues": 0}]})"),
               Equals("vm.json: disks[0].num_queues: 0 is out of range (1..64)"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "slot": 32}]})"),
               Equals("vm.json: disks[0].slot: 32 is out of range (1..31)"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "slot": 0}]})"), Contains("disks[0].slot: 0 is out of range"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "serial": "123456789012345678901"}]})"),
               Contains("disks[0].serial: \"123456789012345678901\" is longer than 20 characters"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "serial": "a b"}]})"),
               Contains("disks[0].serial") && Contains("printable ASCII"));
    CHECK_THAT(error_of_json(R"({"run": {"timeout_s": 4294967296}})"),
               Contains("run.timeout_s: 4294967296 is out of range (0..4294967295)"));
    std::string many = R"({"disks": [)";
    for (int i = 0; i < 25; ++i) many += std::string(i ? "," : "") + R"({"path": "/d)" + std::to_string(i) + "\"}";
    CHECK_THAT(error_of_json(many + "]}"), Equals("vm.json: disks: 25 disks given; at most 24 fit on the PCI bus"));
}

TEST_CASE("config json: conflicting values", "[vmm][config]") {
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "slot": 3}, {"path": "/b"}, {"path": "/c", "slot": 3}]})"),
               Equals("vm.json: disks: PCI slot 3 is given twice (disks 0 and 2)"));
    CHECK_THAT(error_of_json(R"({"serial": {"mode": "file"}})"), Equals(R"(vm.json: serial: mode "file" needs a path)"));
    CHECK_THAT(error_of_json(R"({"console": {"mode": "socket", "path": ""}})"),
               Contains(R"(console.path: mode "socket" needs a path)"));
    CHECK_THAT(error_of_json(R"({"serial": {"mode": "tty", "path": "/x"}})"),
               Contains(R"(serial.path: a path is only used with mode "file" or "socket", not "tty")"));
    CHECK_THAT(error_of_json(R"({"serial": {"path": "/x"}})"), Contains("serial.path: a path is only used"));
    CHECK_THAT(error_of_json(R"({"serial": {"mode": "file", "path": "/o"}, "console": {"mode": "file", "path": "/o"}})"),
               Equals(R"(vm.json: serial.path and console.path are the same path "/o")"));
    CHECK_THAT(error_of_json(R"({"api": {"socket": "/s"}, "console": {"mode": "socket", "path": "/s"}})"),
               Contains("console.path and api.socket are the same path"));
    // Giving a mode without a path clears a path set before (by an earlier overlay).
    vmm::VmConfig c;
    c.serial = vmm::SerialMode::File;
    c.serial_path = "/old";
    vmm::apply_json(c, json::parse(R"({"serial": {"mode": "off"}})"), "x");
    CHECK(c.serial == vmm::SerialMode::Off);
    CHECK(c.serial_path.empty());
}

TEST_CASE("config json: unknown keys get a suggestion, future devices a clear no", "[vmm][config]") {
    CHECK_THAT(error_of_json(R"({"machine": {"cpu": 2}})"),
               Equals(R"(vm.json: machine.cpu: unknown key (did you mean "cpus"?))"));
    CHECK_THAT(error_of_json(R"({"machine": {"memroy": "1G"}})"), Contains(R"(did you mean "memory"?)"));
    CHECK_THAT(error_of_json(R"({"mashine": {}})"), Equals(R"(vm.json: mashine: unknown key (did you mean "machine"?))"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/a", "read_only": true}]})"),
               Equals(R"(vm.json: disks[0].read_only: unknown key (did you mean "readonly"?))"));
    CHECK_THAT(error_of_json(R"({"run": {"timeout": 5}})"), Contains(R"(run.timeout: unknown key (did you mean "timeout_s"?))"));
    CHECK_THAT(error_of_json(R"({"frobnicate": 1})"),
               Equals("vm.json: frobnicate: unknown key (expected one of machine, boot, disks, serial, console, api, "
                      "logging, security, run, devices, rng, balloon, net, scsi, serial_ports, fw_cfg, smbios, cloud_init)"));
    CHECK_THAT(error_of_json(R"({"serial": {"x": 1}})"), Contains("serial.x: unknown key (expected one of mode, path)"));
    CHECK_THAT(error_of_json(R"({"vsock": {}})"), Equals("vm.json: vsock: virtio-vsock is not supported yet"));
    CHECK_THAT(error_of_json(R"({"net": {"tap": "tap0"}})"), Contains("net: expected an array of interfaces"));
    CHECK_THAT(error_of_json(R"({"net": [{"mac": "52:54:00:00:00:01"}]})"), Contains(R"(net[0]: missing "tap")"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "a/b"}]})"), Contains("net[0].tap: tap name \"a/b\" may not contain"));
    // '%' would let the kernel choose the name; "." and ".." are no names.
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "tap%d"}]})"), Contains("may not contain '%'"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": ".."}]})"), Contains("tap name \"..\" is not a valid interface name"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=."}), Contains("tap name \".\" is not a valid"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t", "mac": "01:00:00:00:00:01"}]})"), Contains("multicast"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t", "num_queues": 17}]})"), Contains("net[0].num_queues"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t"}, {"tap": "t"}]})"), Contains("tap t is given twice"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t", "queue": 2}]})"), Contains("expected one of tap, mac, num_queues"));
    CHECK_THAT(error_of_json(R"({"devices": {"balloon": true}})"),
               Equals("vm.json: devices.balloon: unknown key (expected one of pvpanic)"));
    CHECK_THAT(error_of_json(R"({"balloon": {"sise": "1G"}})"), Contains(R"(balloon.sise: unknown key (did you mean "size"?))"));
    CHECK_THAT(error_of_json(R"({"balloon": {"size": "lots"}})"), Contains("balloon.size"));
    CHECK_THAT(error_of_json(R"({"balloon": {"size": -4096}})"), Contains("balloon.size: expected a size"));
    CHECK_THAT(error_of_json(R"({"balloon": {"stats_interval_s": 3601}})"), Contains("balloon.stats_interval_s"));
    CHECK_THAT(error_of_json(R"({"balloon": {"deflate_on_oom": 1}})"), Contains("balloon.deflate_on_oom: expected true or false"));
    CHECK_THAT(error_of_json(R"({"balloon": []})"), Contains("balloon: expected an object"));
    // An empty section adds an empty balloon; enabled false or null removes it.
    CHECK(load(R"({"balloon": {}})").balloon->size == 0);
    CHECK_FALSE(load(R"({"balloon": {"enabled": false}})").balloon);
    // ...but settings beside "enabled": false are not dropped silently.
    CHECK_THAT(error_of_json(R"({"balloon": {"enabled": false, "size": "1G"}})"),
               Contains(R"(balloon: "size" is set but "enabled" is false)"));
    CHECK_FALSE(load(R"({"balloon": null})").balloon);
    CHECK_THAT(error_of_json(R"({"rng": {"enabled": "yes"}})"), Contains("rng.enabled: expected"));
    CHECK_THAT(error_of_json(R"({"rng": {"enable": true}})"), Contains(R"(rng.enable: unknown key (did you mean "enabled"?))"));
    // A bad document leaves the config as it was.
    vmm::VmConfig c;
    CHECK_THROWS_AS(vmm::apply_json(c, json::parse(R"({"machine": {"cpus": 3}, "run": {"x": 1}})"), "x"), vmm::Error);
    CHECK(c.cpus == 1);
}

TEST_CASE("config json: scsi section", "[vmm][config]") {
    auto c = load(R"({"scsi": {"disks": [{"path": "/a.img"}, {"path": "/b.img", "lun": 5, "readonly": true}],
                              "cdroms": [{"path": "/c.iso", "lun": "auto"}]}})");
    REQUIRE(c.scsi.size() == 3);
    CHECK(c.scsi[0].path == "/a.img");
    CHECK(c.scsi[0].lun == -1);
    CHECK_FALSE(c.scsi[0].readonly);
    CHECK(c.scsi[1].lun == 5);
    CHECK(c.scsi[1].readonly);
    CHECK(c.scsi[2].cdrom);
    CHECK(c.scsi[2].readonly);
    CHECK(vmm::check::scsi_luns(c.scsi, "x") == std::vector<uint32_t>{0, 5, 1});
    // One list alone replaces only its kind.
    vmm::apply_json(c, json::parse(R"({"scsi": {"cdroms": []}})"), "x");
    CHECK(c.scsi.size() == 2);
    CHECK(load(R"({"scsi": {}})").scsi.empty());

    CHECK_THAT(error_of_json(R"({"scsi": {"disk": []}})"), Contains(R"(scsi.disk: unknown key (did you mean "disks"?))"));
    CHECK_THAT(error_of_json(R"({"scsi": {"cdroms": [{"path": "/c", "readonly": false}]}})"),
               Contains("scsi.cdroms[0].readonly: unknown key"));
    CHECK_THAT(error_of_json(R"({"scsi": {"disks": [{"lun": 1}]}})"), Contains(R"(scsi.disks[0]: missing "path")"));
    CHECK_THAT(error_of_json(R"({"scsi": {"disks": [{"path": "/a", "lun": 16384}]}})"),
               Contains("scsi.disks[0].lun: expected"));
    CHECK_THAT(error_of_json(R"({"scsi": {"disks": [{"path": "/a", "lun": 2}], "cdroms": [{"path": "/c", "lun": 2}]}})"),
               Contains("lun 2 is given twice"));
    CHECK_THAT(error_of_json(R"({"scsi": {"disks": {}}})"), Contains("scsi.disks: expected an array"));
}

TEST_CASE("config json: config_to_json is complete and round-trips", "[vmm][config]") {
    for (const vmm::VmConfig& c : {everything(), vmm::VmConfig{}}) {
        json j = vmm::config_to_json(c);
        vmm::VmConfig back;
        vmm::apply_json(back, j, "print");
        CHECK(same(back, c));
        // Text too, the way --print-config writes it; and printing again gives the same text.
        std::string text = vmm::config_to_text(c);
        auto again = load(text);
        CHECK(same(again, c));
        CHECK(vmm::config_to_text(again) == text);
        // Overlaid on a config far from the defaults, the complete document still wins everywhere.
        vmm::VmConfig other = c.pvpanic ? everything() : vmm::VmConfig{};
        vmm::apply_json(other, j, "print");
        CHECK(same(other, c));
    }
    json j = vmm::config_to_json(everything());
    CHECK(j["machine"]["memory"] == "1536M");
    CHECK(j["disks"][0]["slot"] == "auto");
    CHECK(j["disks"][1]["slot"] == 9);
    CHECK(j["serial"]["mode"] == "socket");
    CHECK(vmm::config_to_json(vmm::VmConfig{})["machine"]["memory"] == "512M");
    vmm::VmConfig big;
    big.memory = 2ull << 30;
    CHECK(vmm::config_to_json(big)["machine"]["memory"] == "2G");
}

TEST_CASE("config json: --config files and their errors", "[vmm][config]") {
    TempDir dir;
    CHECK_THAT(test::cli_error({"--config", dir.path + "/missing.json"}),
               Equals(dir.path + "/missing.json: No such file or directory"));
    CHECK_THAT(test::cli_error({"--config", dir.path}), Equals(dir.path + ": not a regular file"));
    CHECK_THAT(test::cli_error({"--config", ""}), Contains("--config: empty path"));
    auto bad = dir.write("bad.json", "{\n  \"machine\": {\"cpus\": \"four\"}\n}\n");
    CHECK_THAT(test::cli_error({"--config", bad}),
               Equals(bad + R"(: machine.cpus: expected an integer in 1..254, got "four")"));
    auto broken = dir.write("broken.json", "{\n  \"machine\": {\n    \"cpus\": 2,\n  }\n}\n");
    CHECK_THAT(test::cli_error({"--config", broken}), Contains(broken + ": line 4, column 3: "));
    // No kernel in the file or on the command line.
    auto nokernel = dir.write("nokernel.json", R"({"machine": {"cpus": 2}})");
    CHECK_THAT(test::cli_error({"--config", nokernel}), Contains("--kernel: a path is required"));
    // The kernel from the file satisfies the requirement.
    auto k = dir.write("k.json", R"({"boot": {"kernel": "/from/file"}, "machine": {"cpus": 2}})");
    auto c = test::cli_config({"--config", k});
    CHECK(c.kernel == "/from/file");
    CHECK(c.cpus == 2);
    CHECK(same(vmm::config_from_file(k), load(R"({"boot": {"kernel": "/from/file"}, "machine": {"cpus": 2}})")));
}

TEST_CASE("config json: options on the command line override the file", "[vmm][config]") {
    TempDir dir;
    auto file = dir.write("vm.json", R"({
        "machine": {"cpus": 4, "memory": "2G", "hugepages": true},
        "boot": {"kernel": "/file/k", "initramfs": "/file/i", "cmdline": "from-file"},
        "disks": [{"path": "/file/a.img", "slot": 5}, {"path": "/file/b.img"}],
        "serial": {"mode": "file", "path": "/file/serial.log"},
        "console": {"mode": "socket", "path": "/file/hvc.sock"},
        "api": {"socket": "/file/api.sock"},
        "logging": {"level": "info", "file": "/file/vmm.log"},
        "run": {"timeout_s": 60, "reboot": true, "boot_report": true},
        "devices": {"pvpanic": false}
    })");
    auto from_file = vmm::config_from_file(file);

    // Nothing given: the file as it is.
    CHECK(same(test::cli_config({"--config", file}), from_file));

    // One option at a time changes exactly that field.
    auto c = test::cli_config({"--config", file, "--cpus", "2"});
    auto expect = from_file;
    expect.cpus = 2;
    CHECK(same(c, expect));

    c = test::cli_config({"--config", file, "--kernel", "/cli/k", "--initramfs", "/cli/i", "--cmdline", "from-cli", "--memory",
             "1G", "--serial", "tty", "--console", "file=/cli/hvc.log", "--api-socket", "/cli/api.sock", "--log-level",
             "error", "--log-file", "/cli/vmm.log", "--timeout", "0"});
    CHECK(c.kernel == "/cli/k");
    CHECK(c.initramfs == "/cli/i");
    CHECK(c.cmdline == "from-cli");
    CHECK(c.memory == 1ull << 30);
    CHECK(c.cpus == 4);
    CHECK(c.serial == vmm::SerialMode::Tty);
    CHECK(c.serial_path.empty());  // tty takes no path: the file's is dropped
    CHECK(c.console == vmm::SerialMode::File);
    CHECK(c.console_path == "/cli/hvc.log");
    CHECK(c.api_socket == "/cli/api.sock");
    CHECK(c.log_level == "error");
    CHECK(c.log_file == "/cli/vmm.log");
    CHECK(c.timeout_s == 0);
    CHECK(c.disks.size() == 2);  // --disk not given: the file's list stays

    // A given --disk replaces the file's whole list (slot 5 is free again).
    c = test::cli_config({"--config", file, "--disk", "path=/cli/x.img,slot=6"});
    REQUIRE(c.disks.size() == 1);
    CHECK(c.disks[0].path == "/cli/x.img");
    CHECK(c.disks[0].slot == 6);

    // Flags: given sets them, =false undoes the file's setting.
    c = test::cli_config({"--config", file, "--reboot=false", "--boot-report=false", "--hugepages=false", "--no-pvpanic=false"});
    CHECK_FALSE(c.allow_reboot);
    CHECK_FALSE(c.boot_report);
    CHECK_FALSE(c.hugepages);
    CHECK(c.pvpanic);
    CHECK_FALSE(test::cli_config({"--kernel", "/k", "--no-pvpanic"}).pvpanic);
    CHECK(test::cli_config({"--kernel", "/k", "--hugepages"}).hugepages);

    // Order on the command line does not matter: the file is always the base.
    CHECK(test::cli_config({"--cpus", "3", "--config", file}).cpus == 3);

    // The merge is checked as a whole: the CLI's console over the file's API socket.
    CHECK_THAT(test::cli_error({"--config", file, "--serial", "socket=/file/api.sock"}),
               Equals(R"(--serial and --api-socket are the same path "/file/api.sock")"));
    // A bad CLI value is reported as the option even with a file.
    CHECK_THAT(test::cli_error({"--config", file, "--cpus", "0"}), Equals("--cpus: 0 is out of range (1..254)"));
}

TEST_CASE("config json: --print-config prints what would run, and it parses back", "[vmm][config]") {
    TempDir dir;
    auto file = dir.write("vm.json", R"({"boot": {"kernel": "/file/k"}, "machine": {"cpus": 4},
                                         "disks": [{"path": "/file/a.img", "serial": "A"}]})");
    auto r = vmm::parse_cli({"--config", file, "--memory", "1G", "--serial", "socket=/tmp/s.sock", "--timeout", "9",
                             "--print-config"});
    REQUIRE(std::holds_alternative<vmm::PrintConfig>(r));
    const std::string& text = std::get<vmm::PrintConfig>(r).json;
    CHECK(text.back() == '\n');
    auto printed = load(text);
    auto running = test::cli_config({"--config", file, "--memory", "1G", "--serial", "socket=/tmp/s.sock", "--timeout", "9"});
    CHECK(same(printed, running));
    CHECK(printed.cpus == 4);
    CHECK(printed.memory == 1ull << 30);
    CHECK(printed.timeout_s == 9);
    CHECK(printed.disks.at(0).serial == "A");
    // The printed text is itself a --config file that gives the same configuration.
    auto again = dir.write("printed.json", text);
    CHECK(same(test::cli_config({"--config", again}), running));
    // Every field, every section.
    auto j = json::parse(text);
    for (const char* s : {"machine", "boot", "disks", "serial", "console", "api", "logging", "run", "devices"})
        CHECK(j.contains(s));
    CHECK(j["machine"].size() == 5);
    CHECK(j["boot"].size() == 6);
    CHECK(j["disks"][0].size() == 11);
    CHECK(j["run"].size() == 3);
    // Still validated: no kernel, no printout.
    CHECK_THAT(test::cli_error({"--print-config"}), Contains("--kernel"));
}

TEST_CASE("config json: the new command-line options", "[vmm][config]") {
    auto c = test::cli_config({"--kernel", "/k", "--timeout", "30", "--log-file", "/l", "--api-socket", "/a", "--serial",
                  "socket=/s", "--console", "socket=/c"});
    CHECK(c.timeout_s == 30);
    CHECK(c.log_file == "/l");
    CHECK(c.api_socket == "/a");
    CHECK(c.serial == vmm::SerialMode::Socket);
    CHECK(c.serial_path == "/s");
    CHECK(c.console == vmm::SerialMode::Socket);
    CHECK(c.console_path == "/c");
    CHECK(test::cli_config({"--kernel", "/k", "--disk", "path=/a,slot=auto"}).disks.at(0).slot == -1);
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--timeout", "-1"}), Contains("--timeout"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--timeout", "5s"}), Contains("--timeout: \"5s\" is not a number"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--serial", "socket="}), Contains("--serial") && Contains("needs a path"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--console", "tty=/x"}), Contains("--console") && Contains("takes no path"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--log-file", ""}), Equals("--log-file: empty path"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--serial", "file=/o", "--console", "file=/o"}),
               Equals(R"(--serial and --console are the same path "/o")"));
    auto r = vmm::parse_cli({"--help"});
    REQUIRE(std::holds_alternative<vmm::CliHelp>(r));
    for (const char* opt : {"--config", "--print-config", "--timeout", "--log-file", "--api-socket", "--hugepages",
                            "--no-pvpanic", "socket=PATH", "5 --timeout", "6 hard stop"})
        CHECK_THAT(std::get<vmm::CliHelp>(r).text, Contains(opt));
}

TEST_CASE("config json: firmware boot instead of a kernel", "[vmm][config]") {
    auto c = test::cli_config({"--firmware", "bios", "--disk", "path=/d.img"});
    CHECK(c.firmware == "bios");
    CHECK(c.kernel.empty());
    CHECK(test::cli_config({"--firmware", "/usr/share/seabios/bios.bin"}).firmware == "/usr/share/seabios/bios.bin");
    CHECK(load(R"({"boot": {"firmware": "bios"}})").firmware == "bios");
    CHECK(load(R"({"boot": {"firmware": ""}})").firmware.empty());
    // Neither a kernel nor firmware: the kernel is asked for, and firmware named.
    CHECK_THAT(test::cli_error({"--memory", "1G"}), Contains("--kernel: a path is required") && Contains("--firmware"));
    // Both: the firmware boots the kernel; an initramfs needs a kernel.
    auto kf = test::cli_config({"--firmware", "bios", "--kernel", "/k", "--initramfs", "/i"});
    CHECK(kf.firmware == "bios");
    CHECK(kf.kernel == "/k");
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--initramfs", "/i"}), Contains("needs --kernel"));
    auto u = test::cli_config({"--firmware", "uefi,vars=/v/vm.vars"});
    CHECK(u.firmware == "uefi");
    CHECK(u.firmware_vars == "/v/vm.vars");
    CHECK(same(load(vmm::config_to_text(u)), u));
    CHECK(test::cli_config({"--firmware", "uefi"}).firmware_vars.empty());
    CHECK_THAT(test::cli_error({"--firmware", "bios,vars=/v"}), Contains("only UEFI firmware keeps variables"));
    CHECK_THAT(test::cli_error({"--firmware", "uefi,vars"}), Contains("key=value"));
    CHECK_THAT(test::cli_error({"--firmware", "uefi,size=4"}), Contains("unknown key \"size\""));
    CHECK_THAT(error_of_json(R"({"boot": {"firmware": 1}})"), Contains("boot.firmware: expected a string"));
    CHECK(load(R"({"boot": {"firmware": "uefi", "firmware_vars": "/v"}})").firmware_vars == "/v");
    // bootindex on every bootable device, each value once.
    auto b = test::cli_config({"--firmware", "bios", "--disk", "path=/d,bootindex=2", "--scsi-disk", "path=/s,bootindex=1",
                  "--cdrom", "path=/c.iso,bootindex=0", "--net", "tap=t0,bootindex=3"});
    CHECK(b.disks.at(0).bootindex == 2);
    CHECK(b.nets.at(0).bootindex == 3);
    REQUIRE(b.scsi.size() == 2);
    CHECK(b.scsi[0].bootindex == 1);
    CHECK(b.scsi[1].bootindex == 0);
    CHECK(same(load(vmm::config_to_text(b)), b));
    CHECK(test::cli_config({"--firmware", "bios", "--disk", "path=/d"}).disks.at(0).bootindex == -1);
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--disk", "path=/d,bootindex=1", "--cdrom", "path=/c,bootindex=1"}),
               Contains("bootindex 1 is given twice") && Contains("disk /d") && Contains("CD-ROM /c"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--disk", "path=/d,bootindex=10000"}), Contains("bootindex"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--disk", "path=/d,bootindex=x"}), Contains("bootindex"));
    CHECK(load(R"({"disks": [{"path": "/d", "bootindex": "none"}]})").disks.at(0).bootindex == -1);
    CHECK(load(R"({"scsi": {"cdroms": [{"path": "/c", "bootindex": 4}]}})").scsi.at(0).bootindex == 4);
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t", "bootindex": -1}]})"), Contains("net[0].bootindex"));
    // --net rom=: auto (""), off or a path; JSON the same.
    CHECK(test::cli_config({"--firmware", "bios", "--net", "tap=t0"}).nets.at(0).rom.empty());
    CHECK(test::cli_config({"--firmware", "bios", "--net", "tap=t0,rom=auto"}).nets.at(0).rom.empty());
    CHECK(test::cli_config({"--firmware", "bios", "--net", "tap=t0,rom=off"}).nets.at(0).rom == "off");
    auto r = test::cli_config({"--firmware", "bios", "--net", "tap=t0,rom=/r.rom", "--net", "tap=t1,rom=off", "--net", "tap=t2"});
    CHECK(r.nets.at(0).rom == "/r.rom");
    CHECK(same(load(vmm::config_to_text(r)), r));
    CHECK(load(R"({"net": [{"tap": "t", "rom": "off"}]})").nets.at(0).rom == "off");
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--net", "tap=t0,rom="}), Contains("empty path"));
    CHECK_THAT(error_of_json(R"({"net": [{"tap": "t", "rom": 1}]})"), Contains("net[0].rom"));
    // --boot order=: devices without bootindex get one, kind by kind, above
    // the explicit values; explicit values stay; kinds not listed get none.
    auto o = test::cli_config({"--firmware", "bios", "--disk", "path=/d0", "--disk", "path=/d1,bootindex=5", "--scsi-disk", "path=/s",
                  "--cdrom", "path=/c", "--net", "tap=t0", "--boot", "order=cdrom,disk"});
    CHECK(o.boot_order == std::vector<std::string>{"cdrom", "disk"});
    CHECK(o.scsi.at(1).bootindex == 6);   // the CD-ROM first
    CHECK(o.disks.at(0).bootindex == 7);  // then the disks in order: virtio-blk, then SCSI
    CHECK(o.disks.at(1).bootindex == 5);
    CHECK(o.scsi.at(0).bootindex == 8);
    CHECK(o.nets.at(0).bootindex == -1);  // net not listed
    CHECK(same(load(vmm::config_to_text(o)), o));
    auto again = load(vmm::config_to_text(o));
    vmm::check::apply_boot_order(again);  // idempotent
    CHECK(same(again, o));
    auto n = test::cli_config({"--firmware", "bios", "--disk", "path=/d", "--net", "tap=t0", "--boot", "order=net,disk"});
    CHECK(n.nets.at(0).bootindex == 0);
    CHECK(n.disks.at(0).bootindex == 1);
    CHECK(load(R"({"boot": {"firmware": "bios", "order": ["disk"]}, "disks": [{"path": "/d"}]})").boot_order ==
          std::vector<std::string>{"disk"});
    CHECK(load(R"({"boot": {"order": []}})").boot_order.empty());
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--boot", "order=disk,floppy"}), Contains("unknown device kind \"floppy\""));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--boot", "order=disk,disk"}), Contains("\"disk\" is given twice"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--boot", "cdrom"}), Contains("expected order="));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--boot", "order="}), Contains("unknown device kind \"\""));
    CHECK_THAT(error_of_json(R"({"boot": {"order": "disk"}})"), Contains("boot.order: expected an array"));
    CHECK_THAT(error_of_json(R"({"boot": {"order": ["disk", 1]}})"), Contains("boot.order[1]"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--disk", "path=/d,bootindex=9999", "--cdrom", "/c", "--boot",
                             "order=cdrom"}),
               Contains("no bootindex left"));
    // --fw-cfg: opt/ names, a file or a string, each name once.
    auto fc = test::cli_config({"--firmware", "bios", "--fw-cfg", "name=opt/a,string=hello", "--fw-cfg", "name=opt/b,file=/f"});
    REQUIRE(fc.fw_cfg.size() == 2);
    CHECK(fc.fw_cfg[0].text == "hello");
    CHECK(fc.fw_cfg[1].file == "/f");
    CHECK(same(load(vmm::config_to_text(fc)), fc));
    CHECK(load(vmm::config_to_text(fc)).fw_cfg.at(1).file == "/f");
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--fw-cfg", "name=etc/e820,string=x"}), Contains("must start with opt/"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--fw-cfg", "name=opt/a,string=x", "--fw-cfg", "name=opt/a,file=/y"}),
               Contains("given twice"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--fw-cfg", "name=opt/a,string=x,file=/y"}), Contains("one of"));
    CHECK_THAT(test::cli_error({"--firmware", "bios", "--fw-cfg", "name=opt/" + std::string(60, 'x') + ",string=x"}),
               Contains("longer than 55"));
    CHECK_THAT(error_of_json(R"({"fw_cfg": [{"name": "opt/a"}]})"), Contains("fw_cfg[0]: give exactly one"));
    // --firmware off drops a --config file's firmware, so its kernel boots.
    TempDir dir;
    auto f = dir.write("fw.json", R"({"boot": {"firmware": "bios"}})");
    CHECK(test::cli_config({"--config", f, "--firmware", "off", "--kernel", "/k"}).firmware.empty());
    CHECK(test::cli_config({"--config", f}).firmware == "bios");
    auto nofw = dir.write("nofw.json", R"({"boot": {"kernel": "/k", "firmware_vars": "/v"}})");
    CHECK_THAT(test::cli_error({"--config", nofw}), Contains("no --firmware"));
}

TEST_CASE("config json: every examples/*.json loads and round-trips", "[vmm][config]") {
    std::string dir = std::string(VMM_SOURCE_DIR) + "/examples";
    DIR* d = ::opendir(dir.c_str());
    REQUIRE(d != nullptr);
    std::vector<std::string> names;
    while (auto* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    CHECK(names.size() >= 5);
    for (auto& n : names) {
        INFO(n);
        std::string path = dir + "/" + n;
        vmm::VmConfig c;
        REQUIRE_NOTHROW(c = vmm::config_from_file(path));
        CHECK_FALSE(c.kernel.empty());
        auto back = load(vmm::config_to_text(c));
        CHECK(same(back, c));
        // Bootable elsewhere: the test suite overrides the host paths on the command line.
        auto run = test::cli_config({"--config", path, "--kernel", "/t/k", "--initramfs", "/t/i", "--disk", "path=/t/d.img"});
        CHECK(run.kernel == "/t/k");
        CHECK(run.initramfs == "/t/i");
        REQUIRE(run.disks.size() == 1);
        CHECK(run.disks[0].path == "/t/d.img");
    }
}

TEST_CASE("config json: docs/options.md documents every option and every key", "[vmm][config]") {
    std::ifstream in(std::string(VMM_SOURCE_DIR) + "/docs/options.md");
    REQUIRE(in);
    std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Every long option of --help has a row in the options table.
    auto r = vmm::parse_cli({"--help"});
    REQUIRE(std::holds_alternative<vmm::CliHelp>(r));
    const std::string& help = std::get<vmm::CliHelp>(r).text;
    size_t options = 0;
    for (size_t p = help.find("\n  --"); p != std::string::npos; p = help.find("\n  --", p + 1)) {
        size_t b = p + 3, e = b;
        while (e < help.size() && (std::isalnum(static_cast<unsigned char>(help[e])) || help[e] == '-')) ++e;
        std::string opt = help.substr(b, e - b);
        INFO(opt);
        CHECK(doc.find("| `" + opt) != std::string::npos);
        ++options;
    }
    CHECK(options >= 18);
    // Every key config_to_json writes has a row in the schema table.
    vmm::VmConfig c;
    c.disks.push_back({"/a", false, "", 1, false, -1});
    c.serial_ports.push_back({"p", vmm::SerialMode::Socket, "/p.sock"});
    c.fw_cfg.push_back({"opt/a", "", "text"});
    json j = vmm::config_to_json(c);
    for (auto& [section, body] : j.items()) {
        const json& fields = body.is_array() ? body[0] : body;
        for (auto& [key, value] : fields.items()) {
            std::string row = "| `" + section + (body.is_array() ? "[]." : ".") + key + "`";
            INFO(row);
            CHECK(doc.find(row) != std::string::npos);
        }
    }
}

TEST_CASE("config: no raw library errors and no silently cut strings", "[vmm][config]") {
    // A number too large even for a double: the file is named, not
    // "[json.exception.out_of_range.406]".
    std::string e = error_of_json(R"({"machine": {"cpus": )" + std::string(401, '9') + "}}");
    CHECK_THAT(e, Catch::Contains("vm.json") && Catch::Contains("number overflow"));
    CHECK_THAT(e, !Catch::Contains("json.exception"));
    // NUL characters are refused with the JSON path, not cut off later.
    CHECK_THAT(error_of_json(R"({"boot": {"kernel": "/k", "cmdline": "a\u0000b"}})"),
               Catch::Contains("boot.cmdline: contains a NUL character"));
    CHECK_THAT(error_of_json(R"({"disks": [{"path": "/d\u0000.img"}]})"),
               Catch::Contains("disks[0].path: contains a NUL character"));
    // A command-line value that is not UTF-8 fails with the option's name
    // (it would end as a raw type_error.316 in --print-config).
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cmdline", "console=ttyS0 \xff\xfe"}),
               Catch::Contains("--cmdline: the value is not valid UTF-8 (byte 14 is 0xff)"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cmdline", "\xc0\xaf"}), Catch::Contains("not valid UTF-8"));  // overlong
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cmdline", "\xed\xa0\x80"}), Catch::Contains("not valid UTF-8"));  // surrogate
    CHECK_NOTHROW(vmm::parse_cli({"--kernel", "/k", "--cmdline", "grüße \xf0\x9f\x90\xa7"}));
}

TEST_CASE("config json: machine.uuid and smbios are checked as on the command line", "[vmm][config]") {
    CHECK_THAT(error_of_json(R"({"machine": {"uuid": "nope"}})"),
               Contains("vm.json: machine.uuid: \"nope\" is not a UUID"));
    CHECK_THAT(error_of_json(R"({"smbios": [{"type": 1, "serial": "a"}, {"type": 1}]})"),
               Contains("vm.json: smbios: type=1 is given twice"));
    CHECK_THAT(error_of_json(R"({"smbios": [{"serial": "a"}]})"), Contains("smbios[0]: missing \"type\""));
    CHECK_THAT(error_of_json(R"({"smbios": [{"type": 3, "product": "a"}]})"), Contains("type=3 has no product="));
}

TEST_CASE("config json: machine.rtc_base", "[vmm][config]") {
    CHECK_THAT(error_of_json(R"({"machine": {"rtc_base": "mars"}})"),
               Contains("vm.json: machine.rtc_base: \"mars\" is not utc or localtime"));
}
