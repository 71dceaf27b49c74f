#include <catch2/catch.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "cli_util.h"
#include "test_util.h"
#include "vmm/cli.h"
#include "vmm/config_check.h"
#include "vmm/core/error.h"

using Catch::Matchers::Contains;

namespace {
vmm::VmConfig parse(std::vector<std::string> args) {
    auto r = vmm::parse_cli(args);
    REQUIRE(std::holds_alternative<vmm::VmConfig>(r));
    return std::get<vmm::VmConfig>(r);
}
}  // namespace

TEST_CASE("cli: sizes") {
    CHECK(vmm::parse_size("512M", "m") == 512ull << 20);
    CHECK(vmm::parse_size("2G", "m") == 2ull << 30);
    CHECK(vmm::parse_size("2gib", "m") == 2ull << 30);
    CHECK(vmm::parse_size("4096K", "m") == 4ull << 20);
    CHECK(vmm::parse_size("1T", "m") == 1ull << 40);
    CHECK(vmm::parse_size("256", "m") == 256ull << 20);  // bare number: MiB
    CHECK_THROWS_WITH(vmm::parse_size("12Q", "--memory"), Contains("--memory") && Contains("\"12Q\" is not a size"));
    CHECK_THROWS_WITH(vmm::parse_size("", "--memory"), Contains("is not a size"));
    CHECK_THROWS_WITH(vmm::parse_size("G", "--memory"), Contains("is not a size"));
    CHECK_THROWS_WITH(vmm::parse_size("-1G", "--memory"), Contains("is not a size"));
    CHECK_THROWS_WITH(vmm::parse_size("99999999999999999999", "--memory"), Contains("too large"));
    CHECK_THROWS_WITH(vmm::parse_size("99999999999T", "--memory"), Contains("too large"));
}

TEST_CASE("cli: defaults and every option") {
    auto c = parse({"--kernel", "/k"});
    CHECK(c.kernel == "/k");
    CHECK(c.cpus == 1);
    CHECK(c.memory == 512ull << 20);
    CHECK(c.serial == vmm::SerialMode::Tty);
    CHECK_THAT(c.cmdline, Contains("console=ttyS0"));
    CHECK_FALSE(c.boot_report);
    CHECK_FALSE(c.rng);

    c = parse({"--kernel", "/k", "--initramfs", "/i", "--cmdline", "quiet x=1", "--cpus", "4", "--memory", "2G",
               "--serial", "file=/tmp/out", "--boot-report", "--reboot", "--log-level", "debug", "--rng"});
    CHECK(c.initramfs == "/i");
    CHECK(c.cmdline == "quiet x=1");
    CHECK(c.cpus == 4);
    CHECK(c.memory == 2ull << 30);
    CHECK(c.serial == vmm::SerialMode::File);
    CHECK(c.serial_path == "/tmp/out");
    CHECK(c.boot_report);
    CHECK(c.allow_reboot);
    CHECK(c.log_level == "debug");
    CHECK(c.rng);
    CHECK(parse({"--kernel", "/k", "--serial", "off"}).serial == vmm::SerialMode::Off);
}

TEST_CASE("cli: --balloon") {
    CHECK_FALSE(parse({"--kernel", "/k"}).balloon);
    auto c = parse({"--kernel", "/k", "--balloon", "size=0"});
    REQUIRE(c.balloon);
    CHECK(c.balloon->size == 0);
    CHECK_FALSE(c.balloon->deflate_on_oom);
    CHECK_FALSE(c.balloon->free_page_reporting);
    CHECK(c.balloon->stats_interval_s == 5);
    c = parse({"--kernel", "/k", "--memory", "1G", "--balloon",
               "size=256M,deflate_on_oom=on,free_page_reporting=on,stats_interval=0"});
    REQUIRE(c.balloon);
    CHECK(c.balloon->size == 256ull << 20);
    CHECK(c.balloon->deflate_on_oom);
    CHECK(c.balloon->free_page_reporting);
    CHECK(c.balloon->stats_interval_s == 0);
    CHECK_FALSE(parse({"--kernel", "/k", "--balloon", "size=1M", "--balloon", "off"}).balloon);
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=512M"}),
               Contains("--balloon size: a balloon of 512 MiB leaves the guest less than 32 MiB of its 512 MiB"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=481M"}), Contains("leaves the guest less than 32 MiB"));
    CHECK(parse({"--kernel", "/k", "--balloon", "size=480M"}).balloon->size == 480ull << 20);
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=1001K"}), Contains("not a whole number of 4 KiB pages"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=big"}), Contains("--balloon size"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=1M,color=red"}), Contains("--balloon: unknown key \"color\""));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=1M,deflate_on_oom=maybe"}), Contains("is not on or off"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "size=1M,stats_interval=3601"}), Contains("--balloon stats_interval"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--balloon", "256M"}), Contains("is not key=value"));
}

