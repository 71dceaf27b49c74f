// 16550A UART, driven only through the PIO bus at its real port.
#include <catch2/catch.hpp>

#include "tests/unit/test_util.h"

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/serial.h"
#include "vmm/core/bus.h"
#include "vmm/core/irq.h"

namespace {

constexpr uint64_t kCom1 = 0x3f8;
constexpr uint64_t RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

using test::FakeIrq;

struct Rig {
    std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
    std::string out;
    std::shared_ptr<vmm::devices::Serial8250> dev;
    vmm::Bus bus{"pio"};
    Rig() {
        dev = std::make_shared<vmm::devices::Serial8250>(
            irq, [this](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); });
        bus.add(kCom1, 8, dev);
    }
    uint8_t in(uint64_t reg) {
        uint8_t b = 0;
        REQUIRE(bus.read(kCom1 + reg, std::span<uint8_t>(&b, 1)));
        return b;
    }
    void put(uint64_t reg, uint8_t v) { REQUIRE(bus.write(kCom1 + reg, std::span<const uint8_t>(&v, 1))); }
    size_t input(const std::string& s) {
        return dev->enqueue_input(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
};

// set_level must only be called on changes.
void check_only_changes(const FakeIrq& irq) {
    bool prev = false;
    for (bool c : irq.calls) {
        CHECK(c != prev);
        prev = c;
    }
}

}  // namespace

TEST_CASE("devices: serial8250 passes the Linux 8250 autoconfig probe", "[devices][serial]") {
    Rig r;
    // Scratch register test.
    r.put(SCR, 0x55);
    CHECK(r.in(SCR) == 0x55);
    r.put(SCR, 0xaa);
    CHECK(r.in(SCR) == 0xaa);

    // IER test: write 0, read 0; write 0x0f, read 0x0f; upper bits read 0.
    uint8_t saved = r.in(IER);
    r.put(IER, 0);
    CHECK((r.in(IER) & 0x0f) == 0);
    r.put(IER, 0x0f);
    CHECK((r.in(IER) & 0x0f) == 0x0f);
    r.put(IER, 0xff);
    CHECK(r.in(IER) == 0x0f);  // no XScale UUE bit etc.
    r.put(IER, saved);

    // Loopback test: MCR = LOOP | OUT2 | RTS -> MSR high nibble DCD | CTS.
    uint8_t saved_mcr = r.in(MCR);
    r.put(MCR, 0x10 | 0x0a);
    CHECK((r.in(MSR) & 0xf0) == 0x90);
    r.put(MCR, 0x10 | 0x05);  // DTR | OUT1 -> DSR | RI
    CHECK((r.in(MSR) & 0xf0) == 0x60);
    r.put(MCR, 0x1f);
    CHECK((r.in(MSR) & 0xf0) == 0xf0);

    // In loopback, THR loops back to RBR instead of reaching the output.
    r.put(RBR, 'x');
    CHECK(r.out.empty());
    CHECK((r.in(LSR) & 0x01) == 0x01);
    CHECK(r.in(RBR) == 'x');
    CHECK((r.in(LSR) & 0x01) == 0);

    r.put(MCR, saved_mcr);
    // A connected terminal: DCD | DSR | CTS, no RI.
    CHECK((r.in(MSR) & 0xf0) == 0xb0);

    // FIFO detection: FCR enable -> IIR bits 7:6 = 11 (16550A).
    r.put(FCR, 0x01);
    CHECK((r.in(IIR) >> 6) == 3);
    // Not an EFR-capable chip: with LCR = 0xbf, offset 2 does not read 0.
    r.put(LCR, 0xbf);
    CHECK(r.in(2) != 0);
    r.put(LCR, 0);
    // Not a 16750: IIR bit 5 stays clear even with the 64-byte FCR bit.
    r.put(FCR, 0x21);
    CHECK((r.in(IIR) & 0x20) == 0);
    r.put(FCR, 0x00);
    CHECK((r.in(IIR) & 0xc0) == 0);

    // LSR never reads 0xff and shows an idle transmitter.
    CHECK(r.in(LSR) == 0x60);
}

TEST_CASE("devices: serial8250 DLAB divisor latch", "[devices][serial]") {
    Rig r;
    r.put(IER, 0x05);
    r.put(LCR, 0x83);  // DLAB | 8N1
    r.put(0, 0x01);    // DLL: 115200 baud
    r.put(1, 0x02);    // DLM
    CHECK(r.in(0) == 0x01);
    CHECK(r.in(1) == 0x02);
    CHECK(r.out.empty());  // a DLL write is not a transmit
    r.put(LCR, 0x03);
    CHECK(r.in(LCR) == 0x03);
    CHECK(r.in(IER) == 0x05);  // IER untouched by the divisor writes
    r.put(LCR, 0x83);
    CHECK(r.in(0) == 0x01);
    CHECK(r.in(1) == 0x02);
}

TEST_CASE("devices: serial8250 THR output reaches the callback", "[devices][serial]") {
    Rig r;
    for (char c : std::string("hi\n")) r.put(RBR, uint8_t(c));
    CHECK(r.out == "hi\n");
    CHECK((r.in(LSR) & 0x60) == 0x60);  // THRE | TEMT: transmitted at once
    CHECK(r.irq->calls.empty());         // no interrupt enabled, no OUT2
}

TEST_CASE("devices: serial8250 input raises RX interrupt gated by OUT2", "[devices][serial]") {
    Rig r;
    r.put(IER, 0x01);  // ERBFI
    CHECK(r.input("ab") == 2);
    CHECK((r.in(LSR) & 0x01) == 0x01);
    CHECK(r.in(IIR) == 0x04);
    CHECK_FALSE(r.irq->level);  // OUT2 clear: the PC gates INTR off
    r.put(MCR, 0x0b);          // DTR | RTS | OUT2
    CHECK(r.irq->level);
    CHECK(r.in(RBR) == 'a');
    CHECK(r.irq->level);
    CHECK(r.in(RBR) == 'b');
    CHECK_FALSE(r.irq->level);
    CHECK((r.in(LSR) & 0x01) == 0);
    CHECK(r.in(IIR) == 0x01);
    // Disabling OUT2 with data pending lowers the line.
    r.input("c");
    CHECK(r.irq->level);
    r.put(MCR, 0x03);
    CHECK_FALSE(r.irq->level);
    check_only_changes(*r.irq);
}

TEST_CASE("devices: serial8250 THRE interrupt raise and clear", "[devices][serial]") {
    Rig r;
    r.put(MCR, 0x08);  // OUT2
    CHECK_FALSE(r.irq->level);
    r.put(IER, 0x02);  // ETBEI while THR empty -> THRE pending
    CHECK(r.irq->level);
    CHECK(r.in(IIR) == 0x02);  // reading IIR with THRE reported clears it
    CHECK_FALSE(r.irq->level);
    CHECK(r.in(IIR) == 0x01);

    // Linux's startup re-check: IER 0 then THRI re-asserts THRE.
    r.put(IER, 0x00);
    r.put(IER, 0x02);
    CHECK(r.in(IIR) == 0x02);

    // Each transmitted byte re-asserts THRE.
    r.put(RBR, 'z');
    CHECK(r.irq->level);
    CHECK(r.out == "z");
    CHECK(r.in(IIR) == 0x02);
    CHECK_FALSE(r.irq->level);

    // Priority: RX data hides THRE, and reading IIR then leaves THRE pending.
    r.put(IER, 0x03);
    r.put(RBR, 'y');  // THRE pending again
    r.input("q");
    CHECK(r.in(IIR) == 0x04);
    CHECK(r.in(IIR) == 0x04);
    CHECK(r.in(RBR) == 'q');
    CHECK(r.irq->level);  // THRE still pending
    CHECK(r.in(IIR) == 0x02);
    CHECK_FALSE(r.irq->level);
    check_only_changes(*r.irq);
}

TEST_CASE("devices: serial8250 IIR FIFO bits and trigger level", "[devices][serial]") {
    Rig r;
    CHECK((r.in(IIR) & 0xc0) == 0);
    r.put(FCR, 0xc1);  // FIFO on, RX trigger 14 bytes
    CHECK((r.in(IIR) & 0xc0) == 0xc0);
    r.put(IER, 0x01);
    r.input("abc");
    CHECK(r.in(IIR) == 0xcc);  // below trigger: character timeout
    r.input(std::string(11, 'x'));
    CHECK(r.in(IIR) == 0xc4);  // at trigger: received data available
    r.put(FCR, 0xc3);         // clear the RX FIFO
    CHECK((r.in(LSR) & 0x01) == 0);
    CHECK(r.in(IIR) == 0xc1);
    // Leaving FIFO mode drops the FIFO bits.
    r.put(FCR, 0x00);
    CHECK(r.in(IIR) == 0x01);
}

TEST_CASE("devices: serial8250 bounded input buffer", "[devices][serial]") {
    Rig r;
    int notified = 0;
    r.dev->set_input_space_callback([&] { ++notified; });
    CHECK(r.dev->input_space());
    std::string big(5000, 'k');
    size_t took = r.input(big);
    CHECK(took == vmm::devices::Serial8250::kRxCapacity);
    CHECK_FALSE(r.dev->input_space());
    CHECK(r.input("more") == 0);
    CHECK(r.in(RBR) == 'k');
    CHECK(notified == 1);
    CHECK(r.dev->input_space());
    CHECK(r.input("12") == 1);

    // In loopback the receiver is disconnected from the terminal.
    Rig l;
    l.put(MCR, 0x10);
    CHECK_FALSE(l.dev->input_space());
    CHECK(l.input("x") == 0);
    l.put(MCR, 0x00);
    CHECK(l.input("x") == 1);
}

TEST_CASE("devices: serial8250 modem status deltas and interrupt", "[devices][serial]") {
    Rig r;
    r.put(IER, 0x08);  // EDSSI
    r.put(MCR, 0x08);  // OUT2, not loopback
    CHECK_FALSE(r.irq->level);
    CHECK(r.in(MSR) == 0xb0);
    // Entering loopback with only OUT2: CTS and DSR drop, DCD stays.
    r.put(MCR, 0x18);
    CHECK(r.in(IIR) == 0x00);   // modem status interrupt identified
    CHECK(r.in(MSR) == 0x83);   // DCD | DDSR | DCTS
    CHECK(r.in(MSR) == 0x80);   // deltas cleared by the read
    CHECK(r.in(IIR) == 0x01);
}

TEST_CASE("devices: serial8250 odd widths and offsets", "[devices][serial]") {
    Rig r;
    r.put(IER, 0x05);
    r.input("A");
    // A 16-bit read at the base is two byte reads: RBR then IER.
    uint8_t two[2] = {};
    REQUIRE(r.bus.read(kCom1, two));
    CHECK(two[0] == 'A');
    CHECK(two[1] == 0x05);
    // A 32-bit write at 4 writes MCR, LSR (ignored), MSR (ignored), SCR.
    const uint8_t four[4] = {0x08, 0xff, 0xff, 0x77};
    REQUIRE(r.bus.write(kCom1 + 4, four));
    CHECK(r.in(MCR) == 0x08);
    CHECK(r.in(SCR) == 0x77);
    CHECK(r.in(LSR) == 0x60);
    // Past the end of the device (direct call) reads 0xff and ignores writes.
    uint8_t eight[8] = {};
    r.dev->read(6, eight);
    CHECK(eight[1] == 0x77);
    CHECK(eight[2] == 0xff);
    CHECK(eight[7] == 0xff);
    const uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    r.dev->write(7, junk);
    CHECK(r.in(SCR) == 1);
    CHECK(r.out.empty());
    // The bus rejects an access hanging over the end of the range.
    uint8_t over[2] = {};
    CHECK_FALSE(r.bus.read(kCom1 + 7, over));
}

TEST_CASE("devices: serial8250 input from another thread arrives in order", "[devices][serial]") {
    Rig r;
    constexpr size_t kTotal = 20000;
    std::thread producer([&] {
        size_t sent = 0;
        while (sent < kTotal) {
            uint8_t chunk[64];
            size_t n = std::min(sizeof chunk, kTotal - sent);
            for (size_t i = 0; i < n; ++i) chunk[i] = uint8_t((sent + i) % 251);
            sent += r.dev->enqueue_input(std::span<const uint8_t>(chunk, n));
            if (!r.dev->input_space()) std::this_thread::yield();
        }
    });
    // Raw bus calls (no per-access assertions) so the loop stays quiet.
    auto inb = [&](uint64_t reg) {
        uint8_t b = 0;
        r.bus.read(kCom1 + reg, std::span<uint8_t>(&b, 1));
        return b;
    };
    size_t got = 0, transmitted = 0;
    bool in_order = true;
    while (got < kTotal) {
        if (inb(LSR) & 0x01) {
            in_order &= inb(RBR) == uint8_t(got % 251);
            ++got;
        }
        const uint8_t o = 'o';  // concurrent transmit path
        r.bus.write(kCom1 + RBR, std::span<const uint8_t>(&o, 1));
        ++transmitted;
    }
    producer.join();
    CHECK(in_order);
    CHECK(got == kTotal);
    CHECK(r.out.size() == transmitted);
    CHECK_FALSE(r.in(LSR) & 0x01);
}
