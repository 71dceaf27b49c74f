// The option table (vmm/options.*): its names are unique, the JSON keys it
// reads are the keys it writes, and docs/options.md is what it generates.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/cli.h"
#include "vmm/config_json.h"
#include "vmm/options.h"

using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

// Every key path of a document in json_keys() form: "disks[].path".
void paths(const json& j, const std::string& prefix, std::set<std::string>& out) {
    if (j.is_object()) {
        for (auto& [k, v] : j.items()) {
            std::string p = prefix.empty() ? k : prefix + "." + k;
            out.insert(p);
            paths(v, p, out);
        }
    } else if (j.is_array()) {
        for (auto& e : j)
            if (e.is_object()) paths(e, prefix + "[]", out);
    }
}

// Every list with an element, every either-or key of an element given once.
vmm::VmConfig every_key() {
    vmm::VmConfig c;
    c.kernel = "/k";
    c.disks.emplace_back().path = "/a";
    c.nets.emplace_back().tap = "tap0";
    c.balloon = vmm::BalloonConfig{};
    c.scsi.emplace_back().path = "/s";
    auto& cd = c.scsi.emplace_back();
    cd.path = "/c.iso";
    cd.readonly = cd.cdrom = true;
    c.serial_ports.push_back({"p", vmm::SerialMode::Socket, "/p.sock"});
    c.serial_ports.push_back({"q", vmm::SerialMode::File, "/q.log"});
    c.fw_cfg.push_back({"opt/a", "", "text"});
    c.fw_cfg.push_back({"opt/b", "/file", ""});
    c.boot_order = {"disk"};
    c.uuid = "00112233-4455-6677-8899-aabbccddeeff";
    c.rtc_localtime = true;
    vmm::SmbiosTypeConfig t0, t1, t3;
    t0.type = 0;
    t0.vendor = "v";
    t0.version = "1";
    t0.date = "01/02/2003";
    t1.type = 1;
    t1.manufacturer = "m";
    t1.product = "p";
    t1.version = "2";
    t1.serial = "s";
    t1.sku = "k";
    t1.family = "f";
    t3.type = 3;
    t3.manufacturer = "m3";
    t3.version = "3";
    t3.serial = "s3";
    t3.asset = "a";
    t3.sku = "k3";
    c.smbios = {t0, t1, t3};
    c.cloud_init = vmm::CloudInitConfig{"/u", "/m", "/n"};
    return c;
}

}  // namespace

TEST_CASE("options: command-line names and JSON keys are unique", "[vmm][options]") {
    std::set<std::string> names;
    for (auto& o : vmm::options::cli_options()) {
        INFO(o.name);
        CHECK(o.name.rfind("--", 0) == 0);
        CHECK(names.insert(o.name).second);
        CHECK_FALSE(o.help.empty());
        CHECK(o.flag == o.metavar.empty());
    }
    CHECK(names.size() >= 27);
    std::set<std::string> keys;
    for (auto& k : vmm::options::json_keys()) {
        INFO(k);
        CHECK(keys.insert(k).second);
    }
}

TEST_CASE("options: the JSON keys read are the keys --print-config writes", "[vmm][options]") {
    std::set<std::string> written;
    paths(vmm::config_to_json(every_key()), "", written);
    // The sections themselves ("machine") are not keys of the table; lists are.
    std::set<std::string> read;
    for (auto& k : vmm::options::json_keys()) {
        read.insert(k);
        for (size_t dot = k.find('.'); dot != std::string::npos; dot = k.find('.', dot + 1)) {
            std::string parent = k.substr(0, dot);
            if (parent.size() > 2 && parent.compare(parent.size() - 2, 2, "[]") == 0) parent.resize(parent.size() - 2);
            read.insert(parent);
        }
    }
    CHECK(written == read);
    // And the reader takes each of them: a document with every key parses
    // back to the same configuration.
    vmm::VmConfig back;
    vmm::apply_json(back, vmm::config_to_json(every_key()), "all");
    CHECK(vmm::config_to_text(back) == vmm::config_to_text(every_key()));
}

