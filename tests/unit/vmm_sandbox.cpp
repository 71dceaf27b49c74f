#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/sandbox.h"

TEST_CASE("fds_named_in finds /dev/fd/N and /proc/self/fd/N") {
    using S = std::set<int>;
    CHECK(vmm::fds_named_in("--config /dev/fd/8") == S{8});
    CHECK(vmm::fds_named_in("path=/proc/self/fd/12,readonly=on /dev/fd/63") == S{12, 63});
    CHECK(vmm::fds_named_in("{\"kernel\":\"/dev/fd/5\",\"initramfs\":\"/dev/fd/5\"}") == S{5});
    // stdin..stderr are never closed anyway; no digits, overflow: nothing.
    CHECK(vmm::fds_named_in("/dev/fd/0 /dev/fd/2 /dev/fd/ /dev/fd/x /dev/fd/99999999999999999999").empty());
    CHECK(vmm::fds_named_in("/dev/fdx/9 /proc/1/fd/9 /tmp/dev/fd").empty());
    CHECK(vmm::fds_named_in("/dev/fd/2147483647") == S{2147483647});
    CHECK(vmm::fds_named_in("/dev/fd/2147483648").empty());
}

TEST_CASE("close_inherited_fds keeps only the named descriptors") {
    // Run in a child: closing descriptors in the test process itself would
    // close Catch's own files.
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int a = ::open("/dev/null", O_RDONLY);
        int b = ::open("/dev/null", O_RDONLY);
        int c = ::open("/dev/null", O_RDONLY);
        if (a < 3 || b < 3 || c < 3) _exit(10);
        vmm::close_inherited_fds({b});
        bool ok = fcntl(a, F_GETFD) == -1 && fcntl(b, F_GETFD) != -1 && fcntl(c, F_GETFD) == -1 &&
                  fcntl(1, F_GETFD) != -1;
        _exit(ok ? 0 : 11);
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
}
