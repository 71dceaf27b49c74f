// Unit tests of the control API: the protocol as a pure function with a
// fake VmControl, then the UNIX-socket server and the `vmm ctl` client in a
// temporary directory under /tmp.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/api.h"
#include "vmm/config_json.h"
#include "vmm/core/error.h"
#include "vmm/core/fd.h"
#include "vmm/ctl.h"

using Catch::Matchers::Contains;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Records every call; throws vmm::Error(fail_with) when that is set.
struct FakeVm : vmm::VmControl {
    std::mutex m;
    std::vector<std::string> calls;
    std::string fail_with;
    uint64_t balloon = 0;
    vmm::VmConfig cfg;

    void record(const std::string& c) {
        std::lock_guard g(m);
        calls.push_back(c);
        if (!fail_with.empty()) throw vmm::Error(fail_with);
    }
    std::vector<std::string> seen() {
        std::lock_guard g(m);
        return calls;
    }
    vmm::VmInfo info() override {
        record("info");
        vmm::VmInfo i;
        i.state = vmm::VmState::Paused;
        i.uptime_s = 12.5;
        i.config = cfg;
        return i;
    }
    void pause() override { record("pause"); }
    void resume() override { record("resume"); }
    void power_button() override { record("power_button"); }
    void stop() override { record("stop"); }
    void reboot() override { record("reboot"); }
    std::vector<vmm::DeviceCounters> counters() override {
        record("counters");
        return {{"virtio-blk0", {{"requests", 7}, {"q0.notifications", 3}}}, {"virtio-console0", {}}};
    }
    void set_balloon_target(uint64_t bytes) override {
        record("balloon");
        balloon = bytes;
    }
};

json call(FakeVm& vm, std::string_view line) {
    std::string out = vmm::handle_request_line(line, vm);
    REQUIRE(out.find('\n') == std::string::npos);  // one line, always
    return json::parse(out);
}

// Checks an error response and returns its message.
std::string error_of(FakeVm& vm, std::string_view line, const char* code) {
    json r = call(vm, line);
    REQUIRE(r["ok"] == false);
    CHECK(r["error"]["code"] == code);
    REQUIRE(r["error"]["message"].is_string());
    CHECK(!r["error"]["message"].get<std::string>().empty());
    CHECK(!r.contains("result"));
    return r["error"]["message"].get<std::string>();
}

}  // namespace

TEST_CASE("api: every command's result", "[vmm][api]") {
    FakeVm vm;
    vm.cfg.cpus = 3;

    json r = call(vm, R"({"id": 1, "cmd": "info"})");
    CHECK(r["id"] == 1);
    CHECK(r["ok"] == true);
    CHECK(!r.contains("error"));
    CHECK(r["result"]["state"] == "paused");
    CHECK(r["result"]["uptime_s"] == 12.5);
    CHECK(r["result"]["config"] == vmm::config_to_json(vm.cfg));
    CHECK(r["result"]["config"]["machine"]["cpus"] == 3);

    r = call(vm, R"({"cmd": "counters"})");
    REQUIRE(r["result"]["devices"].size() == 2);
    CHECK(r["result"]["devices"][0]["device"] == "virtio-blk0");
    CHECK(r["result"]["devices"][0]["values"]["requests"] == 7);
    CHECK(r["result"]["devices"][0]["values"]["q0.notifications"] == 3);
    CHECK(r["result"]["devices"][1]["values"] == json::object());  // an object even when empty

    for (const char* cmd : {"pause", "resume", "power_button", "stop", "reboot", "ping"}) {
        r = call(vm, json{{"cmd", cmd}, {"args", json::object()}}.dump());
        CHECK(r["ok"] == true);
        CHECK(r["result"] == json::object());
    }
    r = call(vm, R"({"cmd": "shutdown"})");  // alias
    CHECK(r["result"] == json::object());
    CHECK(vm.seen() == std::vector<std::string>{"info", "counters", "pause", "resume", "power_button", "stop",
                                                "reboot", "power_button"});
}

