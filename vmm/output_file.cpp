#include "vmm/output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vmm/core/error.h"

namespace vmm {

std::vector<InputPath> input_paths(const VmConfig& cfg) {
    std::vector<InputPath> in;
    // `option` ends in '=' for a key of a SPEC ("--disk path="), else the
    // path follows after a space ("--kernel /boot/vmlinuz").
    auto add = [&](const std::string& option, const std::string& path, bool writes = false) {
        if (path.empty()) return;
        in.push_back({option + (option.ends_with('=') ? "" : " ") + path, path, writes});
    };
    add(cfg.kernel_what, cfg.kernel);
    add(cfg.initramfs_what, cfg.initramfs);
    if (cfg.firmware != "bios" && cfg.firmware != "uefi") add("--firmware", cfg.firmware);
    add("--firmware vars=", cfg.firmware_vars, true);
    // snapshot=on never writes the image (its overlay has no name).
    for (const auto& d : cfg.disks) add("--disk path=", d.path, !d.readonly && !d.snapshot);
    for (const auto& s : cfg.scsi)
        add(s.cdrom ? "--cdrom path=" : "--scsi-disk path=", s.path, !s.readonly && !s.cdrom && !s.snapshot);
    for (const auto& f : cfg.fw_cfg) add("--fw-cfg name=" + f.name + ",file=", f.file);
    if (cfg.cloud_init) {
        add("--cloud-init user-data=", cfg.cloud_init->user_data);
        add("--cloud-init meta-data=", cfg.cloud_init->meta_data);
        add("--cloud-init network-config=", cfg.cloud_init->network_config);
    }
    return in;
}

void check_inputs_distinct(const VmConfig& cfg) {
    auto in = input_paths(cfg);
    std::vector<struct stat> st(in.size());
    std::vector<bool> exists(in.size());
    for (size_t i = 0; i < in.size(); ++i)
        exists[i] = ::stat(in[i].path.c_str(), &st[i]) == 0 && S_ISREG(st[i].st_mode);
    for (size_t a = 0; a < in.size(); ++a)
        for (size_t b = 0; b < a; ++b)
            if (exists[a] && exists[b] && st[a].st_dev == st[b].st_dev && st[a].st_ino == st[b].st_ino &&
                (in[a].writes || in[b].writes))
                fail("{} and {} are the same file; a file the VM writes cannot also be another of its inputs",
                     in[b].label, in[a].label);
}

Fd open_output(const std::string& path, const std::string& what, const VmConfig& cfg, OutputMode mode) {
    const std::string name = fmt::format("{} {}", what, path);
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (mode == OutputMode::Append) flags |= O_APPEND;
    Fd fd(::open(path.c_str(), flags, 0600));
    if (!fd) {
        if (errno == ENXIO) fail("{}: a FIFO with no reader (start the reader first)", name);
        throw_errno(name);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) throw_errno(name);
    if (S_ISREG(st.st_mode)) {
        for (const auto& input : input_paths(cfg)) {
            struct stat in {};
            if (::stat(input.path.c_str(), &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino)
                fail("{}: this is also the VM's {}; refusing to overwrite an input", name, input.label);
        }
        // The lock disk images take (virtio/disk.cpp): a file another VMM
        // uses is left alone, and no other VMM truncates ours meanwhile.
        struct flock lk {};
        lk.l_type = F_WRLCK;
        lk.l_whence = SEEK_SET;
        if (::fcntl(fd.get(), F_OFD_SETLK, &lk) < 0) {
            if (errno == EAGAIN || errno == EACCES)
                fail("{}: the file is locked by another process (a disk image or an output of another VM?); "
                     "refusing to overwrite it", name);
            // Filesystems without locks: go on, as disk images do.
        }
        if (mode == OutputMode::Truncate && ::ftruncate(fd.get(), 0) < 0) throw_errno(name + ": truncate");
    } else if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        fail("{}: not a regular file, character device or FIFO", name);
    }
    // Writes block as a terminal's would: the output threads wait for a slow
    // reader rather than drop bytes.
    int fl = ::fcntl(fd.get(), F_GETFL);
    if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) < 0) throw_errno(name);
    return fd;
}

std::function<void(std::span<const uint8_t>)> fd_writer(int fd) {
    return [fd](std::span<const uint8_t> bytes) {
        const uint8_t* p = bytes.data();
        size_t n = bytes.size();
        while (fd >= 0 && n > 0) {
            ssize_t r = ::write(fd, p, n);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return;  // console gone (EPIPE etc.): drop output, keep the VM
            p += r;
            n -= static_cast<size_t>(r);
        }
    };
}

}  // namespace vmm
