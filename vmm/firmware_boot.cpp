// Firmware boot: SeaBIOS, OVMF (or another image the user names) starts at
// the reset vector and boots from the disks itself, or a --kernel handed to
// it through fw_cfg (see vmm/boot_source.h, docs/firmware.md and README
// "Firmware boot").
//
// The image is mapped read-only so that it ends at 4 GiB (a KVM read-only
// memory slot: reads run at memory speed, writes exit and are dropped),
// and its last 128 KiB are also copied into RAM at 0xE0000-0xFFFFF, where a
// PC's BIOS appears: SeaBIOS runs from there once it has "shadowed" itself
// (our 0xC0000-0xFFFFF is always RAM, so the chipset's PAM registers only
// store what the firmware writes). The firmware gets the machine's memory
// map, CPU count, ACPI and SMBIOS tables through fw_cfg, and its text output on
// COM1 (SeaBIOS's serial console). Its debug port (0x402) goes to the log at
// debug level; SeaBIOS's "No bootable device" there ends the VM with
// ExitReason::NoBootDevice instead of the firmware's endless retry loop.
// A UEFI image gets its variable store as a CFI flash right below it.
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "arch/x86_64/e820.h"
#include "arch/x86_64/fw_cfg_files.h"
#include "arch/x86_64/linuxboot.h"
#include "devices/cfi_flash.h"
#include "devices/debug_con.h"
#include "devices/fw_cfg.h"
#include "vmm/boot_source.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/input_file.h"
#include "vmm/platform.h"

namespace vmm {

namespace x86 = arch::x86;

namespace {

// Where Debian's seabios package installs the image; bios-256k.bin is the
// build QEMU uses for its machines (with more drivers than bios.bin).
constexpr std::array kSeaBiosPaths = {"/usr/share/seabios/bios-256k.bin", "/usr/share/seabios/bios.bin"};
// QEMU's option ROM that loads a kernel from fw_cfg (Debian's qemu-system-data).
constexpr const char* kLinuxbootRomPath = "/usr/share/qemu/linuxboot_dma.bin";
// SeaBIOS's name for that ROM in `bootorder`: it boots first.
constexpr const char* kLinuxbootBootPath = "/rom@genroms/linuxboot_dma.bin\n";

// The part of the image a PC also shows below 1 MiB.
constexpr uint64_t kLowBiosSize = 128 * x86::KiB;
constexpr uint64_t kMinImageSize = 64 * x86::KiB;

// Debian's ovmf package: the 4 MiB build's code and its variable store
// template (not the secure-boot builds, which need SMM).
constexpr const char* kOvmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd";
constexpr const char* kOvmfVarsTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd";

struct FirmwareImage {
    std::string code;           // mapped read-only, ending at 4 GiB
    std::string vars_template;  // UEFI: copied to a missing vars file; "" if unknown
    bool uefi = false;
};

// A UEFI image starts with a firmware volume: "_FVH" at offset 0x28 of the
// volume header. SeaBIOS images have no such thing.
bool looks_like_uefi(const std::string& path) {
    InputFile f(path, "--firmware");
    auto b = f.bytes();
    return b.size() >= 0x2c && b[0x28] == '_' && b[0x29] == 'F' && b[0x2a] == 'V' && b[0x2b] == 'H';
}

FirmwareImage resolve_image(const std::string& spec) {
    if (spec == "bios") {
        for (const char* p : kSeaBiosPaths)
            if (::access(p, R_OK) == 0) return {p, "", false};
        fail("--firmware bios: SeaBIOS not found (looked for {} and {}); install Debian's seabios package or give "
             "the image's path",
             kSeaBiosPaths[0], kSeaBiosPaths[1]);
    }
    if (spec == "uefi") {
        for (const char* p : {kOvmfCode, kOvmfVarsTemplate})
            if (::access(p, R_OK) != 0)
                fail("--firmware uefi: {} not found; install Debian's ovmf package or give the image's path", p);
        return {kOvmfCode, kOvmfVarsTemplate, true};
    }
    return {spec, "", looks_like_uefi(spec)};
}

// The variable store behind a UEFI image: the user's file (made from the
// template when missing), or a throwaway copy of the template that lives
// only as long as the VM (unlinked at once).
std::shared_ptr<devices::CfiFlash> open_vars(const VmConfig& cfg, const FirmwareImage& img) {
    if (!cfg.firmware_vars.empty()) {
        if (!img.vars_template.empty()) devices::CfiFlash::create_from_template(cfg.firmware_vars, img.vars_template);
        return std::make_shared<devices::CfiFlash>(cfg.firmware_vars);
    }
    if (img.vars_template.empty()) return nullptr;  // a unified image: variables are the firmware's business
    char dir[] = "/tmp/vmm-vars-XXXXXX";
    if (!::mkdtemp(dir)) throw_errno("--firmware: temporary directory for the UEFI variables");
    std::string path = std::string(dir) + "/vars.fd";
    std::shared_ptr<devices::CfiFlash> flash;
    try {
        devices::CfiFlash::create_from_template(path, img.vars_template);
        flash = std::make_shared<devices::CfiFlash>(path);
    } catch (...) {
        ::unlink(path.c_str());
        ::rmdir(dir);
        throw;
    }
    ::unlink(path.c_str());
    ::rmdir(dir);
    log::info("UEFI variables in a throwaway copy of {} (give --firmware ...,vars=PATH to keep them)",
              img.vars_template);
    return flash;
}

// A whole (small) file's bytes: fw_cfg files are served from memory.
std::vector<uint8_t> read_small_file(const std::string& path, const char* what) {
    constexpr size_t kMax = 16 << 20;
    InputFile f(path, what);
    if (f.size() > kMax) fail("{} {}: {}; at most {}", what, path, x86::human_size(f.size()), x86::human_size(kMax));
    std::vector<uint8_t> bytes(f.size());
    f.copy_to(bytes, f.bytes());
    return bytes;
}

// A --fw-cfg item's bytes: the string, or the whole host file.
std::vector<uint8_t> item_content(const FwCfgItemConfig& item) {
    if (item.file.empty()) return {item.text.begin(), item.text.end()};
    return read_small_file(item.file, "--fw-cfg file");
}

// Writes to the read-only image exit to the VMM; firmware probing for
// flash or RAM does that on purpose, so they are dropped quietly.
class RomWrites : public BusDevice {
public:
    void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0xff); }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        if (rl_.allow()) log::debug("firmware: write of {} bytes to the read-only image at offset {:#x} dropped", data.size(), offset);
    }
    std::string name() const override { return "firmware-rom"; }

