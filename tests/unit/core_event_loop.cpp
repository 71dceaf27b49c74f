// Unit tests of the epoll EventLoop and the named IoThread.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
#include <thread>
#include <vector>
#include <string>

#include "vmm/core/error.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/eventfd.h"
#include "vmm/core/log.h"

using namespace std::chrono_literals;

namespace {

std::string thread_name() {
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    return buf;
}

// Captures log lines in a temporary file for the lifetime of the object.
struct LogCapture {
    std::FILE* f = std::tmpfile();
    LogCapture() { vmm::log::set_file(f); }
    ~LogCapture() {
        vmm::log::set_file(nullptr);
        std::fclose(f);
    }
    std::string text() {
        std::fflush(f);
        std::rewind(f);
        std::string s;
        char buf[256];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
        return s;
    }
};

}  // namespace

TEST_CASE("core: IoThread runs handlers on its named thread", "[core][event_loop]") {
    vmm::IoThread t("virtio-blk0-queue-io");
    CHECK(t.name() == "virtio-blk0-que");  // pthread names hold 15 characters
    vmm::EventFd ev;
    std::promise<std::string> where;
    t.loop().add(ev.fd(), [&](uint32_t) {
        ev.consume();
        where.set_value(thread_name());
    });
    t.start();
    t.start();  // idempotent
    ev.signal();
    auto f = where.get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    CHECK(f.get() == "virtio-blk0-que");
    t.stop();
    t.stop();  // idempotent
}

TEST_CASE("core: IoThread::stop joins and no handler runs afterwards", "[core][event_loop]") {
    vmm::EventFd ev;
    std::atomic<int> calls{0};
    {
        vmm::IoThread t("io");
        t.loop().add(ev.fd(), [&](uint32_t) {
            ev.consume();
            ++calls;
        });
        t.start();
        ev.signal();
        for (int i = 0; i < 500 && calls == 0; ++i) std::this_thread::sleep_for(1ms);
        REQUIRE(calls == 1);
        t.stop();
        CHECK(t.loop().stop_requested());
        ev.signal();
        std::this_thread::sleep_for(5ms);
        CHECK(calls == 1);
        // Restartable: the pending event is served by the new thread.
        t.start();
        for (int i = 0; i < 500 && calls == 1; ++i) std::this_thread::sleep_for(1ms);
        CHECK(calls == 2);
    }  // the destructor stops and joins
    ev.signal();
    std::this_thread::sleep_for(2ms);
    CHECK(calls == 2);
}

TEST_CASE("core: a throwing handler is logged and the thread keeps running", "[core][event_loop]") {
    LogCapture log;
    vmm::IoThread t("io-throw");
    vmm::EventFd ev;
    std::atomic<int> calls{0};
    t.loop().add(ev.fd(), [&](uint32_t) {
        ev.consume();
        if (++calls == 1) throw std::runtime_error("guest did something bad");
    });
    t.start();
    ev.signal();
    for (int i = 0; i < 500 && calls < 1; ++i) std::this_thread::sleep_for(1ms);
    ev.signal();
    for (int i = 0; i < 500 && calls < 2; ++i) std::this_thread::sleep_for(1ms);
    CHECK(calls == 2);
    t.stop();
    CHECK_THAT(log.text(), Catch::Contains("guest did something bad"));
}

TEST_CASE("core: event loop registration rules", "[core][event_loop]") {
    vmm::EventLoop loop;
    vmm::EventFd a, b;
    loop.add(a.fd(), [](uint32_t) {});
    CHECK_THROWS_AS(loop.add(a.fd(), [](uint32_t) {}), vmm::Error);
    CHECK_THROWS_AS(loop.add(-1, [](uint32_t) {}), vmm::Error);
    loop.remove(a.fd());
    loop.remove(a.fd());  // unknown fds are ignored
    loop.add(a.fd(), [](uint32_t) {});

    // run() on this thread: a handler asks it to return.
    int runs = 0;
    loop.add(b.fd(), [&](uint32_t) {
        b.consume();
        ++runs;
        loop.request_stop();
    });
    b.signal();
    loop.run();
    CHECK(runs == 1);
}