TEST_CASE("api: balloon targets", "[vmm][api]") {
    FakeVm vm;
    CHECK(call(vm, R"({"cmd": "balloon", "args": {"target": 1073741824}})")["ok"] == true);
    CHECK(vm.balloon == 1ull << 30);
    CHECK(call(vm, R"({"cmd": "balloon", "args": {"target": "512M"}})")["ok"] == true);
    CHECK(vm.balloon == 512ull << 20);
    CHECK(call(vm, R"({"cmd": "balloon", "args": {"target": 0}})")["ok"] == true);
    CHECK(vm.balloon == 0);

    CHECK_THAT(error_of(vm, R"({"cmd": "balloon"})", "bad_request"), Contains("target is required"));
    CHECK_THAT(error_of(vm, R"({"cmd": "balloon", "args": {}})", "bad_request"), Contains("target is required"));
    CHECK_THAT(error_of(vm, R"({"cmd": "balloon", "args": {"target": -1}})", "bad_request"), Contains("non-negative"));
    CHECK_THAT(error_of(vm, R"({"cmd": "balloon", "args": {"target": 1.5}})", "bad_request"), Contains("whole number"));
    error_of(vm, R"({"cmd": "balloon", "args": {"target": true}})", "bad_request");
    error_of(vm, R"({"cmd": "balloon", "args": {"target": null}})", "bad_request");
    CHECK_THAT(error_of(vm, R"({"cmd": "balloon", "args": {"target": "12Q"}})", "bad_request"),
               Contains("not a size"));
    CHECK_THAT(error_of(vm, R"({"cmd": "balloon", "args": {"target": 1, "force": true}})", "bad_request"),
               Contains("unknown argument \"force\""));
    CHECK(vm.seen().size() == 3);  // the invalid ones never reached the VM
}

TEST_CASE("api: the id is echoed", "[vmm][api]") {
    FakeVm vm;
    CHECK(call(vm, R"({"id": 42, "cmd": "ping"})")["id"] == 42);
    CHECK(call(vm, R"({"id": "abc", "cmd": "ping"})")["id"] == "abc");
    CHECK(call(vm, R"({"id": {"n": [1, 2]}, "cmd": "ping"})")["id"] == json{{"n", {1, 2}}});
    json r = call(vm, R"({"cmd": "ping"})");
    REQUIRE(r.contains("id"));
    CHECK(r["id"].is_null());
    // Also on errors, once the request is an object.
    CHECK(call(vm, R"({"id": 7, "cmd": "nope"})")["id"] == 7);
    CHECK(call(vm, R"({"id": 8, "cmd": 1})")["id"] == 8);
    vm.fail_with = "x";
    CHECK(call(vm, R"({"id": "f", "cmd": "pause"})")["id"] == "f");
}

TEST_CASE("api: malformed requests get an error and touch nothing", "[vmm][api]") {
    FakeVm vm;
    std::string m = error_of(vm, "{\"cmd\": \"stop\"", "bad_json");
    CHECK_THAT(m, Contains("parse error"));
    CHECK_THAT(m, !Contains("json.exception"));
    error_of(vm, "", "bad_json");
    error_of(vm, "stop", "bad_json");
    error_of(vm, "{\"cmd\": \"stop\"} {}", "bad_json");  // trailing garbage
    error_of(vm, "{\"cmd\": \"\xff\"}", "bad_json");     // not UTF-8
    CHECK(call(vm, "not json")["id"].is_null());

    CHECK_THAT(error_of(vm, "[1, 2]", "bad_request"), Contains("JSON object"));
    error_of(vm, "\"stop\"", "bad_request");
    error_of(vm, "17", "bad_request");
    error_of(vm, "null", "bad_request");
    CHECK_THAT(error_of(vm, "{}", "bad_request"), Contains("no \"cmd\""));
    CHECK_THAT(error_of(vm, R"({"cmd": 5})", "bad_request"), Contains("must be a string"));
    CHECK_THAT(error_of(vm, R"({"cmd": null})", "bad_request"), Contains("must be a string"));
    CHECK_THAT(error_of(vm, R"({"cmd": "stop", "argz": {}})", "bad_request"), Contains("unknown key \"argz\""));
    CHECK_THAT(error_of(vm, R"({"cmd": "stop", "args": []})", "bad_request"), Contains("\"args\" must be"));
    CHECK_THAT(error_of(vm, R"({"cmd": "stop", "args": "now"})", "bad_request"), Contains("\"args\" must be"));
    CHECK_THAT(error_of(vm, R"({"cmd": "stop", "args": {"force": true}})", "bad_request"),
               Contains("unknown argument \"force\"") && Contains("takes none"));
    CHECK_THAT(error_of(vm, std::string(100, '[') + std::string(100, ']'), "bad_request"), Contains("nested"));
    CHECK_THAT(error_of(vm, R"({"id": )" + std::string(40, '[') + std::string(40, ']') + R"(, "cmd": "stop"})",
                        "bad_request"),
               Contains("nested"));
    // Duplicate keys: last-wins would answer this "ping" by stopping the VM.
    {
        size_t before = vm.calls.size();
        CHECK_THAT(error_of(vm, R"({"cmd": "ping", "cmd": "stop"})", "bad_request"),
                   Contains("cmd") && Contains("duplicate key"));
        CHECK_THAT(error_of(vm, R"({"cmd": "balloon", "args": {"size": "1G", "size": "2G"}})", "bad_request"),
                   Contains("args.size") && Contains("duplicate key"));
        CHECK(vm.calls.size() == before);  // nothing reached the VM
    }

    std::string u = error_of(vm, R"({"cmd": "Stop"})", "unknown_command");
    CHECK_THAT(u, Contains("\"Stop\""));
    for (const char* c : {"balloon", "counters", "info", "pause", "ping", "power_button", "reboot", "resume",
                          "shutdown", "stop"})
        CHECK_THAT(u, Contains(c));
    error_of(vm, R"({"cmd": ""})", "unknown_command");
    CHECK(vm.seen().empty());
}

