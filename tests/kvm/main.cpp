// Direct-KVM tests. Run where /dev/kvm can execute guest ring-0 code (a
// machine with VT-x/AMD-V, or the software-emulated test host); elsewhere
// exit 77 (SKIP) with the reason.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        std::printf("SKIP: direct-KVM tests need /dev/kvm (%s)\n", std::strerror(errno));
        return 77;
    }
    ::close(fd);
    return Catch::Session().run(argc, argv);
}
