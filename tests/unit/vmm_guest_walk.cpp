#include <catch2/catch.hpp>

#include <vector>

#include "vmm/core/bytes.h"
#include "vmm/guest_walk.h"

TEST_CASE("vmm: long-mode page walk for crash reports") {
    std::vector<uint8_t> buf(0x400000);
    auto mem = vmm::GuestMemory::from_buffers({{0, buf.size(), buf.data()}});
    // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000: entry 0 maps 2 MiB at
    // 0x200000 (large page), entry 1 -> PT 0x4000 whose entry 5 maps 0x5000.
    vmm::store_le64(buf, 0x1000, 0x2000 | 3);
    vmm::store_le64(buf, 0x2000, 0x3000 | 3);
    vmm::store_le64(buf, 0x3000, 0x200000 | 0x83);
    vmm::store_le64(buf, 0x3008, 0x4000 | 3);
    vmm::store_le64(buf, 0x4000 + 5 * 8, 0x5000 | 3);
    kvm_sregs s{};
    s.cr0 = 0x80000011;
    s.cr3 = 0x1000;
    s.cr4 = 0x20;
    s.efer = 0x500;
    CHECK(vmm::translate_linear(mem, s, 0x1234).value() == 0x201234);
    CHECK(vmm::translate_linear(mem, s, 0x205123).value() == 0x5123);
    CHECK_FALSE(vmm::translate_linear(mem, s, 0x206000));      // PTE not present
    CHECK_FALSE(vmm::translate_linear(mem, s, 0x40000000));    // PDPT entry 1 absent
    // A corrupt table pointing outside RAM is "not mapped", never a host read.
    vmm::store_le64(buf, 0x2008, 0xfff0000000ull | 3);
    CHECK_FALSE(vmm::translate_linear(mem, s, 0x40000000));
    // Paging off: identity.
    s.cr0 = 1;
    CHECK(vmm::translate_linear(mem, s, 0xabcd).value() == 0xabcd);
}

TEST_CASE("vmm: crash report shows registers and code bytes") {
    std::vector<uint8_t> buf(0x10000);
    buf[0x7000] = 0x0f;
    buf[0x7001] = 0x0b;
    auto mem = vmm::GuestMemory::from_buffers({{0, buf.size(), buf.data()}});
    kvm_regs r{};
    r.rip = 0x7000;
    r.rax = 0x1234;
    kvm_sregs s{};
    s.cr0 = 1;
    auto text = vmm::describe_vcpu_state(mem, r, s);
    CHECK(text.find("rip=0x0000000000007000") != std::string::npos);
    CHECK(text.find("rax=0x0000000000001234") != std::string::npos);
    CHECK(text.find("0f 0b") != std::string::npos);
    r.rip = 0x20000;  // outside RAM
    CHECK(vmm::describe_vcpu_state(mem, r, s).find("not mapped") != std::string::npos);
}