TEST_CASE("api: VmControl errors become 'failed'", "[vmm][api]") {
    FakeVm vm;
    vm.fail_with = "the VM is not paused";
    for (const char* cmd : {"info", "pause", "resume", "power_button", "stop", "reboot", "counters"})
        CHECK(error_of(vm, json{{"cmd", cmd}}.dump(), "failed") == "the VM is not paused");
    CHECK(error_of(vm, R"({"cmd": "balloon", "args": {"target": "1G"}})", "failed") == "the VM is not paused");
    CHECK(call(vm, R"({"cmd": "ping"})")["ok"] == true);  // never asks the VM
    vm.fail_with = "bad \xff byte";  // invalid UTF-8 in a message still gives valid JSON
    CHECK_THAT(error_of(vm, R"({"cmd": "pause"})", "failed"), Contains("bad "));
}

TEST_CASE("api: too_long response", "[vmm][api]") {
    json r = json::parse(vmm::too_long_response());
    CHECK(r["ok"] == false);
    CHECK(r["id"].is_null());
    CHECK(r["error"]["code"] == "too_long");
    CHECK_THAT(r["error"]["message"].get<std::string>(), Contains("65536"));
}

// ------------------------------------------------------------- over a socket

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/vmm-api-test-XXXXXX";
        REQUIRE(::mkdtemp(t) != nullptr);
        path = t;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::vector<std::string> entries() const {
        std::vector<std::string> v;
        for (auto& e : std::filesystem::directory_iterator(path)) v.push_back(e.path().filename().string());
        return v;
    }
};

vmm::Fd connect_to(const std::string& path) {
    vmm::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof a.sun_path);
    std::memcpy(a.sun_path, path.data(), path.size());
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};  // a hung server fails the test instead of hanging it
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

void send_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        REQUIRE(n > 0);
        s.remove_prefix(static_cast<size_t>(n));
    }
}

// Reads one line (without '\n'); "" plus eof=true when the server closed.
std::string read_line(int fd, bool* eof = nullptr) {
    std::string s;
    char ch;
    for (;;) {
        ssize_t n = ::recv(fd, &ch, 1, 0);
        if (n <= 0) {
            // EOF, or ECONNRESET after a close with unread input: both mean "closed".
            REQUIRE((n == 0 || errno == ECONNRESET));
            if (eof) *eof = true;
            return s;
        }
        if (ch == '\n') return s;
        s += ch;
    }
}

json request(int fd, std::string_view line) {
    send_all(fd, std::string(line) + "\n");
    bool eof = false;
    std::string r = read_line(fd, &eof);
    REQUIRE(!eof);
    return json::parse(r);
}

// Binds a socket at `path` and closes it without unlinking: what a VMM that
// was killed leaves behind.
void make_stale_socket(const std::string& path) {
    vmm::Fd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd.get(), 1) == 0);
}

}  // namespace

