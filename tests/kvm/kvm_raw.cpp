// Tiny real-mode guests assembled here, run through the vmm/core KVM
// wrappers: PIO and MMIO dispatch through a Bus, ioeventfd, irqfd and MSI.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "vmm/core/bus.h"
#include "vmm/core/bytes.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"

namespace {

struct Rec : vmm::BusDevice {
    std::vector<std::pair<uint64_t, uint64_t>> writes;
    uint64_t value;
    explicit Rec(uint64_t v) : value(v) {}
    void read(uint64_t, std::span<uint8_t> d) override { vmm::store_le(d, value); }
    void write(uint64_t off, std::span<const uint8_t> d) override { writes.emplace_back(off, vmm::load_le(d)); }
    std::string name() const override { return "rec"; }
};

void noop(int) {}

// A real-mode guest with `mem_size` bytes of RAM at 0 and `code` at 0x1000.
struct TinyGuest {
    vmm::Kvm kvm;
    vmm::Vm vm{kvm};
    vmm::GuestMemory mem;
    std::unique_ptr<vmm::Vcpu> vcpu;

    TinyGuest(std::vector<uint8_t> code, uint64_t mem_size, bool irqchip) {
        if (irqchip) {
            vm.set_identity_map_addr(0xfffbc000);
            vm.set_tss_addr(0xfffbd000);
            vm.create_irqchip();
        }
        std::pair<uint64_t, uint64_t> r{0, mem_size};
        mem = vmm::GuestMemory::create_anonymous(std::span(&r, 1), false);
        vm.set_user_memory_region(0, 0, mem_size, mem.regions()[0].host);
        REQUIRE(mem.write(0x1000, code));
        vcpu = std::make_unique<vmm::Vcpu>(vm, 0);
        auto s = vcpu->get_sregs();
        for (kvm_segment* seg : {&s.cs, &s.ds, &s.es, &s.ss, &s.fs, &s.gs}) {
            seg->base = 0;
            seg->selector = 0;
        }
        vcpu->set_sregs(s);
        kvm_regs regs{};
        regs.rip = 0x1000;
        regs.rsp = 0x8000;
        regs.rflags = 2;
        vcpu->set_regs(regs);
    }

    // Runs until an exit that is not PIO/MMIO handled by `pio`/`mmio`, or
    // the timeout (a watchdog thread kicks KVM_RUN with a signal).
    uint32_t run(vmm::Bus& pio, vmm::Bus* mmio, std::vector<uint16_t>* ports_seen = nullptr,
                 std::chrono::seconds timeout = std::chrono::seconds(20)) {
        struct sigaction sa {};
        sa.sa_handler = noop;
        sigaction(SIGUSR2, &sa, nullptr);
        std::atomic<bool> done{false};
        pthread_t self = pthread_self();
        kvm_run* run = vcpu->run_struct();
        std::thread dog([&] {
            auto end = std::chrono::steady_clock::now() + timeout;
            while (!done && std::chrono::steady_clock::now() < end)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            if (!done) {
                run->immediate_exit = 1;
                pthread_kill(self, SIGUSR2);
            }
        });
        uint32_t reason = ~0u;
        for (;;) {
            if (vcpu->run() < 0) {
                reason = ~0u;  // timed out
                break;
            }
            if (run->exit_reason == KVM_EXIT_IO) {
                auto* d = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
                std::span<uint8_t> s(d, run->io.size);
                if (ports_seen) ports_seen->push_back(run->io.port);
                if (run->io.direction == KVM_EXIT_IO_OUT) pio.write(run->io.port, s);
                else pio.read(run->io.port, s);
                if (run->io.port == 0x501) {  // the tests' "done" port
                    reason = KVM_EXIT_IO;
                    break;
                }
                continue;
            }
            if (run->exit_reason == KVM_EXIT_MMIO && mmio) {
                std::span<uint8_t> s(run->mmio.data, run->mmio.len);
                if (run->mmio.is_write) mmio->write(run->mmio.phys_addr, s);
                else mmio->read(run->mmio.phys_addr, s);
                continue;
            }
            reason = run->exit_reason;
            break;
        }
        done = true;
        dog.join();
        return reason;
    }
};

}  // namespace

TEST_CASE("kvm: PIO reads and writes reach the bus device at the right offset") {
    // mov dx,0x3f8; mov al,0x42; out dx,al; in al,dx; mov dx,0x3fa; out dx,al; hlt
    TinyGuest g({0xBA, 0xF8, 0x03, 0xB0, 0x42, 0xEE, 0xEC, 0xBA, 0xFA, 0x03, 0xEE, 0xF4}, 0x10000, false);
    vmm::Bus pio("pio");
    auto dev = std::make_shared<Rec>(0x99);
    pio.add(0x3f8, 8, dev);
    REQUIRE(g.run(pio, nullptr) == KVM_EXIT_HLT);
    REQUIRE(dev->writes.size() == 2);
    CHECK(dev->writes[0] == std::pair<uint64_t, uint64_t>{0, 0x42});
    CHECK(dev->writes[1] == std::pair<uint64_t, uint64_t>{2, 0x99});  // the value the guest read
}

