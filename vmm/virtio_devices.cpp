// The virtio device registry and the factories that turn a VmConfig into
// virtio devices: the only file that names the concrete devices.
#include "vmm/virtio_devices.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include "virtio/balloon.h"
#include "virtio/block.h"
#include "virtio/console.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/scsi.h"
#include "vmm/cloud_init.h"
#include "vmm/config_check.h"
#include "vmm/console_socket.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/device_manager.h"
#include "vmm/input_file.h"
#include "vmm/output_file.h"
#include "vmm/serial_ports.h"

namespace vmm {

namespace x86 = arch::x86;

namespace {

// PCI class codes, as the Linux and Windows drivers expect to see them.
constexpr uint32_t kClassStorageScsi = 0x010000;
constexpr uint32_t kClassEthernet = 0x020000;
constexpr uint32_t kClassCommOther = 0x078000;
constexpr uint32_t kClassOther = 0x00ff00;

// Debian's ipxe-qemu: iPXE for virtio-net with a BIOS and an EFI image, the
// ROM QEMU gives its virtio-net devices.
constexpr const char* kIpxeVirtioRom = "/usr/lib/ipxe/qemu/efi-virtio.rom";

// The expansion ROM of interface `n`, or null: only under firmware (a
// directly booted kernel has no use for one), "" picks Debian's iPXE when
// installed, "off" none.
std::shared_ptr<const std::vector<uint8_t>> net_rom(const NetConfig& n, bool firmware) {
    if (!firmware || n.rom == "off") return nullptr;
    std::string path = n.rom;
    if (path.empty()) {
        if (::access(kIpxeVirtioRom, R_OK) != 0) {
            if (n.bootindex >= 0)
                log::warn("--net tap={}: bootindex given but no network boot ROM: {} not found (install Debian's "
                          "ipxe-qemu, or give rom=PATH)", n.tap, kIpxeVirtioRom);
            return nullptr;
        }
        path = kIpxeVirtioRom;
    }
    InputFile f(path, "--net rom");
    if (f.size() > 16u << 20) fail("--net rom={}: {} bytes; at most 16 MiB", path, f.size());
    auto rom = std::make_shared<std::vector<uint8_t>>(f.size());
    f.copy_to(*rom, f.bytes());
    log::debug("--net tap={}: option ROM {} ({} bytes)", n.tap, path, rom->size());
    return rom;
}

// format= as checked by check::disk_format.
virtio::DiskFormat disk_format(const std::string& f) {
    return f == "raw" ? virtio::DiskFormat::Raw : f == "qcow2" ? virtio::DiskFormat::Qcow2 : virtio::DiskFormat::Auto;
}

}  // namespace

// A friend of DeviceManager, so the table may name its private factories.
std::span<const VirtioKind> virtio_kinds() {
    // Disks first, so they take the low slots in command-line order and the
    // guest names them vda, vdb, ... in that order (Linux probes by slot).
    static const VirtioKind kinds[] = {
        {"virtio-blk", virtio::kDeviceBlock, kClassStorageScsi, &DeviceManager::attach_disks},
        {"virtio-console", virtio::kDeviceConsole, kClassCommOther, &DeviceManager::attach_console},
        {"virtio-net", virtio::kDeviceNet, kClassEthernet, &DeviceManager::attach_nets},
        {"virtio-rng", virtio::kDeviceRng, kClassOther, &DeviceManager::attach_rng},
        {"virtio-balloon", virtio::kDeviceBalloon, kClassOther, &DeviceManager::attach_balloon},
        {"virtio-scsi", virtio::kDeviceScsi, kClassStorageScsi, &DeviceManager::attach_scsi},
    };
    return kinds;
}

const VirtioKind* virtio_kind(uint32_t device_id) {
    for (const auto& k : virtio_kinds())
        if (k.device_id == device_id) return &k;
    return nullptr;
}

// Disks with an explicit slot are placed before the others pick theirs.
void DeviceManager::attach_disks(const VirtioKind& kind) {
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < cfg_.disks.size(); ++i) {
            const DiskConfig& d = cfg_.disks[i];
            if ((d.slot >= 0) != (pass == 0)) continue;
            virtio::BlockConfig bc;
            bc.disk.path = d.path;
            bc.disk.readonly = d.readonly;
            bc.disk.direct = d.direct;
            bc.disk.format = disk_format(d.format);
            bc.disk.snapshot = d.snapshot;
            bc.serial = d.serial;
            bc.num_queues = d.num_queues;
            bc.poll_us = d.poll_us;
            bc.name = fmt::format("{}{}", kind.name, i);
            unsigned s = add_virtio(kind, std::make_shared<virtio::BlockDevice>(std::move(bc)), d.slot, d.packed);
            if (d.bootindex >= 0) boot_devices_.push_back({x86::BootDevice::Kind::VirtioBlk, s, 0, d.bootindex});
        }
    }
}