TEST_CASE("api server: socket file, permissions, stop", "[vmm][api]") {
    TempDir dir;
    std::string path = dir.path + "/vm.sock";
    FakeVm vm;
    {
        vmm::ApiServer server(path, vm);
        CHECK(server.path() == path);
        struct stat st{};
        REQUIRE(::lstat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(dir.entries() == std::vector<std::string>{"vm.sock"});  // the private directory is gone
        auto fd = connect_to(path);
        CHECK(request(fd.get(), R"({"id": 1, "cmd": "ping"})") == json{{"id", 1}, {"ok", true}, {"result", json::object()}});
        server.stop();
        CHECK(::access(path.c_str(), F_OK) != 0);  // removed
        bool eof = false;
        read_line(fd.get(), &eof);  // and the connection closed
        CHECK(eof);
        server.stop();  // idempotent
    }
    CHECK(dir.entries().empty());
}

TEST_CASE("api server: refuses a live socket, replaces a stale one", "[vmm][api]") {
    TempDir dir;
    std::string path = dir.path + "/vm.sock";
    FakeVm vm;

    SECTION("live") {
        vmm::ApiServer first(path, vm);
        CHECK_THROWS_WITH(vmm::ApiServer(path, vm), Contains("api socket " + path + " is in use"));
        auto fd = connect_to(path);  // the first one still serves
        CHECK(request(fd.get(), R"({"cmd": "ping"})")["ok"] == true);
        CHECK(dir.entries() == std::vector<std::string>{"vm.sock"});
    }
    SECTION("stale") {
        make_stale_socket(path);
        vmm::ApiServer server(path, vm);
        auto fd = connect_to(path);
        CHECK(request(fd.get(), R"({"cmd": "ping"})")["ok"] == true);
    }
    SECTION("not a socket") {
        std::ofstream(path) << "precious";
        CHECK_THROWS_WITH(vmm::ApiServer(path, vm), Contains("not a socket"));
        std::ifstream in(path);
        std::string s;
        in >> s;
        CHECK(s == "precious");
        CHECK(dir.entries() == std::vector<std::string>{"vm.sock"});
    }
    SECTION("replaced while running: stop() leaves the new file alone") {
        vmm::ApiServer server(path, vm);
        REQUIRE(::unlink(path.c_str()) == 0);
        std::ofstream(path) << "other";
        server.stop();
        CHECK(::access(path.c_str(), F_OK) == 0);
    }
    SECTION("bad paths") {
        CHECK_THROWS_WITH(vmm::ApiServer("", vm), Contains("empty"));
        CHECK_THROWS_WITH(vmm::ApiServer(dir.path + "/" + std::string(120, 'x'), vm), Contains("too long"));
        CHECK_THROWS_AS(vmm::ApiServer(dir.path + "/missing/vm.sock", vm), vmm::Error);
    }
    SECTION("a path whose private directory would not fit in sun_path") {
        // dir + "/.vmm-api-XXXXXX/s" is longer than 107 bytes; dir + "/a" is not.
        std::string deep = dir.path;
        while (deep.size() < 100) deep += "/dddddddd";
        deep.resize(100);
        std::filesystem::create_directories(deep);
        std::string p = deep + "/a";
        REQUIRE(p.size() < 108);
        vmm::ApiServer server(p, vm);
        struct stat st{};
        REQUIRE(::lstat(p.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0600);
        auto fd = connect_to(p);
        CHECK(request(fd.get(), R"({"cmd": "ping"})")["ok"] == true);
    }
}

TEST_CASE("api server: clients", "[vmm][api]") {
    TempDir dir;
    std::string path = dir.path + "/vm.sock";
    FakeVm vm;
    vmm::ApiServer server(path, vm);

    SECTION("two concurrent clients, one of them mid-request") {
        auto a = connect_to(path);
        auto b = connect_to(path);
        send_all(a.get(), R"({"id": "a", "cmd": )");  // a stalls mid-line
        CHECK(request(b.get(), R"({"id": "b", "cmd": "pause"})") ==
              json{{"id", "b"}, {"ok", true}, {"result", json::object()}});
        send_all(a.get(), "\"resume\"}\n");
        CHECK(json::parse(read_line(a.get()))["id"] == "a");
        CHECK(vm.seen() == std::vector<std::string>{"pause", "resume"});
        // Errors leave the connection usable.
        CHECK(request(a.get(), "{oops")["error"]["code"] == "bad_json");
        CHECK(request(a.get(), R"({"id": 3, "cmd": "info"})")["result"]["state"] == "paused");
    }
    SECTION("several requests in one write are answered in order") {
        auto a = connect_to(path);
        send_all(a.get(), "{\"id\":1,\"cmd\":\"ping\"}\n{\"id\":2,\"cmd\":\"nope\"}\r\n{\"id\":3,\"cmd\":\"stop\"}\n");
        CHECK(json::parse(read_line(a.get()))["id"] == 1);
        json r2 = json::parse(read_line(a.get()));
        CHECK(r2["id"] == 2);
        CHECK(r2["error"]["code"] == "unknown_command");
        CHECK(json::parse(read_line(a.get()))["id"] == 3);
        CHECK(vm.seen() == std::vector<std::string>{"stop"});
    }
    SECTION("a line over 64 KiB: too_long, then the connection is closed") {
        auto a = connect_to(path);
        std::string big(vmm::kApiMaxLine + 1, ' ');
        send_all(a.get(), big);
        json r = json::parse(read_line(a.get()));
        CHECK(r["error"]["code"] == "too_long");
        bool eof = false;
        read_line(a.get(), &eof);
        CHECK(eof);
        // A line of exactly 64 KiB is still fine (here: whitespace, then a request).
        auto b = connect_to(path);
        std::string ping = R"({"cmd":"ping"})";
        std::string ok = std::string(vmm::kApiMaxLine - ping.size(), ' ') + ping;
        REQUIRE(ok.size() == vmm::kApiMaxLine);
        CHECK(request(b.get(), ok)["ok"] == true);
    }
    SECTION("a client that disconnects mid-line: nothing is executed") {
        {
            auto a = connect_to(path);
            send_all(a.get(), R"({"cmd": "stop"})");  // no newline
        }
        auto b = connect_to(path);
        CHECK(request(b.get(), R"({"cmd": "ping"})")["ok"] == true);
        CHECK(vm.seen().empty());
    }
    SECTION("a client that half-closes after its request still gets the reply") {
        auto a = connect_to(path);
        send_all(a.get(), "{\"id\": 5, \"cmd\": \"reboot\"}\n");
        ::shutdown(a.get(), SHUT_WR);
        CHECK(json::parse(read_line(a.get()))["id"] == 5);
        bool eof = false;
        read_line(a.get(), &eof);
        CHECK(eof);
    }
    SECTION("clients that never finish a line cannot lock out a new one") {
        // More idle half-line clients than the server keeps: each newcomer
        // takes the place of the one quiet longest, so `vmm ctl` gets in.
        std::vector<vmm::Fd> idle;
        for (int i = 0; i < 300; ++i) {
            idle.push_back(connect_to(path));
            send_all(idle.back().get(), R"({"cmd": "st)");
        }
        auto b = connect_to(path);
        CHECK(request(b.get(), R"({"cmd": "ping"})")["ok"] == true);
        // The earliest idle clients were closed; the latest are still served.
        bool eof = false;
        read_line(idle.front().get(), &eof);
        CHECK(eof);
        send_all(idle.back().get(), "op\"}\n");
        CHECK(json::parse(read_line(idle.back().get()))["ok"] == true);
        CHECK(vm.seen() == std::vector<std::string>{"stop"});
    }
    SECTION("a client that does not read its replies stalls only itself") {
        auto a = connect_to(path);
        int small = 4096;
        ::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        timeval tv{0, 20000};
        ::setsockopt(a.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        std::string ping = "{\"cmd\":\"ping\"}\n";
        std::string batch;
        for (int i = 0; i < 64; ++i) batch += ping;
        size_t sent = 0;
        for (int stalls = 0; stalls < 3;) {  // until the server stops reading from us
            ssize_t n = ::send(a.get(), batch.data(), batch.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += static_cast<size_t>(n);
                if (static_cast<size_t>(n) < batch.size()) {  // finish the partial batch, blocking
                    std::string rest = batch.substr(static_cast<size_t>(n));
                    tv = {5, 0};
                    ::setsockopt(a.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                    send_all(a.get(), rest);
                    sent += rest.size();
                    stalls = 3;
                }
            } else {
                REQUIRE(errno == EAGAIN);
                ++stalls;
                ::usleep(5000);
            }
            REQUIRE(sent < (64u << 20));  // the server must push back long before this
        }
        auto b = connect_to(path);
        CHECK(request(b.get(), R"({"cmd": "info"})")["ok"] == true);
        // Every request is answered, in order, once we read.
        REQUIRE(sent % ping.size() == 0);
        std::string expected;
        std::string one = std::string(R"({"id":null,"ok":true,"result":{}})") + "\n";
        for (size_t i = 0; i < sent / ping.size(); ++i) expected += one;
        std::string got;
        char buf[65536];
        while (got.size() < expected.size()) {
            ssize_t n = ::recv(a.get(), buf, sizeof buf, 0);
            REQUIRE(n > 0);
            got.append(buf, static_cast<size_t>(n));
        }
        CHECK(got == expected);
        CHECK(sent / ping.size() > 64);  // the server did push back only after a while
    }
}

TEST_CASE("ctl: the client", "[vmm][api]") {
    TempDir dir;
    std::string path = dir.path + "/vm.sock";
    FakeVm vm;
    vm.cfg.cpus = 2;
    std::ostringstream out, err;

    SECTION("cannot connect") {
        CHECK(vmm::ctl_main({"--socket", path, "info"}, out, err) == vmm::kCtlNoConnect);
        CHECK_THAT(err.str(), Contains("vmm ctl: error: cannot connect to " + path));
        CHECK(out.str().empty());
        make_stale_socket(path);
        CHECK(vmm::ctl_main({"--socket", path, "ping"}, out, err) == vmm::kCtlNoConnect);
    }
    SECTION("usage errors") {
        CHECK(vmm::ctl_main({"info"}, out, err) == vmm::kCtlError);
        CHECK_THAT(err.str(), Contains("--socket"));
        CHECK(vmm::ctl_main({"--socket", path}, out, err) == vmm::kCtlError);
        CHECK(vmm::ctl_main({"--socket", path, "pause", "now"}, out, err) == vmm::kCtlError);
        CHECK_THAT(err.str(), Contains("pause takes no argument"));
        CHECK(vmm::ctl_main({"--help"}, out, err) == vmm::kCtlOk);
        CHECK_THAT(out.str(), Contains("--socket"));
    }
    SECTION("against a server") {
        vmm::ApiServer server(path, vm);
        CHECK(vmm::ctl_main({"--socket", path, "info"}, out, err) == vmm::kCtlOk);
        json info = json::parse(out.str());
        CHECK(info["state"] == "paused");
        CHECK(info["config"]["machine"]["cpus"] == 2);
        CHECK_THAT(out.str(), Contains("\n  \"state\""));  // pretty
        CHECK(err.str().empty());

        out.str("");
        CHECK(vmm::ctl_main({"balloon", "512M", "--socket", path}, out, err) == vmm::kCtlOk);
        CHECK(vm.balloon == 512ull << 20);
        CHECK(out.str() == "{}\n");

        CHECK(vmm::ctl_main({"--socket", path, "frobnicate"}, out, err) == vmm::kCtlError);
        CHECK_THAT(err.str(), Contains("vmm ctl: error: unknown_command: unknown command \"frobnicate\""));
        err.str("");
        vm.fail_with = "the VM is already paused";
        CHECK(vmm::ctl_main({"--socket", path, "pause"}, out, err) == vmm::kCtlError);
        CHECK(err.str() == "vmm ctl: error: failed: the VM is already paused\n");
        err.str("");
        CHECK(vmm::ctl_main({"--socket", path, "balloon", "lots"}, out, err) == vmm::kCtlError);
        CHECK_THAT(err.str(), Contains("bad_request"));

        json r = vmm::ctl_call(path, {{"id", "x"}, {"cmd", "ping"}});
        CHECK(r == json{{"id", "x"}, {"ok", true}, {"result", json::object()}});
    }
    SECTION("a server that never replies: timeout") {
        // A listening socket nobody accepts on: connect succeeds, no reply comes.
        vmm::Fd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.data(), path.size());
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd.get(), 4) == 0);
        auto t0 = std::chrono::steady_clock::now();
        CHECK_THROWS_WITH(vmm::ctl_call(path, {{"cmd", "ping"}}, 100ms), Contains("timeout: no reply"));
        CHECK(std::chrono::steady_clock::now() - t0 < 2s);
        CHECK(vmm::ctl_main({"--socket", path, "--timeout", "0.1", "ping"}, out, err) == vmm::kCtlError);
        CHECK_THAT(err.str(), Contains("within 0.1 s"));
    }
    SECTION("a --timeout that is not 0.1 to 3600 seconds says so") {
        for (const char* bad : {"abc", "0.05", "5000", "1e", "nan", ""}) {
            std::ostringstream e;
            CHECK(vmm::ctl_main({"--socket", path, "--timeout", bad, "ping"}, out, e) == vmm::kCtlError);
            CHECK_THAT(e.str(), Contains(std::string("--timeout ") + bad + ": expected seconds from 0.1 to 3600"));
        }
    }
}
