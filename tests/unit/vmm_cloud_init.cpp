// The cloud-init NoCloud seed: the ISO 9660 writer (structure read back
// from the bytes, both trees, and xorriso's view when it is installed), the default
// meta-data, the sealed memfd, and --cloud-init / "cloud_init" in the
// configuration.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "test_util.h"
#include "virtio/disk.h"
#include "virtio/scsi.h"
#include "vmm/cli.h"
#include "vmm/cloud_init.h"
#include "vmm/config_check.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"
#include "vmm/iso9660.h"
#include "vmm/output_file.h"

using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
namespace iso = vmm::iso9660;

namespace {

constexpr size_t kS = iso::kSectorSize;

uint32_t le32(const std::vector<uint8_t>& b, size_t off) { return static_cast<uint32_t>(test::rd(b, off, 4)); }
uint32_t be32(const std::vector<uint8_t>& b, size_t off) {
    return static_cast<uint32_t>(b.at(off) << 24 | b.at(off + 1) << 16 | b.at(off + 2) << 8 | b.at(off + 3));
}
// A both-byte-order field: both halves agree.
uint32_t both32(const std::vector<uint8_t>& b, size_t off) {
    CHECK(le32(b, off) == be32(b, off + 4));
    return le32(b, off);
}
std::string text(const std::vector<uint8_t>& b, size_t off, size_t n) {
    return {reinterpret_cast<const char*>(b.data() + off), n};
}
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

struct Record {
    std::string id;       // level-1 identifier
    std::string rr_name;  // Rock Ridge NM
    uint32_t extent, size, mode = 0;
    bool dir;
    std::vector<std::string> susp;  // signatures in order
};

// The root directory as records, read the way a reader does: records up
// to a zero length byte, then the next sector. `descriptor`: 16 for the
// primary tree, 17 for the Joliet one (its names decoded from UCS-2 into
// rr_name, for ASCII names).
std::vector<Record> root_records(const std::vector<uint8_t>& img, size_t descriptor = 16) {
    const size_t pvd = descriptor * kS;
    const uint32_t extent = both32(img, pvd + 156 + 2), size = both32(img, pvd + 156 + 10);
    REQUIRE(size % kS == 0);
    REQUIRE((extent + size / kS) * kS <= img.size());
    std::vector<Record> out;
    for (size_t s = 0; s < size / kS; ++s) {
        size_t off = (extent + s) * kS, end = off + kS;
        while (off < end && img[off] != 0) {
            const size_t len = img[off];
            REQUIRE(len >= 34);
            REQUIRE(len % 2 == 0);
            REQUIRE(off + len <= end);  // never across a sector
            Record r;
            r.extent = both32(img, off + 2);
            r.size = both32(img, off + 10);
            r.dir = img[off + 25] & 2;
            const size_t idlen = img[off + 32];
            r.id = text(img, off + 33, idlen);
            if (descriptor == 17 && idlen > 1) {
                REQUIRE(idlen % 2 == 0);
                for (size_t i = 0; i < idlen; i += 2) {
                    CHECK(r.id[i] == 0);
                    r.rr_name.push_back(r.id[i + 1]);
                }
                REQUIRE(r.rr_name.size() > 2);
                CHECK(r.rr_name.substr(r.rr_name.size() - 2) == ";1");
                r.rr_name.resize(r.rr_name.size() - 2);
            }
            size_t su = off + 33 + idlen + (idlen % 2 == 0 ? 1 : 0);
            while (su + 4 <= off + len) {
                const std::string sig = text(img, su, 2);
                const size_t elen = img[su + 2];
                REQUIRE(elen >= 4);
                REQUIRE(su + elen <= off + len);
                r.susp.push_back(sig);
                if (sig == "NM") r.rr_name = text(img, su + 5, elen - 5);
                if (sig == "PX") r.mode = both32(img, su + 4);
                su += elen;
            }
            out.push_back(r);
            off += len;
        }
    }
    return out;
}

std::vector<iso::File> sample_files() {
    std::vector<iso::File> f;
    f.push_back({"user-data", bytes("#cloud-config\npassword: passw0rd\nchpasswd: {expire: false}\n")});
    f.push_back({"meta-data", bytes("instance-id: iid-1\nlocal-hostname: guest\n")});
    std::vector<uint8_t> big(3 * kS + 17);
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
    f.push_back({"network-config", big});
    f.push_back({"vendor-data", {}});
    return f;
}

std::string write_file(const std::string& path, const std::string& s) {
    std::ofstream(path, std::ios::binary) << s;
    return path;
}
std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}


}  // namespace