TEST_CASE("core: a handler may remove itself and others while running", "[core][event_loop]") {
    vmm::EventLoop loop;
    vmm::EventFd a, b, stop;
    int a_calls = 0, b_calls = 0;
    // Both become ready in one epoll batch; whichever runs first removes
    // both (and arms the stop for the next round), so the other must not run.
    loop.add(a.fd(), [&](uint32_t) {
        ++a_calls;
        loop.remove(a.fd());
        loop.remove(b.fd());
        stop.signal();
    });
    loop.add(b.fd(), [&](uint32_t) {
        ++b_calls;
        loop.remove(a.fd());
        loop.remove(b.fd());
        stop.signal();
    });
    loop.add(stop.fd(), [&](uint32_t) { loop.request_stop(); });
    a.signal();
    b.signal();
    loop.run();
    CHECK(a_calls + b_calls == 1);
}

TEST_CASE("core: request_stop before run returns at once", "[core][event_loop]") {
    vmm::EventLoop loop;
    loop.request_stop();
    CHECK(loop.stop_requested());
    loop.run();  // must not block
    SUCCEED();
}

TEST_CASE("core: a polling loop takes work without a wakeup, and stops spinning when idle", "[core][event_loop]") {
    constexpr uint64_t kMax = 200'000'000;  // 200 ms: long enough to be seen from this test
    vmm::IoThread t("poll");
    vmm::EventFd ev;
    std::atomic<bool> work{false};
    std::atomic<int> by_fd{0}, by_poll{0};
    std::mutex mu;
    std::vector<bool> modes;
    // The same work is announced both ways, as a virtqueue's is (a kick
    // eventfd, and the ring the poll source looks at).
    t.loop().add(ev.fd(), [&](uint32_t) {
        ev.consume();
        if (work.exchange(false)) ++by_fd;
    });
    t.loop().add_poll({.poll =
                           [&] {
                               if (!work.exchange(false)) return false;
                               ++by_poll;
                               return true;
                           },
                       .mode =
                           [&](bool spinning) {
                               std::lock_guard lk(mu);
                               modes.push_back(spinning);
                               return false;
                           }});
    t.loop().set_poll_max_ns(kMax);
    t.start();
    // Back-to-back work: the window grows from 4 us until it covers the
    // gaps, and from then on the spinning loop finds the work itself.
    for (int i = 0; i < 300 && by_poll < 10; ++i) {
        work = true;
        ev.signal();
        for (int j = 0; j < 3000 && work; ++j) std::this_thread::sleep_for(std::chrono::microseconds(100));
        REQUIRE_FALSE(work);
    }
    CHECK(by_fd >= 1);     // the first ones woke the loop
    CHECK(by_poll >= 10);  // later ones were found by spinning
    // Idle for longer than the window: it stops spinning (mode false) and sleeps.
    std::this_thread::sleep_for(600ms);
    {
        std::lock_guard lk(mu);
        REQUIRE(modes.size() >= 2);
        CHECK(modes.front() == true);
        CHECK(modes.back() == false);
    }
    // Asleep, work that nobody signals stays where it is: poll sources run
    // only while the loop spins.
    int polled = by_poll;
    work = true;
    std::this_thread::sleep_for(100ms);
    CHECK(work);
    CHECK(by_poll == polled);
    t.stop();
}

TEST_CASE("core: a loop without a poll maximum never calls its poll sources", "[core][event_loop]") {
    vmm::IoThread t("nopoll");
    vmm::EventFd ev;
    std::atomic<int> wakeups{0}, polled{0};
    t.loop().add(ev.fd(), [&](uint32_t) {
        ev.consume();
        ++wakeups;
    });
    t.loop().add_poll({.poll = [&] { return ++polled, false; }, .mode = {}});
    t.start();
    for (int i = 1; i <= 5; ++i) {
        ev.signal();
        for (int j = 0; j < 2000 && wakeups < i; ++j) std::this_thread::sleep_for(1ms);
    }
    CHECK(wakeups == 5);
    CHECK(polled == 0);
    t.stop();
}
