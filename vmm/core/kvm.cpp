#include "vmm/core/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <algorithm>
#include <memory>
#include <vector>

#include "vmm/core/error.h"

namespace vmm {

namespace {

// linux-libc-dev 6.1 declares the variable-length KVM structs with
// __DECLARE_FLEX_ARRAY, which in C++ adds a 1-byte empty member: sizeof and
// the offset of `entries` come out wrong (12 instead of 8 for kvm_cpuid2),
// and so do the ioctl numbers that encode the size. Use our own headers
// with the kernel's layout: an 8-byte header, the entries right after it.
struct Header8 {
    __u32 count;
    __u32 pad;
};
constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, Header8);
constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Header8);
constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, Header8);
constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, Header8);

// A header followed by `n` entries, laid out as the kernel expects.
template <typename Entry>
struct VarBuf {
    explicit VarBuf(size_t n) : bytes(sizeof(Header8) + n * sizeof(Entry), 0) {}
    Header8* hdr() { return reinterpret_cast<Header8*>(bytes.data()); }
    Entry* entries() { return reinterpret_cast<Entry*>(bytes.data() + sizeof(Header8)); }
    std::vector<uint8_t> bytes;
};
static_assert(alignof(kvm_cpuid_entry2) <= 8 && alignof(kvm_msr_entry) <= 8 && alignof(kvm_irq_routing_entry) <= 8);

// Wraps an ioctl whose failure is a host error for the VM being built.
template <typename Arg>
int checked(int fd, unsigned long req, Arg arg, const char* what) {
    int r;
    do {
        r = ::ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    if (r < 0) throw_errno(what);
    return r;
}
}  // namespace

unsigned long kvm_set_gsi_routing_request() { return kSetGsiRouting; }

Kvm::Kvm(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            fail("cannot open {}: no such device (is the kvm module loaded, and does this machine offer "
                 "hardware virtualization? without it, tests/guest/testhost.sh runs the VMM inside a "
                 "software-emulated host)", path);
        if (e == EACCES || e == EPERM)
            fail("cannot open {}: permission denied (add yourself to the 'kvm' group or run as root)", path);
        errno = e;
        throw_errno(fmt::format("cannot open {}", path));
    }
    fd_ = Fd(fd);
    int v = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION) fail("{}: KVM API version {} (expected {})", path, v, KVM_API_VERSION);
}