private:
    log::RateLimit rl_;
};

class FirmwareBoot : public BootSource {
public:
    ~FirmwareBoot() override {
        if (rom_ != MAP_FAILED) ::munmap(rom_, rom_size_);
    }

    void load(BootContext& ctx) override {
        const VmConfig& cfg = ctx.cfg;
        const FirmwareImage img = resolve_image(cfg.firmware);
        const std::string& path = img.code;
        const std::string what = "--firmware " + cfg.firmware;
        InputFile image(path, "--firmware");
        const uint64_t size = image.size();
        if (size < kMinImageSize || size % (4 * x86::KiB) != 0 || size > x86::kFirmwareMaxSize)
            fail("{}: {} is {} bytes; a firmware image is a whole number of 4 KiB pages between {} and {}", what, path,
                 size, x86::human_size(kMinImageSize), x86::human_size(x86::kFirmwareMaxSize));
        if (!cfg.firmware_vars.empty() && !img.uefi)
            fail("{}: {} is not a UEFI image; only UEFI firmware keeps variables (vars=)", what, path);
        auto vars = img.uefi ? open_vars(cfg, img) : nullptr;
        if (vars && vars->size() > x86::kFirmwareMaxSize - size)
            fail("{}: the image ({}) and its variable store ({}) exceed {}", what, x86::human_size(size),
                 x86::human_size(vars->size()), x86::human_size(x86::kFirmwareMaxSize));
        if (ctx.vm.kvm().check_extension(KVM_CAP_READONLY_MEM) <= 0)
            fail("{}: this host's KVM cannot map read-only memory (KVM_CAP_READONLY_MEM)", what);

        rom_size_ = size;
        rom_ = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (rom_ == MAP_FAILED) throw_errno(what + ": mmap");
        std::span<uint8_t> rom(static_cast<uint8_t*>(rom_), size);
        image.copy_to(rom, image.bytes());
        ::mprotect(rom_, size, PROT_READ);  // the guest cannot write it; nor should we
        const uint64_t base = x86::kMmioHoleEnd - size;
        ctx.vm.set_user_memory_region(ctx.first_free_memslot, base, size, rom_, KVM_MEM_READONLY);
        ctx.mmio.add(base, size, std::make_shared<RomWrites>());
        if (vars) {
            // Right below the code, as QEMU puts its second pflash: OVMF's
            // build fixes that address (its variable store base).
            ctx.mmio.add(base - vars->size(), vars->size(), vars);
            log::info("UEFI variable store: {} at {:#x}", vars->size(), base - vars->size());
        }

        const uint64_t low = std::min(size, kLowBiosSize);
        if (!ctx.mem.write(x86::kHighMemStart - low, rom.subspan(size - low)))
            fail("{}: the low BIOS copy does not fit in guest RAM", what);

        auto fw = std::make_shared<devices::FwCfg>(&ctx.mem);
        fw->add_u64(devices::FwCfg::kRamSize, cfg.memory);
        fw->add_u16(devices::FwCfg::kNoGraphic, 1);  // SeaBIOS: text console on COM1
        fw->add_u16(devices::FwCfg::kNbCpus, static_cast<uint16_t>(cfg.cpus));
        fw->add_u16(devices::FwCfg::kMaxCpus, static_cast<uint16_t>(cfg.cpus));
        fw->add_u16(devices::FwCfg::kBootMenu, 0);
        std::vector<uint8_t> bootorder;
        if (!cfg.kernel.empty()) {
            load_kernel(ctx, *fw, img.uefi);
            // OVMF loads the kernel from fw_cfg itself; SeaBIOS runs the ROM.
            if (!img.uefi) bootorder.assign(kLinuxbootBootPath, kLinuxbootBootPath + std::strlen(kLinuxbootBootPath));
        }
        auto devices = x86::fw_cfg_bootorder(ctx.boot_devices);
        bootorder.insert(bootorder.end(), devices.begin(), devices.end());
        if (!bootorder.empty()) fw->add_file("bootorder", std::move(bootorder));
        fw->add_file("etc/e820", x86::fw_cfg_e820(x86::firmware_e820(ctx.layout.ram)));
        for (auto& f : x86::acpi_loader_files(x86::generate_acpi_tables(ctx.acpi)))
            fw->add_file(f.name, std::move(f.bytes));
        for (auto& f : x86::smbios_files(x86::build_smbios_table(ctx.smbios)))
            fw->add_file(f.name, std::move(f.bytes));
        for (auto& item : cfg.fw_cfg) fw->add_file(item.name, item_content(item));
        ctx.pio.add(platform::kFwCfgPort, devices::FwCfg::kLength, fw);

        ExitControl* exit = &ctx.exit;
        ctx.pio.add(platform::kDebugConPort, devices::DebugCon::kLength,
                    std::make_shared<devices::DebugCon>([exit](const std::string& line) {
                        log::debug("firmware: {}", line);
                        if (line.starts_with("No bootable device"))
                            exit->request(ExitReason::NoBootDevice,
                                          "the firmware found no bootable device (check that a --disk, "
                                          "--scsi-disk or --cdrom image has a boot sector or EFI system partition)");
                    }));
        log::info("firmware {} ({} KiB at {:#x}), {} MiB RAM, {} vCPU(s)", path, size >> 10, base, cfg.memory >> 20,
                  cfg.cpus);
    }

