// Disk backend: opening/locking images and both I/O engines (io_uring and
// the thread pool) on temporary files under /tmp.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "virtio/disk.h"
#include "virtio/qcow2.h"
#include "vmm/core/error.h"

using namespace vmm::virtio;

namespace {

// A directory under /tmp that is removed with everything in it.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/vmm-disk-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name, uint64_t size) const {
        std::string p = path + "/" + name;
        int fd = ::open(p.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0644);
        REQUIRE(fd >= 0);
        REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
        ::close(fd);
        return p;
    }
};

std::string open_error(const DiskOptions& o) {
    try {
        DiskImage d(o);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

// Submits `reqs` and waits (bounded) until every one has completed.
std::map<uint64_t, int> run(DiskEngine& e, std::vector<DiskRequest> reqs) {
    size_t want = reqs.size();
    e.submit(reqs);
    std::map<uint64_t, int> results;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (results.size() < want) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        pollfd p{e.event_fd(), POLLIN, 0};
        ::poll(&p, 1, 100);
        std::vector<DiskCompletion> out;
        e.reap(out);
        for (auto& c : out) results[c.cookie] = c.result;
    }
    CHECK(e.in_flight() == 0);
    return results;
}

DiskRequest rw(DiskOp op, uint64_t off, std::vector<iovec> iov, uint64_t cookie) {
    DiskRequest r;
    r.op = op;
    r.offset = off;
    r.iov = std::move(iov);
    r.cookie = cookie;
    return r;
}

DiskRequest range(DiskOp op, uint64_t off, uint64_t len, uint64_t cookie, bool unmap = false) {
    DiskRequest r;
    r.op = op;
    r.offset = off;
    r.length = len;
    r.unmap = unmap;
    r.cookie = cookie;
    return r;
}

uint64_t blocks_of(const std::string& p) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<uint64_t>(st.st_blocks);
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
    return v;
}

}  // namespace

TEST_CASE("DiskImage: clear errors for bad paths", "[disk]") {
    TempDir dir;
    CHECK(open_error({dir.path + "/missing.img"}) == "--disk path=" + dir.path + "/missing.img: no such file");
    CHECK(open_error({dir.path}).find("is a directory") != std::string::npos);
    std::string empty = dir.file("empty.img", 0);
    CHECK(open_error({empty}) == "--disk path=" + empty + ": image is empty");
    std::string tiny = dir.file("tiny.img", 100);
    CHECK(open_error({tiny}).find("smaller than one 512-byte block") != std::string::npos);
    CHECK(open_error({""}).rfind("--disk", 0) == 0);
    std::string fifo = dir.path + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(open_error({fifo}).find("not a regular file or block device") != std::string::npos);
    if (::geteuid() != 0) {  // root bypasses permission bits
        std::string locked = dir.file("noperm.img", 4096);
        REQUIRE(::chmod(locked.c_str(), 0400) == 0);
        CHECK(open_error({locked}).find("permission denied") != std::string::npos);
        CHECK(open_error({locked, true}).empty());
    }
    // Messages name the option the image came from.
    CHECK(open_error({dir.path + "/missing.img", false, false, "--scsi-disk"}) ==
          "--scsi-disk path=" + dir.path + "/missing.img: no such file");
}

