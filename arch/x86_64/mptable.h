// Intel MultiProcessor Specification 1.4 tables. Linux and older guests
// without ACPI use them to find the vCPUs, the IOAPIC and the ISA IRQ
// wiring; guests with ACPI prefer the MADT (acpi.h) which describes the
// same machine.
#pragma once

#include <cstdint>

#include "arch/x86_64/layout.h"

namespace vmm::arch::x86 {

// MP floating pointer (16 bytes, "_MP_") at kMpTableAddr, followed directly
// by the configuration table ("PCMP", spec revision 1.4) with one processor
// entry per vCPU (APIC ID = index, BSP = 0), one ISA bus, one IOAPIC
// (ID = ncpus, at kIoapicAddr), ISA IRQ 0..15 -> IOAPIC pin 0..15 and
// LINT0 = ExtINT / LINT1 = NMI on every local APIC.
// Throws if ncpus is 0 or above 254 (the 64 KiB area holds all of them).
Blob build_mptable(uint32_t ncpus);

// Largest ncpus for which build_mptable() fits below kMpTableEnd.
uint32_t mptable_max_cpus();

namespace mp {
inline constexpr std::size_t kFloatingSize = 16;
inline constexpr std::size_t kHeaderSize = 44;
inline constexpr std::size_t kProcessorEntrySize = 20;
inline constexpr std::size_t kEntrySize = 8;  // bus, IOAPIC, I/O and local interrupt
inline constexpr uint8_t kEntryProcessor = 0;
inline constexpr uint8_t kEntryBus = 1;
inline constexpr uint8_t kEntryIoapic = 2;
inline constexpr uint8_t kEntryIoInterrupt = 3;
inline constexpr uint8_t kEntryLocalInterrupt = 4;
inline constexpr uint8_t kIntTypeInt = 0;
inline constexpr uint8_t kIntTypeNmi = 1;
inline constexpr uint8_t kIntTypeExtInt = 3;
inline constexpr uint8_t kLapicVersion = 0x14;
inline constexpr uint8_t kIoapicVersion = 0x11;
inline constexpr uint8_t kSpecRev = 4;  // 1.4
inline constexpr int kIsaIrqs = 16;
}  // namespace mp

}  // namespace vmm::arch::x86
