// qcow2 format layer: images made by create() in memory (I/O, backing files,
// zero clusters, discard, hostile headers and tables), then images made and
// checked by qemu-img on temporary files (skipped without qemu-img).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "virtio/qcow2.h"
#include "vmm/core/bytes.h"
#include "vmm/core/error.h"

using namespace vmm::virtio;

namespace {

constexpr uint64_t K = 1024, M = 1024 * 1024;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
    return v;
}

MemoryImageFile make(uint64_t size, unsigned cluster_bits = 16, unsigned version = 3,
                     const std::string& backing = "", const std::string& format = "") {
    MemoryImageFile f;
    Qcow2CreateOptions o;
    o.size = size;
    o.cluster_bits = cluster_bits;
    o.version = version;
    o.backing_path = backing;
    o.backing_format = format;
    Qcow2Image::create(f, o);
    return f;
}

// Backing files by name, for the in-memory chains.
struct Files {
    std::map<std::string, MemoryImageFile> files;
    BackingOpener opener() {
        return [this](const std::string& path, const std::string&) -> std::unique_ptr<ImageFile> {
            auto it = files.find(path);
            if (it == files.end()) vmm::fail("{}: no such file", path);
            return std::make_unique<MemoryImageFile>(it->second);
        };
    }
};

std::unique_ptr<Qcow2Image> open(ImageFile& f, Files* files = nullptr, bool readonly = false,
                                 const std::string& path = "dir/top.qcow2") {
    Qcow2Options o;
    o.path = path;
    o.readonly = readonly;
    if (files) o.open_backing = files->opener();
    return Qcow2Image::open(f, o);
}

std::string open_error(ImageFile& f, Files* files = nullptr, bool readonly = false) {
    try {
        open(f, files, readonly);
    } catch (const vmm::Error& e) {
        return e.what();
    }
    return "";
}

int wr(Qcow2Image& img, uint64_t off, const std::vector<uint8_t>& data) {
    iovec v{const_cast<uint8_t*>(data.data()), data.size()};
    return img.write(off, {&v, 1});
}

std::vector<uint8_t> rd(Qcow2Image& img, uint64_t off, size_t n) {
    std::vector<uint8_t> out(n, 0xee);
    iovec v{out.data(), n};
    REQUIRE(img.read(off, {&v, 1}) == 0);
    return out;
}

int rd_result(Qcow2Image& img, uint64_t off, size_t n) {
    std::vector<uint8_t> out(n);
    iovec v{out.data(), n};
    return img.read(off, {&v, 1});
}

std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t off, size_t n) {
    return {v.begin() + static_cast<ptrdiff_t>(off), v.begin() + static_cast<ptrdiff_t>(off + n)};
}

uint64_t be64(MemoryImageFile& f, uint64_t off) { return vmm::load_be64(f.bytes(), off); }
void put_be(MemoryImageFile& f, uint64_t off, size_t width, uint64_t v) { vmm::store_be(f.bytes(), off, width, v); }

// Host offset of the first L2 table (the image must have one).
uint64_t first_l2(MemoryImageFile& f) { return be64(f, be64(f, 40)) & 0x00fffffffffffe00ull; }

// Marks an image made by create() as zstd-compressed: incompatible bit 3,
// a 112-byte header and compression type 1 in byte 104.
void make_zstd(MemoryImageFile& f) {
    put_be(f, 72, 8, be64(f, 72) | (1u << 3));
    put_be(f, 100, 4, 112);
    put_be(f, 104, 1, 1);
}

}  // namespace

TEST_CASE("qcow2: create, write, read back, reopen", "[qcow2]") {
    MemoryImageFile f = make(4 * M);
    auto img = open(f);
    CHECK(img->size() == 4 * M);
    CHECK(img->cluster_size() == 64 * K);
    CHECK(img->version() == 3);
    CHECK(rd(*img, 0, 128 * K) == std::vector<uint8_t>(128 * K, 0));

    auto a = pattern(128 * K, 1);
    REQUIRE(wr(*img, 0, a) == 0);
    CHECK(rd(*img, 0, 128 * K) == a);
    // Partial clusters: the rest of the new cluster reads as zeros.
    auto b = pattern(512, 9);
    REQUIRE(wr(*img, 200 * K + 512, b) == 0);
    auto c = rd(*img, 192 * K, 64 * K);
    CHECK(slice(c, 8 * K + 512, 512) == b);
    CHECK(slice(c, 0, 8 * K + 512) == std::vector<uint8_t>(8 * K + 512, 0));
    // A write over two clusters from several buffers, at the end of the disk.
    auto d1 = pattern(3 * K, 20), d2 = pattern(5 * K, 40);
    iovec v[2] = {{d1.data(), d1.size()}, {d2.data(), d2.size()}};
    REQUIRE(img->write(4 * M - 8 * K, v) == 0);
    auto tail = rd(*img, 4 * M - 8 * K, 8 * K);
    CHECK(slice(tail, 0, 3 * K) == d1);
    CHECK(slice(tail, 3 * K, 5 * K) == d2);
    // In place: an allocated cluster does not move and the file does not grow.
    uint64_t size_before = f.size();
    REQUIRE(wr(*img, 4096, b) == 0);
    CHECK(f.size() == size_before);
    REQUIRE(img->flush() == 0);

    CHECK(wr(*img, 4 * M - 512, pattern(1024, 0)) == -EINVAL);
    CHECK(rd_result(*img, 4 * M, 1) == -EINVAL);

    auto again = open(f);
    auto expect = a;
    std::copy(b.begin(), b.end(), expect.begin() + 4096);
    CHECK(rd(*again, 0, 128 * K) == expect);
    CHECK(slice(rd(*again, 192 * K, 64 * K), 8 * K + 512, 512) == b);
    CHECK(rd(*again, 4 * M - 8 * K, 8 * K) == tail);

    auto ro = open(f, nullptr, true);
    CHECK(wr(*ro, 0, b) == -EROFS);
    CHECK(ro->discard(0, 64 * K) == -EROFS);
}

