// JSON VM configs: strict parsing with positions, the schema walk that
// overlays a document on a VmConfig, and the reverse (--print-config).
// Every message names the document and the JSON path of the bad value.
#include "vmm/config_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <initializer_list>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "vmm/config_check.h"
#include "vmm/core/error.h"
#include "vmm/core/fd.h"

namespace vmm {

using nlohmann::json;

namespace {

constexpr size_t kMaxFileSize = 1 << 20;  // a config is a few hundred bytes; refuse to slurp a disk image
constexpr int kMaxDepth = 16;             // the schema nests 3 deep

// Sections for devices this VMM does not have yet: rejected like unknown
// keys, but saying so instead of suggesting a near miss.
struct Unsupported {
    const char* key;
    const char* device;
};
constexpr Unsupported kUnsupported[] = {
    {"vsock", "virtio-vsock"},
};

// Optimal string alignment distance: edits plus transpositions, so "memroy"
// is one step from "memory".
size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[a.size()][b.size()];
}

// How a value is shown in "got ..." (short; structured values by type).
std::string describe(const json& v) {
    if (v.is_object()) return "an object";
    if (v.is_array()) return "an array";
    std::string s = v.dump();
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
}

// The walk over one document: `source` and the JSON path go into every message.
class Reader {
public:
    Reader(VmConfig& cfg, std::string source) : cfg_(cfg), source_(std::move(source)) {}

    void root(const json& doc) {
        if (!doc.is_object()) fail("{}: expected an object at the top level, got {}", source_, describe(doc));
        keys(doc, "", {"machine", "boot", "disks", "serial", "console", "api", "logging", "run", "devices", "rng",
                       "balloon", "net", "scsi", "serial_ports", "fw_cfg"});
        if (auto* v = find(doc, "machine")) machine(*v);
        if (auto* v = find(doc, "boot")) boot(*v);
        if (auto* v = find(doc, "disks")) disks(*v);
        if (auto* v = find(doc, "scsi")) scsi(*v);
        if (auto* v = find(doc, "serial")) console(*v, "serial", cfg_.serial, cfg_.serial_path);
        if (auto* v = find(doc, "console")) console(*v, "console", cfg_.console, cfg_.console_path);
        if (auto* v = find(doc, "api")) api(*v);
        if (auto* v = find(doc, "logging")) logging(*v);
        if (auto* v = find(doc, "run")) run(*v);
        if (auto* v = find(doc, "devices")) devices(*v);
        if (auto* v = find(doc, "rng")) rng(*v);
        if (auto* v = find(doc, "balloon")) balloon(*v);
        if (auto* v = find(doc, "net")) net(*v);
        if (auto* v = find(doc, "serial_ports")) serial_ports(*v);
        if (auto* v = find(doc, "fw_cfg")) fw_cfg(*v);
        check::distinct_paths({{"serial.path", cfg_.serial_path},
                               {"console.path", cfg_.console_path},
                               {"api.socket", cfg_.api_socket},
                               {"logging.file", cfg_.log_file}},
                              source_);
        check::serial_port_paths(cfg_, source_);
    }

private:
    std::string where(const std::string& path) const { return source_ + ": " + path; }

    static const json* find(const json& obj, const char* key) {
        auto it = obj.find(key);
        return it == obj.end() ? nullptr : &*it;
    }