TEST_CASE("cli: --net") {
    CHECK(parse({"--kernel", "/k"}).nets.empty());
    auto c = parse({"--kernel", "/k", "--net", "tap=tap0", "--net", "tap=tap1,mac=52:54:00:00:00:09,num_queues=2,packed=off"});
    REQUIRE(c.nets.size() == 2);
    CHECK(c.nets[0].tap == "tap0");
    CHECK(c.nets[0].num_queues == 1);
    CHECK(c.nets[0].packed);
    CHECK(c.nets[1].mac == "52:54:00:00:00:09");
    CHECK(c.nets[1].num_queues == 2);
    CHECK_FALSE(c.nets[1].packed);
    // The default MAC is stable and locally derived from the tap name.
    auto m0 = vmm::check::effective_mac(c.nets[0]);
    vmm::NetConfig tap0, tap2;
    tap0.tap = "tap0";
    tap2.tap = "tap2";
    CHECK(m0 == vmm::check::effective_mac(tap0));
    CHECK(m0 != vmm::check::effective_mac(tap2));
    CHECK((m0[0] == 0x52 && m0[1] == 0x54 && m0[2] == 0x00));
    CHECK(vmm::check::effective_mac(c.nets[1]) == std::array<uint8_t, 6>{0x52, 0x54, 0, 0, 0, 9});
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "mac=52:54:00:00:00:09"}), Contains("tap=NAME is required"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=abcdefghijklmnop"}), Contains("1-15 characters"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t,mac=52:54:00:00:00"}), Contains("is not a MAC address"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t,mac=52-54-00-00-00-01"}), Contains("is not a MAC address"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t,mac=00:00:00:00:00:00"}), Contains("all-zero"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t,num_queues=0"}), Contains("--net num_queues"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t,vhost=on"}), Contains("unknown key \"vhost\""));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t,packed=maybe"}),
               Contains("--net packed: \"maybe\" is not on or off"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=a,mac=52:54:00:00:00:01", "--net", "tap=b,mac=52:54:00:00:00:01"}),
               Contains("same MAC address"));
}

TEST_CASE("cli: help documents every option") {
    auto r = vmm::parse_cli({"--help"});
    REQUIRE(std::holds_alternative<vmm::CliHelp>(r));
    const auto& text = std::get<vmm::CliHelp>(r).text;
    for (const char* opt : {"--kernel", "--initramfs", "--cmdline", "--cpus", "--memory", "--serial", "--boot-report",
                            "--reboot", "--log-level", "Exit status"})
        CHECK_THAT(text, Contains(opt));
}

TEST_CASE("cli: bad input gets a one-line message naming the option") {
    CHECK_THAT(test::cli_error({}), Contains("--kernel"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cpus", "0"}), Contains("--cpus"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cpus", "255"}), Contains("--cpus") && Contains("out of range"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cpus", "four"}), Contains("--cpus"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--memory", "12Q"}), Contains("--memory: \"12Q\" is not a size"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--memory", "16M"}), Contains("16 MiB is too little"));
    // Exact sizes: no rounding onto the limit, no "0 MiB".
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--memory", "512K"}), Contains("512 KiB is too little"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--memory", "1048577"}),
               Contains("1048577 MiB is more than the supported 1 TiB"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--memory", "2048G"}), Contains("--memory"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--memory", "1000K"}), Contains("--memory"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--serial", "pty"}), Contains("--serial"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--serial", "file="}), Contains("--serial"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--log-level", "loud"}), Contains("--log-level"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--bogus"}), Contains("--bogus"));
    auto msg = test::cli_error({"--kernel", "/k", "--cpus", "0"});
    CHECK(msg.find('\n') == std::string::npos);
}

