// What the control API can ask of a running VM. The Machine implements it;
// the API server (vmm/api.*) turns requests into these calls and their
// results into JSON, so the Machine never sees JSON and the server never
// sees KVM. Every method is thread-safe and may block briefly while the VMM
// main thread carries the request out; errors are vmm::Error with a message
// for the client (e.g. "the VM is not paused").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vmm/config.h"

namespace vmm {

enum class VmState { Running, Paused, ShuttingDown };

struct VmInfo {
    VmState state = VmState::Running;
    double uptime_s = 0;  // since the VM was created
    VmConfig config;      // the effective configuration
};

// One device's counters: name -> value (requests, read_bytes, errors,
// notifications, interrupts, ...), per device and, where the device keeps
// them, per queue ("q0.notifications").
struct DeviceCounters {
    std::string device;  // e.g. "virtio-blk0"
    std::map<std::string, uint64_t> values;
};

class VmControl {
public:
    virtual ~VmControl() = default;
    virtual VmInfo info() = 0;
    // Stops every vCPU (devices keep completing in-flight I/O). Throws if
    // already paused.
    virtual void pause() = 0;
    virtual void resume() = 0;
    // ACPI power button: the guest shuts down cleanly (if it listens).
    virtual void power_button() = 0;
    // Hard stop: the VMM exits at once with kExitStopped.
    virtual void stop() = 0;
    // Hard reset: as if the guest rebooted (restarts with --reboot, else exit 2).
    virtual void reboot() = 0;
    virtual std::vector<DeviceCounters> counters() = 0;
    // Throws "no balloon device" until virtio-balloon exists.
    virtual void set_balloon_target(uint64_t bytes) = 0;
};

}  // namespace vmm