TEST_CASE("iso9660: volume descriptors, path tables and root directory", "[vmm][iso9660]") {
    auto files = sample_files();
    auto img = iso::build("cidata", files, 1700000000);  // 2023-11-14 22:13:20 UTC
    REQUIRE(img.size() % kS == 0);
    // System area, then the PVD and the terminator.
    CHECK(std::all_of(img.begin(), img.begin() + 16 * kS, [](uint8_t b) { return b == 0; }));
    const size_t pvd = 16 * kS;
    CHECK(img[pvd] == 1);
    CHECK(text(img, pvd + 1, 5) == "CD001");
    CHECK(img[pvd + 6] == 1);
    CHECK(text(img, pvd + 40, 32) == "cidata" + std::string(26, ' '));
    CHECK(both32(img, pvd + 80) * kS == img.size());  // volume space size
    CHECK(test::rd(img, pvd + 128, 2) == kS);           // logical block size
    CHECK(text(img, pvd + 813, 16) == "2023111422132000");
    CHECK(img[pvd + 881] == 1);
    // The Joliet descriptor: UCS-2 level 3, UCS-2 label, the same size.
    const size_t svd = 17 * kS;
    CHECK(img[svd] == 2);
    CHECK(text(img, svd + 1, 5) == "CD001");
    CHECK(text(img, svd + 88, 3) == "%/E");
    CHECK(text(img, svd + 40, 12) == std::string("\0c\0i\0d\0a\0t\0a", 12));
    CHECK(text(img, svd + 52, 2) == std::string("\0 ", 2));
    CHECK(both32(img, svd + 80) * kS == img.size());
    CHECK(img[18 * kS] == 255);
    CHECK(text(img, 18 * kS + 1, 5) == "CD001");
    // Path tables: one entry, the root, in both byte orders.
    const uint32_t root = both32(img, pvd + 156 + 2);
    CHECK(both32(img, pvd + 132) == 10);
    const uint32_t l = le32(img, pvd + 140), m = be32(img, pvd + 148);
    CHECK(img.at(l * kS) == 1);
    CHECK(le32(img, l * kS + 2) == root);
    CHECK(be32(img, m * kS + 2) == root);

    auto recs = root_records(img);
    REQUIRE(recs.size() == 2 + files.size());
    CHECK(recs[0].id == std::string(1, '\0'));
    CHECK(recs[1].id == std::string(1, '\1'));
    CHECK(recs[0].extent == root);
    CHECK(recs[0].dir);
    // Rock Ridge: SP first in the root's ".", the ER behind CE.
    REQUIRE(recs[0].susp.size() >= 2);
    CHECK(recs[0].susp[0] == "SP");
    CHECK(recs[0].susp[1] == "CE");
    CHECK(recs[0].mode == 040555);
    // Files in identifier order, each with its Rock Ridge name and bytes.
    std::vector<std::string> ids;
    for (size_t i = 2; i < recs.size(); ++i) ids.push_back(recs[i].id);
    CHECK(ids == std::vector<std::string>{"META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1", "VENDOR_D.;1"});
    std::map<std::string, std::vector<uint8_t>> want;
    for (auto& f : files) want[f.name] = f.data;
    for (size_t i = 2; i < recs.size(); ++i) {
        const Record& r = recs[i];
        INFO(r.rr_name);
        REQUIRE(want.count(r.rr_name));
        CHECK_FALSE(r.dir);
        CHECK(r.mode == 0100444);
        const auto& data = want[r.rr_name];
        CHECK(r.size == data.size());
        if (data.empty()) continue;
        CHECK(r.extent > root);
        REQUIRE(static_cast<size_t>(r.extent) * kS + data.size() <= img.size());
        CHECK(std::equal(data.begin(), data.end(), img.begin() + static_cast<long>(r.extent * kS)));
    }
    // The Joliet tree: its own root and path tables, the same files.
    const uint32_t jroot = both32(img, svd + 156 + 2);
    CHECK(jroot != root);
    CHECK(le32(img, le32(img, svd + 140) * kS + 2) == jroot);
    CHECK(be32(img, be32(img, svd + 148) * kS + 2) == jroot);
    auto jrecs = root_records(img, 17);
    REQUIRE(jrecs.size() == recs.size());
    std::vector<std::string> jnames;
    for (size_t i = 2; i < jrecs.size(); ++i) {
        jnames.push_back(jrecs[i].rr_name);
        for (size_t k = 2; k < recs.size(); ++k)
            if (recs[k].rr_name == jrecs[i].rr_name) {
                CHECK(recs[k].extent == jrecs[i].extent);
                CHECK(recs[k].size == jrecs[i].size);
            }
    }
    CHECK(jnames == std::vector<std::string>{"meta-data", "network-config", "user-data", "vendor-data"});
}

