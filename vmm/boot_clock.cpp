#include "vmm/boot_clock.h"

#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace vmm {

namespace {
// The process start time in CLOCK_MONOTONIC terms: /proc/self/stat field 22
// (starttime, in clock ticks since boot) is on the same base as
// CLOCK_BOOTTIME; convert via the current offset between the two clocks.
double start_ms() {
    static double s = [] {
        timespec mono{}, boot{};
        clock_gettime(CLOCK_MONOTONIC, &mono);
        clock_gettime(CLOCK_BOOTTIME, &boot);
        double mono_ms = mono.tv_sec * 1e3 + mono.tv_nsec / 1e6;
        double boot_ms = boot.tv_sec * 1e3 + boot.tv_nsec / 1e6;
        if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
            char buf[1024];
            size_t n = std::fread(buf, 1, sizeof buf - 1, f);
            std::fclose(f);
            buf[n] = 0;
            // Fields after the ")" of comm: state is field 3, starttime 22.
            char* p = nullptr;
            for (char* q = buf; *q; ++q)
                if (*q == ')') p = q;
            unsigned long long st = 0;
            if (p && std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                                 &st) == 1) {
                double st_ms = st * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
                return mono_ms - (boot_ms - st_ms);
            }
        }
        return mono_ms;
    }();
    return s;
}
[[maybe_unused]] const double g_init = start_ms();
}  // namespace

double ms_since_start() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1e3 + now.tv_nsec / 1e6 - start_ms();
}

}  // namespace vmm