TEST_CASE("qcow2: version 2 and small clusters (refcount blocks added as the file grows)", "[qcow2]") {
    MemoryImageFile f = make(1 * M, 9, 2);
    auto img = open(f);
    CHECK(img->version() == 2);
    // 2048 clusters of 512 bytes plus their L2 tables: far more than one
    // refcount block (256 entries) covers.
    auto a = pattern(1 * M, 3);
    for (uint64_t off = 0; off < 1 * M; off += 12 * K) {
        size_t n = std::min<uint64_t>(12 * K, 1 * M - off);
        REQUIRE(wr(*img, off, slice(a, off, n)) == 0);
    }
    CHECK(rd(*img, 0, 1 * M) == a);
    auto again = open(f);
    CHECK(rd(*again, 0, 1 * M) == a);
    // Zeroing without a backing file makes clusters unallocated; writing
    // them again reuses the freed clusters.
    REQUIRE(again->write_zeroes(0, 64 * K) == 0);
    CHECK(rd(*again, 0, 64 * K) == std::vector<uint8_t>(64 * K, 0));
    CHECK(rd(*again, 64 * K, 64 * K) == slice(a, 64 * K, 64 * K));
    uint64_t size = f.size();
    REQUIRE(wr(*again, 0, std::vector<uint8_t>(64 * K, 1)) == 0);
    CHECK(f.size() == size);
}

TEST_CASE("qcow2: raw backing file: read-through, copy-on-write, beyond its end", "[qcow2]") {
    Files files;
    auto base = pattern(1 * M + 4 * K, 5);
    files.files.emplace("dir/base.raw", MemoryImageFile(base));
    MemoryImageFile f = make(2 * M, 16, 3, "base.raw", "raw");
    auto img = open(f, &files);
    CHECK(img->backing_path() == "dir/base.raw");
    CHECK(rd(*img, 0, base.size()) == base);
    CHECK(rd(*img, base.size(), 2 * M - base.size()) == std::vector<uint8_t>(2 * M - base.size(), 0));
    // Across the backing file's end.
    auto across = rd(*img, 1 * M, 8 * K);
    CHECK(slice(across, 0, 4 * K) == slice(base, 1 * M, 4 * K));
    CHECK(slice(across, 4 * K, 4 * K) == std::vector<uint8_t>(4 * K, 0));

    auto w = pattern(1024, 77);
    REQUIRE(wr(*img, 64 * K + 1024, w) == 0);
    auto expect = base;
    std::copy(w.begin(), w.end(), expect.begin() + 64 * K + 1024);
    CHECK(rd(*img, 0, base.size()) == expect);
    CHECK(files.files.at("dir/base.raw").bytes() == base);

    auto again = open(f, &files);
    CHECK(rd(*again, 0, base.size()) == expect);

    // Without a way to open it, an image with a backing file is refused.
    CHECK(open_error(f).find("backing files are not allowed") != std::string::npos);
    Files none;
    CHECK(open_error(f, &none) == "qcow2 image dir/top.qcow2: backing file: dir/base.raw: no such file");
}

TEST_CASE("qcow2: qcow2 backing file, probed and named", "[qcow2]") {
    Files files;
    MemoryImageFile base = make(1 * M);
    auto data = pattern(256 * K, 11);
    REQUIRE(wr(*open(base), 128 * K, data) == 0);
    files.files.emplace("/abs/base.qcow2", base);
    for (std::string format : {"qcow2", ""}) {
        MemoryImageFile f = make(1 * M, 12, 3, "/abs/base.qcow2", format);
        auto img = open(f, &files);
        CHECK(img->backing_path() == "/abs/base.qcow2");
        CHECK(rd(*img, 128 * K, 256 * K) == data);
        CHECK(rd(*img, 0, 128 * K) == std::vector<uint8_t>(128 * K, 0));
        auto w = pattern(512, 1);
        REQUIRE(wr(*img, 130 * K, w) == 0);
        auto expect = data;
        std::copy(w.begin(), w.end(), expect.begin() + 2 * K);
        CHECK(rd(*img, 128 * K, 256 * K) == expect);
        CHECK(rd(*open(base), 128 * K, 256 * K) == data);
    }
    // A raw backing file that looks like qcow2 stays raw when named so.
    MemoryImageFile raw = make(1 * M, 16, 3, "/abs/base.qcow2", "raw");
    auto img = open(raw, &files);
    CHECK(rd(*img, 0, 4) == std::vector<uint8_t>{'Q', 'F', 'I', 0xfb});
}

TEST_CASE("qcow2: zero clusters, write_zeroes and discard", "[qcow2]") {
    Files files;
    auto base = pattern(1 * M, 5);
    files.files.emplace("dir/base.raw", MemoryImageFile(base));
    MemoryImageFile f = make(1 * M, 16, 3, "base.raw", "raw");
    auto img = open(f, &files);
    const std::vector<uint8_t> zero64(64 * K, 0);

    // Whole clusters over a backing file become zero clusters.
    REQUIRE(img->write_zeroes(64 * K, 128 * K) == 0);
    CHECK(rd(*img, 64 * K, 64 * K) == zero64);
    CHECK(rd(*img, 128 * K, 64 * K) == zero64);
    CHECK(rd(*img, 0, 64 * K) == slice(base, 0, 64 * K));
    uint64_t l2 = first_l2(f);
    CHECK(be64(f, l2 + 8) == 1);  // zero flag, no cluster
    // A partial range is written as zeros, the rest of the cluster copied.
    REQUIRE(img->write_zeroes(256 * K + 512, 1024) == 0);
    auto c = rd(*img, 256 * K, 64 * K);
    CHECK(slice(c, 512, 1024) == std::vector<uint8_t>(1024, 0));
    CHECK(slice(c, 0, 512) == slice(base, 256 * K, 512));
    CHECK(slice(c, 1536, 1024) == slice(base, 256 * K + 1536, 1024));
    // Writing into a zero cluster copies zeros, not the backing file.
    auto w = pattern(512, 3);
    REQUIRE(wr(*img, 64 * K + 512, w) == 0);
    auto z = rd(*img, 64 * K, 64 * K);
    CHECK(slice(z, 512, 512) == w);
    CHECK(slice(z, 0, 512) == std::vector<uint8_t>(512, 0));

    // Discard frees the cluster (the next allocation reuses it) and it reads
    // as zeros; partial clusters are left alone.
    uint64_t size = f.size();
    REQUIRE(img->discard(64 * K, 64 * K) == 0);
    CHECK(rd(*img, 64 * K, 64 * K) == zero64);
    REQUIRE(img->discard(256 * K + 512, 1024) == 0);
    CHECK(slice(rd(*img, 256 * K, 64 * K), 512, 1024) == std::vector<uint8_t>(1024, 0));
    REQUIRE(wr(*img, 512 * K, zero64) == 0);
    CHECK(f.size() == size);

    auto again = open(f, &files);
    CHECK(rd(*again, 64 * K, 128 * K) == std::vector<uint8_t>(128 * K, 0));
    CHECK(rd(*again, 0, 64 * K) == slice(base, 0, 64 * K));

    // Version 2 over a backing file cannot say "zero": zeros are written.
    MemoryImageFile v2 = make(1 * M, 16, 2, "base.raw", "raw");
    auto img2 = open(v2, &files);
    REQUIRE(img2->write_zeroes(0, 64 * K) == 0);
    CHECK(rd(*img2, 0, 64 * K) == zero64);
    REQUIRE(img2->discard(64 * K, 64 * K) == 0);
    CHECK(rd(*img2, 64 * K, 64 * K) == slice(base, 64 * K, 64 * K));
}