    // Rejects keys outside `allowed`: a device we lack says so, a near miss
    // gets a suggestion, anything else the list of valid keys.
    void keys(const json& obj, const std::string& path, std::initializer_list<const char*> allowed) const {
        for (auto& [key, value] : obj.items()) {
            if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }) != allowed.end())
                continue;
            std::string at = where(path.empty() ? key : path + "." + key);
            for (auto& u : kUnsupported)
                if (key == u.key) fail("{}: {} is not supported yet", at, u.device);
            const char* best = nullptr;
            size_t best_d = SIZE_MAX;
            for (const char* a : allowed) {
                size_t d = edit_distance(key, a);
                if (d < best_d) best_d = d, best = a;
            }
            if (best && best_d <= 2 && best_d < key.size()) fail("{}: unknown key (did you mean \"{}\"?)", at, best);
            std::string list;
            for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
            fail("{}: unknown key (expected one of {})", at, list);
        }
    }

    const json& object(const json& v, const std::string& path) const {
        if (!v.is_object()) fail("{}: expected an object, got {}", where(path), describe(v));
        return v;
    }

    // A JSON integer >= 0 (no float, no string, no null); the range is the
    // caller's check, lo..hi only make the type error helpful.
    static bool unsigned_value(const json& v, uint64_t& out) {
        if (v.is_number_unsigned()) out = v.get<uint64_t>();
        else if (v.is_number_integer() && v.get<int64_t>() >= 0) out = static_cast<uint64_t>(v.get<int64_t>());
        else return false;
        return true;
    }

    uint64_t integer(const json& v, const std::string& path, uint64_t lo, uint64_t hi) const {
        uint64_t n = 0;
        if (!unsigned_value(v, n)) fail("{}: expected an integer in {}..{}, got {}", where(path), lo, hi, describe(v));
        return n;
    }

    bool boolean(const json& v, const std::string& path) const {
        if (!v.is_boolean()) fail("{}: expected true or false, got {}", where(path), describe(v));
        return v.get<bool>();
    }

    std::string string(const json& v, const std::string& path) const {
        if (!v.is_string()) fail("{}: expected a string, got {}", where(path), describe(v));
        return v.get<std::string>();
    }

    // "none" or an integer in 0..kMaxBootIndex.
    int bootindex(const json& v, const std::string& path) const {
        if (v.is_string() && v.get<std::string>() == "none") return -1;
        if (uint64_t n; unsigned_value(v, n) && n <= static_cast<uint64_t>(check::kMaxBootIndex))
            return static_cast<int>(n);
        fail("{}: expected \"none\" or an integer in 0..{}, got {}", where(path), check::kMaxBootIndex, describe(v));
    }

    // A path that may be "" for "none".
    std::string optional_path(const json& v, const std::string& path) const {
        std::string s = string(v, path);
        if (!s.empty()) check::path(s, where(path));
        return s;
    }

    void machine(const json& v) {
        object(v, "machine");
        keys(v, "machine", {"cpus", "memory", "hugepages"});
        if (auto* c = find(v, "cpus"))
            cfg_.cpus = check::cpus(integer(*c, "machine.cpus", check::kMinCpus, check::kMaxCpus), where("machine.cpus"));
        if (auto* m = find(v, "memory")) {
            std::string at = where("machine.memory");
            uint64_t bytes;
            if (m->is_string()) bytes = check::parse_size(m->get<std::string>(), at);
            else if (!unsigned_value(*m, bytes)) fail("{}: expected a size such as \"512M\" or an integer number of bytes, got {}", at, describe(*m));
            cfg_.memory = check::memory(bytes, at);
        }
        if (auto* h = find(v, "hugepages")) cfg_.hugepages = boolean(*h, "machine.hugepages");
    }

    void boot(const json& v) {
        object(v, "boot");
        keys(v, "boot", {"firmware", "firmware_vars", "order", "kernel", "initramfs", "cmdline"});
        if (auto* o = find(v, "order")) {
            if (!o->is_array()) fail("{}: expected an array such as [\"cdrom\", \"disk\"], got {}", where("boot.order"), describe(*o));
            std::vector<std::string> kinds;
            for (size_t i = 0; i < o->size(); i++)
                kinds.push_back(string((*o)[i], fmt::format("boot.order[{}]", i)));
            // [] (what --print-config writes when no order is set) means none
            cfg_.boot_order = kinds.empty() ? kinds : check::boot_order(kinds, where("boot.order"));
        }
        if (auto* f = find(v, "firmware_vars")) cfg_.firmware_vars = optional_path(*f, "boot.firmware_vars");
        if (auto* f = find(v, "firmware")) {
            std::string fw = string(*f, "boot.firmware");
            cfg_.firmware = fw.empty() ? fw : check::firmware(fw, where("boot.firmware"));
        }
        if (auto* k = find(v, "kernel")) cfg_.kernel = optional_path(*k, "boot.kernel");
        if (auto* i = find(v, "initramfs")) cfg_.initramfs = optional_path(*i, "boot.initramfs");
        if (auto* c = find(v, "cmdline")) cfg_.cmdline = string(*c, "boot.cmdline");
    }

    void disks(const json& v) {
        if (!v.is_array()) fail("{}: expected an array of disks, got {}", where("disks"), describe(v));
        std::vector<DiskConfig> list;
        for (size_t i = 0; i < v.size(); ++i) {
            std::string at = fmt::format("disks[{}]", i);
            const json& d = object(v[i], at);
            keys(d, at, {"path", "readonly", "serial", "num_queues", "direct", "slot", "packed", "bootindex"});
            DiskConfig disk;
            auto* p = find(d, "path");
            if (!p) fail("{}: missing \"path\"", where(at));
            disk.path = check::path(string(*p, at + ".path"), where(at + ".path"));
            if (auto* x = find(d, "readonly")) disk.readonly = boolean(*x, at + ".readonly");
            if (auto* x = find(d, "serial"))
                disk.serial = check::disk_serial(string(*x, at + ".serial"), where(at + ".serial"));
            if (auto* x = find(d, "num_queues"))
                disk.num_queues = check::disk_num_queues(integer(*x, at + ".num_queues", 1, check::kMaxDiskQueues),
                                                         where(at + ".num_queues"));
            if (auto* x = find(d, "direct")) disk.direct = boolean(*x, at + ".direct");
            if (auto* x = find(d, "packed")) disk.packed = boolean(*x, at + ".packed");
            if (auto* x = find(d, "bootindex")) disk.bootindex = bootindex(*x, at + ".bootindex");
            if (auto* x = find(d, "slot")) {
                if (x->is_string() && x->get<std::string>() == "auto") disk.slot = -1;
                else if (uint64_t n; unsigned_value(*x, n)) disk.slot = check::disk_slot(n, where(at + ".slot"));
                else
                    fail("{}: expected \"auto\" or an integer in {}..{}, got {}", where(at + ".slot"), check::kMinSlot,
                         check::kMaxSlot, describe(*x));
            }
            list.push_back(std::move(disk));
        }
        check::disk_list(list, where("disks"));
        cfg_.disks = std::move(list);
    }

    // "scsi": {"disks": [{path, lun, readonly}], "cdroms": [{path, lun}]};
    // each list given replaces that kind of LUN, as --scsi-disk / --cdrom do.
    void scsi(const json& v) {
        object(v, "scsi");
        keys(v, "scsi", {"disks", "cdroms"});
        std::vector<ScsiLunConfig> luns;
        auto list = [&](const char* name, bool cdrom) {
            const json* a = find(v, name);
            if (!a) {
                for (auto& l : cfg_.scsi)
                    if (l.cdrom == cdrom) luns.push_back(l);
                return;
            }
            std::string at0 = fmt::format("scsi.{}", name);
            if (!a->is_array()) fail("{}: expected an array, got {}", where(at0), describe(*a));
            for (size_t i = 0; i < a->size(); ++i) {
                std::string at = fmt::format("{}[{}]", at0, i);
                const json& d = object((*a)[i], at);
                if (cdrom) keys(d, at, {"path", "lun", "bootindex"});
                else keys(d, at, {"path", "lun", "readonly", "bootindex"});
                ScsiLunConfig l;
                l.cdrom = cdrom;
                l.readonly = cdrom;
                auto* p = find(d, "path");
                if (!p) fail("{}: missing \"path\"", where(at));
                l.path = check::path(string(*p, at + ".path"), where(at + ".path"));
                if (auto* x = find(d, "lun")) {
                    if (x->is_string() && x->get<std::string>() == "auto") l.lun = -1;
                    else if (uint64_t n; unsigned_value(*x, n) && n <= check::kMaxScsiLun) l.lun = static_cast<int>(n);
                    else fail("{}: expected \"auto\" or an integer in 0..{}, got {}", where(at + ".lun"),
                              check::kMaxScsiLun, describe(*x));
                }
                if (auto* x = find(d, "readonly")) l.readonly = boolean(*x, at + ".readonly");
                if (auto* x = find(d, "bootindex")) l.bootindex = bootindex(*x, at + ".bootindex");
                luns.push_back(std::move(l));
            }
        };
        list("disks", false);
        list("cdroms", true);
        check::scsi_luns(luns, where("scsi"));
        cfg_.scsi = std::move(luns);
    }

    // "serial" and "console": {mode, path}. Giving a mode without a path
    // clears the path, so a file's tty mode never inherits a stale one.
    void console(const json& v, const std::string& name, SerialMode& mode, std::string& path) {
        object(v, name);
        keys(v, name, {"mode", "path"});
        auto* m = find(v, "mode");
        auto* p = find(v, "path");
        if (m) {
            mode = check::console_mode(string(*m, name + ".mode"), where(name + ".mode"));
            if (!p) path.clear();
        }
        if (p) path = string(*p, name + ".path");
        check::console_path(mode, path, where(p ? name + ".path" : name));
    }

    void api(const json& v) {
        object(v, "api");
        keys(v, "api", {"socket"});
        if (auto* s = find(v, "socket")) cfg_.api_socket = optional_path(*s, "api.socket");
    }

    void logging(const json& v) {
        object(v, "logging");
        keys(v, "logging", {"level", "file"});
        if (auto* l = find(v, "level")) cfg_.log_level = check::log_level(string(*l, "logging.level"), where("logging.level"));
        if (auto* f = find(v, "file")) cfg_.log_file = optional_path(*f, "logging.file");
    }

    void run(const json& v) {
        object(v, "run");
        keys(v, "run", {"timeout_s", "reboot", "boot_report"});
        if (auto* t = find(v, "timeout_s"))
            cfg_.timeout_s = check::timeout(integer(*t, "run.timeout_s", 0, check::kMaxTimeout), where("run.timeout_s"));
        if (auto* r = find(v, "reboot")) cfg_.allow_reboot = boolean(*r, "run.reboot");
        if (auto* b = find(v, "boot_report")) cfg_.boot_report = boolean(*b, "run.boot_report");
    }

    void rng(const json& v) {
        object(v, "rng");
        keys(v, "rng", {"enabled"});
        if (auto* p = find(v, "enabled")) cfg_.rng = boolean(*p, "rng.enabled");
    }

    // "net": [{tap, mac, num_queues, packed}, ...]
    void net(const json& v) {
        if (!v.is_array()) fail("{}: expected an array of interfaces, got {}", where("net"), describe(v));
        std::vector<NetConfig> list;
        for (size_t i = 0; i < v.size(); ++i) {
            std::string at = fmt::format("net[{}]", i);
            const json& n = object(v[i], at);
            keys(n, at, {"tap", "mac", "num_queues", "packed", "bootindex", "rom"});
            NetConfig nc;
            auto* t = find(n, "tap");
            if (!t) fail("{}: missing \"tap\"", where(at));
            nc.tap = check::tap_name(string(*t, at + ".tap"), where(at + ".tap"));
            if (auto* x = find(n, "mac")) nc.mac = check::mac_address(string(*x, at + ".mac"), where(at + ".mac"));
            if (auto* x = find(n, "num_queues"))
                nc.num_queues = check::net_num_queues(integer(*x, at + ".num_queues", 1, check::kMaxNetQueues),
                                                      where(at + ".num_queues"));
            if (auto* x = find(n, "packed")) nc.packed = boolean(*x, at + ".packed");
            if (auto* x = find(n, "bootindex")) nc.bootindex = bootindex(*x, at + ".bootindex");
            if (auto* x = find(n, "rom")) {
                std::string r = string(*x, at + ".rom");
                nc.rom = r == "auto" ? "" : r == "off" ? r : check::path(r, where(at + ".rom"));
            }
            list.push_back(std::move(nc));
        }
        check::net_list(list, where("net"));
        cfg_.nets = std::move(list);
    }

    // "balloon": {size, deflate_on_oom, free_page_reporting, stats_interval_s};
    // null or {"enabled": false} removes it (an object means: present).
    void balloon(const json& v) {
        if (v.is_null()) {
            cfg_.balloon.reset();
            return;
        }
        object(v, "balloon");
        keys(v, "balloon", {"enabled", "size", "deflate_on_oom", "free_page_reporting", "stats_interval_s"});
        if (auto* e = find(v, "enabled"); e && !boolean(*e, "balloon.enabled")) {
            cfg_.balloon.reset();
            return;
        }
        BalloonConfig b = cfg_.balloon.value_or(BalloonConfig{});
        if (auto* m = find(v, "size")) {
            std::string at = where("balloon.size");
            if (m->is_string()) b.size = check::parse_size(m->get<std::string>(), at);
            else if (!unsigned_value(*m, b.size)) fail("{}: expected a size such as \"256M\" or an integer number of bytes, got {}", at, describe(*m));
        }
        if (auto* x = find(v, "deflate_on_oom")) b.deflate_on_oom = boolean(*x, "balloon.deflate_on_oom");
        if (auto* x = find(v, "free_page_reporting")) b.free_page_reporting = boolean(*x, "balloon.free_page_reporting");
        if (auto* x = find(v, "stats_interval_s"))
            b.stats_interval_s = static_cast<uint32_t>(
                check::in_range(integer(*x, "balloon.stats_interval_s", 0, check::kMaxBalloonStatsInterval),
                                where("balloon.stats_interval_s"), 0, check::kMaxBalloonStatsInterval));
        cfg_.balloon = b;
    }

    // "serial_ports": [{"name": ..., "socket" | "file": ...}]; replaces the list.
    void serial_ports(const json& v) {
        if (!v.is_array()) fail("{}: expected an array of serial ports, got {}", where("serial_ports"), describe(v));
        std::vector<SerialPortConfig> list;
        for (size_t i = 0; i < v.size(); ++i) {
            std::string at = fmt::format("serial_ports[{}]", i);
            const json& e = object(v[i], at);
            keys(e, at, {"name", "socket", "file"});
            SerialPortConfig p;
            auto* n = find(e, "name");
            if (!n) fail("{}: missing \"name\"", where(at));
            p.name = check::serial_port_name(string(*n, at + ".name"), where(at + ".name"));
            auto* s = find(e, "socket");
            auto* f = find(e, "file");
            if (!s == !f) fail("{}: give exactly one of \"socket\" and \"file\"", where(at));
            std::string key = s ? "socket" : "file";
            p.mode = s ? SerialMode::Socket : SerialMode::File;
            p.path = check::path(string(s ? *s : *f, at + "." + key), where(at + "." + key));
            list.push_back(std::move(p));
        }
        check::serial_port_list(list, where("serial_ports"));
        cfg_.serial_ports = std::move(list);
    }

    // "fw_cfg": [{"name": "opt/...", "file" | "string": ...}]; replaces the list.
    void fw_cfg(const json& v) {
        if (!v.is_array()) fail("{}: expected an array of fw_cfg items, got {}", where("fw_cfg"), describe(v));
        std::vector<FwCfgItemConfig> list;
        for (size_t i = 0; i < v.size(); ++i) {
            std::string at = fmt::format("fw_cfg[{}]", i);
            const json& e = object(v[i], at);
            keys(e, at, {"name", "file", "string"});
            FwCfgItemConfig f;
            auto* n = find(e, "name");
            if (!n) fail("{}: missing \"name\"", where(at));
            f.name = string(*n, at + ".name");
            auto* file = find(e, "file");
            auto* text = find(e, "string");
            if (!file == !text) fail("{}: give exactly one of \"file\" and \"string\"", where(at));
            if (file) f.file = string(*file, at + ".file");
            else f.text = string(*text, at + ".string");
            list.push_back(std::move(f));
        }
        check::fw_cfg_items(list, where("fw_cfg"));
        cfg_.fw_cfg = std::move(list);
    }

    void devices(const json& v) {
        object(v, "devices");
        keys(v, "devices", {"pvpanic"});
        if (auto* p = find(v, "pvpanic")) cfg_.pvpanic = boolean(*p, "devices.pvpanic");
    }

    VmConfig& cfg_;
    std::string source_;
};

