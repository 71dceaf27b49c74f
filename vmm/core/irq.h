// How a device raises an interrupt without knowing about KVM: the VM wires an
// IrqLine per legacy IRQ (KVM_IRQ_LINE on the in-kernel PIC/IOAPIC); unit
// tests use a recording fake.
#pragma once

namespace vmm {

class IrqLine {
public:
    virtual ~IrqLine() = default;
    // Level semantics: true while the device has an interrupt pending. For an
    // edge-triggered IOAPIC pin, the low->high transition is the edge.
    virtual void set_level(bool high) = 0;
};

}  // namespace vmm