TEST_CASE("DiskImage: readonly=on is suggested only for a file that can be read", "[disk]") {
    if (::geteuid() != 0) {
        WARN("SKIP: needs root, to look at root-owned files as another user");
        return;
    }
    TempDir dir;
    std::string readable = dir.file("readable.img", 4096), secret = dir.file("secret.img", 4096);
    REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
    REQUIRE(::chmod(readable.c_str(), 0644) == 0);
    REQUIRE(::chmod(secret.c_str(), 0600) == 0);
    int pipefd[2];
    REQUIRE(::pipe(pipefd) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(pipefd[0]);
        if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(10);
        std::string out = open_error({readable}) + "\n" + open_error({secret}) + "\n";
        (void)!::write(pipefd[1], out.data(), out.size());
        _exit(0);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[512];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    REQUIRE(WIFEXITED(st));
    REQUIRE(WEXITSTATUS(st) == 0);
    auto nl = out.find('\n');
    CHECK(out.substr(0, nl) == "--disk path=" + readable + ": permission denied (it is readable: readonly=on may help)");
    CHECK(out.substr(nl + 1) == "--disk path=" + secret + ": permission denied\n");
}

TEST_CASE("DiskImage: size, block sizes and the tail", "[disk]") {
    TempDir dir;
    std::string p = dir.file("a.img", 1 << 20);
    DiskImage d({p});
    CHECK(d.size_bytes() == (1u << 20));
    CHECK(d.logical_block_size() == 512);
    CHECK(d.physical_block_size() == 512);
    CHECK_FALSE(d.readonly());
    CHECK_FALSE(d.is_block_device());
    std::string odd = dir.file("odd.img", 4096 + 100);
    DiskImage o({odd, true});
    CHECK(o.size_bytes() == 4096);  // the partial sector is not visible
    CHECK(o.readonly());
}

TEST_CASE("DiskImage: OFD lock keeps a second writer out", "[disk]") {
    TempDir dir;
    std::string p = dir.file("a.img", 1 << 16);
    {
        DiskImage w({p});
        std::string err = open_error({p});
        CHECK(err == "--disk path=" + p + ": image is locked by another process (in use by another VM?)");
        CHECK(open_error({p, true}).find("locked") != std::string::npos);  // a reader is kept out too
    }
    {
        DiskImage r1({p, true});
        DiskImage r2({p, true});  // readers share
        CHECK(open_error({p}).find("locked") != std::string::npos);
    }
    DiskImage w({p});  // locks go away with the fds
    CHECK(w.fd() >= 0);
}

TEST_CASE("Disk engines: read, write, flush, discard, write-zeroes", "[disk]") {
    auto kind = GENERATE(DiskEngineKind::IoUring, DiskEngineKind::Threads);
    INFO("engine " << (kind == DiskEngineKind::IoUring ? "io_uring" : "threads"));
    TempDir dir;
    constexpr size_t kSize = 4 << 20;
    std::string p = dir.file("a.img", kSize);
    DiskImage disk({p});
    auto eng = make_disk_engine(disk, 16, kind);
    CHECK(std::string(eng->name()) == (kind == DiskEngineKind::IoUring ? "io_uring" : "threads"));

    // Scattered write of 2 MiB, then read back through a different split.
    constexpr size_t kData = 2 << 20;
    auto data = pattern(kData, 3);
    std::vector<iovec> wiov{{data.data(), 512}, {data.data() + 512, kData / 2 - 512},
                            {data.data() + kData / 2, kData / 2}};
    auto res = run(*eng, {rw(DiskOp::Write, 1 << 20, wiov, 1), range(DiskOp::Flush, 0, 0, 2)});
    CHECK(res[1] == 0);
    CHECK(res[2] == 0);
    std::vector<uint8_t> back(kData);
    res = run(*eng, {rw(DiskOp::Read, 1 << 20, {{back.data(), 4096}, {back.data() + 4096, kData - 4096}}, 3)});
    CHECK(res[3] == 0);
    CHECK(back == data);

    uint64_t before = blocks_of(p);
    CHECK(before >= kData / 512);

    // Discard 1 MiB: blocks are freed and the range reads as zeros.
    res = run(*eng, {range(DiskOp::Discard, 1 << 20, 1 << 20, 4)});
    CHECK(res[4] == 0);
    uint64_t after_discard = blocks_of(p);
    CHECK(after_discard + (1 << 20) / 512 <= before);
    std::vector<uint8_t> chunk(1 << 20, 0xff);
    res = run(*eng, {rw(DiskOp::Read, 1 << 20, {{chunk.data(), chunk.size()}}, 5)});
    CHECK(res[5] == 0);
    CHECK(std::all_of(chunk.begin(), chunk.end(), [](uint8_t b) { return b == 0; }));

    // Write-zeroes without unmap keeps the allocation; with unmap frees it.
    res = run(*eng, {range(DiskOp::WriteZeroes, (2 << 20), 512 * 1024, 6)});
    CHECK(res[6] == 0);
    CHECK(blocks_of(p) == after_discard);
    res = run(*eng, {range(DiskOp::WriteZeroes, (2 << 20) + 512 * 1024, 512 * 1024, 7, true)});
    CHECK(res[7] == 0);
    CHECK(blocks_of(p) + (512 * 1024) / 512 <= after_discard);
    res = run(*eng, {rw(DiskOp::Read, 2 << 20, {{chunk.data(), chunk.size()}}, 8)});
    CHECK(std::all_of(chunk.begin(), chunk.end(), [](uint8_t b) { return b == 0; }));

    // Past the end of the file is an error, not a short success.
    std::vector<uint8_t> tail(1024, 0xaa);
    res = run(*eng, {rw(DiskOp::Read, kSize - 512, {{tail.data(), tail.size()}}, 9),
                     rw(DiskOp::Read, kSize + 4096, {{tail.data(), 512}}, 10)});
    CHECK(res[9] == -EIO);
    CHECK(res[10] == -EIO);
}

TEST_CASE("Disk engines: more requests than the ring holds, many segments", "[disk]") {
    auto kind = GENERATE(DiskEngineKind::IoUring, DiskEngineKind::Threads);
    TempDir dir;
    std::string p = dir.file("a.img", 1 << 20);
    DiskImage disk({p});
    auto eng = make_disk_engine(disk, 4, kind);  // a tiny ring: the backlog must carry the rest
    constexpr int kReqs = 200;
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<DiskRequest> reqs;
    for (int i = 0; i < kReqs; ++i) {
        bufs.push_back(pattern(512, static_cast<uint8_t>(i)));
        reqs.push_back(rw(DiskOp::Write, uint64_t(i) * 512, {{bufs.back().data(), 512}}, uint64_t(i)));
    }
    auto res = run(*eng, std::move(reqs));
    REQUIRE(res.size() == kReqs);
    for (auto& [c, r] : res) CHECK(r == 0);

    // 1100 segments of 512 bytes: more than IOV_MAX, so the engine bounces.
    std::vector<uint8_t> big(1100 * 512);
    std::vector<iovec> iov;
    for (int i = 0; i < 1100; ++i) iov.push_back({big.data() + i * 512, 512});
    res = run(*eng, {rw(DiskOp::Read, 0, iov, 1)});
    REQUIRE(res[1] == 0);
    for (int i = 0; i < kReqs; ++i)
        CHECK(std::memcmp(big.data() + i * 512, pattern(512, static_cast<uint8_t>(i)).data(), 512) == 0);

    // drain() leaves the completions for reap().
    std::vector<uint8_t> one(512);
    std::vector<DiskRequest> r1{rw(DiskOp::Read, 0, {{one.data(), 512}}, 77)};
    eng->submit(r1);
    eng->drain();
    std::vector<DiskCompletion> out;
    eng->reap(out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].cookie == 77);
    CHECK(out[0].result == 0);
    CHECK(eng->in_flight() == 0);
}

