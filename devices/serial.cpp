#include "devices/serial.h"

#include <algorithm>

namespace vmm::devices {
namespace {

// Register offsets (DLAB = LCR bit 7 remaps 0/1 to the divisor latch).
constexpr unsigned kRbrThr = 0;  // RBR (read) / THR (write) / DLL
constexpr unsigned kIer = 1;     // IER / DLM
constexpr unsigned kIirFcr = 2;  // IIR (read) / FCR (write)
constexpr unsigned kLcr = 3;
constexpr unsigned kMcr = 4;
constexpr unsigned kLsr = 5;
constexpr unsigned kMsr = 6;
constexpr unsigned kScr = 7;

constexpr uint8_t kIerRdi = 0x01;   // ERBFI: received data available
constexpr uint8_t kIerThri = 0x02;  // ETBEI: THR empty
constexpr uint8_t kIerRlsi = 0x04;  // ELSI: receiver line status
constexpr uint8_t kIerMsi = 0x08;   // EDSSI: modem status

constexpr uint8_t kIirNoInt = 0x01;
constexpr uint8_t kIirMsi = 0x00;
constexpr uint8_t kIirThri = 0x02;
constexpr uint8_t kIirRdi = 0x04;
constexpr uint8_t kIirRlsi = 0x06;
constexpr uint8_t kIirTimeout = 0x0c;
constexpr uint8_t kIirFifoEnabled = 0xc0;  // "16550A with working FIFOs"

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;

constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrOe = 0x02;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

constexpr uint8_t kMsrDcts = 0x01;
constexpr uint8_t kMsrDdsr = 0x02;
constexpr uint8_t kMsrTeri = 0x04;
constexpr uint8_t kMsrDdcd = 0x08;
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

}  // namespace

Serial8250::Serial8250(std::shared_ptr<vmm::IrqLine> irq, std::function<void(std::span<const uint8_t>)> output)
    : irq_(std::move(irq)), output_(std::move(output)) {}

// Multi-byte accesses are split into byte accesses at consecutive offsets,
// as the ISA bus does for an 8-bit device (so `inw 0x3f8` reads RBR then IER).
void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
    std::function<void()> notify;  // copied under the lock, called after it
    {
        std::lock_guard lk(mu_);
        bool had_space = space_locked();
        for (size_t i = 0; i < data.size(); ++i) {
            uint64_t off = offset + i;
            data[i] = off < kLength ? read_reg(static_cast<unsigned>(off)) : 0xff;
        }
        update_irq();
        if (!had_space && space_locked()) notify = on_input_space_;
    }
    if (notify) notify();
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
    std::function<void()> notify;  // copied under the lock, called after it
    {
        std::lock_guard lk(mu_);
        bool had_space = space_locked();
        for (size_t i = 0; i < data.size(); ++i) {
            uint64_t off = offset + i;
            if (off < kLength) write_reg(static_cast<unsigned>(off), data[i]);
        }
        update_irq();
        if (!had_space && space_locked()) notify = on_input_space_;
    }
    if (notify) notify();
}

size_t Serial8250::enqueue_input(std::span<const uint8_t> bytes) {
    std::lock_guard lk(mu_);
    if (s_.mcr & kMcrLoop) return 0;
    size_t n = std::min(bytes.size(), kRxCapacity - s_.rx_count);
    for (size_t i = 0; i < n; ++i) rx_push(bytes[i]);
    if (n) update_irq();
    return n;
}

bool Serial8250::input_space() const {
    std::lock_guard lk(mu_);
    return space_locked();
}

void Serial8250::set_input_space_callback(std::function<void()> cb) {
    std::lock_guard lk(mu_);
    on_input_space_ = std::move(cb);
}

bool Serial8250::space_locked() const { return !(s_.mcr & kMcrLoop) && s_.rx_count < kRxCapacity; }

bool Serial8250::rx_push(uint8_t byte) {
    if (s_.rx_count == kRxCapacity) return false;
    s_.rx[(s_.rx_head + s_.rx_count) % kRxCapacity] = byte;
    ++s_.rx_count;
    return true;
}

uint8_t Serial8250::read_reg(unsigned reg) {
    switch (reg) {
        case kRbrThr:
            if (s_.lcr & kLcrDlab) return s_.dll;
            if (s_.rx_count == 0) return 0;
            {
                uint8_t b = s_.rx[s_.rx_head];
                s_.rx_head = (s_.rx_head + 1) % kRxCapacity;
                --s_.rx_count;
                return b;
            }
        case kIer:
            return (s_.lcr & kLcrDlab) ? s_.dlm : s_.ier;
        case kIirFcr: {
            uint8_t id = pending_iir();
            // Reading IIR acknowledges a THRE interrupt, but only when THRE
            // is the source being reported (a higher-priority RX interrupt
            // hides it and leaves it pending).
            if (id == kIirThri) s_.thre_pending = false;
            return static_cast<uint8_t>(id | (s_.fifo_enabled ? kIirFifoEnabled : 0));
        }
        case kLcr:
            return s_.lcr;
        case kMcr:
            return s_.mcr;
        case kLsr: {
            uint8_t v = lsr();
            s_.lsr_errors = 0;  // error bits are cleared by reading LSR
            return v;
        }
        case kMsr: {
            uint8_t v = static_cast<uint8_t>(modem_inputs() | s_.msr_delta);
            s_.msr_delta = 0;
            return v;
        }
        case kScr:
            return s_.scr;
    }
    return 0xff;
}

