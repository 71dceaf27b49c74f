#include "vmm/cloud_init.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>
#include <optional>

#include "vmm/config_check.h"
#include "vmm/core/error.h"
#include "vmm/iso9660.h"

namespace vmm {

namespace {

// FNV-1a, 64 bits: stable across builds and hosts, which std::hash is not.
uint64_t fnv1a(uint64_t h, std::span<const uint8_t> bytes) {
    for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
    return h;
}

struct HostFile {
    std::vector<uint8_t> data;
    std::time_t mtime = 0;
};

// A whole cloud-init file; `key` is its JSON key, for the message.
HostFile read_file(const char* key, const std::string& path) {
    const std::string what = check::cloud_init_label(key, path, "");
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) throw_errno(what);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno(what);
    if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", what);
    HostFile f;
    f.mtime = st.st_mtim.tv_sec;
    // Read to the end rather than trust st_size: the limit holds even for a
    // file that grows meanwhile.
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno(what);
        if (n == 0) break;
        f.data.insert(f.data.end(), buf, buf + n);
        if (f.data.size() > check::kMaxCloudInitFile)
            fail("{}: too large for a cloud-init file (at most {} MiB)", what, check::kMaxCloudInitFile >> 20);
    }
    return f;
}

}  // namespace

std::string default_cloud_init_meta_data(const VmConfig& cfg, std::span<const uint8_t> user_data,
                                         std::span<const uint8_t> network_config) {
    std::string id;
    if (!cfg.uuid.empty()) {
        id = cfg.uuid;
        std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return std::tolower(c); });
    } else {
        // The files' lengths go in too, so moving bytes between them changes it.
        uint64_t h = 0xcbf29ce484222325ull;
        for (auto part : {user_data, network_config}) {
            uint64_t n = part.size();
            h = fnv1a(h, {reinterpret_cast<const uint8_t*>(&n), sizeof n});
            h = fnv1a(h, part);
        }
        id = fmt::format("{:016x}", h);
    }
    return fmt::format("instance-id: iid-{}\nlocal-hostname: vmm\n", id);
}

std::vector<uint8_t> make_cloud_init_image(const VmConfig& cfg) {
    if (!cfg.cloud_init) fail("internal: make_cloud_init_image without --cloud-init");
    const CloudInitConfig& ci = *cfg.cloud_init;
    HostFile user = read_file("user_data", ci.user_data);
    std::time_t mtime = user.mtime;
    std::vector<iso9660::File> files;
    std::optional<HostFile> network;
    if (!ci.network_config.empty()) {
        network = read_file("network_config", ci.network_config);
        mtime = std::max(mtime, network->mtime);
    }
    if (ci.meta_data.empty()) {
        std::string md = default_cloud_init_meta_data(cfg, user.data, network ? network->data : std::vector<uint8_t>{});
        files.push_back({"meta-data", {md.begin(), md.end()}});
    } else {
        HostFile meta = read_file("meta_data", ci.meta_data);
        mtime = std::max(mtime, meta.mtime);
        files.push_back({"meta-data", std::move(meta.data)});
    }
    files.push_back({"user-data", std::move(user.data)});
    if (network) files.push_back({"network-config", std::move(network->data)});
    // A date ISO 9660 cannot hold (before 1900) is not worth failing over.
    if (mtime < 0) mtime = 0;
    return iso9660::build(kCloudInitLabel, files, mtime);
}

Fd make_cloud_init_seed(const VmConfig& cfg) {
    std::vector<uint8_t> img = make_cloud_init_image(cfg);
    Fd fd(::memfd_create("cloud-init-seed", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) throw_errno("--cloud-init: memfd_create");
    size_t done = 0;
    while (done < img.size()) {
        ssize_t n = ::write(fd.get(), img.data() + done, img.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("--cloud-init: writing the seed");
        done += static_cast<size_t>(n);
    }
    // The guest sees a read-only CD-ROM; the seals make that hold for the
    // VMM's own descriptors too.
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        throw_errno("--cloud-init: sealing the seed");
    return fd;
}

virtio::ScsiLunSpec cloud_init_lun(const VmConfig& cfg, uint32_t lun) {
    virtio::ScsiLunSpec spec;
    spec.disk.path = "(cloud-init seed)";  // names it in messages
    spec.disk.option = "--cloud-init";
    spec.disk.readonly = true;
    spec.disk.file = std::make_shared<const Fd>(make_cloud_init_seed(cfg));
    spec.lun = lun;
    spec.cdrom = true;
    return spec;
}

}  // namespace vmm