TEST_CASE("options: a config survives the command line, JSON and back", "[vmm][options]") {
    auto r = vmm::parse_cli({"--kernel", "/k", "--cpus", "3", "--memory", "1G", "--disk",
                             "path=/a,readonly=on,serial=S,num_queues=2,direct=on,slot=5,packed=off,bootindex=4",
                             "--net", "tap=t0,mac=52:54:00:00:00:01,num_queues=2,packed=off,bootindex=5,rom=off",
                             "--scsi-disk", "path=/s,lun=3,readonly=on,bootindex=6", "--cdrom", "/c.iso", "--balloon",
                             "size=64M,deflate_on_oom=on,free_page_reporting=on,stats_interval=9", "--serial-port",
                             "name=p,socket=/p.sock", "--fw-cfg", "name=opt/x,string=y", "--serial", "file=/s.log",
                             "--uuid", "0123ABCD-0000-ffff-8000-0123456789ab", "--rtc", "base=localtime", "--smbios", "type=1,serial=ds=nocloud",
                             "--smbios", "type=3,asset=rack 4,manufacturer=Acme",
                             "--console", "socket=/c.sock", "--timeout", "7", "--reboot", "--no-pvpanic", "--rng",
                             "--hugepages", "--boot-report", "--log-level", "info", "--log-file", "/l",
                             "--api-socket", "/api", "--print-config"});
    REQUIRE(std::holds_alternative<vmm::PrintConfig>(r));
    const std::string& text = std::get<vmm::PrintConfig>(r).json;
    json j = json::parse(text);
    CHECK(j["disks"][0]["slot"] == 5);
    CHECK(j["net"][0]["rom"] == "off");
    CHECK(j["balloon"]["stats_interval_s"] == 9);
    CHECK(j["devices"]["pvpanic"] == false);
    CHECK(j["scsi"]["cdroms"][0]["path"] == "/c.iso");
    CHECK(j["machine"]["uuid"] == "0123ABCD-0000-ffff-8000-0123456789ab");
    CHECK(j["machine"]["rtc_base"] == "localtime");
    CHECK(j["smbios"] == json::parse(R"([{"type": 1, "serial": "ds=nocloud"},
                                         {"type": 3, "manufacturer": "Acme", "asset": "rack 4"}])"));
    vmm::VmConfig back;
    vmm::apply_json(back, j, "print");
    CHECK(vmm::config_to_text(back) == text);
}

TEST_CASE("options: --help shows every option with its default", "[vmm][options]") {
    auto r = vmm::parse_cli({"--help"});
    REQUIRE(std::holds_alternative<vmm::CliHelp>(r));
    const std::string& help = std::get<vmm::CliHelp>(r).text;
    for (auto& o : vmm::options::cli_options()) {
        INFO(o.name);
        CHECK_THAT(help, Contains("  " + o.name + (o.metavar.empty() ? "" : " " + o.metavar)));
        CHECK_THAT(help, Contains(o.help.substr(0, 40)));
        if (!o.def.empty()) CHECK_THAT(help, Contains(o.metavar + "=" + o.def));
    }
    CHECK_THAT(help, Contains("--memory SIZE=512M"));
    CHECK_THAT(help, Contains("--serial MODE=tty"));
    CHECK_THAT(help, Contains("path=FILE[,readonly=on]"));
}

// docs/options.md is generated; regenerate it with
//   build/vmm --print-options-markdown > docs/options.md
TEST_CASE("options: docs/options.md is what the option table generates", "[vmm][options]") {
    std::ifstream in(std::string(VMM_SOURCE_DIR) + "/docs/options.md");
    REQUIRE(in);
    std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string now = vmm::options::reference_markdown();
    CHECK(doc == now);
    auto r = vmm::parse_cli({"--print-options-markdown"});
    REQUIRE(std::holds_alternative<vmm::CliHelp>(r));
    CHECK(std::get<vmm::CliHelp>(r).text == now);
    for (auto& k : vmm::options::json_keys()) {
        INFO(k);
        CHECK_THAT(doc, Contains("| `" + k + "` |"));
    }
}
