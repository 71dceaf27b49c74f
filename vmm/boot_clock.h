// Milliseconds since the VMM process started, for the boot-time report.
#pragma once

namespace vmm {
double ms_since_start();
}