TEST_CASE("iso9660: same input, same bytes; names and limits", "[vmm][iso9660]") {
    CHECK(iso::build("cidata", sample_files(), 1) == iso::build("cidata", sample_files(), 1));
    CHECK(iso::build("cidata", sample_files(), 1) != iso::build("cidata", sample_files(), 2));
    CHECK(iso::level1_name("user-data") == "USER_DAT.;1");
    CHECK(iso::level1_name("a.tar.gz") == "A_TAR.GZ;1");
    CHECK(iso::level1_name(".hidden") == "_HIDDEN.;1");
    // Names that clash at level 1 get distinct identifiers, and keep their own.
    auto img = iso::build("CIDATA", {{"user-data-1", bytes("a")}, {"user-data-2", bytes("b")}}, 0);
    auto recs = root_records(img);
    REQUIRE(recs.size() == 4);
    CHECK(recs[2].id != recs[3].id);
    std::set<std::string> names{recs[2].rr_name, recs[3].rr_name};
    CHECK(names == std::set<std::string>{"user-data-1", "user-data-2"});
    // Joliet keeps 64 characters and what it may hold; cut names stay distinct.
    const std::string long_a = std::string(70, 'a') + "1", long_b = std::string(70, 'a') + "2";
    img = iso::build("cidata", {{long_a, bytes("a")}, {long_b, bytes("b")}, {"a:b*c", bytes("c")}}, 0);
    std::set<std::string> joliet;
    for (auto& r : root_records(img, 17))
        if (!r.rr_name.empty()) joliet.insert(r.rr_name);
    CHECK(joliet == std::set<std::string>{"a_b_c", std::string(64, 'a'), std::string(62, 'a') + "~1"});
    std::set<std::string> rock;
    for (auto& r : root_records(img))
        if (!r.rr_name.empty()) rock.insert(r.rr_name);
    CHECK(rock == std::set<std::string>{"a:b*c", long_a, long_b});
    // Many files spill into more directory sectors, no record across one.
    std::vector<iso::File> many;
    for (size_t i = 0; i < iso::kMaxFiles; ++i) many.push_back({fmt::format("file-with-a-long-name-{}", i), bytes("x")});
    CHECK(root_records(iso::build("cidata", many, 0)).size() == iso::kMaxFiles + 2);

    CHECK_THROWS_WITH(iso::build("", {}, 0), Contains("volume label"));
    CHECK_THROWS_WITH(iso::build(std::string(33, 'x'), {}, 0), Contains("1..32"));
    CHECK_THROWS_WITH(iso::build("a\nb", {}, 0), Contains("printable"));
    CHECK_THROWS_WITH(iso::build("cidata", {{"a", {}}, {"a", {}}}, 0), Contains("\"a\" is given twice"));
    CHECK_THROWS_WITH(iso::build("cidata", {{"a/b", {}}}, 0), Contains("not a file name"));
    CHECK_THROWS_WITH(iso::build("cidata", {{"..", {}}}, 0), Contains("not a file name"));
    CHECK_THROWS_WITH(iso::build("cidata", {{"", {}}}, 0), Contains("1..128"));
    CHECK_THROWS_WITH(iso::build("cidata", {{std::string(129, 'n'), {}}}, 0), Contains("1..128"));
    many.push_back({"one-too-many", {}});
    CHECK_THROWS_WITH(iso::build("cidata", many, 0), Contains("at most 64"));
}