    // --kernel with --firmware: SeaBIOS runs QEMU's linuxboot_dma option ROM,
    // which loads the kernel, initramfs and command line from fw_cfg and
    // starts the kernel's real-mode setup as a boot loader would. Kernel
    // and initramfs are served from their file mappings, not copied.
    void load_kernel(BootContext& ctx, devices::FwCfg& fw, bool uefi) {
        const VmConfig& cfg = ctx.cfg;
        if (!uefi && ::access(kLinuxbootRomPath, R_OK) != 0)
            fail("--firmware with --kernel: the option ROM {} is missing (Debian package qemu-system-data)",
                 kLinuxbootRomPath);
        auto kernel = std::make_shared<InputFile>(cfg.kernel, cfg.kernel_what);
        std::shared_ptr<InputFile> initrd;
        if (!cfg.initramfs.empty()) initrd = std::make_shared<InputFile>(cfg.initramfs, cfg.initramfs_what);
        x86::LinuxBootItems items;
        try {
            items = x86::linuxboot_items(kernel->bytes(), initrd ? initrd->size() : 0, cfg.cmdline, ctx.layout.ram);
        } catch (const Error& e) {
            fail("{} {}: {}", cfg.kernel_what, cfg.kernel, e.what());
        }
        for (auto& [key, bytes] : items.fixed) fw.add_item(key, std::move(bytes));
        fw.add_item_view(x86::fw_cfg_key::kKernelData, items.kernel, kernel);
        if (initrd) fw.add_item_view(x86::fw_cfg_key::kInitrdData, initrd->bytes(), initrd);
        if (!uefi) fw.add_file(x86::kLinuxbootRomFile, read_small_file(kLinuxbootRomPath, "--firmware option ROM"));
        log::info("kernel {} through the firmware (linuxboot_dma), initramfs at {:#x}", cfg.kernel, items.initrd_addr);
    }

    // The boot vCPU keeps KVM's reset state: real mode at F000:FFF0, i.e.
    // 16 bytes below 4 GiB, inside the image.
    void setup_boot_cpu(Vcpu&) override {}

private:
    void* rom_ = MAP_FAILED;
    uint64_t rom_size_ = 0;
};

}  // namespace

std::unique_ptr<BootSource> make_firmware_boot() { return std::make_unique<FirmwareBoot>(); }

}  // namespace vmm
