// JSON VM configs: strict parsing with positions and the file's limits. The
// schema walk that overlays a document on a VmConfig, and the reverse
// (--print-config), are derived from the option table (vmm/options.*).
// Every message names the document and the JSON path of the bad value.
#include "vmm/config_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/core/error.h"
#include "vmm/core/fd.h"
#include "vmm/options.h"

namespace vmm {

using nlohmann::json;

namespace {

constexpr size_t kMaxFileSize = 1 << 20;  // a config is a few hundred bytes; refuse to slurp a disk image
constexpr int kMaxDepth = 16;             // the schema nests 3 deep

// Tracks where the parser is, to reject duplicate keys (nlohmann keeps the
// last one silently) and absurd nesting with a JSON path.
class StrictCallback {
public:
    StrictCallback(std::string source, int max_depth) : source_(std::move(source)), max_depth_(max_depth) {}

    bool operator()(int depth, json::parse_event_t event, json& parsed) {
        using E = json::parse_event_t;
        if (depth > max_depth_) fail("{}: {}: nested more than {} levels deep", source_, path(), max_depth_);
        switch (event) {
            case E::object_start:
            case E::array_start:
                element();
                frames_.push_back(Frame{event == E::array_start, 0, {}, {}});
                break;
            case E::object_end:
            case E::array_end:
                if (!frames_.empty()) frames_.pop_back();
                break;
            case E::key: {
                std::string key = parsed.get<std::string>();
                Frame& f = frames_.back();
                f.key = key;
                if (!f.seen.insert(key).second) fail("{}: {}: duplicate key", source_, path());
                break;
            }
            case E::value:
                element();
                break;
        }
        return true;
    }

private:
    struct Frame {
        bool array;
        size_t count;  // elements begun so far (arrays)
        std::string key;
        std::set<std::string> seen;
    };

    void element() {
        if (!frames_.empty() && frames_.back().array) ++frames_.back().count;
    }

    std::string path() const {
        std::string p;
        for (auto& f : frames_) {
            if (f.array) p += fmt::format("[{}]", f.count ? f.count - 1 : 0);
            else if (!f.key.empty()) p += (p.empty() ? "" : ".") + f.key;
        }
        return p.empty() ? "top level" : p;
    }

    std::string source_;
    int max_depth_;
    std::vector<Frame> frames_;
};

}  // namespace

json parse_strict_json(std::string_view text, const std::string& source, int max_depth) {
    return json::parse(text.begin(), text.end(), StrictCallback(source, max_depth), true, false);
}

void apply_json(VmConfig& cfg, const json& doc, const std::string& source) {
    // Work on a copy so a bad document leaves cfg untouched.
    VmConfig next = cfg;
    options::read_json(next, doc, source);
    cfg = std::move(next);
}

std::string json_error_text(const char* what) {
    std::string s = what;
    if (!s.empty() && s[0] == '[') {
        auto end = s.find("] ");
        if (end != std::string::npos) s.erase(0, end + 2);
    }
    return s;
}

json parse_config_text(const std::string& text, const std::string& source) {
    try {
        return parse_strict_json(text, source, kMaxDepth);
    } catch (const json::parse_error& e) {
        // e.byte is the 1-based offset of the character the parser stopped at.
        size_t at = std::min(e.byte ? e.byte - 1 : 0, text.size());
        size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n'));
        size_t nl = at ? text.rfind('\n', at - 1) : std::string::npos;
        size_t column = nl == std::string::npos ? at + 1 : at - nl;
        // Drop nlohmann's "[json.exception...] parse error at line L, column C: " prefix.
        std::string msg = e.what();
        size_t p = msg.find("parse error");
        p = p == std::string::npos ? std::string::npos : msg.find(": ", p);
        if (p != std::string::npos) msg = msg.substr(p + 2);
        fail("{}: line {}, column {}: {}", source, line, column, msg);
    } catch (const json::exception& e) {
        // The lexer's other errors (out_of_range.406: a number too large
        // even for a double).
        fail("{}: {}", source, json_error_text(e.what()));
    }
}

VmConfig config_from_file(const std::string& path) {
    // O_NONBLOCK: a FIFO fails the regular-file check instead of blocking.
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) throw_errno(path);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) throw_errno(path);
    if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
    if (static_cast<uint64_t>(st.st_size) > kMaxFileSize)
        fail("{}: {} bytes is too large for a config file (at most {})", path, st.st_size, kMaxFileSize);
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno(path);
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxFileSize) fail("{}: too large for a config file (at most {} bytes)", path, kMaxFileSize);
    }
    VmConfig cfg;
    apply_json(cfg, parse_config_text(text, path), path);
    return cfg;
}

json config_to_json(const VmConfig& cfg) { return options::to_json(cfg); }

std::string config_to_text(const VmConfig& cfg) {
    return config_to_json(cfg).dump(2) + "\n";
}

}  // namespace vmm