TEST_CASE("Disk engines: O_DIRECT bounces misaligned guest buffers", "[disk]") {
    auto kind = GENERATE(DiskEngineKind::IoUring, DiskEngineKind::Threads);
    TempDir dir;
    std::string p = dir.file("a.img", 1 << 20);
    DiskImage disk({p, false, true});
    REQUIRE(disk.direct());
    uint32_t bs = disk.logical_block_size();
    auto eng = make_disk_engine(disk, 8, kind);
    std::vector<uint8_t> raw(3 * 4096 + 1);
    uint8_t* mis = raw.data() + 1;  // deliberately not aligned
    auto data = pattern(2 * 4096, 9);
    std::memcpy(mis, data.data(), data.size());
    auto res = run(*eng, {rw(DiskOp::Write, bs, {{mis, 4096}, {mis + 4096, 4096}}, 1)});
    CHECK(res[1] == 0);
    std::memset(mis, 0, data.size());
    res = run(*eng, {rw(DiskOp::Read, bs, {{mis, 2 * 4096}}, 2)});
    CHECK(res[2] == 0);
    CHECK(std::memcmp(mis, data.data(), data.size()) == 0);
    // A misaligned offset cannot be done with O_DIRECT: an error, not a crash.
    if (bs > 1) {
        res = run(*eng, {rw(DiskOp::Read, 1, {{mis, 4096}}, 3)});
        CHECK(res[3] < 0);
    }
}

TEST_CASE("Disk engines: read-only image refuses writes", "[disk]") {
    auto kind = GENERATE(DiskEngineKind::IoUring, DiskEngineKind::Threads);
    TempDir dir;
    std::string p = dir.file("a.img", 1 << 16);
    DiskImage disk({p, true});
    auto eng = make_disk_engine(disk, 8, kind);
    std::vector<uint8_t> buf(512, 1);
    auto res = run(*eng, {rw(DiskOp::Write, 0, {{buf.data(), 512}}, 1), rw(DiskOp::Read, 0, {{buf.data(), 512}}, 2)});
    CHECK(res[1] == -EBADF);
    CHECK(res[2] == 0);
    CHECK(buf[0] == 0);
}

