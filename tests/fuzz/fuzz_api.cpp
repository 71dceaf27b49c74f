// The control API's request line (docs/api.md): any bytes a client sends.
// handle_request_line() must never throw and must answer exactly one line
// of valid JSON; the VM behind it may refuse (a VmControl error).
#include <fuzzer/FuzzedDataProvider.h>

#include <nlohmann/json.hpp>
#include <string>

#include "vmm/api.h"
#include "vmm/core/error.h"

namespace {

struct FakeVm : vmm::VmControl {
    bool fail = false;
    void act() {
        if (fail) throw vmm::Error("the VM is not paused");
    }
    vmm::VmInfo info() override {
        act();
        vmm::VmInfo i;
        i.uptime_s = 1.5;
        return i;
    }
    void pause() override { act(); }
    void resume() override { act(); }
    void power_button() override { act(); }
    void stop() override { act(); }
    void reboot() override { act(); }
    std::vector<vmm::DeviceCounters> counters() override {
        act();
        return {{"virtio-blk0", {{"requests", 7}}}};
    }
    void set_balloon_target(uint64_t) override { act(); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    FakeVm vm;
    vm.fail = data[0] & 1;
    std::string_view line(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (line.size() > vmm::kApiMaxLine) return 0;  // the server closes such connections before parsing
    std::string out = vmm::handle_request_line(line, vm);
    if (out.find('\n') != std::string::npos) __builtin_trap();
    if (!nlohmann::json::accept(out)) __builtin_trap();
    return 0;
}