TEST_CASE("kvm: MMIO outside guest RAM exits to the bus") {
    // mov ax,0x2000; mov ds,ax; mov byte [0x10],0x5a; mov al,[0x20]; mov [0x30],al; hlt
    TinyGuest g({0xB8, 0x00, 0x20, 0x8E, 0xD8, 0xC6, 0x06, 0x10, 0x00, 0x5A, 0xA0, 0x20, 0x00, 0xA2, 0x30, 0x00, 0xF4},
                0x10000, false);
    vmm::Bus pio("pio"), mmio("mmio");
    auto dev = std::make_shared<Rec>(0x77);
    mmio.add(0x20000, 0x100, dev);
    REQUIRE(g.run(pio, &mmio) == KVM_EXIT_HLT);
    REQUIRE(dev->writes.size() == 2);
    CHECK(dev->writes[0] == std::pair<uint64_t, uint64_t>{0x10, 0x5a});
    CHECK(dev->writes[1] == std::pair<uint64_t, uint64_t>{0x30, 0x77});
}

TEST_CASE("kvm: a write to an ioeventfd port signals the eventfd without an exit") {
    // mov dx,0x500; mov al,1; out dx,al; out dx,al; mov dx,0x501; out dx,al; hlt
    TinyGuest g({0xBA, 0x00, 0x05, 0xB0, 0x01, 0xEE, 0xEE, 0xBA, 0x01, 0x05, 0xEE, 0xF4}, 0x10000, false);
    vmm::EventFd ev;
    g.vm.ioeventfd(ev.fd(), 0x500, 1, true);
    vmm::Bus pio("pio");
    auto done = std::make_shared<Rec>(0);
    pio.add(0x501, 1, done);
    std::vector<uint16_t> ports;
    REQUIRE(g.run(pio, nullptr, &ports) == KVM_EXIT_IO);
    CHECK(ev.consume() == 2);
    CHECK(ports == std::vector<uint16_t>{0x501});  // 0x500 never reached userspace
}

TEST_CASE("kvm: irqfd and KVM_SIGNAL_MSI deliver MSIs to the guest") {
    // Main: sti; hlt; jmp back to hlt. Handlers (IVT vectors 0x30, 0x41) write
    // 0x77 / 0x78 to the done port 0x501 and iret.
    TinyGuest g({0xFB, 0xF4, 0xEB, 0xFD}, 0x10000, true);
    const uint8_t h30[] = {0xBA, 0x01, 0x05, 0xB0, 0x77, 0xEE, 0xCF};
    const uint8_t h31[] = {0xBA, 0x01, 0x05, 0xB0, 0x78, 0xEE, 0xCF};
    REQUIRE(g.mem.write(0x2000, h30));
    REQUIRE(g.mem.write(0x2100, h31));
    REQUIRE(g.mem.write_obj<uint32_t>(0x30 * 4, 0x00002000));  // segment 0, offset 0x2000
    REQUIRE(g.mem.write_obj<uint32_t>(0x41 * 4, 0x00002100));
    // Software-enable the LAPIC (spurious vector register).
    auto lapic = g.vcpu->get_lapic();
    vmm::store_le32({reinterpret_cast<uint8_t*>(lapic.regs), sizeof lapic.regs}, 0xf0, 0x1ff);
    g.vcpu->set_lapic(lapic);

    kvm_irq_routing_entry e{};
    e.gsi = 24;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi.address_lo = 0xfee00000;  // destination APIC 0
    e.u.msi.data = 0x30;              // fixed delivery, edge, vector 0x30
    g.vm.set_gsi_routing({e});
    vmm::EventFd irq;
    g.vm.irqfd(irq.fd(), 24);
    irq.signal();

    vmm::Bus pio("pio");
    auto done = std::make_shared<Rec>(0);
    pio.add(0x501, 1, done);
    REQUIRE(g.run(pio, nullptr) == KVM_EXIT_IO);
    REQUIRE(done->writes.size() == 1);
    CHECK(done->writes[0].second == 0x77);

    // The handler cannot EOI (the LAPIC page is out of real-mode reach), so
    // vector 0x30 stays in service: the second MSI uses a higher priority
    // class (0x41) to be deliverable.
    g.vm.signal_msi(0xfee00000, 0x41);
    REQUIRE(g.run(pio, nullptr) == KVM_EXIT_IO);
    REQUIRE(done->writes.size() == 2);
    CHECK(done->writes[1].second == 0x78);
}
