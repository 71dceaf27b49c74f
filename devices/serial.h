// 16550A UART (the PC's COM1 at 0x3f8, IRQ 4).
//
// The transmitter is infinitely fast: a byte written to THR is handed to the
// output callback at once, so THR/TSR are always empty (LSR.THRE|TEMT) and
// the THRE interrupt is re-asserted right after every THR write. Received
// bytes come from the host terminal through a bounded buffer that stands in
// for the wire plus the 16-byte RX FIFO; since the host side is flow
// controlled (enqueue_input accepts only what fits) there are no overruns.
//
// Thread safety: every entry point takes the device mutex. The output
// callback and the IRQ line are invoked with that mutex held
// (so output order equals THR write order and IRQ level changes are never
// reordered); they must not call back into this device. The input-space
// callback is invoked after the mutex is released.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "vmm/core/bus.h"
#include "vmm/core/irq.h"

namespace vmm::devices {

class Serial8250 : public vmm::BusDevice {
public:
    static constexpr uint64_t kLength = 8;
    static constexpr size_t kRxCapacity = 4096;

    // `irq` may be null (no interrupt wired). `output` receives transmitted
    // bytes (called with the device lock held; may be empty = discard).
    Serial8250(std::shared_ptr<vmm::IrqLine> irq, std::function<void(std::span<const uint8_t>)> output);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    std::string name() const override { return "serial8250"; }

    // Host terminal input (main thread). Returns how many leading bytes were
    // accepted; the caller keeps the rest and retries later. Accepts nothing
    // while the guest holds the UART in loopback mode (the serial input pin
    // is disconnected then), so typed input is delayed rather than lost.
    size_t enqueue_input(std::span<const uint8_t> bytes);
    // True when enqueue_input would accept at least one byte.
    bool input_space() const;
    // Optional: called (without the device lock, from a vCPU thread) when
    // input_space() turns from false to true, so the main loop can resume
    // reading the terminal without polling.
    void set_input_space_callback(std::function<void()> cb);

private:
    // Register state, kept as plain data (snapshot-friendly).
    struct State {
        uint8_t ier = 0;        // bits 3:0 only (16550A has no bits 7:4)
        uint8_t lcr = 0;
        uint8_t mcr = 0;        // bits 4:0
        bool fifo_enabled = false;
        uint8_t rx_trigger = 1;  // FCR bits 7:6 decoded: 1, 4, 8 or 14 bytes
        uint8_t lsr_errors = 0;  // OE/PE/FE/BI, cleared by reading LSR
        uint8_t msr_delta = 0;   // DCTS/DDSR/TERI/DDCD, cleared by reading MSR
        uint8_t scr = 0;
        uint8_t dll = 0x0c;      // divisor 12 = 9600 baud; has no effect here
        uint8_t dlm = 0;
        bool thre_pending = false;  // THRE interrupt source latched
        bool irq_level = false;     // last level driven on the IRQ line
        std::array<uint8_t, kRxCapacity> rx{};
        size_t rx_head = 0;
        size_t rx_count = 0;
    };

    uint8_t read_reg(unsigned reg);              // lock held
    void write_reg(unsigned reg, uint8_t value);  // lock held
    void transmit(uint8_t byte);                  // lock held
    bool rx_push(uint8_t byte);                   // lock held
    uint8_t modem_inputs() const;                 // MSR bits 7:4
    uint8_t pending_iir() const;                  // IIR bits 3:0
    uint8_t lsr() const;
    bool space_locked() const;
    void update_irq();                            // lock held

    mutable std::mutex mu_;
    State s_;
    std::shared_ptr<vmm::IrqLine> irq_;
    std::function<void(std::span<const uint8_t>)> output_;
    std::function<void()> on_input_space_;
};

}  // namespace vmm::devices