int Kvm::check_extension(long cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

void Kvm::require(long cap, const char* name) const {
    if (check_extension(cap) <= 0) fail("the host's KVM lacks {} (capability {}), which this VMM needs", name, cap);
}

int Kvm::max_vcpus() const {
    int n = check_extension(KVM_CAP_MAX_VCPUS);
    if (n <= 0) n = check_extension(KVM_CAP_NR_VCPUS);
    return n > 0 ? n : 4;  // KVM's documented default when neither is reported
}

size_t Kvm::vcpu_mmap_size() const {
    return static_cast<size_t>(checked(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE"));
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    // Grow the buffer until KVM stops answering E2BIG.
    for (uint32_t n = 128; n <= 4096; n *= 2) {
        VarBuf<kvm_cpuid_entry2> buf(n);
        buf.hdr()->count = n;
        if (::ioctl(fd_.get(), kGetSupportedCpuid, buf.bytes.data()) == 0)
            return std::vector<kvm_cpuid_entry2>(buf.entries(), buf.entries() + std::min(buf.hdr()->count, n));
        if (errno != E2BIG) throw_errno("KVM_GET_SUPPORTED_CPUID");
    }
    fail("KVM_GET_SUPPORTED_CPUID: too many entries");
}

Vm::Vm(const Kvm& kvm) : kvm_(kvm) {
    int fd;
    do {
        fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("KVM_CREATE_VM");
    fd_ = Fd(fd);
}

void Vm::set_tss_addr(uint64_t addr) { checked(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr), "KVM_SET_TSS_ADDR"); }

void Vm::set_identity_map_addr(uint64_t addr) {
    __u64 a = addr;
    checked(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &a, "KVM_SET_IDENTITY_MAP_ADDR");
}

void Vm::create_irqchip() { checked(fd_.get(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP"); }

void Vm::create_pit2() {
    kvm_pit_config cfg{};
    cfg.flags = KVM_PIT_SPEAKER_DUMMY;
    checked(fd_.get(), KVM_CREATE_PIT2, &cfg, "KVM_CREATE_PIT2");
}

void Vm::set_user_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void* host, uint32_t flags) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    checked(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r, "KVM_SET_USER_MEMORY_REGION");
}

void Vm::irq_line(uint32_t irq, bool level) {
    kvm_irq_level l{};
    l.irq = irq;
    l.level = level ? 1 : 0;
    checked(fd_.get(), KVM_IRQ_LINE, &l, "KVM_IRQ_LINE");
}

void Vm::signal_msi(uint64_t address, uint32_t data) {
    kvm_msi m{};
    m.address_lo = static_cast<uint32_t>(address);
    m.address_hi = static_cast<uint32_t>(address >> 32);
    m.data = data;
    checked(fd_.get(), KVM_SIGNAL_MSI, &m, "KVM_SIGNAL_MSI");
}

void Vm::ioeventfd(int efd, uint64_t addr, uint32_t len, bool pio, bool deassign) {
    kvm_ioeventfd io{};
    io.addr = addr;
    io.len = len;
    io.fd = efd;
    io.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0);
    checked(fd_.get(), KVM_IOEVENTFD, &io, "KVM_IOEVENTFD");
}

void Vm::irqfd(int efd, uint32_t gsi, bool deassign) {
    kvm_irqfd f{};
    f.fd = static_cast<__u32>(efd);
    f.gsi = gsi;
    f.flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0;
    checked(fd_.get(), KVM_IRQFD, &f, "KVM_IRQFD");
}

void Vm::set_gsi_routing(const std::vector<kvm_irq_routing_entry>& entries) {
    VarBuf<kvm_irq_routing_entry> buf(entries.size());
    buf.hdr()->count = static_cast<__u32>(entries.size());
    std::copy(entries.begin(), entries.end(), buf.entries());
    checked(fd_.get(), kSetGsiRouting, buf.bytes.data(), "KVM_SET_GSI_ROUTING");
}

Vcpu::Vcpu(const Vm& vm, uint32_t id) : id_(id) {
    int fd;
    do {
        fd = ::ioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno(fmt::format("KVM_CREATE_VCPU {}", id));
    fd_ = Fd(fd);
    run_size_ = vm.kvm().vcpu_mmap_size();
    void* p = ::mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap kvm_run");
    run_ = static_cast<kvm_run*>(p);
}

Vcpu::~Vcpu() {
    if (run_) ::munmap(run_, run_size_);
}

int Vcpu::run() {
    if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return 0;
    int e = errno;
    if (e == EINTR || e == EAGAIN) return -e;
    errno = e;
    throw_errno(fmt::format("KVM_RUN on vCPU {}", id_));
}

#define VMM_GET(type, req, name)                   \
    type v{};                                      \
    checked(fd_.get(), req, &v, name);             \
    return v;

kvm_regs Vcpu::get_regs() const { VMM_GET(kvm_regs, KVM_GET_REGS, "KVM_GET_REGS") }
void Vcpu::set_regs(const kvm_regs& r) { checked(fd_.get(), KVM_SET_REGS, &r, "KVM_SET_REGS"); }
kvm_sregs Vcpu::get_sregs() const { VMM_GET(kvm_sregs, KVM_GET_SREGS, "KVM_GET_SREGS") }
void Vcpu::set_sregs(const kvm_sregs& s) { checked(fd_.get(), KVM_SET_SREGS, &s, "KVM_SET_SREGS"); }
kvm_fpu Vcpu::get_fpu() const { VMM_GET(kvm_fpu, KVM_GET_FPU, "KVM_GET_FPU") }
void Vcpu::set_fpu(const kvm_fpu& f) { checked(fd_.get(), KVM_SET_FPU, &f, "KVM_SET_FPU"); }
kvm_lapic_state Vcpu::get_lapic() const { VMM_GET(kvm_lapic_state, KVM_GET_LAPIC, "KVM_GET_LAPIC") }
void Vcpu::set_lapic(const kvm_lapic_state& l) { checked(fd_.get(), KVM_SET_LAPIC, &l, "KVM_SET_LAPIC"); }
kvm_mp_state Vcpu::get_mp_state() const { VMM_GET(kvm_mp_state, KVM_GET_MP_STATE, "KVM_GET_MP_STATE") }
#undef VMM_GET

void Vcpu::set_msrs(const std::vector<kvm_msr_entry>& msrs) {
    VarBuf<kvm_msr_entry> buf(msrs.size());
    buf.hdr()->count = static_cast<__u32>(msrs.size());
    std::copy(msrs.begin(), msrs.end(), buf.entries());
    int n = checked(fd_.get(), kSetMsrs, buf.bytes.data(), "KVM_SET_MSRS");
    if (static_cast<size_t>(n) != msrs.size())
        fail("KVM_SET_MSRS: KVM accepted {} of {} MSRs (MSR {:#x} rejected)", n, msrs.size(), msrs[n].index);
}

void Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    VarBuf<kvm_cpuid_entry2> buf(entries.size());
    buf.hdr()->count = static_cast<__u32>(entries.size());
    std::copy(entries.begin(), entries.end(), buf.entries());
    checked(fd_.get(), kSetCpuid2, buf.bytes.data(), "KVM_SET_CPUID2");
}

}  // namespace vmm