// What a real reader makes of it: xorriso (libisofs) lists the Rock Ridge
// names and extracts the bytes.
TEST_CASE("iso9660: xorriso reads the names and bytes back", "[vmm][iso9660]") {
    if (std::system("command -v xorriso >/dev/null 2>&1") != 0) {
        WARN("SKIP: xorriso not installed");
        return;
    }
    test::TempDir dir;
    auto files = sample_files();
    auto img = iso::build("cidata", files, 1700000000);
    std::ofstream(dir / "seed.iso", std::ios::binary).write(reinterpret_cast<const char*>(img.data()),
                                                             static_cast<std::streamsize>(img.size()));
    const std::string cmd = fmt::format("xorriso -osirrox on -indev {} -extract / {} >{} 2>&1", dir / "seed.iso",
                                        dir / "out", dir / "log");
    const int status = std::system(cmd.c_str());
    INFO(slurp(dir / "log"));
    REQUIRE(status == 0);
    for (auto& f : files) {
        INFO(f.name);
        CHECK(slurp(dir / ("out/" + f.name)) == std::string(f.data.begin(), f.data.end()));
    }
    // And the Joliet tree alone (Rock Ridge ignored).
    const std::string joliet = fmt::format("xorriso -read_fs norock -osirrox on -indev {} -extract / {} >{} 2>&1",
                                           dir / "seed.iso", dir / "joliet", dir / "log");
    REQUIRE(std::system(joliet.c_str()) == 0);
    for (auto& f : files) {
        INFO(f.name);
        CHECK(slurp(dir / ("joliet/" + f.name)) == std::string(f.data.begin(), f.data.end()));
    }
    const std::string pvd = fmt::format("xorriso -indev {} -pvd_info -toc >{} 2>&1", dir / "seed.iso", dir / "log");
    REQUIRE(std::system(pvd.c_str()) == 0);
    const std::string log = slurp(dir / "log");
    CHECK_THAT(log, Contains("Volume Id    : cidata"));
    CHECK_THAT(log, Contains("ISO offers   : Rock_Ridge Joliet"));
    CHECK_THAT(log, Contains("ISO loaded   : Rock_Ridge"));
}

TEST_CASE("cloud-init: default meta-data", "[vmm][cloud-init]") {
    vmm::VmConfig cfg;
    auto a = bytes("#cloud-config\n"), b = bytes("#cloud-config\nhostname: x\n");
    std::string md = vmm::default_cloud_init_meta_data(cfg, a, {});
    CHECK_THAT(md, Contains("instance-id: iid-"));
    CHECK_THAT(md, Contains("\nlocal-hostname: vmm\n"));
    CHECK(md == vmm::default_cloud_init_meta_data(cfg, a, {}));  // stable
    CHECK(md != vmm::default_cloud_init_meta_data(cfg, b, {}));  // new user-data, new instance
    CHECK(md != vmm::default_cloud_init_meta_data(cfg, a, b));
    cfg.uuid = "0123ABCD-0000-ffff-8000-0123456789AB";
    CHECK(vmm::default_cloud_init_meta_data(cfg, a, {}) ==
          "instance-id: iid-0123abcd-0000-ffff-8000-0123456789ab\nlocal-hostname: vmm\n");
}