TEST_CASE("cli: --disk and --console") {
    auto c = parse({"--kernel", "k"});
    CHECK(c.disks.empty());
    CHECK(c.console == vmm::SerialMode::Off);

    c = parse({"--kernel", "k", "--disk", "path=/a.img", "--disk",
               "path=/b.img,readonly=on,serial=SN-1,num_queues=4,direct=on,slot=7,packed=off,poll_us=0", "--console",
               "file=/tmp/c.log"});
    REQUIRE(c.disks.size() == 2);
    CHECK(c.disks[0].path == "/a.img");
    CHECK_FALSE(c.disks[0].readonly);
    CHECK(c.disks[0].num_queues == 1);
    CHECK(c.disks[0].slot == -1);
    CHECK(c.disks[1].path == "/b.img");
    CHECK(c.disks[1].readonly);
    CHECK(c.disks[1].serial == "SN-1");
    CHECK(c.disks[1].num_queues == 4);
    CHECK(c.disks[1].direct);
    CHECK(c.disks[1].slot == 7);
    CHECK(c.disks[0].packed);
    CHECK_FALSE(c.disks[1].packed);
    CHECK(c.disks[0].poll_us == vmm::kDefaultPollUs);
    CHECK(c.disks[1].poll_us == 0);
    CHECK(c.disks[0].format == "auto");
    CHECK_FALSE(c.disks[0].snapshot);
    auto f = parse({"--kernel", "k", "--disk", "path=/a.qcow2,format=qcow2,snapshot=on", "--scsi-disk",
                    "path=/b.img,format=raw,snapshot=on", "--cdrom", "path=/c.iso,format=raw"});
    CHECK(f.disks[0].format == "qcow2");
    CHECK(f.disks[0].snapshot);
    CHECK(f.scsi[0].format == "raw");
    CHECK(f.scsi[0].snapshot);
    CHECK(f.scsi[1].format == "raw");
    CHECK(c.console == vmm::SerialMode::File);
    CHECK(c.console_path == "/tmp/c.log");
    CHECK(parse({"--kernel", "k", "--console", "tty"}).console == vmm::SerialMode::Tty);
}

TEST_CASE("cli: --scsi-disk and --cdrom") {
    auto c = parse({"--kernel", "k", "--cdrom", "/c.iso", "--scsi-disk", "path=/a.img", "--scsi-disk",
                    "path=/b.img,lun=0,readonly=on", "--cdrom", "path=/d.iso,lun=9"});
    REQUIRE(c.scsi.size() == 4);  // disks first, then CD-ROMs
    CHECK(c.scsi[0].path == "/a.img");
    CHECK(c.scsi[0].lun == -1);
    CHECK(c.scsi[1].readonly);
    CHECK(c.scsi[1].lun == 0);
    CHECK(c.scsi[2].path == "/c.iso");
    CHECK(c.scsi[2].cdrom);
    CHECK(c.scsi[2].readonly);
    CHECK(c.scsi[3].lun == 9);
    CHECK(vmm::check::scsi_luns(c.scsi, "x") == std::vector<uint32_t>{1, 0, 2, 9});

    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--scsi-disk", "path=/a,lun=3", "--cdrom", "path=/c,lun=3"}),
                      Contains("lun 3 is given twice"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--scsi-disk", "path=/a,lun=16384"}), Contains("out of range"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--scsi-disk", "/a.img"}), Contains("is not key=value"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--scsi-disk", "lun=1"}), Contains("path=FILE is required"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--cdrom", "path=/c,readonly=off"}),
                      Contains("unknown key \"readonly\""));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--cdrom", ""}), Contains("--cdrom"));
    // A spec that does not start with path= is still a spec, not a file name.
    auto l = parse({"--kernel", "k", "--cdrom", "lun=3,path=/x.iso"});
    REQUIRE(l.scsi.size() == 1);
    CHECK(l.scsi[0].path == "/x.iso");
    CHECK(l.scsi[0].lun == 3);
    CHECK(parse({"--kernel", "k", "--cdrom", "/iso/a=b.iso"}).scsi[0].path == "/iso/a=b.iso");  // no key: a file
    std::vector<std::string> many = {"--kernel", "k"};
    for (int i = 0; i < 1025; ++i) many.insert(many.end(), {"--scsi-disk", "path=/x" + std::to_string(i)});
    CHECK_THROWS_WITH(vmm::parse_cli(many), Contains("at most 1024"));
}

TEST_CASE("cli: bad --disk and --console values name what is wrong") {
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "readonly=on"}), Contains("path=FILE is required"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "/a.img"}), Contains("is not key=value"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,speed=9"}),
                      Contains("unknown key \"speed\""));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,readonly=maybe"}),
                      Contains("--disk readonly") && Contains("not on or off"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,num_queues=0"}), Contains("out of range"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,num_queues=x"}), Contains("not a number"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,serial=123456789012345678901"}),
                      Contains("longer than 20"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,serial=a b"}), Contains("printable"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,slot=32"}), Contains("out of range"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,poll_us=1001"}),
                      Contains("--disk poll_us") && Contains("out of range (0..1000)"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,poll_us=-1"}), Contains("not a number"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,format=vmdk"}),
                      Contains("--disk format") && Contains("not an image format (auto, raw or qcow2)"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,snapshot=yes"}),
                      Contains("--disk snapshot") && Contains("not on or off"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--cdrom", "path=/c,snapshot=on"}),
                      Contains("unknown key \"snapshot\""));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,slot=3", "--disk", "path=/b,slot=3"}),
                      Contains("slot 3 is given twice"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--disk", "path=/a,,readonly=on"}), Contains("key=value"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--console", "pipe"}), Contains("--console"));
    CHECK_THROWS_WITH(vmm::parse_cli({"--kernel", "k", "--console", "file="}), Contains("--console"));
}

