// Output files (serial and console logs, serial-port files, the log file)
// never destroy an input of the VM or a file another VMM holds, never hang
// on a FIFO, and are created owner-only; inputs never hang on a FIFO either.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "test_util.h"
#include "vmm/config_check.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"
#include "vmm/input_file.h"
#include "vmm/output_file.h"

using Catch::Matchers::Contains;

namespace {

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("output file: an input of the VM is refused, by identity, before it is touched", "[vmm][output]") {
    test::TempDir d;
    ::mkdir((d / "w").c_str(), 0700);
    vmm::VmConfig cfg;
    cfg.kernel = d / "w/kernel";
    write_file(cfg.kernel, "KERNEL");
    vmm::DiskConfig disk;
    disk.path = d / "disk.img";
    write_file(disk.path, "DISK");
    cfg.disks.push_back(disk);
    ::symlink(disk.path.c_str(), (d / "link").c_str());

    CHECK_THAT(error_of([&] { vmm::open_output(d / "w/../w/kernel", "--serial file", cfg, vmm::OutputMode::Truncate); }),
               Contains("also the VM's --kernel") && Contains("refusing to overwrite"));
    CHECK_THAT(error_of([&] { vmm::open_output(d / "link", "--console file", cfg, vmm::OutputMode::Truncate); }),
               Contains("also the VM's --disk path"));
    CHECK_THAT(error_of([&] { vmm::open_output(d / "disk.img", "--log-file", cfg, vmm::OutputMode::Append); }),
               Contains("--disk path"));
    CHECK(read_file(cfg.kernel) == "KERNEL");
    CHECK(read_file(disk.path) == "DISK");
}

TEST_CASE("output file: a file another process holds locked is refused, not truncated", "[vmm][output]") {
    test::TempDir d;
    std::string img = d / "other-vm.img";
    write_file(img, "SOMEONE ELSE'S DISK");
    // What a running VMM holds on its disk image (virtio/disk.cpp): an OFD
    // lock on its own open file description.
    vmm::Fd other(::open(img.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(other);
    struct flock lk {};
    lk.l_type = F_RDLCK;
    lk.l_whence = SEEK_SET;
    REQUIRE(::fcntl(other.get(), F_OFD_SETLK, &lk) == 0);
    CHECK_THAT(error_of([&] { vmm::open_output(img, "--serial file", {}, vmm::OutputMode::Truncate); }),
               Contains("locked by another process"));
    CHECK(read_file(img) == "SOMEONE ELSE'S DISK");

    // And an output we hold keeps a second writer out.
    std::string out = d / "serial.log";
    vmm::Fd mine = vmm::open_output(out, "--serial file", {}, vmm::OutputMode::Truncate);
    CHECK_THAT(error_of([&] { vmm::open_output(out, "--console file", {}, vmm::OutputMode::Truncate); }),
               Contains("locked by another process"));
}

TEST_CASE("output file: truncate or append, created owner-only, devices as they are", "[vmm][output]") {
    test::TempDir d;
    std::string f = d / "out.txt";
    write_file(f, "old");
    {
        vmm::Fd fd = vmm::open_output(f, "--serial file", {}, vmm::OutputMode::Append);
        REQUIRE(::write(fd.get(), "+new", 4) == 4);
    }
    CHECK(read_file(f) == "old+new");
    {
        vmm::Fd fd = vmm::open_output(f, "--serial file", {}, vmm::OutputMode::Truncate);
        REQUIRE(::write(fd.get(), "x", 1) == 1);
        // Blocking again once open: a slow reader is waited for, not dropped.
        CHECK_FALSE(::fcntl(fd.get(), F_GETFL) & O_NONBLOCK);
    }
    CHECK(read_file(f) == "x");

    mode_t old = ::umask(022);
    std::string fresh = d / "fresh.txt";
    vmm::open_output(fresh, "--console file", {}, vmm::OutputMode::Truncate);
    ::umask(old);
    struct stat st {};
    REQUIRE(::stat(fresh.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    vmm::Fd null = vmm::open_output("/dev/null", "--serial file", {}, vmm::OutputMode::Truncate);
    CHECK(null);
}

TEST_CASE("FIFOs: no open blocks, neither for an output nor for an input", "[vmm][output]") {
    test::TempDir d;
    std::string fifo = d / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto start = std::chrono::steady_clock::now();
    CHECK_THAT(error_of([&] { vmm::open_output(fifo, "--serial file", {}, vmm::OutputMode::Truncate); }),
               Contains("FIFO with no reader"));
    CHECK(error_of([&] { vmm::InputFile(fifo, "--kernel"); }) == "--kernel " + fifo + ": not a regular file");
    CHECK(error_of([&] { vmm::InputFile(d / "missing", "vm.json: boot.kernel"); }) ==
          "vm.json: boot.kernel " + (d / "missing") + ": No such file or directory");
    CHECK_THAT(error_of([&] { vmm::config_from_file(fifo); }), Contains("not a regular file"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

    // With a reader, a FIFO is a fine output.
    vmm::Fd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    REQUIRE(reader);
    vmm::Fd w = vmm::open_output(fifo, "--serial file", {}, vmm::OutputMode::Truncate);
    REQUIRE(::write(w.get(), "hi", 2) == 2);
    char buf[4] = {};
    CHECK(::read(reader.get(), buf, sizeof buf) == 2);
}

TEST_CASE("distinct outputs: the same file under two spellings is caught", "[vmm][output]") {
    test::TempDir d;
    ::mkdir((d / "w").c_str(), 0700);
    CHECK_THAT(error_of([&] {
                   vmm::check::distinct_paths({{"--serial", d / "w/c.txt"}, {"--console", d / "w/../w/c.txt"}}, "");
               }),
               Contains("--serial and --console are the same path"));
    CHECK(error_of([&] {
              vmm::check::distinct_paths({{"--serial", d / "w/a.txt"}, {"--console", d / "w/b.txt"}}, "");
          }).empty());
}

TEST_CASE("check_inputs_distinct: a writable image given twice is named, read-only twice is fine") {
    test::TempDir dir;
    std::string img = dir.path + "/a.img";
    { std::ofstream(img) << std::string(4096, 'x'); }
    vmm::VmConfig cfg;
    cfg.disks.push_back({});
    cfg.disks[0].path = img;
    cfg.scsi.push_back({});
    cfg.scsi[0].path = dir.path + "/../" + dir.path.substr(dir.path.rfind('/') + 1) + "/a.img";
    CHECK_THROWS_WITH(vmm::check_inputs_distinct(cfg),
                      Contains("--disk path=" + img + " and --scsi-disk") && Contains("are the same file"));
    cfg.disks[0].readonly = true;
    cfg.scsi[0].readonly = true;
    CHECK_NOTHROW(vmm::check_inputs_distinct(cfg));
    cfg.scsi[0].readonly = false;
    CHECK_THROWS(vmm::check_inputs_distinct(cfg));
    // The UEFI variable store is written too.
    vmm::VmConfig fw;
    fw.firmware_vars = img;
    fw.kernel = img;
    CHECK_THROWS_WITH(vmm::check_inputs_distinct(fw), Contains("--kernel " + img + " and --firmware vars"));
}