TEST_CASE("cloud-init: the seed image and its sealed memfd", "[vmm][cloud-init]") {
    test::TempDir dir;
    vmm::VmConfig cfg;
    cfg.cloud_init = vmm::CloudInitConfig{write_file(dir / "u", "#cloud-config\n"), "", ""};
    auto img = vmm::make_cloud_init_image(cfg);
    CHECK(text(img, 16 * kS + 40, 6) == "cidata");
    std::map<std::string, Record> by_name;
    for (auto& r : root_records(img))
        if (!r.rr_name.empty()) by_name[r.rr_name] = r;
    REQUIRE(by_name.size() == 2);  // user-data and the default meta-data
    const Record& md = by_name.at("meta-data");
    CHECK_THAT(text(img, md.extent * kS, md.size), Contains("local-hostname: vmm"));
    CHECK(img == vmm::make_cloud_init_image(cfg));

    cfg.cloud_init->meta_data = write_file(dir / "m", "instance-id: mine\n");
    cfg.cloud_init->network_config = write_file(dir / "n", "version: 2\n");
    img = vmm::make_cloud_init_image(cfg);
    by_name.clear();
    for (auto& r : root_records(img))
        if (!r.rr_name.empty()) by_name[r.rr_name] = r;
    REQUIRE(by_name.size() == 3);
    CHECK(text(img, by_name.at("meta-data").extent * kS, by_name.at("meta-data").size) == "instance-id: mine\n");
    CHECK(text(img, by_name.at("network-config").extent * kS, by_name.at("network-config").size) == "version: 2\n");

    // The memfd: the image, sealed, and a read-only CD-ROM image to DiskImage.
    vmm::Fd seed = vmm::make_cloud_init_seed(cfg);
    REQUIRE(seed);
    int seals = ::fcntl(seed.get(), F_GET_SEALS);
    CHECK((seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)) ==
          (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL));
    CHECK(::pwrite(seed.get(), "x", 1, 0) < 0);
    std::vector<uint8_t> back(img.size());
    CHECK(::pread(seed.get(), back.data(), back.size(), 0) == static_cast<ssize_t>(img.size()));
    CHECK(back == img);
    vmm::virtio::DiskOptions o;
    o.path = "(cloud-init seed)";
    o.option = "--cloud-init";
    o.readonly = true;
    o.file = std::make_shared<const vmm::Fd>(std::move(seed));
    vmm::virtio::DiskImage disk(o);
    CHECK(disk.size_bytes() == img.size());
    CHECK(disk.readonly());
    CHECK(disk.fd() != o.file->get());
    o.direct = true;
    CHECK_THROWS_WITH(vmm::virtio::DiskImage(o), Contains("direct=on needs an image opened by path"));

    // The LUN the machine adds: the lowest free one after the configured
    // LUNs, a read-only CD-ROM of the image's size.
    std::vector<vmm::ScsiLunConfig> luns = {vmm::ScsiLunConfig{.path = "/d", .lun = 0}};
    luns.push_back(vmm::kCloudInitLunConfig);
    auto assigned = vmm::check::scsi_luns(luns, "test");
    CHECK(assigned.back() == 1);
    vmm::virtio::ScsiConfig sc;
    sc.luns.push_back(vmm::cloud_init_lun(cfg, assigned.back()));
    CHECK(sc.luns[0].cdrom);
    CHECK(sc.luns[0].disk.readonly);
    vmm::virtio::ScsiDevice dev(std::move(sc));
    const auto* lun = dev.target().find(1);
    REQUIRE(lun != nullptr);
    CHECK(lun->info().kind == vmm::virtio::scsi::Kind::Cdrom);
    CHECK(lun->info().readonly);
    CHECK(lun->info().blocks * kS == img.size());

    // Files that went away meanwhile: the message names the option.
    cfg.cloud_init->network_config = dir / "gone";
    CHECK_THROWS_WITH(vmm::make_cloud_init_image(cfg),
                      Equals("--cloud-init network-config=" + dir / "gone" + ": No such file or directory"));
}

