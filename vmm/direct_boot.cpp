// Direct kernel boot: the VMM does what a bootloader would (see
// vmm/boot_source.h).
#include "arch/x86_64/bootinfo.h"
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/kernel.h"
#include "arch/x86_64/mptable.h"
#include "arch/x86_64/smbios.h"
#include "vmm/boot_source.h"
#include "vmm/core/error.h"
#include "vmm/core/log.h"
#include "vmm/input_file.h"

namespace vmm {

namespace x86 = arch::x86;

namespace {

class DirectKernelBoot : public BootSource {
public:
    void load(BootContext& ctx) override {
        const VmConfig& cfg = ctx.cfg;
        const auto& ram = ctx.layout.ram;
        auto put = [&](const x86::Blob& b, const char* what) {
            if (!ctx.mem.write(b.gpa, b.bytes))
                fail("{} ({} bytes at {:#x}) does not fit in guest RAM", what, b.bytes.size(), b.gpa);
        };

        InputFile kernel(cfg.kernel, cfg.kernel_what);
        x86::KernelLayout k;
        try {
            k = x86::parse_kernel(kernel.bytes(), ram);
        } catch (const Error& e) {
            fail("{} {}: {}", cfg.kernel_what, cfg.kernel, e.what());
        }
        for (auto& seg : k.segments) {
            if (!ctx.mem.contains(seg.gpa, seg.mem_size))
                fail("{} {}: segment at {:#x} ({} KiB) does not fit in {} MiB of RAM", cfg.kernel_what, cfg.kernel, seg.gpa,
                     seg.mem_size >> 10, cfg.memory >> 20);
            kernel.copy_to_guest(ctx.mem, seg.gpa, seg.data);
        }
        pvh_ = k.format == x86::KernelFormat::PvhElf;
        entry_ = k.entry;

        x86::BootInfoInputs in;
        in.ram = ram;
        in.cmdline = cfg.cmdline;
        if (!cfg.initramfs.empty()) {
            InputFile initrd(cfg.initramfs, cfg.initramfs_what);
            try {
                in.initrd_gpa = x86::place_initrd(k, initrd.size(), ram);
            } catch (const Error& e) {
                fail("{} {}: {}", cfg.initramfs_what, cfg.initramfs, e.what());
            }
            in.initrd_size = initrd.size();
            initrd.copy_to_guest(ctx.mem, in.initrd_gpa, initrd.bytes());
        }

        auto tables = x86::build_acpi(ctx.acpi);
        for (auto& b : tables.blobs) put(b, "ACPI tables");
        in.rsdp_gpa = tables.rsdp_gpa;
        put(x86::build_mptable(cfg.cpus), "MP table");
        for (auto& b : x86::smbios_blobs(x86::build_smbios_table(ctx.smbios))) put(b, "SMBIOS tables");

        std::vector<x86::Blob> info;
        try {
            info = pvh_ ? x86::build_pvh_start_info(k, in) : x86::build_boot_params(k, in);
        } catch (const Error& e) {
            fail("--cmdline: {}", e.what());
        }
        for (auto& b : info) put(b, "boot information");
        if (!pvh_)
            for (auto& b : x86::build_page_tables()) put(b, "page tables");
        put(x86::build_gdt(), "GDT");
        log::info("kernel {} ({}), entry {:#x}, {} MiB RAM, {} vCPU(s)", cfg.kernel, pvh_ ? "PVH ELF" : "bzImage",
                  entry_, cfg.memory >> 20, cfg.cpus);
    }

    void setup_boot_cpu(Vcpu& bsp) override {
        auto s = bsp.get_sregs();
        if (pvh_) x86::setup_sregs_pvh(s);
        else x86::setup_sregs_long_mode(s);
        bsp.set_sregs(s);
        bsp.set_regs(pvh_ ? x86::initial_regs_pvh(entry_) : x86::initial_regs_bzimage(entry_));
    }

private:
    bool pvh_ = false;
    uint64_t entry_ = 0;
};

}  // namespace

std::unique_ptr<BootSource> make_direct_kernel_boot() { return std::make_unique<DirectKernelBoot>(); }

}  // namespace vmm
