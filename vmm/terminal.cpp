#include "vmm/terminal.h"

#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace vmm {

namespace {
termios g_saved{};
std::atomic<int> g_fd{-1};
bool g_atexit_registered = false;
}  // namespace

void RawTerminal::restore_now() {
    int fd = g_fd.exchange(-1);
    if (fd >= 0) tcsetattr(fd, TCSAFLUSH, &g_saved);
}

RawTerminal::RawTerminal(int fd) {
    if (!isatty(fd) || g_fd.load() >= 0) return;
    termios t{};
    if (tcgetattr(fd, &t) != 0) return;
    g_saved = t;
    // Like cfmakeraw, but keep output post-processing so host-side messages
    // still start at column 0 (the guest's own \r\n is unaffected).
    t.c_iflag &= ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~static_cast<tcflag_t>(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &t) != 0) return;
    g_fd.store(fd);
    if (!g_atexit_registered) {
        std::atexit(&RawTerminal::restore_now);
        g_atexit_registered = true;
    }
    active_ = true;
}

RawTerminal::~RawTerminal() {
    if (active_) restore_now();
}

}  // namespace vmm