TEST_CASE("qcow2: hostile headers are refused with a clear message", "[qcow2]") {
    struct Case {
        const char* what;
        std::function<void(MemoryImageFile&)> patch;
        const char* message;
        bool readonly = false;
    };
    const uint64_t cs = 64 * K;
    std::vector<Case> cases = {
        {"bad magic", [](auto& f) { put_be(f, 0, 4, 0x514649fc); }, "not a qcow2 image"},
        {"version 1", [](auto& f) { put_be(f, 4, 4, 1); }, "version 1 is not supported"},
        {"version 4", [](auto& f) { put_be(f, 4, 4, 4); }, "version 4 is not supported"},
        {"cluster_bits 8", [](auto& f) { put_be(f, 20, 4, 8); }, "cluster_bits 8 is out of range"},
        {"cluster_bits 22", [](auto& f) { put_be(f, 20, 4, 22); }, "cluster_bits 22 is out of range"},
        {"L1 past EOF", [&](auto& f) { put_be(f, 40, 8, f.size() + 16 * cs); }, "L1 table at"},
        {"L1 misaligned", [](auto& f) { put_be(f, 40, 8, be64(f, 40) + 512); }, "not cluster aligned"},
        {"huge l1_size", [](auto& f) { put_be(f, 36, 4, 0x10000000); }, "L1 table of 268435456 entries is too large"},
        {"l1_size too small", [](auto& f) { put_be(f, 24, 8, 1ull << 40); }, "too small for the virtual size"},
        {"huge size", [](auto& f) { put_be(f, 24, 8, ~0ull); }, "is too large"},
        {"refcount table past EOF", [&](auto& f) { put_be(f, 48, 8, f.size() + cs); }, "refcount table at"},
        {"no refcount table", [](auto& f) { put_be(f, 56, 4, 0); }, "refcount table of 0 clusters"},
        {"unknown incompatible bit", [](auto& f) { put_be(f, 72, 8, 1u << 10); }, "unknown incompatible feature bits 0x400"},
        {"extended L2", [](auto& f) { put_be(f, 72, 8, 1u << 4); }, "extended L2 entries"},
        {"external data file", [](auto& f) { put_be(f, 72, 8, 1u << 2); }, "external data files"},
        {"zstd without the compression type bit",
         [](auto& f) {
             put_be(f, 100, 4, 112);
             put_be(f, 104, 1, 1);
         },
         "compression type 1 without its feature bit"},
        {"compression type 2",
         [](auto& f) {
             put_be(f, 72, 8, 1u << 3);
             put_be(f, 100, 4, 112);
             put_be(f, 104, 1, 2);
         },
         "compression type 2 is unknown"},
        {"compression type bit, zlib",
         [](auto& f) {
             put_be(f, 72, 8, 1u << 3);
             put_be(f, 100, 4, 112);
         },
         "compression type feature bit set without a compression type"},
        {"encryption", [](auto& f) { put_be(f, 32, 4, 1); }, "encrypted images are not supported"},
        {"crypto extension",
         [](auto& f) {
             put_be(f, 104, 4, 0x0537be77);
             put_be(f, 108, 4, 16);
         },
         "encrypted images are not supported"},
        {"extension overrun",
         [](auto& f) {
             put_be(f, 104, 4, 0x12345678);
             put_be(f, 108, 4, 0xffffff);
         },
         "overruns the first cluster"},
        {"header length", [](auto& f) { put_be(f, 100, 4, 100); }, "header length 100 is invalid"},
        {"refcount order 1", [](auto& f) { put_be(f, 96, 4, 1); }, "refcount_order 1 is not supported"},
        {"refcount order 7", [](auto& f) { put_be(f, 96, 4, 7); }, "refcount_order 7 is not supported"},
        {"backing name too long",
         [](auto& f) {
             put_be(f, 8, 8, 512);
             put_be(f, 16, 4, 5000);
         },
         "backing file name length 5000 is invalid"},
        {"backing name past EOF",
         [&](auto& f) {
             put_be(f, 8, 8, f.size() - 4);
             put_be(f, 16, 4, 100);
         },
         "backing file name is outside the file"},
        {"dirty, writable", [](auto& f) { put_be(f, 72, 8, 1); }, "not closed cleanly"},
        {"corrupt, writable", [](auto& f) { put_be(f, 72, 8, 2); }, "marked corrupt"},
        {"snapshots, writable",
         [](auto& f) {
             put_be(f, 60, 4, 1);
             put_be(f, 64, 8, 64 * K);
         },
         "internal snapshots"},
        {"truncated", [](auto& f) { f.bytes().resize(50); }, "too small for a qcow2 header"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        MemoryImageFile f = make(1 * M);
        c.patch(f);
        std::string err = open_error(f, nullptr, c.readonly);
        CHECK(err.rfind("qcow2 image dir/top.qcow2: ", 0) == 0);
        CHECK(err.find(c.message) != std::string::npos);
    }
    // Dirty and corrupt images open read-only.
    for (uint64_t bit : {1u, 2u}) {
        MemoryImageFile f = make(1 * M);
        put_be(f, 72, 8, bit);
        CHECK(open_error(f, nullptr, true).empty());
    }
    // zstd with its feature bit opens.
    MemoryImageFile f = make(1 * M);
    make_zstd(f);
    CHECK(open_error(f).empty());
}

TEST_CASE("qcow2: autoclear bits are cleared when opened writable", "[qcow2]") {
    MemoryImageFile f = make(1 * M);
    put_be(f, 88, 8, 3);
    open(f, nullptr, true);
    CHECK(be64(f, 88) == 3);
    open(f);
    CHECK(be64(f, 88) == 0);
}

TEST_CASE("qcow2: backing chains that loop or are too deep are refused", "[qcow2]") {
    Files files;
    files.files.emplace("dir/self.qcow2", make(1 * M, 16, 3, "self.qcow2", "qcow2"));
    MemoryImageFile& self = files.files.at("dir/self.qcow2");
    Qcow2Options o;
    o.path = "dir/self.qcow2";
    o.open_backing = files.opener();
    try {
        Qcow2Image::open(self, o);
        FAIL("a loop was accepted");
    } catch (const vmm::Error& e) {
        CHECK(std::string(e.what()) == "qcow2 image dir/self.qcow2: backing chain loops back to dir/self.qcow2");
    }
    // a -> b -> a
    files.files.emplace("dir/a.qcow2", make(1 * M, 16, 3, "b.qcow2", "qcow2"));
    files.files.emplace("dir/b.qcow2", make(1 * M, 16, 3, "a.qcow2", "qcow2"));
    o.path = "dir/a.qcow2";
    CHECK_THROWS_WITH(Qcow2Image::open(files.files.at("dir/a.qcow2"), o), Catch::Contains("loops back to dir/a.qcow2"));

    // c0 <- c1 <- ... <- c19: 16 images are fine, 17 are not.
    files.files.emplace("dir/c0", MemoryImageFile(pattern(1 * M, 1)));
    for (int i = 1; i < 20; ++i)
        files.files.emplace(fmt::format("dir/c{}", i), make(1 * M, 16, 3, fmt::format("c{}", i - 1), i == 1 ? "raw" : "qcow2"));
    o.path = "dir/c15";
    auto ok = Qcow2Image::open(files.files.at("dir/c15"), o);
    CHECK(rd(*ok, 0, 4 * K) == pattern(4 * K, 1));
    o.path = "dir/c16";
    CHECK_THROWS_WITH(Qcow2Image::open(files.files.at("dir/c16"), o), Catch::Contains("longer than 16 images"));
}

TEST_CASE("qcow2: damaged tables fail I/O with -EIO", "[qcow2]") {
    MemoryImageFile f = make(1 * M);
    REQUIRE(wr(*open(f), 0, pattern(128 * K, 1)) == 0);
    uint64_t l1_off = be64(f, 40), l2 = first_l2(f);
    uint64_t l1e = be64(f, l1_off), l2e = be64(f, l2);

    auto with = [&](uint64_t off, uint64_t v, auto check) {
        MemoryImageFile g(f.bytes());
        put_be(g, off, 8, v);
        auto img = open(g);
        check(*img);
    };
    // L2 entry past the end of the file, misaligned, with reserved bits.
    for (uint64_t bad : std::vector<uint64_t>{(f.size() + 64 * K) | (1ull << 63), l2e + 512, l2e | 2, l2e | (1ull << 56)}) {
        with(l2, bad, [](Qcow2Image& img) {
            CHECK(rd_result(img, 0, 512) == -EIO);
            CHECK(wr(img, 0, std::vector<uint8_t>(512, 1)) == -EIO);
            CHECK(rd(img, 64 * K, 512) == slice(pattern(128 * K, 1), 64 * K, 512));
        });
    }
    // L1 entry past the end, misaligned, with reserved bits.
    for (uint64_t bad : std::vector<uint64_t>{(f.size() + 64 * K) | (1ull << 63), l1e + 512, l1e | 1}) {
        with(l1_off, bad, [](Qcow2Image& img) {
            CHECK(rd_result(img, 0, 512) == -EIO);
            CHECK(wr(img, 0, std::vector<uint8_t>(512, 1)) == -EIO);
        });
    }
    // A compressed entry whose data is garbage or past the end.
    with(l2, (1ull << 62) | 4096, [](Qcow2Image& img) { CHECK(rd_result(img, 0, 512) == -EIO); });
    with(l2, (1ull << 62) | (f.size() + 100), [](Qcow2Image& img) { CHECK(rd_result(img, 0, 512) == -EIO); });
    // A free cluster cannot be freed again.
    {
        MemoryImageFile g(f.bytes());
        uint64_t block = be64(g, be64(g, 48));
        put_be(g, block + (l2e & 0xffffffffff0000ull) / (64 * K) * 2, 2, 0);
        auto img = open(g);
        CHECK(img->discard(0, 64 * K) == -EIO);
    }
    // A file that cannot grow.
    {
        MemoryImageFile g(f.bytes(), f.size());
        auto img = open(g);
        CHECK(wr(*img, 512 * K, std::vector<uint8_t>(512, 1)) == -ENOSPC);
    }
}

namespace {

// `data` as one zstd frame: with its size in the frame header, as QEMU
// writes it, or streamed with the size unknown (libzstd then decodes
// through its own buffers).
std::vector<uint8_t> zstd_frame(const std::vector<uint8_t>& data, bool known_size = true, bool checksum = false,
                                int window_log = 0) {
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
    REQUIRE(c);
    REQUIRE(!ZSTD_isError(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, checksum)));
    if (window_log) REQUIRE(!ZSTD_isError(ZSTD_CCtx_setParameter(c.get(), ZSTD_c_windowLog, window_log)));
    std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    if (!known_size) REQUIRE(!ZSTD_isError(ZSTD_compressStream2(c.get(), &o, &in, ZSTD_e_continue)));
    size_t r = 0;
    do {
        r = ZSTD_compressStream2(c.get(), &o, &in, ZSTD_e_end);
        REQUIRE(!ZSTD_isError(r));
    } while (r != 0);
    out.resize(o.pos);
    CHECK(ZSTD_getFrameContentSize(out.data(), out.size()) == (known_size ? data.size() : ZSTD_CONTENTSIZE_UNKNOWN));
    return out;
}

std::vector<uint8_t> noise(size_t n, unsigned seed) {
    std::mt19937 g(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(g());
    return v;
}

std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

}  // namespace

TEST_CASE("qcow2: zstd clusters: exactly one cluster or -EIO", "[qcow2]") {
    const size_t cs = 4 * K;  // 12 cluster bits: descriptors have 58 offset bits, 4 sector bits
    MemoryImageFile base = make(1 * M, 12);
    make_zstd(base);
    REQUIRE(wr(*open(base), 0, pattern(cs, 3)) == 0);  // an L2 table
    const uint64_t l2 = first_l2(base);
    const auto good = pattern(cs, 5), data = pattern(cs, 9), rnd = noise(cs, 1);

    // Guest cluster 2 holds `good`, cluster 1 `blob`, `skew` bytes into a
    // sector, with `extra` sectors more or fewer than it needs; the rest of
    // the last sector is junk.
    auto image = [&](const std::vector<uint8_t>& blob, uint64_t skew = 100, int extra = 0) {
        MemoryImageFile g(base.bytes());
        auto place = [&](size_t index, const std::vector<uint8_t>& b, uint64_t sk, int ex) {
            uint64_t off = g.size() + sk;
            auto padded = b;
            padded.resize((sk + b.size() + 511) / 512 * 512 - sk, 0xa5);
            REQUIRE(g.pwrite(padded.data(), padded.size(), off) == 0);
            uint64_t sectors = static_cast<uint64_t>(static_cast<int64_t>((sk + b.size() - 1) / 512) + ex);
            REQUIRE(sectors < 16);
            put_be(g, l2 + index * 8, 8, (1ull << 62) | (sectors << 58) | off);
        };
        place(2, zstd_frame(good), 7, 0);
        place(1, blob, skew, extra);
        return g;
    };
    auto reads = [&](MemoryImageFile g, const std::vector<uint8_t>& want) {
        auto img = open(g);
        if (want.empty()) {
            CHECK(rd_result(*img, cs, cs) == -EIO);
            CHECK(rd_result(*img, cs + 10, 10) == -EIO);
            CHECK(wr(*img, cs + 100, pattern(100, 1)) == -EIO);  // copy-on-write needs the old data
        } else {
            CHECK(rd(*img, cs, cs) == want);
            CHECK(rd(*img, cs + 10, 10) == slice(want, 10, 10));
        }
        // A failed frame leaves nothing behind for the next one.
        CHECK(rd(*img, 2 * cs, cs) == good);
        CHECK(rd_result(*img, cs, cs) == (want.empty() ? -EIO : 0));
    };

    SECTION("good frames") {
        reads(image(zstd_frame(data)), data);
        reads(image(zstd_frame(data), 0), data);
        reads(image(zstd_frame(data), 511), data);
        reads(image(zstd_frame(data, true, true)), data);
        reads(image(zstd_frame(data, false)), data);
        reads(image(zstd_frame(data, false, true)), data);
        reads(image(zstd_frame(rnd, false, true)), rnd);
        reads(image(zstd_frame(rnd)), rnd);
        reads(image(zstd_frame(data), 100, 2), data);  // a descriptor running past the end of the file
        reads(image(zstd_frame(data, false, false, 23)), data);
    }
    SECTION("frames of the wrong size") {
        for (bool known : {true, false}) {
            INFO(known);
            reads(image(zstd_frame(pattern(cs / 2, 9), known)), {});
            reads(image(zstd_frame(pattern(cs - 1, 9), known)), {});
            reads(image(zstd_frame(pattern(cs + 1, 9), known)), {});
            reads(image(zstd_frame(pattern(2 * cs, 9), known)), {});
            reads(image(zstd_frame(pattern(64 * K, 9), known)), {});
            reads(image(zstd_frame({}, known)), {});
        }
        // One frame per cluster, as QEMU writes: a second one is not read.
        reads(image(cat(zstd_frame(pattern(cs / 2, 9)), zstd_frame(pattern(cs / 2, 9)))), {});
    }
    SECTION("frames cut short") {
        auto f = zstd_frame(rnd, true, true);
        REQUIRE(f.size() > cs);  // stored, about 9 sectors
        reads(image(f, 100, -1), {});
        reads(image(f, 100, -8), {});
        reads(image(std::vector<uint8_t>(f.begin(), f.begin() + 600)), {});
        MemoryImageFile g = image(f, 0);
        REQUIRE(g.set_size(g.size() - 512 - 1) == 0);  // the file ends inside the frame
        reads(g, {});
    }
    SECTION("damaged frames") {
        auto f = zstd_frame(rnd, true, true);
        f[f.size() / 2] ^= 1;  // stored bytes: only the checksum notices
        reads(image(f), {});
        f = zstd_frame(data);
        f[0] ^= 0xff;  // magic
        reads(image(f), {});
        reads(image(std::vector<uint8_t>(600, 0)), {});
        reads(image(std::vector<uint8_t>(600, 0xff)), {});
        reads(image(noise(1500, 3)), {});
        // A skippable frame makes no data.
        reads(image({0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}), {});
        reads(image(cat({0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}, zstd_frame(data))), {});
    }
    SECTION("windows above 8 MiB are refused") {
        reads(image(zstd_frame(data, false, false, 24)), {});
    }
}

TEST_CASE("qcow2: the refcount table grows as the file does", "[qcow2]") {
    // One 512-byte table cluster covers 64 blocks of 256 clusters: 8 MiB of
    // file, half of what filling the 16 MiB disk needs.
    MemoryImageFile f;
    {
        Qcow2CreateOptions o;
        o.size = 16 * M;
        o.cluster_bits = 9;
        o.refcount_table_clusters = 1;
        Qcow2Image::create(f, o);
    }
    REQUIRE(vmm::load_be32(f.bytes(), 56) == 1);
    uint64_t old_table = be64(f, 48);
    auto data = pattern(16 * M, 4);
    {
        auto img = open(f);
        for (uint64_t off = 0; off < 16 * M; off += 1 * M) REQUIRE(wr(*img, off, slice(data, off, 1 * M)) == 0);
        CHECK(rd(*img, 0, 16 * M) == data);
    }
    CHECK(vmm::load_be32(f.bytes(), 56) > 1);
    CHECK(be64(f, 48) != old_table);
    CHECK(f.size() > 16 * M);
    auto img = open(f);
    CHECK(rd(*img, 0, 16 * M) == data);

    // A file that cannot grow far enough: the writes that do not fit fail,
    // the others stay readable.
    MemoryImageFile small(std::vector<uint8_t>{}, 10 * M);
    {
        Qcow2CreateOptions o;
        o.size = 16 * M;
        o.cluster_bits = 9;
        o.refcount_table_clusters = 1;
        Qcow2Image::create(small, o);
    }
    auto s = open(small);
    int r = 0;
    uint64_t off = 0;
    for (; off < 16 * M && r == 0; off += 1 * M) r = wr(*s, off, slice(data, off, 1 * M));
    CHECK(r == -ENOSPC);
    CHECK(off > 8 * M);
    CHECK(rd(*s, 0, 1 * M) == slice(data, 0, 1 * M));
}

// ---- with qemu-img ----

namespace {

struct ScratchDir {
    std::string path;
    ScratchDir() {
        const char* t = std::getenv("TMPDIR");
        std::string tmpl = std::string(t && *t ? t : "/tmp") + "/vmm-qcow2-test.XXXXXX";
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& n) const { return path + "/" + n; }
};

// Runs a shell command; returns its exit status and output.
int sh(const std::string& cmd, std::string* out = nullptr) {
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
    int st = ::pclose(p);
    if (out) *out = cmd + "\n" + s;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool have_qemu_img() { return sh("command -v qemu-img") == 0; }

// Ends the test case with a SKIP note on machines without qemu-img.
#define SKIP_WITHOUT_QEMU_IMG()                      \
    do {                                             \
        if (!have_qemu_img()) {                      \
            WARN("SKIP: qemu-img not installed");    \
            return;                                  \
        }                                            \
    } while (0)

// Runs a shell command that must succeed (its output shown if not).
void sh_ok(const std::string& cmd) {
    std::string out;
    int rc = sh(cmd, &out);
    INFO(out);
    REQUIRE(rc == 0);
}

void write_file(const std::string& p, const std::vector<uint8_t>& data) {
    std::ofstream o(p, std::ios::binary | std::ios::trunc);
    o.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    REQUIRE(o.good());
}

std::vector<uint8_t> read_file(const std::string& p) {
    std::ifstream i(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(i), std::istreambuf_iterator<char>()};
}

BackingOpener fd_opener() {
    return [](const std::string& path, const std::string&) -> std::unique_ptr<ImageFile> {
        return FdImageFile::open(path, true);
    };
}

// Barriers (fdatasync) cost seconds on a busy disk; one variant of each
// test keeps them to run the real path.
std::unique_ptr<Qcow2Image> open_path(ImageFile& f, const std::string& path, bool readonly = false,
                                      bool barriers = false) {
    Qcow2Options o;
    o.path = path;
    o.readonly = readonly;
    o.barriers = barriers;
    o.open_backing = fd_opener();
    return Qcow2Image::open(f, o);
}

// Writes, zeroes and discards through the image, and does the same to `model`.
void scribble(Qcow2Image& img, std::vector<uint8_t>& model, bool backing) {
    auto put = [&](uint64_t off, const std::vector<uint8_t>& d) {
        REQUIRE(wr(img, off, d) == 0);
        std::copy(d.begin(), d.end(), model.begin() + static_cast<ptrdiff_t>(off));
    };
    put(100 * 1024 - 512, pattern(4 * K, 200));
    put(1 * M - 512, pattern(8 * K, 201));  // across clusters
    put(1536 * K, pattern(128 * K, 202));    // whole clusters
    REQUIRE(img.write_zeroes(256 * K, 192 * K) == 0);
    std::fill(model.begin() + 256 * K, model.begin() + 448 * K, 0);
    // Discard drops whole clusters only, and not in v2 over a backing file.
    REQUIRE(img.discard(1536 * K, 64 * K) == 0);
    if (img.cluster_size() <= 64 * K && (img.version() == 3 || !backing))
        std::fill(model.begin() + 1536 * K, model.begin() + 1600 * K, 0);
    REQUIRE(img.flush() == 0);
    CHECK(rd(img, 0, model.size()) == model);
}

// Compressed L2 entries in an image file.
size_t compressed_clusters(const std::vector<uint8_t>& f) {
    const uint64_t cs = 1ull << vmm::load_be32(f, 20), l1 = vmm::load_be64(f, 40);
    size_t n = 0;
    for (uint64_t i = 0; i < vmm::load_be32(f, 36); ++i) {
        uint64_t l2 = vmm::load_be64(f, l1 + i * 8) & 0x00fffffffffffe00ull;
        for (uint64_t j = 0; l2 && j < cs / 8; ++j) n += (vmm::load_be64(f, l2 + j * 8) >> 62) == 1;
    }
    return n;
}

void check_clean(const std::string& image, const std::string& format, const std::string& expected_raw) {
    std::string out;
    int rc = sh("qemu-img check -f " + format + " " + image, &out);
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.find("No errors were found") != std::string::npos);
    CHECK(out.find("leaked") == std::string::npos);
    std::string cmp;
    rc = sh("qemu-img compare -f " + format + " -F raw " + image + " " + expected_raw, &cmp);
    INFO(cmp);
    CHECK(rc == 0);
}

}  // namespace

TEST_CASE("qcow2: images made by qemu-img read and write back cleanly", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    const uint64_t size = 2 * M;
    auto base = pattern(size, 17);
    std::fill(base.begin() + 640 * K, base.begin() + 768 * K, 0);  // a hole for convert to skip
    write_file(dir / "base.raw", base);

    struct Variant {
        std::string name, cmd;
        bool backing;
    };
    std::vector<Variant> variants = {
        {"ov.qcow2", "qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2 2M", true},
        {"ov-v2.qcow2", "qemu-img create -q -f qcow2 -o compat=0.10 -b base.raw -F raw ov-v2.qcow2 2M", true},
        {"comp.qcow2", "qemu-img convert -c -O qcow2 base.raw comp.qcow2", false},
        {"zstd.qcow2", "qemu-img convert -c -O qcow2 -o compression_type=zstd base.raw zstd.qcow2", false},
        {"v2.qcow2", "qemu-img convert -O qcow2 -o compat=0.10 base.raw v2.qcow2", false},
        {"v3.qcow2", "qemu-img convert -O qcow2 -o compat=1.1 base.raw v3.qcow2", false},
        {"small.qcow2", "qemu-img convert -O qcow2 -o cluster_size=4096 base.raw small.qcow2", false},
        {"rc8.qcow2", "qemu-img convert -O qcow2 -o refcount_bits=8 base.raw rc8.qcow2", false},
        {"rc64.qcow2", "qemu-img create -q -f qcow2 -o refcount_bits=64 -b base.raw -F raw rc64.qcow2 2M", true},
    };
    for (const auto& v : variants) {
        INFO(v.name);
        sh_ok("cd " + dir.path + " && " + v.cmd);
        std::string p = dir / v.name;
        if (v.cmd.find(" -c ") != std::string::npos) {
            auto bytes = read_file(p);
            CHECK(compressed_clusters(bytes) > 16);
            CHECK(bytes[104] == (v.cmd.find("zstd") != std::string::npos ? 1 : 0));
        }
        auto model = base;
        {
            auto f = FdImageFile::open(p, false);
            auto img = open_path(*f, p, false, v.name == "ov.qcow2");
            CHECK(img->size() == size);
            CHECK(rd(*img, 0, size) == base);
            scribble(*img, model, v.backing);
        }
        {
            auto f = FdImageFile::open(p, true);
            auto img = open_path(*f, p, true);
            CHECK(rd(*img, 0, size) == model);
        }
        write_file(dir / "expected.raw", model);
        check_clean(p, "qcow2", dir / "expected.raw");
        CHECK(read_file(dir / "base.raw") == base);
    }
}

TEST_CASE("qcow2: damaged zstd clusters from qemu-img fail reads with -EIO", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    const uint64_t cs = 64 * K;
    auto base = pattern(4 * cs, 41);
    write_file(dir / "base.raw", base);
    std::string p = dir / "zstd.qcow2";
    sh_ok("cd " + dir.path + " && qemu-img convert -c -O qcow2 -o compression_type=zstd base.raw zstd.qcow2");
    const auto bytes = read_file(p);
    // Guest cluster 1's frame.
    MemoryImageFile whole(bytes);
    uint64_t e = be64(whole, first_l2(whole) + 8);
    REQUIRE((e >> 62) == 1);
    const uint64_t off = e & ((1ull << 54) - 1);  // 16 cluster bits: 54 offset bits
    const size_t frame = ZSTD_findFrameCompressedSize(bytes.data() + off, bytes.size() - off);
    REQUIRE(!ZSTD_isError(frame));
    REQUIRE(frame > 16);
    CHECK(rd(*open(whole, nullptr, true), 0, 4 * cs) == base);

    // In the file: the magic, then the first block's header made a reserved
    // block type (the frame header is 7 bytes: magic, descriptor, 2-byte size).
    REQUIRE(bytes[off + 4] == 0x60);
    for (uint64_t at : {off, off + 7}) {
        INFO(at - off);
        write_file(p, bytes);
        {
            std::fstream io(p, std::ios::binary | std::ios::in | std::ios::out);
            io.seekp(static_cast<std::streamoff>(at));
            const char ff[3] = {'\xff', '\xff', '\xff'};
            io.write(ff, 3);
            REQUIRE(io.good());
        }
        auto f = FdImageFile::open(p, false);
        auto img = open_path(*f, p);
        CHECK(rd_result(*img, cs, cs) == -EIO);
        CHECK(rd_result(*img, cs + 512, 512) == -EIO);
        CHECK(wr(*img, cs + 512, pattern(512, 1)) == -EIO);
        CHECK(rd(*img, 0, cs) == slice(base, 0, cs));
        CHECK(rd(*img, 2 * cs, 2 * cs) == slice(base, 2 * cs, 2 * cs));
    }
    // Every byte of the frame flipped in turn: a read fails with -EIO or
    // succeeds (the frame has no checksum), never anything else.
    size_t eio = 0;
    for (size_t i = 0; i < frame; ++i) {
        MemoryImageFile g(bytes);
        g.bytes()[off + i] ^= 0xff;
        auto img = open(g, nullptr, true);
        int r = rd_result(*img, cs, cs);
        CHECK((r == 0 || r == -EIO));
        eio += r == -EIO;
    }
    INFO(eio << " of " << frame);
    CHECK(eio > frame / 4);
}

TEST_CASE("qcow2: images made by create() pass qemu-img check", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    const uint64_t size = 2 * M;
    auto base = pattern(size, 23);
    write_file(dir / "base.raw", base);
    write_file(dir / "zeros.raw", std::vector<uint8_t>(size, 0));
    struct Variant {
        std::string name;
        unsigned cluster_bits, version;
        std::string backing, format;
    };
    std::vector<Variant> variants = {
        {"plain.qcow2", 16, 3, "", ""},
        {"v2.qcow2", 16, 2, "", ""},
        {"tiny-clusters.qcow2", 9, 3, "", ""},  // refcount blocks added on the way
        {"big-clusters.qcow2", 21, 3, "", ""},
        {"overlay.qcow2", 16, 3, "base.raw", "raw"},
        {"overlay-v2.qcow2", 12, 2, "base.raw", "raw"},
    };
    for (const auto& v : variants) {
        INFO(v.name);
        std::string p = dir / v.name;
        auto model = v.backing.empty() ? std::vector<uint8_t>(size, 0) : base;
        {
            vmm::Fd fd(::open(p.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0644));
            REQUIRE(fd);
            FdImageFile f(std::move(fd));
            Qcow2CreateOptions o;
            o.size = size;
            o.cluster_bits = v.cluster_bits;
            o.version = v.version;
            o.backing_path = v.backing;
            o.backing_format = v.format;
            Qcow2Image::create(f, o);
            check_clean(p, "qcow2", dir / (v.backing.empty() ? "zeros.raw" : "base.raw"));
        }
        {
            auto f = FdImageFile::open(p, false);
            auto img = open_path(*f, p, false, v.name == "overlay.qcow2");
            scribble(*img, model, !v.backing.empty());
            // Fill the whole disk too, so every table is used.
            if (v.cluster_bits == 9) {
                auto all = pattern(size, 99);
                REQUIRE(wr(*img, 0, all) == 0);
                model = all;
            }
        }
        write_file(dir / "expected.raw", model);
        check_clean(p, "qcow2", dir / "expected.raw");
        CHECK(read_file(dir / "base.raw") == base);
    }
}

TEST_CASE("qcow2: a qemu-img image outgrows its refcount table and stays clean", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    // qemu-img starts with one refcount table cluster: with 512-byte
    // clusters it counts 8 MiB of file.
    std::string p = dir / "grow.qcow2";
    sh_ok("qemu-img create -q -f qcow2 -o cluster_size=512 " + p + " 12M");
    auto data = pattern(12 * M, 31);
    {
        auto f = FdImageFile::open(p, false);
        auto img = open_path(*f, p, false, true);
        REQUIRE(wr(*img, 0, data) == 0);
        REQUIRE(img->flush() == 0);
        CHECK(rd(*img, 0, 12 * M) == data);
    }
    CHECK(vmm::load_be32(read_file(p), 56) > 1);
    write_file(dir / "expected.raw", data);
    check_clean(p, "qcow2", dir / "expected.raw");
}

TEST_CASE("qcow2: refcount widths below 8 bits are refused", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    std::string p = dir / "rc1.qcow2";
    sh_ok("qemu-img create -q -f qcow2 -o refcount_bits=1 " + p + " 1M");
    auto f = FdImageFile::open(p, false);
    CHECK_THROWS_WITH(open_path(*f, p), "qcow2 image " + p + ": refcount_order 0 is not supported (8- to 64-bit refcounts)");
}

namespace {

// An image file that remembers its writes between flushes, so a test can
// rebuild what a host crash could leave: everything up to some flush, plus
// any subset of the writes after it.
struct RecordingFile : MemoryImageFile {
    struct Write {
        uint64_t off;
        std::vector<uint8_t> data;
    };
    std::vector<uint8_t> start;
    std::vector<std::vector<Write>> epochs{1};
    explicit RecordingFile(std::vector<uint8_t> bytes) : MemoryImageFile(bytes), start(std::move(bytes)) {}
    int pwrite(const void* buf, size_t len, uint64_t off) override {
        auto p = static_cast<const uint8_t*>(buf);
        epochs.back().push_back({off, {p, p + len}});
        return MemoryImageFile::pwrite(buf, len, off);
    }
    int flush() override {
        if (!epochs.back().empty()) epochs.emplace_back();
        return 0;
    }
    static void apply(std::vector<uint8_t>& img, const Write& w) {
        if (img.size() < w.off + w.data.size()) img.resize(w.off + w.data.size());
        std::copy(w.data.begin(), w.data.end(), img.begin() + static_cast<ptrdiff_t>(w.off));
    }
    // Every epoch before `e`, then the writes of epoch `e` that `keep` picks.
    std::vector<uint8_t> crash(size_t e, const std::function<bool(size_t)>& keep) const {
        auto img = start;
        for (size_t i = 0; i < e; ++i)
            for (const auto& w : epochs[i]) apply(img, w);
        for (size_t j = 0; j < epochs[e].size(); ++j)
            if (keep(j)) apply(img, epochs[e][j]);
        return img;
    }
};

// Allocating writes, in-place writes, zeroing and discarding on an overlay
// (with 512-byte clusters, so refcount blocks are added too).
void crash_workload(Qcow2Image& img) {
    REQUIRE(wr(img, 1000, pattern(3000, 1)) == 0);
    REQUIRE(wr(img, 1024, pattern(512, 2)) == 0);
    REQUIRE(wr(img, 64 * K, pattern(160 * K, 3)) == 0);
    REQUIRE(img.write_zeroes(0, 2048) == 0);
    REQUIRE(img.discard(64 * K, 16 * K) == 0);
    REQUIRE(wr(img, 60 * K, pattern(8 * K, 4)) == 0);
    REQUIRE(img.flush() == 0);
}

struct CrashVerdict {
    bool corrupt = false;  // qemu-img check said anything but clean (0) or leaks only (3)
    size_t states = 0;
    std::string first_bad;
};

// Writes of an epoch to drop or keep alone: all of a short one, else the
// first 8 (one whole small request), 6 spread over the rest, the last.
std::vector<size_t> picks(size_t n) {
    std::vector<size_t> v;
    for (size_t j = 0; j < n && j < 8; ++j) v.push_back(j);
    if (n > 16) {
        for (size_t k = 0; k < 6; ++k) v.push_back(8 + k * (n - 9) / 6);
        v.push_back(n - 1);
    } else {
        for (size_t j = 8; j < n; ++j) v.push_back(j);
    }
    return v;
}

// qemu-img check's verdict on states a crash could leave.
CrashVerdict check_crash_states(const RecordingFile& rec, const ScratchDir& dir, bool stop_at_corrupt = false) {
    CrashVerdict r;
    auto verdict = [&](const std::vector<uint8_t>& bytes) {
        write_file(dir / "crash.qcow2", bytes);
        std::string out;
        int rc = sh("qemu-img check -q -f qcow2 " + dir / "crash.qcow2", &out);
        ++r.states;
        if (rc != 0 && rc != 3) {
            if (r.first_bad.empty()) r.first_bad = out;
            r.corrupt = true;
        }
        // Whatever state the crash left, reading it must not fail.
        MemoryImageFile f(bytes);
        Qcow2Options o;
        o.path = dir / "crash.qcow2";
        o.readonly = true;
        o.open_backing = fd_opener();
        auto img = Qcow2Image::open(f, o);
        if (rc == 0 || rc == 3) CHECK(rd_result(*img, 0, img->size()) == 0);
    };
    for (size_t e = 0; e < rec.epochs.size(); ++e) {
        size_t n = rec.epochs[e].size();
        verdict(rec.crash(e, [](size_t) { return true; }));
        if (n < 2) continue;
        for (size_t j : picks(n)) {
            if (stop_at_corrupt && r.corrupt) return r;
            verdict(rec.crash(e, [j](size_t i) { return i == j; }));
            verdict(rec.crash(e, [j](size_t i) { return i != j; }));
        }
    }
    return r;
}

}  // namespace

TEST_CASE("qcow2: a host crash at any point leaves at most leaked clusters", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    write_file(dir / "base.raw", pattern(256 * K, 9));
    MemoryImageFile created = make(256 * K, 9, 3, dir / "base.raw", "raw");

    RecordingFile rec(created.bytes());
    {
        Qcow2Options o;
        o.path = dir / "ov.qcow2";
        o.open_backing = fd_opener();
        auto img = Qcow2Image::open(rec, o);
        crash_workload(*img);
    }
    CrashVerdict v = check_crash_states(rec, dir);
    INFO(v.first_bad);
    CHECK_FALSE(v.corrupt);
    CHECK(v.states > 20);

    // The same without barriers can corrupt: the check above can tell.
    RecordingFile loose(created.bytes());
    {
        Qcow2Options o;
        o.path = dir / "ov.qcow2";
        o.open_backing = fd_opener();
        o.barriers = false;
        auto img = Qcow2Image::open(loose, o);
        crash_workload(*img);
    }
    CHECK(check_crash_states(loose, dir, true).corrupt);
}

TEST_CASE("qcow2: a host crash while the refcount table grows leaves at most leaked clusters", "[qcow2]") {
    SKIP_WITHOUT_QEMU_IMG();
    ScratchDir dir;
    // Filled up to just below what one 512-byte table cluster counts (8 MiB
    // of file), then recorded while a write crosses that line.
    MemoryImageFile f;
    Qcow2CreateOptions co;
    co.size = 16 * M;
    co.cluster_bits = 9;
    co.refcount_table_clusters = 1;
    Qcow2Image::create(f, co);
    uint64_t off = 0;
    {
        Qcow2Options o;
        o.path = dir / "grow.qcow2";
        o.barriers = false;
        auto img = Qcow2Image::open(f, o);
        for (; f.size() < 8 * M - 32 * K; off += 64 * K) REQUIRE(wr(*img, off, pattern(64 * K, 5)) == 0);
    }
    REQUIRE(vmm::load_be32(f.bytes(), 56) == 1);
    RecordingFile rec(f.bytes());
    {
        Qcow2Options o;
        o.path = dir / "grow.qcow2";
        auto img = Qcow2Image::open(rec, o);
        REQUIRE(wr(*img, off, pattern(64 * K, 6)) == 0);
        REQUIRE(img->flush() == 0);
        CHECK(rd(*img, off, 64 * K) == pattern(64 * K, 6));
    }
    REQUIRE(vmm::load_be32(rec.bytes(), 56) > 1);
    CrashVerdict v = check_crash_states(rec, dir);
    INFO(v.first_bad);
    CHECK_FALSE(v.corrupt);
    CHECK(v.states > 10);
}