// Named serial ports live on the console device too: it exists when either
// is asked for (port 0 then goes nowhere if --console is off).
void DeviceManager::attach_console(const VirtioKind& kind) {
    if (cfg_.console == SerialMode::Off && cfg_.serial_ports.empty()) return;
    virtio::ConsoleConfig cc;
    cc.name = fmt::format("{}0", kind.name);
    for (auto& p : cfg_.serial_ports) cc.port_names.push_back(p.name);
    int fd = cfg_.console == SerialMode::Tty ? STDOUT_FILENO : -1;
    if (cfg_.console == SerialMode::File) {
        console_file_ = open_output(cfg_.console_path, "--console file", cfg_, OutputMode::Truncate);
        fd = console_file_.get();
    }
    if (cfg_.console == SerialMode::Socket) {
        console_sock_ = std::make_unique<ConsoleSocket>(cfg_.console_path, "--console socket=" + cfg_.console_path);
        cc.output = [s = console_sock_.get()](std::span<const uint8_t> b) { s->write_output(b); };
    } else {
        cc.output = fd_writer(fd);
    }
    console_ = std::make_shared<virtio::ConsoleDevice>(std::move(cc));
    add_virtio(kind, console_, -1);
    if (!cfg_.serial_ports.empty()) serial_ports_ = std::make_unique<SerialPortHost>(console_, cfg_.serial_ports, cfg_);
}

void DeviceManager::attach_nets(const VirtioKind& kind) {
    for (size_t i = 0; i < cfg_.nets.size(); ++i) {
        const NetConfig& n = cfg_.nets[i];
        auto tap = std::make_shared<virtio::Tap>(n.tap, n.num_queues, "--net tap=" + n.tap);
        virtio::NetConfig nc;
        nc.name = fmt::format("{}{}", kind.name, i);
        nc.mac = check::effective_mac(n);
        unsigned s = add_virtio(kind, std::make_shared<virtio::NetDevice>(std::move(nc), std::move(tap)), -1,
                                n.packed, net_rom(n, firmware()));
        if (n.bootindex >= 0) boot_devices_.push_back({x86::BootDevice::Kind::VirtioNet, s, 0, n.bootindex});
    }
}

void DeviceManager::attach_rng(const VirtioKind& kind) {
    if (!cfg_.rng) return;
    virtio::RngConfig rc;
    rc.name = fmt::format("{}0", kind.name);
    add_virtio(kind, std::make_shared<virtio::RngDevice>(std::move(rc)), -1);
}

void DeviceManager::attach_balloon(const VirtioKind& kind) {
    if (!cfg_.balloon) return;
    virtio::BalloonConfig bc;
    bc.name = fmt::format("{}0", kind.name);
    bc.target_pages = static_cast<uint32_t>(cfg_.balloon->size / virtio::kBalloonPageSize);
    bc.deflate_on_oom = cfg_.balloon->deflate_on_oom;
    bc.free_page_reporting = cfg_.balloon->free_page_reporting;
    bc.stats_interval_ms = cfg_.balloon->stats_interval_s * 1000;
    balloon_ = std::make_shared<virtio::BalloonDevice>(std::move(bc));
    add_virtio(kind, balloon_, -1);
}

// One virtio-scsi controller holds every --scsi-disk and --cdrom, and the
// cloud-init seed (a read-only CD-ROM at the lowest LUN left free, never a
// boot device).
void DeviceManager::attach_scsi(const VirtioKind& kind) {
    if (cfg_.scsi.empty() && !cfg_.cloud_init) return;
    std::vector<ScsiLunConfig> all = cfg_.scsi;
    if (cfg_.cloud_init) all.push_back(kCloudInitLunConfig);
    std::vector<uint32_t> luns = check::scsi_luns(all, "--scsi-disk/--cdrom/--cloud-init");
    virtio::ScsiConfig sc;
    sc.name = fmt::format("{}0", kind.name);
    for (size_t i = 0; i < cfg_.scsi.size(); ++i) {
        virtio::ScsiLunSpec l;
        l.disk.path = cfg_.scsi[i].path;
        l.disk.readonly = cfg_.scsi[i].readonly || cfg_.scsi[i].cdrom;
        l.disk.direct = cfg_.scsi[i].direct;
        l.disk.format = disk_format(cfg_.scsi[i].format);
        l.disk.snapshot = cfg_.scsi[i].snapshot && !cfg_.scsi[i].cdrom;
        l.lun = luns[i];
        l.cdrom = cfg_.scsi[i].cdrom;
        sc.luns.push_back(std::move(l));
    }
    if (cfg_.cloud_init) sc.luns.push_back(cloud_init_lun(cfg_, luns.back()));
    // Each LUN keeps its image open and, per request queue once used, a
    // disk engine (io_uring + eventfd): raise the soft fd limit to fit.
    rlimit nofile{};
    rlim_t want = 256 + 3 * static_cast<rlim_t>(luns.size());
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < want) {
        nofile.rlim_cur = std::min(want, nofile.rlim_max);
        if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur < want)
            log::warn("--scsi-disk/--cdrom: {} LUNs may need {} file descriptors; the limit is {}", luns.size(),
                      want, nofile.rlim_cur);
    }
    unsigned s = add_virtio(kind, std::make_shared<virtio::ScsiDevice>(std::move(sc)), -1);
    for (size_t i = 0; i < cfg_.scsi.size(); ++i)
        if (cfg_.scsi[i].bootindex >= 0)
            boot_devices_.push_back({x86::BootDevice::Kind::VirtioScsiLun, s, luns[i], cfg_.scsi[i].bootindex});
}

}  // namespace vmm