TEST_CASE("cloud-init: --cloud-init and the cloud_init key", "[vmm][cloud-init][config]") {
    test::TempDir dir;
    const std::string u = write_file(dir / "user-data.yaml", "#cloud-config\n");
    const std::string m = write_file(dir / "meta", "instance-id: x\n");
    const std::string n = write_file(dir / "net", "version: 2\n");
    auto c = test::cli_config({"--kernel", "/k", "--cloud-init", "user-data=" + u});
    REQUIRE(c.cloud_init);
    CHECK(c.cloud_init->user_data == u);
    CHECK(c.cloud_init->meta_data.empty());
    CHECK(c.cloud_init->network_config.empty());
    CHECK_FALSE(test::cli_config({"--kernel", "/k"}).cloud_init);
    c = test::cli_config({"--kernel", "/k", "--cloud-init", "network-config=" + n + ",user-data=" + u + ",meta-data=" + m});
    REQUIRE(c.cloud_init);
    CHECK(c.cloud_init->meta_data == m);
    CHECK(c.cloud_init->network_config == n);
    // The files count as inputs: no console log may overwrite them.
    bool listed = false;
    for (auto& in : vmm::input_paths(c)) listed |= in.label == "--cloud-init meta-data=" + m;
    CHECK(listed);

    // --print-config and back; "off" and null remove it.
    auto r = vmm::parse_cli({"--kernel", "/k", "--cloud-init", "user-data=" + u + ",meta-data=" + m, "--print-config"});
    REQUIRE(std::holds_alternative<vmm::PrintConfig>(r));
    auto j = nlohmann::json::parse(std::get<vmm::PrintConfig>(r).json);
    CHECK(j["cloud_init"] == nlohmann::json{{"user_data", u}, {"meta_data", m}, {"network_config", ""}});
    vmm::VmConfig back;
    vmm::apply_json(back, j, "print");
    REQUIRE(back.cloud_init);
    CHECK(back.cloud_init->user_data == u);
    CHECK(back.cloud_init->meta_data == m);
    CHECK(vmm::config_to_json(vmm::VmConfig{})["cloud_init"].is_null());
    const std::string cfg = write_file(dir / "vm.json", j.dump());
    CHECK(test::cli_config({"--config", cfg}).cloud_init);
    CHECK_FALSE(test::cli_config({"--config", cfg, "--cloud-init", "off"}).cloud_init);
    j["cloud_init"] = nullptr;
    vmm::apply_json(back, j, "print");
    CHECK_FALSE(back.cloud_init);

    // Errors name the option or the key.
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cloud-init", "meta-data=" + m}),
               Contains("--cloud-init \"meta-data=" + m + "\": user-data=FILE is required"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cloud-init", "user-data=" + u + ",vendor-data=" + m}),
               Contains("--cloud-init: unknown key \"vendor-data\" (expected user-data, meta-data, network-config)"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cloud-init", "user-data="}), Contains("--cloud-init user-data: empty path"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cloud-init", "user-data=" + dir / "missing"}),
               Equals("--cloud-init user-data=" + dir / "missing" + ": No such file or directory"));
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cloud-init", "user-data=" + u + ",network-config=" + dir.path}),
               Equals("--cloud-init network-config=" + dir.path + ": not a regular file"));
    {
        std::ofstream big(dir / "big", std::ios::binary);
        big.seekp(static_cast<std::streamoff>(vmm::check::kMaxCloudInitFile));
        big.put('x');
    }
    CHECK_THAT(test::cli_error({"--kernel", "/k", "--cloud-init", "user-data=" + dir / "big"}),
               Contains("is too large for a cloud-init file (at most 16 MiB)"));
    const std::string no_user = write_file(dir / "no-user.json", R"({"boot": {"kernel": "/k"}, "cloud_init": {"meta_data": "/m"}})");
    CHECK_THAT(test::cli_error({"--config", no_user}), Contains(no_user + ": cloud_init: missing \"user_data\""));
    const std::string typo = write_file(dir / "typo.json", R"({"boot": {"kernel": "/k"}, "cloud_init": {"user_dat": "/u"}})");
    CHECK_THAT(test::cli_error({"--config", typo}), Contains(typo + ": cloud_init.user_dat: unknown key (did you mean \"user_data\"?)"));
    const std::string missing =
        write_file(dir / "missing.json", R"({"boot": {"kernel": "/k"}, "cloud_init": {"user_data": "/nonexistent/u"}})");
    CHECK_THAT(test::cli_error({"--config", missing}),
               Equals(missing + ": cloud_init.user_data /nonexistent/u: No such file or directory"));
    const std::string wrong = write_file(dir / "wrong.json", R"({"boot": {"kernel": "/k"}, "cloud_init": "u.yaml"})");
    CHECK_THAT(test::cli_error({"--config", wrong}), Contains(wrong + ": cloud_init: expected an object"));
}