void Serial8250::write_reg(unsigned reg, uint8_t value) {
    switch (reg) {
        case kRbrThr:
            if (s_.lcr & kLcrDlab) s_.dll = value;
            else transmit(value);
            return;
        case kIer:
            if (s_.lcr & kLcrDlab) {
                s_.dlm = value;
            } else {
                uint8_t old = s_.ier;
                s_.ier = value & 0x0f;
                // Enabling ETBEI while THR is empty (always, here) raises a
                // THRE interrupt; Linux's startup test relies on this to
                // decide the UART is not UART_BUG_THRE.
                if (!(old & kIerThri) && (s_.ier & kIerThri)) s_.thre_pending = true;
            }
            return;
        case kIirFcr: {
            bool enable = value & kFcrEnable;
            // Switching between FIFO and 16450 mode empties the FIFOs; the
            // other FCR bits are only programmed while bit 0 is written as 1.
            bool clear_rx = enable != s_.fifo_enabled || (enable && (value & kFcrClearRx));
            s_.fifo_enabled = enable;
            if (enable) {
                static constexpr uint8_t kTrigger[4] = {1, 4, 8, 14};
                s_.rx_trigger = kTrigger[value >> 6];
            }
            if (clear_rx) {
                s_.rx_head = 0;
                s_.rx_count = 0;
            }
            return;
        }
        case kLcr:
            s_.lcr = value;
            return;
        case kMcr: {
            uint8_t before = modem_inputs();
            s_.mcr = value & 0x1f;
            uint8_t after = modem_inputs();
            uint8_t changed = before ^ after;
            if (changed & kMsrCts) s_.msr_delta |= kMsrDcts;
            if (changed & kMsrDsr) s_.msr_delta |= kMsrDdsr;
            if ((before & kMsrRi) && !(after & kMsrRi)) s_.msr_delta |= kMsrTeri;  // trailing edge only
            if (changed & kMsrDcd) s_.msr_delta |= kMsrDdcd;
            return;
        }
        case kLsr:
        case kMsr:
            return;  // factory-test writes; ignored
        case kScr:
            s_.scr = value;
            return;
    }
}

void Serial8250::transmit(uint8_t byte) {
    if (s_.mcr & kMcrLoop) {
        // Loopback: the transmitter output is wired to the receiver input.
        if (!rx_push(byte)) s_.lsr_errors |= kLsrOe;
    } else if (output_) {
        output_(std::span<const uint8_t>(&byte, 1));
    }
    // Writing THR clears the THRE interrupt; the byte leaves at once and THR
    // is empty again, which re-asserts it.
    s_.thre_pending = true;
}

uint8_t Serial8250::modem_inputs() const {
    if (s_.mcr & kMcrLoop) {
        // Loopback wiring of the 16550: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        uint8_t v = 0;
        if (s_.mcr & kMcrDtr) v |= kMsrDsr;
        if (s_.mcr & kMcrRts) v |= kMsrCts;
        if (s_.mcr & kMcrOut1) v |= kMsrRi;
        if (s_.mcr & kMcrOut2) v |= kMsrDcd;
        return v;
    }
    // A connected terminal: carrier, data set ready and clear to send, so a
    // guest that honours modem control (CLOCAL off, CRTSCTS) never waits.
    return kMsrDcd | kMsrDsr | kMsrCts;
}

uint8_t Serial8250::lsr() const {
    uint8_t v = kLsrThre | kLsrTemt | s_.lsr_errors;
    if (s_.rx_count) v |= kLsrDr;
    return v;
}

// IIR identification in priority order: line status > received data (or
// character timeout) > THR empty > modem status.
uint8_t Serial8250::pending_iir() const {
    if ((s_.ier & kIerRlsi) && s_.lsr_errors) return kIirRlsi;
    if ((s_.ier & kIerRdi) && s_.rx_count) {
        // In FIFO mode, below the trigger level the 16550 reports a
        // character timeout once no byte arrived for 4 character times; the
        // host delivers in bursts, so that time is taken to have elapsed.
        if (s_.fifo_enabled && s_.rx_count < s_.rx_trigger) return kIirTimeout;
        return kIirRdi;
    }
    if ((s_.ier & kIerThri) && s_.thre_pending) return kIirThri;
    if ((s_.ier & kIerMsi) && s_.msr_delta) return kIirMsi;
    return kIirNoInt;
}

void Serial8250::update_irq() {
    // On a PC the UART's INTR pin reaches the PIC through a buffer enabled by
    // the OUT2 modem-control output, so drivers set MCR.OUT2 to enable
    // interrupts. In loopback the 16550 forces its OUT pins inactive, which
    // disconnects the interrupt as well.
    bool level = pending_iir() != kIirNoInt && (s_.mcr & kMcrOut2) && !(s_.mcr & kMcrLoop);
    if (level == s_.irq_level) return;
    s_.irq_level = level;
    if (irq_) irq_->set_level(level);
}

}  // namespace vmm::devices
