#include <catch2/catch.hpp>

#include <csignal>

#include "vmm/exit_control.h"

TEST_CASE("vmm: the first exit request wins and sets the status") {
    vmm::ExitControl c;
    CHECK_FALSE(c.requested());
    CHECK(c.status() == 0);
    c.request(vmm::ExitReason::PowerOff);
    c.request(vmm::ExitReason::Crash, "late");
    CHECK(c.requested());
    CHECK(c.reason() == vmm::ExitReason::PowerOff);
    CHECK(c.status() == vmm::kExitPowerOff);
    CHECK(c.consume_wakeup_for_test() == 1);
}

TEST_CASE("vmm: a signal overrides a pending reboot but nothing else") {
    vmm::ExitControl a;
    a.request(vmm::ExitReason::Reboot, "reset");
    a.request(vmm::ExitReason::Signal, "term", SIGTERM);
    CHECK(a.reason() == vmm::ExitReason::Signal);
    CHECK(a.status() == 128 + SIGTERM);

    vmm::ExitControl b;
    b.request(vmm::ExitReason::Crash, "triple fault");
    b.request(vmm::ExitReason::Signal, "term", SIGTERM);
    CHECK(b.reason() == vmm::ExitReason::Crash);
    CHECK(b.status() == vmm::kExitCrash);
    CHECK(b.message() == "triple fault");
}