// Tracks where the parser is, to reject duplicate keys (nlohmann keeps the
// last one silently) and absurd nesting with a JSON path.
class StrictCallback {
public:
    explicit StrictCallback(std::string source) : source_(std::move(source)) {}

    bool operator()(int depth, json::parse_event_t event, json& parsed) {
        using E = json::parse_event_t;
        if (depth > kMaxDepth) fail("{}: {}: nested more than {} levels deep", source_, path(), kMaxDepth);
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
    std::vector<Frame> frames_;
};

std::string memory_text(uint64_t bytes) {
    if (bytes && bytes % (1ull << 30) == 0) return fmt::format("{}G", bytes >> 30);
    return fmt::format("{}M", bytes >> 20);
}

}  // namespace

void apply_json(VmConfig& cfg, const json& doc, const std::string& source) {
    // Work on a copy so a bad document leaves cfg untouched.
    VmConfig next = cfg;
    Reader(next, source).root(doc);
    cfg = std::move(next);
}

json parse_config_text(const std::string& text, const std::string& source) {
    try {
        return json::parse(text, StrictCallback(source), true, false);
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
    }
}

VmConfig config_from_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
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

json bootindex_json(int index) { return index < 0 ? json("none") : json(index); }

json config_to_json(const VmConfig& cfg) {
    json disks = json::array();
    for (auto& d : cfg.disks) {
        disks.push_back({{"path", d.path},
                         {"readonly", d.readonly},
                         {"serial", d.serial},
                         {"num_queues", d.num_queues},
                         {"direct", d.direct},
                         {"packed", d.packed},
                         {"slot", d.slot < 0 ? json("auto") : json(d.slot)},
                         {"bootindex", bootindex_json(d.bootindex)}});
    }
    json nets = json::array();
    for (auto& n : cfg.nets)
        nets.push_back({{"tap", n.tap},
                        {"mac", n.mac},
                        {"num_queues", n.num_queues},
                        {"packed", n.packed},
                        {"bootindex", bootindex_json(n.bootindex)},
                        {"rom", n.rom.empty() ? "auto" : n.rom}});
    json scsi_disks = json::array(), scsi_cdroms = json::array();
    for (auto& l : cfg.scsi) {
        json lun = l.lun < 0 ? json("auto") : json(l.lun);
        json boot = bootindex_json(l.bootindex);
        if (l.cdrom) scsi_cdroms.push_back({{"path", l.path}, {"lun", lun}, {"bootindex", boot}});
        else scsi_disks.push_back({{"path", l.path}, {"lun", lun}, {"readonly", l.readonly}, {"bootindex", boot}});
    }
    json fw_cfg = json::array();
    for (auto& f : cfg.fw_cfg)
        fw_cfg.push_back(f.file.empty() ? json{{"name", f.name}, {"string", f.text}} : json{{"name", f.name}, {"file", f.file}});
    json serial_ports = json::array();
    for (auto& p : cfg.serial_ports)
        serial_ports.push_back({{"name", p.name}, {p.mode == SerialMode::File ? "file" : "socket", p.path}});
    // Memory as a size string when it is whole MiB (always, once validated).
    json memory = cfg.memory % (1ull << 20) ? json(cfg.memory) : json(memory_text(cfg.memory));
    return {
        {"machine", {{"cpus", cfg.cpus}, {"memory", memory}, {"hugepages", cfg.hugepages}}},
        {"boot", {{"firmware", cfg.firmware}, {"firmware_vars", cfg.firmware_vars}, {"order", cfg.boot_order}, {"kernel", cfg.kernel}, {"initramfs", cfg.initramfs}, {"cmdline", cfg.cmdline}}},
        {"disks", disks},
        {"serial", {{"mode", check::console_mode_name(cfg.serial)}, {"path", cfg.serial_path}}},
        {"console", {{"mode", check::console_mode_name(cfg.console)}, {"path", cfg.console_path}}},
        {"api", {{"socket", cfg.api_socket}}},
        {"logging", {{"level", cfg.log_level}, {"file", cfg.log_file}}},
        {"run", {{"timeout_s", cfg.timeout_s}, {"reboot", cfg.allow_reboot}, {"boot_report", cfg.boot_report}}},
        {"devices", {{"pvpanic", cfg.pvpanic}}},
        {"rng", {{"enabled", cfg.rng}}},
        {"net", nets},
        {"balloon", cfg.balloon ? json{{"enabled", true},
                                       {"size", cfg.balloon->size},
                                       {"deflate_on_oom", cfg.balloon->deflate_on_oom},
                                       {"free_page_reporting", cfg.balloon->free_page_reporting},
                                       {"stats_interval_s", cfg.balloon->stats_interval_s}}
                                : json{{"enabled", false}}},
        {"scsi", {{"disks", scsi_disks}, {"cdroms", scsi_cdroms}}},
        {"serial_ports", serial_ports},
        {"fw_cfg", fw_cfg},
    };
}

std::string config_to_text(const VmConfig& cfg) {
    return config_to_json(cfg).dump(2) + "\n";
}

}  // namespace vmm