// ---------------------------------------------------------------------------
// Formats: qcow2 detected and run through its format layer; snapshot=on.

namespace {

// A qcow2 image of `size` bytes at `path` (optionally over a backing file).
void make_qcow2(const std::string& path, uint64_t size, const std::string& backing = "",
                const std::string& backing_format = "") {
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    FdImageFile f{vmm::Fd(fd)};
    Qcow2CreateOptions co;
    co.size = size;
    co.backing_path = backing;
    co.backing_format = backing_format;
    Qcow2Image::create(f, co);
}

std::vector<uint8_t> file_bytes(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    std::vector<uint8_t> v(static_cast<size_t>(st.st_size));
    REQUIRE(::pread(fd, v.data(), v.size(), 0) == static_cast<ssize_t>(v.size()));
    ::close(fd);
    return v;
}

// Writes `data` at `off` through an engine of `disk`, flushes, reads it back.
std::vector<uint8_t> write_read(const DiskImage& disk, uint64_t off, std::vector<uint8_t> data) {
    auto e = make_disk_engine(disk, 8);
    std::vector<uint8_t> back(data.size());
    auto w = run(*e, {rw(DiskOp::Write, off, {{data.data(), data.size()}}, 1)});
    CHECK(w[1] == 0);
    CHECK(run(*e, {range(DiskOp::Flush, 0, 0, 2)})[2] == 0);
    CHECK(run(*e, {rw(DiskOp::Read, off, {{back.data(), back.size()}}, 3)})[3] == 0);
    return back;
}

}  // namespace

TEST_CASE("DiskImage: a qcow2 image is detected and served through its format layer", "[disk][qcow2]") {
    TempDir dir;
    std::string q = dir.path + "/a.qcow2";
    make_qcow2(q, 8 << 20);
    auto kept = pattern(8192, 77);
    {
    DiskImage d({q});
    CHECK(d.format_name() == "qcow2");
    REQUIRE(d.format_layer());
    CHECK(d.size_bytes() == 8u << 20);  // the virtual size, not the file's
    auto data = pattern(3 * 4096 + 512, 5);
    CHECK(write_read(d, (1 << 20) + 512, data) == data);
    CHECK(write_read(d, 3 << 20, kept) == kept);
    // Reading unallocated space gives zeros; a discard of a written range too.
    auto e = make_disk_engine(d, 4);
    std::vector<uint8_t> z(4096, 0xaa);
    CHECK(run(*e, {rw(DiskOp::Read, 6 << 20, {{z.data(), z.size()}}, 1)})[1] == 0);
    CHECK(z == std::vector<uint8_t>(4096, 0));
    CHECK(run(*e, {range(DiskOp::WriteZeroes, 1 << 20, 64 << 10, 2, true)})[2] == 0);
    std::vector<uint8_t> back(512);
    CHECK(run(*e, {rw(DiskOp::Read, (1 << 20) + 512, {{back.data(), back.size()}}, 3)})[3] == 0);
    CHECK(back == std::vector<uint8_t>(512, 0));
    // Out of range is the layer's -EINVAL, not a write past the image.
    CHECK(run(*e, {rw(DiskOp::Read, 8 << 20, {{back.data(), back.size()}}, 4)})[4] == -EINVAL);

    }
    // Reopened: the data is in the file.
    DiskImage again({q, true});
    auto e2 = make_disk_engine(again, 1);
    std::vector<uint8_t> got(kept.size());
    CHECK(run(*e2, {rw(DiskOp::Read, 3 << 20, {{got.data(), got.size()}}, 1)})[1] == 0);
    CHECK(got == kept);
    CHECK(run(*e2, {rw(DiskOp::Write, 0, {{got.data(), 512}}, 2)})[2] == -EROFS);
}

