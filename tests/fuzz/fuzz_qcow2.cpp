// The qcow2 format layer (virtio/qcow2.h) on any file as an image: the
// input's front is the image (in memory, growing to at most 16 MiB), its end
// chooses read-only or writable and up to 8 reads, writes, write-zeroes,
// discards and flushes at offsets inside and outside the disk. A backing
// file named "raw" is a 1 MiB pattern; one named "qcow2" is the input again,
// so chains reach the depth limit. Opening may only throw vmm::Error; I/O
// may only return 0 or one of the documented errors; the image file may only
// grow up to its limit (MemoryImageFile enforces it with -ENOSPC).
#include <fuzzer/FuzzedDataProvider.h>

#include <cerrno>
#include <vector>

#include "virtio/qcow2.h"
#include "vmm/core/error.h"

using namespace vmm::virtio;

namespace {

bool documented(int r) { return r == 0 || r == -EINVAL || r == -EIO || r == -ENOSPC || r == -EROFS; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    const bool readonly = in.ConsumeBool();
    const unsigned ops = in.ConsumeIntegralInRange<unsigned>(0, 8);
    struct Op {
        unsigned kind;
        bool inside;
        uint64_t off;
        uint32_t len;
        uint8_t fill;
    };
    std::vector<Op> plan(ops);
    for (auto& op : plan) {
        op.kind = in.ConsumeIntegralInRange<unsigned>(0, 4);
        op.inside = in.ConsumeBool();
        op.off = in.ConsumeIntegral<uint64_t>();
        op.len = in.ConsumeIntegralInRange<uint32_t>(0, 256 << 10);
        op.fill = in.ConsumeIntegral<uint8_t>();
    }
    const std::vector<uint8_t> image = in.ConsumeRemainingBytes<uint8_t>();

    MemoryImageFile file(image, 16u << 20);
    static const std::vector<uint8_t> pattern = [] {
        std::vector<uint8_t> p(1u << 20);
        for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i * 13 + (i >> 9));
        return p;
    }();
    Qcow2Options o;
    o.path = "fuzz.qcow2";
    o.readonly = readonly;
    o.cache_bytes = 256u << 10;
    o.open_backing = [&](const std::string&, const std::string& format) -> std::unique_ptr<ImageFile> {
        if (format == "qcow2") return std::make_unique<MemoryImageFile>(image);
        return std::make_unique<MemoryImageFile>(pattern);
    };
    std::unique_ptr<Qcow2Image> img;
    try {
        img = Qcow2Image::open(file, o);
    } catch (const vmm::Error&) {
        return 0;
    }
    std::vector<uint8_t> buf;
    for (const auto& op : plan) {
        uint64_t off = op.inside && img->size() ? op.off % img->size() : op.off;
        buf.assign(op.len, op.fill);
        iovec v[2] = {{buf.data(), op.len / 3}, {buf.data() + op.len / 3, op.len - op.len / 3}};
        int r = 0;
        switch (op.kind) {
        case 0:
            r = img->read(off, v);
            break;
        case 1:
            r = img->write(off, v);
            break;
        case 2:
            r = img->write_zeroes(off, uint64_t{op.len} << 6);
            break;
        case 3:
            r = img->discard(off, uint64_t{op.len} << 6);
            break;
        default:
            r = img->flush();
            break;
        }
        if (!documented(r)) __builtin_trap();
        if (file.size() > (16u << 20)) __builtin_trap();
    }
    return 0;
}
