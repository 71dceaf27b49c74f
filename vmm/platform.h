// The fixed legacy platform this VMM presents (PC compatible). These numbers
// are shared by the device wiring (vmm/chipset.cpp) and the firmware tables (ACPI
// FADT/DSDT, MP table), so they live in one place.
#pragma once

#include <cstdint>

namespace vmm::platform {

constexpr uint16_t kCom1Port = 0x3f8;
constexpr uint32_t kCom1Irq = 4;
constexpr uint16_t kI8042Port = 0x60;  // 0x60..0x64 (0x61 is the PIT speaker, in KVM)
constexpr uint16_t kCmosPort = 0x70;  // 0x70..0x71, the RTC's interrupt on IRQ 8
constexpr uint8_t kRtcIrq = 8;
constexpr uint16_t kAcpiPmPort = 0x600;  // PM1a_EVT 0x600, PM1a_CNT 0x604, PM_TMR 0x608
constexpr uint8_t kAcpiSciIrq = 9;
constexpr uint8_t kAcpiS5SleepType = 5;
constexpr uint16_t kResetPort = 0xcf9;
constexpr uint8_t kResetValue = 0x06;
constexpr uint16_t kBootProgressPort = 0x440;
constexpr uint16_t kPvPanicPort = 0x505;  // QEMU's ISA pvpanic port
constexpr uint16_t kDebugConPort = 0x402;  // firmware debug output (SeaBIOS, OVMF), QEMU's isa-debugcon
constexpr uint16_t kFwCfgPort = 0x510;     // fw_cfg selector, data (0x511), DMA address (0x514)

}  // namespace vmm::platform