TEST_CASE("cli: a kernel or initramfs from --config is named by its key there") {
    test::TempDir dir;
    const std::string conf = dir.path + "/vm.json";
    std::ofstream(conf) << R"({"boot": {"kernel": "/k", "initramfs": "/i"}})";
    auto cfg = parse({"--config", conf});
    CHECK(cfg.kernel_what == conf + ": boot.kernel");
    CHECK(cfg.initramfs_what == conf + ": boot.initramfs");
    // Given on the command line, they are the options.
    cfg = parse({"--config", conf, "--initramfs", "/j"});
    CHECK(cfg.kernel_what == conf + ": boot.kernel");
    CHECK(cfg.initramfs_what == "--initramfs");
    cfg = parse({"--kernel", "/k"});
    CHECK(cfg.kernel_what == "--kernel");
}

TEST_CASE("cli: a key twice in one option and two config files are errors; a repeated option keeps its last value") {
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--disk", "path=/a,path=/b"}), Contains("path= is given twice"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--net", "tap=t0,mac=52:54:00:00:00:01,mac=52:54:00:00:00:02"}),
               Contains("mac= is given twice"));
    CHECK_THAT(test::cli_error({"--config", "/a.json", "--config", "/b.json"}), Contains("--config is given 2 times"));
    // Scripts append overrides: the last value counts (with a warning).
    CHECK(parse({"--kernel", "/k", "--cpus", "1", "--cpus", "2"}).cpus == 2);
}

TEST_CASE("cli: --uuid and --smbios take what SMBIOS can say and name what is wrong") {
    auto c = parse({"--kernel", "/k", "--uuid", "4f1c2d3e-0a1b-4c5d-8e9f-0123456789AB", "--smbios",
                    "type=1,serial=ds=nocloud;s=http://10.0.2.2/,product=CI box", "--smbios", "type=0,vendor=Acme"});
    CHECK(c.uuid == "4f1c2d3e-0a1b-4c5d-8e9f-0123456789AB");
    REQUIRE(c.smbios.size() == 2);
    CHECK(c.smbios[0].type == 1);
    CHECK(c.smbios[0].serial == "ds=nocloud;s=http://10.0.2.2/");
    CHECK(c.smbios[0].product == "CI box");
    CHECK(c.smbios[1].vendor == "Acme");

    CHECK_THAT(test::cli_error({"--kernel", "/k", "--uuid", "4f1c2d3e-0a1b-4c5d-8e9f"}),
               Contains("--uuid: \"4f1c2d3e-0a1b-4c5d-8e9f\" is not a UUID"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--uuid", "4f1c2d3e-0a1b-4c5d-8e9f-0123456789xy"}), Contains("not a UUID"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=2,serial=x"}),
               Contains("--smbios: type=2 is not supported (0 BIOS, 1 system, 3 chassis)"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "serial=x"}), Contains("type=0|1|3 is required"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=1,serial=a", "--smbios", "type=1,sku=b"}),
               Contains("--smbios: type=1 is given twice"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=0,serial=x"}), Contains("--smbios: type=0 has no serial="));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=3,family=x"}), Contains("type=3 has no family="));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=1,colour=red"}), Contains("unknown key \"colour\""));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=1,serial=" + std::string(65, 'x')}),
               Contains("--smbios serial") && Contains("longer than 64 characters"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--smbios", "type=1,serial=a\tb"}), Contains("must be printable ASCII"));
}

TEST_CASE("cli: --rtc base=utc|localtime") {
    CHECK_FALSE(parse({"--kernel", "/k"}).rtc_localtime);
    CHECK(parse({"--kernel", "/k", "--rtc", "base=localtime"}).rtc_localtime);
    CHECK_FALSE(parse({"--kernel", "/k", "--rtc", "base=utc"}).rtc_localtime);
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--rtc", "base=mars"}), Contains("--rtc base: \"mars\" is not utc or localtime"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--rtc", "localtime"}), Contains("--rtc: expected base=utc or base=localtime"));
}