TEST_CASE("DiskImage: format= is checked against the file", "[disk][qcow2]") {
    TempDir dir;
    std::string raw = dir.file("r.img", 1 << 20);
    std::string q = dir.path + "/q.qcow2";
    make_qcow2(q, 4 << 20);
    DiskOptions o{raw};
    o.format = DiskFormat::Qcow2;
    CHECK_THAT(open_error(o), Catch::Contains("format=qcow2, but the file does not start with the qcow2 magic"));
    // format=raw on a qcow2 file is the user's explicit choice: the file as it is.
    DiskOptions r{q, true};
    r.format = DiskFormat::Raw;
    DiskImage asraw(r);
    CHECK(asraw.format_name() == "raw");
    CHECK_FALSE(asraw.format_layer());
    CHECK(asraw.size_bytes() < (4u << 20));
    DiskOptions direct{q, true};
    direct.direct = true;
    CHECK_THAT(open_error(direct), Catch::Contains("direct=on works with raw images only"));
    // A damaged header is refused at open, naming the image.
    auto bytes = file_bytes(q);
    bytes[20] = 30;  // cluster_bits
    std::string bad = dir.path + "/bad.qcow2";
    int fd = ::open(bad.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    CHECK_THAT(open_error({bad}), Catch::Contains("qcow2 image " + bad));
}

TEST_CASE("DiskImage: qcow2 over a backing file, which is read-locked", "[disk][qcow2]") {
    TempDir dir;
    std::string base = dir.file("base.img", 2 << 20);
    auto pat = pattern(2 << 20, 9);
    int fd = ::open(base.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(::pwrite(fd, pat.data(), pat.size(), 0) == static_cast<ssize_t>(pat.size()));
    ::close(fd);
    std::string ov = dir.path + "/ov.qcow2";
    make_qcow2(ov, 2 << 20, "base.img", "raw");  // relative: next to the overlay
    {
        DiskImage d({ov});
        auto e = make_disk_engine(d, 2);
        std::vector<uint8_t> got(8192);
        CHECK(run(*e, {rw(DiskOp::Read, 65536, {{got.data(), got.size()}}, 1)})[1] == 0);
        CHECK(std::equal(got.begin(), got.end(), pat.begin() + 65536));
        auto data = pattern(512, 1);
        CHECK(write_read(d, 70000 - 70000 % 512, data) == data);
        // A VM that wants the base writable is refused while the overlay uses it.
        CHECK_THAT(open_error({base}), Catch::Contains("locked by another process"));
    }
    CHECK(file_bytes(base) == pat);  // copy-on-write: the base never changes
    // And the other way round: an overlay whose base a VM holds writable.
    DiskImage writer({base});
    CHECK_THAT(open_error({ov}), Catch::Contains("backing file " + dir.path + "/base.img is locked"));
}

TEST_CASE("DiskImage: snapshot=on leaves the image untouched and no file behind", "[disk][qcow2]") {
    TempDir dir, tmp;
    const char* old_tmp = std::getenv("TMPDIR");
    std::string saved = old_tmp ? old_tmp : "";
    ::setenv("TMPDIR", tmp.path.c_str(), 1);
    std::string base = dir.file("base.img", 1 << 20);
    std::string q = dir.path + "/q.qcow2";
    make_qcow2(q, 1 << 20);
    auto q_before = file_bytes(q);
    for (const std::string& img : {base, q}) {
        INFO(img);
        auto before = file_bytes(img);
        DiskOptions o{img};
        o.snapshot = true;
        {
            DiskImage d(o);
            CHECK(d.format_name() == (img == q ? "qcow2+overlay" : "raw+overlay"));
            CHECK_FALSE(d.readonly());
            CHECK(d.size_bytes() == 1u << 20);
            auto data = pattern(64 * 1024, 3);
            CHECK(write_read(d, 4096, data) == data);
            // The overlay exists only as an unnamed file.
            CHECK(std::filesystem::is_empty(tmp.path));
            // snapshot=on takes a read lock: another snapshot may share the image.
            DiskImage second(o);
        }
        CHECK(file_bytes(img) == before);
        CHECK(std::filesystem::is_empty(tmp.path));
    }
    DiskOptions direct{base};
    direct.snapshot = true;
    direct.direct = true;
    CHECK_THAT(open_error(direct), Catch::Contains("direct=on works with raw images only, not with snapshot=on"));
    ::setenv("TMPDIR", (tmp.path + "/missing").c_str(), 1);
    DiskOptions nodir{base};
    nodir.snapshot = true;
    CHECK_THAT(open_error(nodir), Catch::Contains("snapshot=on: cannot make an overlay file in"));
    if (old_tmp)
        ::setenv("TMPDIR", saved.c_str(), 1);
    else
        ::unsetenv("TMPDIR");
    CHECK(file_bytes(q) == q_before);
}
