// The option table (see options.h) and what is derived from it: the JSON
// schema walk with its unknown-key check, --print-config's emitter, the
// command-line options with their key=value SPEC parsers, and the reference.
//
// The table is a list of nodes, one per top-level JSON key, in the order of
// the schema. A section of scalars ("machine") lists Fields, each with its
// JSON key, a Codec (how the value is read from JSON, parsed from command-
// line text and written back), its reference text and, when it has one, its
// command-line option. A list ("disks") has the same Fields for the keys of
// its elements, which double as the keys of its command-line SPEC.
#include "vmm/options.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "vmm/config_check.h"
#include "vmm/core/error.h"

namespace vmm::options {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------
// Reading JSON values: every message names the document and the JSON path.

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

// Where a value sits: "<source>: <path>" in messages.
struct Loc {
    const std::string* source;
    std::string path;
    std::string at() const { return *source + ": " + path; }
    Loc key(const std::string& k) const { return {source, path.empty() ? k : path + "." + k}; }
    Loc index(size_t i) const { return {source, fmt::format("{}[{}]", path, i)}; }
};

const json* find(const json& obj, const std::string& key) {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

// Rejects keys outside `allowed`: a device we lack says so, a near miss
// gets a suggestion, anything else the list of valid keys.
void check_keys(const json& obj, const Loc& loc, const std::vector<std::string>& allowed) {
    for (auto& [key, value] : obj.items()) {
        if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
        std::string at = loc.key(key).at();
        for (auto& u : kUnsupported)
            if (key == u.key) fail("{}: {} is not supported yet", at, u.device);
        const std::string* best = nullptr;
        size_t best_d = SIZE_MAX;
        for (auto& a : allowed) {
            size_t d = edit_distance(key, a);
            if (d < best_d) best_d = d, best = &a;
        }
        if (best && best_d <= 2 && best_d < key.size()) fail("{}: unknown key (did you mean \"{}\"?)", at, *best);
        std::string list;
        for (auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail("{}: unknown key (expected one of {})", at, list);
    }
}

const json& object(const json& v, const Loc& loc) {
    if (!v.is_object()) fail("{}: expected an object, got {}", loc.at(), describe(v));
    return v;
}

// A JSON integer >= 0 (no float, no string, no null).
bool unsigned_value(const json& v, uint64_t& out) {
    if (v.is_number_unsigned()) out = v.get<uint64_t>();
    else if (v.is_number_integer() && v.get<int64_t>() >= 0) out = static_cast<uint64_t>(v.get<int64_t>());
    else return false;
    return true;
}

// The range is the caller's check; lo..hi only make the type error helpful.
uint64_t integer(const json& v, const Loc& loc, uint64_t lo, uint64_t hi) {
    uint64_t n = 0;
    if (!unsigned_value(v, n)) fail("{}: expected an integer in {}..{}, got {}", loc.at(), lo, hi, describe(v));
    return n;
}

bool boolean(const json& v, const Loc& loc) {
    if (!v.is_boolean()) fail("{}: expected true or false, got {}", loc.at(), describe(v));
    return v.get<bool>();
}

std::string string(const json& v, const Loc& loc) {
    if (!v.is_string()) fail("{}: expected a string, got {}", loc.at(), describe(v));
    std::string s = v.get<std::string>();
    // "\u0000" is valid JSON, but a path, name or command line with a NUL in
    // it would be cut short wherever it reaches C (and in our messages).
    if (auto at = s.find('\0'); at != std::string::npos)
        fail("{}: contains a NUL character (\\u0000) at offset {}", loc.at(), at);
    return s;
}

// ---------------------------------------------------------------------------
// Command-line text.

bool parse_on_off(const std::string& v, const std::string& what) {
    if (v == "on" || v == "true" || v == "1") return true;
    if (v == "off" || v == "false" || v == "0") return false;
    fail("{}: \"{}\" is not on or off", what, v);
}

// "key=value,key=value"; a value cannot contain a comma.
std::vector<std::pair<std::string, std::string>> split_kv(const std::string& spec, const std::string& what) {
    std::vector<std::pair<std::string, std::string>> out;
    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        size_t eq = item.find('=');
        if (item.empty() || eq == std::string::npos || eq == 0)
            fail("{}: \"{}\" is not key=value (in \"{}\")", what, item, spec);
        out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

// --serial / --console: tty, off, file=PATH or socket=PATH.
void parse_console_spec(const std::string& v, const std::string& what, SerialMode& mode, std::string& path) {
    size_t eq = v.find('=');
    std::string name = v.substr(0, eq);
    std::string p = eq == std::string::npos ? "" : v.substr(eq + 1);
    bool known = false;
    for (SerialMode m : {SerialMode::Tty, SerialMode::File, SerialMode::Socket, SerialMode::Off})
        if (name == check::console_mode_name(m)) mode = m, known = true;
    if (!known) fail("{}: \"{}\" is not one of tty, file=PATH, socket=PATH, off", what, v);
    if ((mode == SerialMode::File || mode == SerialMode::Socket) && p.empty())
        fail("{}: \"{}\" needs a path: {}=PATH", what, v, name);
    if (eq != std::string::npos && mode != SerialMode::File && mode != SerialMode::Socket)
        fail("{}: \"{}\" takes no path", what, v);
    check::console_path(mode, p, what);
    path = p;
}

// --boot order=KIND[,KIND...]: a list, so not key=value pairs.
std::vector<std::string> parse_boot(const std::string& spec) {
    const std::string key = "order=";
    if (spec.rfind(key, 0) != 0)
        fail("--boot: expected order=KIND[,KIND...] with kinds cdrom, disk, net (got \"{}\")", spec);
    std::vector<std::string> kinds;
    size_t pos = key.size();
    while (true) {
        size_t comma = spec.find(',', pos);
        kinds.push_back(spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return check::boot_order(kinds, "--boot order");
}

// --firmware bios|uefi|PATH[,vars=PATH] | off
void parse_firmware(const std::string& spec, VmConfig& cfg) {
    cfg.firmware_vars.clear();
    if (spec == "off") {
        cfg.firmware.clear();
        return;
    }
    size_t comma = spec.find(',');
    cfg.firmware = check::firmware(spec.substr(0, comma), "--firmware");
    if (comma == std::string::npos) return;
    for (auto& [k, v] : split_kv(spec.substr(comma + 1), "--firmware")) {
        if (k == "vars") cfg.firmware_vars = check::path(v, "--firmware vars");
        else fail("--firmware: unknown key \"{}\" (expected vars)", k);
    }
}

std::string memory_text(uint64_t bytes) {
    if (bytes && bytes % (1ull << 30) == 0) return fmt::format("{}G", bytes >> 30);
    return fmt::format("{}M", bytes >> 20);
}

// ---------------------------------------------------------------------------
// Codecs: how one value of a T is read from JSON, parsed from command-line
// text (`what` is "--cpus" or "--disk num_queues") and written back
// (nullopt: not written, for one key of an either-or pair).

template <class T>
struct Codec {
    std::function<void(T&, const json&, const Loc&)> read;
    std::function<void(T&, const std::string&, const std::string&)> parse;
    std::function<std::optional<json>(const T&)> emit;
};

template <class T>
Codec<T> boolean_codec(bool T::*m) {
    return {[m](T& t, const json& v, const Loc& l) { t.*m = boolean(v, l); },
            [m](T& t, const std::string& s, const std::string& what) { t.*m = parse_on_off(s, what); },
            [m](const T& t) -> std::optional<json> { return json(t.*m); }};
}

// An integer in lo..hi, then `check` (a config_check rule: range and more).
template <class T, class M, class Check>
Codec<T> uint_codec(M T::*m, uint64_t lo, uint64_t hi, Check check) {
    return {[=](T& t, const json& v, const Loc& l) { t.*m = static_cast<M>(check(integer(v, l, lo, hi), l.at())); },
            [=](T& t, const std::string& s, const std::string& what) {
                t.*m = static_cast<M>(check(check::parse_uint(s, what, lo, hi), what));
            },
            [m](const T& t) -> std::optional<json> { return json(t.*m); }};
}

auto in_range(uint64_t lo, uint64_t hi) {
    return [=](uint64_t n, const std::string& what) { return check::in_range(n, what, lo, hi); };
}

// A size: "512M" or, in JSON, an integer number of bytes too. Written back
// as "512M"/"2G" when `as_text` and whole MiB.
template <class T>
Codec<T> size_codec(uint64_t T::*m, const char* example, uint64_t (*check)(uint64_t, const std::string&),
                    bool as_text) {
    return {[=](T& t, const json& v, const Loc& l) {
                uint64_t bytes;
                if (v.is_string()) bytes = check::parse_size(v.get<std::string>(), l.at());
                else if (!unsigned_value(v, bytes))
                    fail("{}: expected a size such as \"{}\" or an integer number of bytes, got {}", l.at(), example,
                         describe(v));
                t.*m = check ? check(bytes, l.at()) : bytes;
            },
            [=](T& t, const std::string& s, const std::string& what) {
                uint64_t bytes = check::parse_size(s, what);
                t.*m = check ? check(bytes, what) : bytes;
            },
            [=](const T& t) -> std::optional<json> {
                uint64_t n = t.*m;
                return as_text && n % (1ull << 20) == 0 ? json(memory_text(n)) : json(n);
            }};
}

using StringRule = const std::string& (*)(const std::string&, const std::string&);

// A string, checked by `rule` when given (check::path for required paths).
template <class T>
Codec<T> string_codec(std::string T::*m, StringRule rule = nullptr) {
    return {[=](T& t, const json& v, const Loc& l) {
                std::string s = string(v, l);
                t.*m = rule ? rule(s, l.at()) : s;
            },
            [=](T& t, const std::string& s, const std::string& what) { t.*m = rule ? rule(s, what) : s; },
            [m](const T& t) -> std::optional<json> { return json(t.*m); }};
}

// A path that JSON may give as "" for none (the command line may not).
template <class T>
Codec<T> optional_path_codec(std::string T::*m) {
    return {[m](T& t, const json& v, const Loc& l) {
                std::string s = string(v, l);
                if (!s.empty()) check::path(s, l.at());
                t.*m = s;
            },
            [m](T& t, const std::string& s, const std::string& what) { t.*m = check::path(s, what); },
            [m](const T& t) -> std::optional<json> { return json(t.*m); }};
}

// bootindex: "none" (JSON) or 0..kMaxBootIndex; -1 is none.
template <class T>
Codec<T> bootindex_codec(int T::*m) {
    return {[m](T& t, const json& v, const Loc& l) {
                if (v.is_string() && v.get<std::string>() == "none") {
                    t.*m = -1;
                    return;
                }
                if (uint64_t n; unsigned_value(v, n) && n <= static_cast<uint64_t>(check::kMaxBootIndex)) {
                    t.*m = static_cast<int>(n);
                    return;
                }
                fail("{}: expected \"none\" or an integer in 0..{}, got {}", l.at(), check::kMaxBootIndex, describe(v));
            },
            [m](T& t, const std::string& s, const std::string& what) {
                t.*m = static_cast<int>(check::parse_uint(s, what, 0, check::kMaxBootIndex));
            },
            [m](const T& t) -> std::optional<json> { return t.*m < 0 ? json("none") : json(t.*m); }};
}

// "auto" (-1) or an integer in lo..hi; `check`, when given, reports values
// out of range itself. The command line takes "auto" only if `cli_auto`.
template <class T>
Codec<T> auto_codec(int T::*m, uint64_t lo, uint64_t hi, int (*check)(uint64_t, const std::string&), bool cli_auto) {
    return {[=](T& t, const json& v, const Loc& l) {
                uint64_t n;
                if (v.is_string() && v.get<std::string>() == "auto") t.*m = -1;
                else if (unsigned_value(v, n) && check) t.*m = check(n, l.at());
                else if (unsigned_value(v, n) && n >= lo && n <= hi) t.*m = static_cast<int>(n);
                else fail("{}: expected \"auto\" or an integer in {}..{}, got {}", l.at(), lo, hi, describe(v));
            },
            [=](T& t, const std::string& s, const std::string& what) {
                if (cli_auto && s == "auto") {
                    t.*m = -1;
                    return;
                }
                uint64_t n = check::parse_uint(s, what, lo, hi);
                t.*m = check ? check(n, what) : static_cast<int>(n);
            },
            [m](const T& t) -> std::optional<json> { return t.*m < 0 ? json("auto") : json(t.*m); }};
}

// ---------------------------------------------------------------------------
// Declarations.

// The command-line side of an option, or of one key of a SPEC.
struct Cli {
    const char* name = nullptr;     // "--cpus", or a SPEC's key ("path"); nullptr: JSON only
    const char* metavar = nullptr;  // "N", "FILE", "on" (nullptr for flags)
    const char* help = nullptr;     // the --help line (options)
    const char* doc = nullptr;      // the reference's "meaning" (options)
    const char* def = nullptr;      // the reference's default (options); nullptr: from VmConfig{}
    bool invert = false;            // a flag that sets the value false (--no-pvpanic)
};

// One JSON key.
template <class T>
struct Field {
    const char* key;
    Codec<T> codec;
    const char* type;  // for the reference
    const char* doc;   // for the reference
    // Default for the reference: nullptr derives it from T{}; text starting
    // with ':' or ';' is appended to the derived one; other text replaces it.
    const char* def = nullptr;
    Cli cli = {};
};

// A row of the reference's JSON key table.
struct Row {
    std::string key, type, def, doc;
};
// A command-line option: what CLI11 gets, the reference's row, and how its
// values are applied.
struct Option {
    CliOption opt;
    std::string synopsis;  // the reference's option column
    std::string doc, def;  // the reference's meaning and default
    std::function<void(VmConfig&, const std::vector<std::string>&)> apply;
    // Runs after every option of the table is applied, once per `group`
    // (default: the option) of which an option was given: checks over what
    // several options set.
    std::function<void(VmConfig&)> after;
    const char* group = nullptr;
};

std::string code(const std::string& s) { return "`" + s + "`"; }

// The reference default of a field: see Field::def.
template <class T>
std::string field_default(const Field<T>& f, const T& defaults) {
    std::string derived;
    if (auto v = f.codec.emit(defaults)) derived = code(v->dump());
    if (!f.def) return derived;
    if (f.def[0] == ':' || f.def[0] == ';') return derived + f.def;
    return f.def;
}

// --help's default: the JSON default as the command line writes it.
std::string cli_default(const std::optional<json>& v) {
    if (!v) return "";
    if (v->is_string()) return v->get<std::string>();
    if (v->is_number()) return v->dump();
    return "";
}

// " (`--cpus`)" after a key's meaning, unless the text names the option.
std::string with_option(const std::string& doc, const char* name) {
    if (!name || doc.find(std::string("`") + name) != std::string::npos) return doc;
    return doc + " (" + code(name) + ")";
}

// The keys a command-line SPEC of T takes (Field::cli.name): its parser,
// its synopsis and its JSON object counterpart.
template <class T>
struct Spec {
    std::vector<Field<T>> fields;
    const char* required = nullptr;  // key that must be given
    // Keys of which exactly one is given (serial port socket/file).
    const char* one_of[2] = {nullptr, nullptr};
    // One message on the command line when either of those is missing.
    bool joint_missing = false;

    const Field<T>* by_cli(const std::string& k) const {
        for (auto& f : fields)
            if (f.cli.name && k == f.cli.name) return &f;
        return nullptr;
    }
    const Field<T>* by_key(const std::string& k) const {
        for (auto& f : fields)
            if (k == f.key) return &f;
        return nullptr;
    }
    std::string kv(const char* json_key) const {
        auto* f = by_key(json_key);
        return fmt::format("{}={}", f->cli.name, f->cli.metavar);
    }

    // path=FILE[,readonly=on][,serial=ID]...: the first key (and the
    // required one, and the either-or pair) without brackets.
    std::string synopsis() const {
        std::string s;
        bool first = true;
        for (auto& f : fields) {
            if (!f.cli.name) continue;
            std::string item = fmt::format("{}={}", f.cli.name, f.cli.metavar);
            if (one_of[0] && f.key == std::string(one_of[1])) continue;
            if (one_of[0] && f.key == std::string(one_of[0])) item += "|" + kv(one_of[1]);
            bool bare = first || (required && f.key == std::string(required)) ||
                        (one_of[0] && f.key == std::string(one_of[0]));
            s += bare ? (first ? "" : ",") + item : "[," + item + "]";
            first = false;
        }
        return s;
    }

    // key=value,... over `t` (which holds the defaults); errors name `opt`.
    T parse(const std::string& spec, const std::string& opt, T t) const {
        std::set<std::string> given;
        for (auto& [k, v] : split_kv(spec, opt)) {
            const Field<T>* f = by_cli(k);
            if (!f) {
                std::string list;
                for (auto& g : fields)
                    if (g.cli.name) list += (list.empty() ? "" : ", ") + std::string(g.cli.name);
                fail("{}: unknown key \"{}\" (expected {})", opt, k, list);
            }
            if (given.count(f->key)) fail("{} \"{}\": {}= is given twice", opt, spec, k);
            if (one_of[0] && (f->key == std::string(one_of[0]) || f->key == std::string(one_of[1])) &&
                (given.count(one_of[0]) || given.count(one_of[1])))
                fail("{} \"{}\": give one of {} and {}", opt, spec, kv(one_of[0]), kv(one_of[1]));
            given.insert(f->key);
            f->codec.parse(t, v, opt + " " + k);
        }
        if (joint_missing && (!given.count(required) || (!given.count(one_of[0]) && !given.count(one_of[1]))))
            fail("{} \"{}\": {} and {} or {} are required", opt, spec, kv(required), kv(one_of[0]), kv(one_of[1]));
        if (required && !given.count(required)) fail("{} \"{}\": {} is required", opt, spec, kv(required));
        if (one_of[0] && !given.count(one_of[0]) && !given.count(one_of[1]))
            fail("{} \"{}\": {} or {} is required", opt, spec, kv(one_of[0]), kv(one_of[1]));
        return t;
    }

    std::vector<std::string> keys() const {
        std::vector<std::string> k;
        for (auto& f : fields) k.push_back(f.key);
        return k;
    }

    // The JSON object at `at` over `t`.
    T read(const json& v, const Loc& at, T t) const {
        object(v, at);
        check_keys(v, at, keys());
        if (required && !find(v, required)) fail("{}: missing \"{}\"", at.at(), required);
        if (one_of[0] && !find(v, one_of[0]) == !find(v, one_of[1]))
            fail("{}: give exactly one of \"{}\" and \"{}\"", at.at(), one_of[0], one_of[1]);
        for (auto& f : fields)
            if (auto* x = find(v, f.key)) f.codec.read(t, *x, at.key(f.key));
        return t;
    }

    json emit(const T& t) const {
        json o = json::object();
        for (auto& f : fields)
            if (auto v = f.codec.emit(t)) o[f.key] = *v;
        return o;
    }

    void rows(const std::string& prefix, const T& defaults, std::vector<Row>& out) const {
        for (auto& f : fields)
            out.push_back({prefix + f.key, f.type, field_default(f, defaults), f.doc});
    }
};

// One top-level JSON key.
class Node {
public:
    explicit Node(std::string key) : key_(std::move(key)) {}
    virtual ~Node() = default;
    const std::string& key() const { return key_; }
    virtual void read(VmConfig& cfg, const json& v, const Loc& at) const = 0;
    virtual json emit(const VmConfig& cfg) const = 0;
    virtual void rows(std::vector<Row>& out) const = 0;
    virtual void options(std::vector<Option>&) const {}
    virtual void keys(std::vector<std::string>& out) const = 0;

private:
    std::string key_;
};

// A section of scalar options: {"cpus": 1, ...}.
class Section : public Node {
public:
    Section(std::string key, std::vector<Field<VmConfig>> fields) : Node(std::move(key)) {
        spec_.fields = std::move(fields);
    }

    void read(VmConfig& cfg, const json& v, const Loc& at) const override { cfg = spec_.read(v, at, cfg); }
    json emit(const VmConfig& cfg) const override { return spec_.emit(cfg); }
    void rows(std::vector<Row>& out) const override {
        VmConfig defaults;
        for (auto& f : spec_.fields)
            out.push_back({key() + "." + f.key, f.type, field_default(f, defaults), with_option(f.doc, f.cli.name)});
    }
    void keys(std::vector<std::string>& out) const override {
        for (auto& f : spec_.fields) out.push_back(key() + "." + f.key);
    }
    void options(std::vector<Option>& out) const override {
        VmConfig defaults;
        for (auto& f : spec_.fields) {
            if (!f.cli.name) continue;
            bool flag = !f.cli.metavar;
            auto value = f.codec.emit(defaults);
            Option o;
            o.opt = {f.cli.name, flag ? "" : f.cli.metavar, f.cli.help, flag ? "" : cli_default(value), flag, false};
            o.synopsis = flag ? f.cli.name : fmt::format("{} {}", f.cli.name, f.cli.metavar);
            o.doc = f.cli.doc;
            std::string d = cli_default(value);
            o.def = f.cli.def ? f.cli.def : flag ? "off" : d.empty() ? "none" : code(d);
            o.apply = [codec = f.codec, name = std::string(f.cli.name), invert = f.cli.invert](
                          VmConfig& cfg, const std::vector<std::string>& values) {
                std::string v = values.back();
                if (invert) v = parse_on_off(v, name) ? "false" : "true";
                codec.parse(cfg, v, name);
            };
            out.push_back(std::move(o));
        }
    }

private:
    Spec<VmConfig> spec_;
};

// The command-line side of a whole node (lists, consoles, the balloon).
struct NodeCli {
    const char* name;
    const char* metavar;  // nullptr: "SPEC" with the SPEC's synopsis
    const char* help;
    const char* doc;
    const char* def = "none";
};

// A list of objects ("disks": [{...}]) and its repeatable option, whose
// values replace the list.
template <class T>
class List : public Node {
public:
    List(std::string key, std::vector<T> VmConfig::*list, const char* what, Spec<T> spec,
         void (*check)(const std::vector<T>&, const std::string&), NodeCli cli, const char* type, const char* doc)
        : Node(std::move(key)), list_(list), what_(what), spec_(std::move(spec)), check_(check), cli_(cli), type_(type),
          doc_(doc) {}

    void read(VmConfig& cfg, const json& v, const Loc& at) const override {
        if (!v.is_array()) fail("{}: expected an array of {}, got {}", at.at(), what_, describe(v));
        std::vector<T> list;
        for (size_t i = 0; i < v.size(); ++i) list.push_back(spec_.read(v[i], at.index(i), T{}));
        check_(list, at.at());
        cfg.*list_ = std::move(list);
    }
    json emit(const VmConfig& cfg) const override {
        json a = json::array();
        for (auto& t : cfg.*list_) a.push_back(spec_.emit(t));
        return a;
    }
    void rows(std::vector<Row>& out) const override {
        out.push_back({key(), type_, code("[]"), with_option(doc_, cli_.name)});
        spec_.rows(key() + "[].", T{}, out);
    }
    void keys(std::vector<std::string>& out) const override {
        out.push_back(key());
        for (auto& k : spec_.keys()) out.push_back(key() + "[]." + k);
    }
    void options(std::vector<Option>& out) const override {
        std::string syn = spec_.synopsis();
        Option o;
        o.opt = {cli_.name, "SPEC", fmt::format("{}; SPEC: {}", cli_.help, syn), "", false, true};
        o.synopsis = fmt::format("{} {}", cli_.name, syn);
        o.doc = cli_.doc;
        o.def = cli_.def;
        o.apply = [this](VmConfig& cfg, const std::vector<std::string>& values) {
            std::vector<T> list;
            for (auto& v : values) list.push_back(spec_.parse(v, cli_.name, T{}));
            check_(list, cli_.name);
            cfg.*list_ = std::move(list);
        };
        out.push_back(std::move(o));
    }

private:
    std::vector<T> VmConfig::*list_;
    const char* what_;
    Spec<T> spec_;
    void (*check_)(const std::vector<T>&, const std::string&);
    NodeCli cli_;
    const char* type_;
    const char* doc_;
};

// "serial" and "console": {mode, path}, and --serial / --console MODE.
class Console : public Node {
public:
    Console(std::string key, SerialMode VmConfig::*mode, std::string VmConfig::*path, NodeCli cli, Row mode_row,
            Row path_row)
        : Node(std::move(key)), mode_(mode), path_(path), cli_(cli), mode_row_(std::move(mode_row)),
          path_row_(std::move(path_row)) {}

    // Giving a mode without a path clears the path, so a file's tty mode
    // never inherits a stale one.
    void read(VmConfig& cfg, const json& v, const Loc& at) const override {
        object(v, at);
        check_keys(v, at, {"mode", "path"});
        auto* m = find(v, "mode");
        auto* p = find(v, "path");
        if (m) {
            cfg.*mode_ = check::console_mode(string(*m, at.key("mode")), at.key("mode").at());
            if (!p) (cfg.*path_).clear();
        }
        if (p) cfg.*path_ = string(*p, at.key("path"));
        check::console_path(cfg.*mode_, cfg.*path_, p ? at.key("path").at() : at.at());
    }
    json emit(const VmConfig& cfg) const override {
        return {{"mode", check::console_mode_name(cfg.*mode_)}, {"path", cfg.*path_}};
    }
    void rows(std::vector<Row>& out) const override {
        VmConfig d;
        out.push_back({key() + ".mode", mode_row_.type, code(json(check::console_mode_name(d.*mode_)).dump()),
                       with_option(mode_row_.doc, cli_.name)});
        out.push_back({key() + ".path", path_row_.type, code(json(d.*path_).dump()), path_row_.doc});
    }
    void keys(std::vector<std::string>& out) const override {
        out.push_back(key() + ".mode");
        out.push_back(key() + ".path");
    }
    void options(std::vector<Option>& out) const override {
        std::string def = check::console_mode_name(VmConfig{}.*mode_);
        Option o;
        o.opt = {cli_.name, "MODE", cli_.help, def, false, false};
        o.synopsis = fmt::format("{} {}", cli_.name, cli_.metavar);
        o.doc = cli_.doc;
        o.def = code(def);
        o.apply = [this](VmConfig& cfg, const std::vector<std::string>& values) {
            parse_console_spec(values.back(), cli_.name, cfg.*mode_, cfg.*path_);
        };
        out.push_back(std::move(o));
    }

private:
    SerialMode VmConfig::*mode_;
    std::string VmConfig::*path_;
    NodeCli cli_;
    Row mode_row_, path_row_;
};

// "balloon": {enabled, size, ...}; null or {"enabled": false} removes it
// (an object means: present). --balloon SPEC | off.
class Balloon : public Node {
public:
    Balloon(Spec<BalloonConfig> spec, NodeCli cli) : Node("balloon"), spec_(std::move(spec)), cli_(cli) {}

    void read(VmConfig& cfg, const json& v, const Loc& at) const override {
        if (v.is_null()) {
            cfg.balloon.reset();
            return;
        }
        object(v, at);
        check_keys(v, at, spec_.keys());
        if (auto* e = find(v, "enabled"); e && !boolean(*e, at.key("enabled"))) {
            // Settings for a balloon that is not there would be dropped
            // without a word; say so instead.
            for (auto& [k, _] : v.items())
                if (k != "enabled") fail("{}: \"{}\" is set but \"enabled\" is false", at.at(), k);
            cfg.balloon.reset();
            return;
        }
        cfg.balloon = spec_.read(v, at, cfg.balloon.value_or(BalloonConfig{}));
    }
    json emit(const VmConfig& cfg) const override {
        return cfg.balloon ? spec_.emit(*cfg.balloon) : json{{"enabled", false}};
    }
    void rows(std::vector<Row>& out) const override {
        size_t first = out.size();
        spec_.rows("balloon.", BalloonConfig{}, out);
        out[first].doc = with_option(out[first].doc, cli_.name);
    }
    void keys(std::vector<std::string>& out) const override {
        for (auto& k : spec_.keys()) out.push_back("balloon." + k);
    }
    void options(std::vector<Option>& out) const override {
        std::string syn = spec_.synopsis();
        Option o;
        o.opt = {cli_.name, "SPEC", fmt::format("{}; SPEC: {}", cli_.help, syn), "", false, false};
        o.synopsis = fmt::format("{} {}", cli_.name, syn);
        o.doc = cli_.doc;
        o.def = cli_.def;
        o.apply = [this](VmConfig& cfg, const std::vector<std::string>& values) {
            const std::string& v = values.back();
            if (v == "off") cfg.balloon.reset();
            else cfg.balloon = spec_.parse(v, cli_.name, BalloonConfig{});
        };
        out.push_back(std::move(o));
    }

private:
    Spec<BalloonConfig> spec_;
    NodeCli cli_;
};

// An optional object ("cloud_init": {...}): absent unless given; null removes
// it and is what --print-config writes when absent. Its option takes the
// SPEC, or "off" to remove a --config one.
template <class T>
class OptionalObject : public Node {
public:
    OptionalObject(std::string key, std::optional<T> VmConfig::*member, Spec<T> spec, NodeCli cli, const char* doc)
        : Node(std::move(key)), member_(member), spec_(std::move(spec)), cli_(cli), doc_(doc) {}

    // A given object replaces the whole of a --config one: its keys are
    // files that belong together.
    void read(VmConfig& cfg, const json& v, const Loc& at) const override {
        if (v.is_null()) (cfg.*member_).reset();
        else cfg.*member_ = spec_.read(v, at, T{});
    }
    json emit(const VmConfig& cfg) const override { return cfg.*member_ ? spec_.emit(*(cfg.*member_)) : json(); }
    void rows(std::vector<Row>& out) const override {
        out.push_back({key(), "object or `null`", "`null`", with_option(doc_, cli_.name)});
        spec_.rows(key() + ".", T{}, out);
    }
    void keys(std::vector<std::string>& out) const override {
        out.push_back(key());
        for (auto& k : spec_.keys()) out.push_back(key() + "." + k);
    }
    void options(std::vector<Option>& out) const override {
        std::string syn = spec_.synopsis();
        Option o;
        o.opt = {cli_.name, "SPEC", fmt::format("{}; SPEC: {}", cli_.help, syn), "", false, false};
        o.synopsis = fmt::format("{} {}|off", cli_.name, syn);
        o.doc = cli_.doc;
        o.def = cli_.def;
        o.apply = [this](VmConfig& cfg, const std::vector<std::string>& values) {
            const std::string& v = values.back();
            if (v == "off") (cfg.*member_).reset();
            else cfg.*member_ = spec_.parse(v, cli_.name, T{});
        };
        out.push_back(std::move(o));
    }

private:
    std::optional<T> VmConfig::*member_;
    Spec<T> spec_;
    NodeCli cli_;
    const char* doc_;
};

// "scsi": {"disks": [...], "cdroms": [...]}: two lists in VmConfig::scsi,
// disks first; each list given (or option: --scsi-disk, --cdrom) replaces
// only its kind.
class Scsi : public Node {
public:
    struct Kind {
        const char* key;
        Spec<ScsiLunConfig> spec;
        NodeCli cli;
        const char* type;
        const char* doc;
    };
    Scsi(Kind disks, Kind cdroms) : Node("scsi"), kinds_{std::move(disks), std::move(cdroms)} {}

    void read(VmConfig& cfg, const json& v, const Loc& at) const override {
        object(v, at);
        check_keys(v, at, {kinds_[0].key, kinds_[1].key});
        std::vector<ScsiLunConfig> luns;
        for (bool cdrom : {false, true}) {
            const Kind& k = kinds_[cdrom];
            const json* a = find(v, k.key);
            if (!a) {
                for (auto& l : cfg.scsi)
                    if (l.cdrom == cdrom) luns.push_back(l);
                continue;
            }
            Loc list = at.key(k.key);
            if (!a->is_array()) fail("{}: expected an array, got {}", list.at(), describe(*a));
            for (size_t i = 0; i < a->size(); ++i) luns.push_back(k.spec.read((*a)[i], list.index(i), fresh(cdrom)));
        }
        check::scsi_luns(luns, at.at());
        cfg.scsi = std::move(luns);
    }
    json emit(const VmConfig& cfg) const override {
        json out = json::object();
        for (bool cdrom : {false, true}) {
            json a = json::array();
            for (auto& l : cfg.scsi)
                if (l.cdrom == cdrom) a.push_back(kinds_[cdrom].spec.emit(l));
            out[kinds_[cdrom].key] = a;
        }
        return out;
    }
    void rows(std::vector<Row>& out) const override {
        for (bool cdrom : {false, true}) {
            const Kind& k = kinds_[cdrom];
            std::string list = std::string("scsi.") + k.key;
            out.push_back({list, k.type, code("[]"), with_option(k.doc, k.cli.name)});
            k.spec.rows(list + "[].", fresh(cdrom), out);
        }
    }
    void keys(std::vector<std::string>& out) const override {
        for (auto& k : kinds_) {
            out.push_back(std::string("scsi.") + k.key);
            for (auto& f : k.spec.keys()) out.push_back(std::string("scsi.") + k.key + "[]." + f);
        }
    }
    void options(std::vector<Option>& out) const override {
        for (bool cdrom : {false, true}) {
            const Kind& k = kinds_[cdrom];
            std::string syn = k.spec.synopsis();
            Option o;
            // --cdrom FILE is short for path=FILE.
            std::string metavar = k.cli.metavar ? k.cli.metavar : "SPEC";
            o.opt = {k.cli.name, metavar,
                     k.cli.metavar ? fmt::format("{}; {} or {}", k.cli.help, metavar, syn)
                                   : fmt::format("{}; SPEC: {}", k.cli.help, syn),
                     "", false, true};
            o.synopsis = fmt::format("{} {}", k.cli.name, k.cli.metavar ? metavar : syn);
            o.doc = k.cli.doc;
            o.def = k.cli.def;
            o.apply = [this, cdrom](VmConfig& cfg, const std::vector<std::string>& values) {
                const Kind& k = kinds_[cdrom];
                std::vector<ScsiLunConfig> given;
                for (auto& v : values) {
                    // A spec starts with one of its keys (lun=3,path=X); anything
                    // else is a file name.
                    const std::string head = v.substr(0, v.find(','));
                    const size_t eq = head.find('=');
                    const bool spec = eq != std::string::npos && k.spec.by_cli(head.substr(0, eq));
                    if (cdrom && !spec) {
                        given.push_back(fresh(true));
                        given.back().path = check::path(v, k.cli.name);
                    } else {
                        given.push_back(k.spec.parse(v, k.cli.name, fresh(cdrom)));
                    }
                }
                // Disks first, then CD-ROMs: the order in which LUNs are assigned.
                std::vector<ScsiLunConfig> luns;
                for (auto& l : cfg.scsi)
                    if (!l.cdrom && cdrom) luns.push_back(l);
                luns.insert(luns.end(), given.begin(), given.end());
                for (auto& l : cfg.scsi)
                    if (l.cdrom && !cdrom) luns.push_back(l);
                cfg.scsi = std::move(luns);
            };
            // Checked once both are applied: --cdrom may replace a LUN a --scsi-disk conflicts with.
            o.group = "scsi";
            o.after = [](VmConfig& cfg) { check::scsi_luns(cfg.scsi, "--scsi-disk/--cdrom"); };
            out.push_back(std::move(o));
        }
    }

private:
    static ScsiLunConfig fresh(bool cdrom) {
        ScsiLunConfig l;
        l.cdrom = cdrom;
        l.readonly = cdrom;
        return l;
    }
    Kind kinds_[2];
};

// ---------------------------------------------------------------------------
// The table.

const char* const kBootindexType = "integer 0–9999 or `\"none\"`";
const char* const kBootindexDoc =
    "firmware boot order, lower first (`bootindex=`; see [Firmware boot](../README.md#firmware-boot))";

template <class T>
Field<T> bootindex_field(int T::*m) {
    return {.key = "bootindex",
            .codec = bootindex_codec(m),
            .type = kBootindexType,
            .doc = kBootindexDoc,
            .cli = {.name = "bootindex", .metavar = "N"}};
}

std::vector<std::unique_ptr<Node>> make_table() {
    std::vector<std::unique_ptr<Node>> t;
    auto section = [&](const char* key, std::vector<Field<VmConfig>> fields) {
        t.push_back(std::make_unique<Section>(key, std::move(fields)));
    };
    using C = VmConfig;

    section("machine", {
        {.key = "cpus",
         .codec = uint_codec(&C::cpus, check::kMinCpus, check::kMaxCpus, check::cpus),
         .type = "integer 1–254",
         .doc = "vCPUs",
         .cli = {.name = "--cpus", .metavar = "N",
                 .help = "Number of vCPUs (1-254, and no more than KVM allows)",
                 .doc = "vCPUs, 1–254 and no more than the host's KVM allows"}},
        {.key = "memory",
         .codec = size_codec(&C::memory, "512M", check::memory, true),
         .type = "size string (`\"512M\"`, `\"2G\"`; a bare number is MiB) or integer bytes",
         .doc = "guest RAM, 32 MiB–1 TiB, whole MiB",
         .cli = {.name = "--memory", .metavar = "SIZE",
                 .help = "Guest RAM, e.g. 512M, 2G (a bare number is MiB)",
                 .doc = "guest RAM: `512M`, `2G`, `1536MiB`; a bare number is MiB; 32 MiB to 1 TiB, whole MiB"}},
        {.key = "hugepages",
         .codec = boolean_codec(&C::hugepages),
         .type = "bool",
         .doc = "huge pages for guest RAM",
         .cli = {.name = "--hugepages",
                 .help = "Back guest RAM with huge pages (hugetlbfs, MAP_HUGETLB)",
                 .doc = "back guest RAM with huge pages (hugetlbfs, `MAP_HUGETLB`); the host must have enough reserved"}},
        {.key = "rtc_base",
         .codec = {[](C& c, const json& v, const Loc& l) { c.rtc_localtime = check::rtc_base(string(v, l), l.at()); },
                   [](C& c, const std::string& s, const std::string& what) {
                       // --rtc base=utc|localtime (QEMU's spelling; base is the only key)
                       if (!s.starts_with("base="))
                           fail("{}: expected base=utc or base=localtime, got \"{}\"", what, s);
                       c.rtc_localtime = check::rtc_base(s.substr(5), what + " base");
                   },
                   [](const C& c) -> std::optional<json> { return json(c.rtc_localtime ? "localtime" : "utc"); }},
         .type = "`\"utc\"` or `\"localtime\"`",
         .doc = "what the RTC (CMOS clock) shows: the host's time in UTC, or its local time",
         .cli = {.name = "--rtc", .metavar = "base=utc|localtime",
                 .help = "What the guest's RTC shows: UTC (Linux's convention) or the host's local time (Windows')",
                 .doc = "what the guest's RTC (CMOS clock) shows: the host's time in UTC (`utc`, what Linux "
                        "expects) or in the host's time zone (`localtime`, what Windows keeps in its RTC); a time "
                        "the guest sets is kept as an offset from that while the VM runs",
                 .def = "`base=utc`"}},
        {.key = "uuid",
         .codec = string_codec(&C::uuid, check::uuid),
         .type = "string, `\"8-4-4-4-12\"` hex digits",
         .doc = "the machine's UUID (SMBIOS system UUID); `\"\"`: not set (all zero)",
         .cli = {.name = "--uuid", .metavar = "UUID",
                 .help = "The machine's UUID, as SMBIOS gives it to the guest (dmidecode, "
                         "/sys/class/dmi/id/product_uuid)",
                 .doc = "the machine's UUID (`01234567-89ab-cdef-0123-456789abcdef`), the SMBIOS system UUID the "
                        "guest reads (`dmidecode -s system-uuid`, `/sys/class/dmi/id/product_uuid`)",
                 .def = "none: all zero (\"not set\")"}},
    });

    section("boot", {
        {.key = "firmware",
         .codec = {[](C& c, const json& v, const Loc& l) {
                       std::string fw = string(v, l);
                       c.firmware = fw.empty() ? fw : check::firmware(fw, l.at());
                   },
                   [](C& c, const std::string& s, const std::string&) { parse_firmware(s, c); },
                   [](const C& c) -> std::optional<json> { return json(c.firmware); }},
         .type = "string",
         .doc = "`\"bios\"`, `\"uefi\"` or a firmware image path; `\"\"`: direct kernel boot",
         .cli = {.name = "--firmware", .metavar = "bios|uefi|PATH[,vars=PATH]",
                 .help = "Boot through firmware: bios (Debian's SeaBIOS), uefi (Debian's OVMF) or the path of a "
                         "firmware image; vars=PATH keeps UEFI variables there; it boots the disks and CD-ROMs, or "
                         "--kernel; off undoes a --config setting",
                 .doc = "boot through firmware instead of a kernel: `bios` is Debian's SeaBIOS "
                        "(`/usr/share/seabios/bios-256k.bin`, else `bios.bin`), `uefi` Debian's OVMF "
                        "(`/usr/share/OVMF/OVMF_CODE_4M.fd`; `vars=PATH` keeps its UEFI variables), or the path of a "
                        "firmware image; it boots the first `--cdrom`, else the first disk, unless `bootindex=` says "
                        "otherwise (see [Firmware boot](../README.md#firmware-boot)); `off` undoes a `--config` setting",
                 .def = "none: direct kernel boot"}},
        {.key = "firmware_vars",
         .codec = optional_path_codec(&C::firmware_vars),
         .type = "string",
         .doc = "UEFI variable store (`--firmware ...,vars=PATH`); `\"\"`: a throwaway copy"},
        {.key = "order",
         .codec = {[](C& c, const json& o, const Loc& l) {
                       if (!o.is_array())
                           fail("{}: expected an array such as [\"cdrom\", \"disk\"], got {}", l.at(), describe(o));
                       std::vector<std::string> kinds;
                       for (size_t i = 0; i < o.size(); i++) kinds.push_back(string(o[i], l.index(i)));
                       // [] (what --print-config writes when no order is set) means none
                       c.boot_order = kinds.empty() ? kinds : check::boot_order(kinds, l.at());
                   },
                   [](C& c, const std::string& s, const std::string&) { c.boot_order = parse_boot(s); },
                   [](const C& c) -> std::optional<json> { return json(c.boot_order); }},
         .type = "array of `\"cdrom\"`, `\"disk\"`, `\"net\"`",
         .doc = "firmware boot order by device kind for the devices without a `bootindex`",
         .cli = {.name = "--boot", .metavar = "order=KIND[,KIND...]",
                 .help = "Firmware boot order by device kind, for the devices without bootindex= (those with one go "
                         "first): e.g. order=cdrom,disk,net",
                 .doc = "firmware boot order by device kind (`cdrom`, `disk`, `net`) for the devices without "
                        "`bootindex=`, which get numbers after the largest explicit one (see [Firmware "
                        "boot](../README.md#firmware-boot))"}},
        {.key = "kernel",
         .codec = optional_path_codec(&C::kernel),
         .type = "string",
         .doc = "bzImage or PVH vmlinux",
         .def = "none: required here or as `--kernel` unless `boot.firmware` is set",
         .cli = {.name = "--kernel", .metavar = "PATH",
                 .help = "Guest kernel: a bzImage (64-bit boot protocol >= 2.12) or a vmlinux ELF with a PVH entry "
                         "note (required without --firmware, here or as boot.kernel in --config)",
                 .doc = "bzImage (boot protocol >= 2.12 with 64-bit entry) or vmlinux ELF with a PVH entry note "
                        "(`XEN_ELFNOTE_PHYS32_ENTRY`); with `--firmware`, a bzImage the firmware boots (protocol >= 2.02)",
                 .def = "required without `--firmware` (here or as `boot.kernel`)"}},
        {.key = "initramfs",
         .codec = optional_path_codec(&C::initramfs),
         .type = "string",
         .doc = "initial ramdisk",
         .cli = {.name = "--initramfs", .metavar = "PATH",
                 .help = "Initial ramdisk loaded for the kernel",
                 .doc = "initial ramdisk, placed as high as the kernel allows below the 32-bit hole"}},
        {.key = "cmdline",
         .codec = string_codec(&C::cmdline),
         .type = "string",
         .doc = "kernel command line",
         .cli = {.name = "--cmdline", .metavar = "STR",
                 .help = "Kernel command line",
                 .doc = "kernel command line (length checked against the kernel's limit)"}},
    });

    Spec<DiskConfig> disk;
    disk.required = "path";
    disk.fields = {
        {.key = "path", .codec = string_codec(&DiskConfig::path, check::path), .type = "string, required",
         .doc = "raw image or block device", .def = "", .cli = {.name = "path", .metavar = "FILE"}},
        {.key = "readonly", .codec = boolean_codec(&DiskConfig::readonly), .type = "bool", .doc = "open read-only",
         .cli = {.name = "readonly", .metavar = "on"}},
        {.key = "serial", .codec = string_codec(&DiskConfig::serial, check::disk_serial),
         .type = "string, ≤ 20 printable characters", .doc = "disk serial (GET_ID)",
         .cli = {.name = "serial", .metavar = "ID"}},
        {.key = "num_queues",
         .codec = uint_codec(&DiskConfig::num_queues, 1, check::kMaxDiskQueues, check::disk_num_queues),
         .type = "integer 1–64", .doc = "request queues, one I/O thread each",
         .cli = {.name = "num_queues", .metavar = "N"}},
        {.key = "direct", .codec = boolean_codec(&DiskConfig::direct), .type = "bool", .doc = "O_DIRECT",
         .cli = {.name = "direct", .metavar = "on"}},
        {.key = "poll_us",
         .codec = uint_codec(&DiskConfig::poll_us, 0, check::kMaxPollUs, in_range(0, check::kMaxPollUs)),
         .type = "integer 0–1000", .doc = "I/O thread busy polling before it sleeps, µs; 0: off",
         .cli = {.name = "poll_us", .metavar = "US"}},
        {.key = "format", .codec = string_codec(&DiskConfig::format, check::disk_format),
         .type = "`\"auto\"`, `\"raw\"`, `\"qcow2\"`", .doc = "image format; `auto`: qcow2 if the file starts with "
         "the qcow2 magic, else raw", .def = "`\"auto\"`", .cli = {.name = "format", .metavar = "auto|raw|qcow2"}},
        {.key = "snapshot", .codec = boolean_codec(&DiskConfig::snapshot), .type = "bool",
         .doc = "writes go to a throwaway overlay, deleted at exit; the image stays untouched",
         .cli = {.name = "snapshot", .metavar = "on"}},
        {.key = "slot", .codec = auto_codec(&DiskConfig::slot, check::kMinSlot, check::kMaxSlot, check::disk_slot, true),
         .type = "integer 1–31 or `\"auto\"`", .doc = "PCI slot; no slot twice", .cli = {.name = "slot", .metavar = "N"}},
        {.key = "packed", .codec = boolean_codec(&DiskConfig::packed), .type = "bool",
         .doc = "offer the packed virtqueue layout", .cli = {.name = "packed", .metavar = "off"}},
        bootindex_field(&DiskConfig::bootindex),
    };
    t.push_back(std::make_unique<List<DiskConfig>>(
        "disks", &C::disks, "disks", std::move(disk), check::disk_list,
        NodeCli{.name = "--disk", .metavar = nullptr,
                .help = "virtio-blk disk (repeatable; /dev/vda, vdb, ... in order; replaces the --config disks)",
                .doc = "a virtio-blk disk from a raw or qcow2 image or a host block device; repeatable, the guest sees "
                       "`/dev/vda`, `vdb`, ... in order. `readonly=on` opens it read-only (writes fail in the guest); "
                       "`serial` (up to 20 printable characters) is what `/sys/block/vdX/serial` shows; `num_queues` "
                       "(1–64) gives one I/O thread per queue; `direct=on` bypasses the host page cache (O_DIRECT, raw "
                       "images only); `format` is `raw`, `qcow2` or `auto` (the default: qcow2 when the file starts "
                       "with the qcow2 magic, so a qcow2 image is never written as raw); `snapshot=on` leaves the image "
                       "untouched and sends the guest's writes to an unnamed overlay in `$TMPDIR` (default `/var/tmp`) "
                       "that disappears at exit, also after SIGKILL (see [Disk images](../README.md#disk-images)); "
                       "`poll_us` is how long each I/O thread busy-polls the queue and the host's completions "
                       "before it sleeps (default 32, as QEMU's iothreads; 0 turns polling off, see "
                       "[docs/benchmarks.md](benchmarks.md)); `slot` picks the PCI slot (1–31, or `auto`); `packed=off` stops offering the packed virtqueue "
                       "layout, so the driver uses the split ring (for drivers that mishandle packed rings); "
                       "`bootindex` (0–9999) orders the devices a `--firmware` boot tries, lower first. At most 24 "
                       "disks. The image is locked (OFD lock), so a second VMM cannot open it writable. Given at all, "
                       "the `--disk` options replace the `--config` file's disk list"},
        "array of disk objects", "virtio-blk disks, `/dev/vda`, `vdb`, ... in order; at most 24"));

    t.push_back(std::make_unique<Console>(
        "serial", &C::serial, &C::serial_path,
        NodeCli{.name = "--serial", .metavar = "tty|file=PATH|socket=PATH|off",
                .help = "COM1 (ttyS0): tty (this terminal, with input), file=PATH, socket=PATH (a UNIX socket the VMM "
                        "listens on), or off",
                .doc = "where COM1 (`ttyS0`) goes: this terminal (raw mode, with input), a file, a UNIX socket the VMM "
                       "listens on (one client at a time gets the output and may type), or nowhere"},
        Row{"", "`\"tty\"`, `\"file\"`, `\"socket\"`, `\"off\"`", "", "where COM1 goes"},
        Row{"", "string", "",
            "the file or socket; required for `file`/`socket`, must be `\"\"` otherwise. Giving `mode` without "
                   "`path` clears it"}));
    t.push_back(std::make_unique<Console>(
        "console", &C::console, &C::console_path,
        NodeCli{.name = "--console", .metavar = "tty|file=PATH|socket=PATH|off",
                .help = "virtio-console (the guest's hvc0; use console=hvc0): tty (this terminal, with input), "
                        "file=PATH, socket=PATH, or off",
                .doc = "virtio-console port 0, the guest's `hvc0` (boot with `console=hvc0`): this terminal (then "
                       "terminal input goes here, not to COM1), a file, a UNIX socket as for `--serial`, or none"},
        Row{"", "as `serial.mode`", "", "virtio-console, the guest's `hvc0`"},
        Row{"", "string", "", "as `serial.path`"}));

    section("api", {
        {.key = "socket",
         .codec = optional_path_codec(&C::api_socket),
         .type = "string",
         .doc = "control API UNIX socket",
         .cli = {.name = "--api-socket", .metavar = "PATH",
                 .help = "Serve the control API on this UNIX socket",
                 .doc = "serve the control API on this UNIX socket"}},
    });

    section("logging", {
        {.key = "level",
         .codec = string_codec(&C::log_level, check::log_level),
         .type = "`\"error\"`, `\"warn\"`, `\"info\"`, `\"debug\"`",
         .doc = "VMM log level",
         .cli = {.name = "--log-level", .metavar = "LEVEL",
                 .help = "VMM log level: error, warn, info, debug",
                 .doc = "`error`, `warn`, `info`, `debug` for the VMM's own messages"}},
        {.key = "file",
         .codec = optional_path_codec(&C::log_file),
         .type = "string",
         .doc = "VMM log file",
         .def = ": stderr",
         .cli = {.name = "--log-file", .metavar = "PATH",
                 .help = "Write the VMM's own messages to PATH (default: stderr)",
                 .doc = "write the VMM's own messages to this file instead of stderr",
                 .def = "stderr"}},
    });

    section("security", {
        {.key = "seccomp",
         .codec = string_codec(&C::seccomp, check::seccomp_mode),
         .type = "`\"on\"`, `\"log\"`, `\"off\"`",
         .doc = "seccomp filter per thread role",
         .cli = {.name = "--seccomp", .metavar = "on|log|off",
                 .help = "Confine each thread with its role's seccomp filter: on (a forbidden call stops the VMM "
                         "with status 1), log (allowed, logged by the kernel), off",
                 .doc = "confine every thread with its role's system-call allow-list (see "
                        "[Security](../README.md#security)): `on` stops the VMM with status 1 and a report "
                        "naming the thread and the call on a forbidden call, `log` lets it through and has the "
                        "kernel log it (audit, `dmesg`), `off` installs no filter"}},
    });

    section("run", {
        {.key = "timeout_s",
         .codec = uint_codec(&C::timeout_s, 0, check::kMaxTimeout, check::timeout),
         .type = "integer ≥ 0",
         .doc = "stop after this many seconds, exit 5",
         .def = ": never",
         .cli = {.name = "--timeout", .metavar = "SECONDS",
                 .help = "Stop the VM after SECONDS (exit status 5); 0: never",
                 .doc = "stop the VM after this many seconds from the VMM's start (exit status 5), across `--reboot` "
                        "restarts too; `0` never"}},
        {.key = "reboot",
         .codec = boolean_codec(&C::allow_reboot),
         .type = "bool",
         .doc = "restart when the guest reboots",
         .cli = {.name = "--reboot",
                 .help = "Restart the VM when the guest reboots (default: exit with status 2)",
                 .doc = "restart the VM when the guest reboots",
                 .def = "off: exit 2"}},
        {.key = "boot_report",
         .codec = boolean_codec(&C::boot_report),
         .type = "bool",
         .doc = "boot timing on stderr",
         .cli = {.name = "--boot-report",
                 .help = "Print boot timing (first KVM_RUN, boot-progress port writes) to stderr",
                 .doc = "print boot timing to stderr (see [Boot timing](../README.md#boot-timing))"}},
    });

    section("devices", {
        {.key = "pvpanic",
         .codec = boolean_codec(&C::pvpanic),
         .type = "bool",
         .doc = "pvpanic device (`--no-pvpanic` sets `false`)",
         .cli = {.name = "--no-pvpanic",
                 .help = "Leave out the pvpanic device (a guest panic then does not end the VMM with status 3)",
                 .doc = "leave out the pvpanic device (then a guest panic only shows as whatever `panic=` makes the "
                        "guest do)",
                 .def = "pvpanic on: a guest panic exits 3",
                 .invert = true}},
    });

    section("rng", {
        {.key = "enabled",
         .codec = boolean_codec(&C::rng),
         .type = "bool",
         .doc = "virtio-rng device",
         .cli = {.name = "--rng",
                 .help = "Add a virtio-rng device (the guest's /dev/hwrng, fed by getrandom())",
                 .doc = "add a virtio-rng device: the guest's `/dev/hwrng` (`virtio_rng` driver), filled from the "
                        "host's `getrandom()`",
                 .def = "none"}},
    });

    Spec<BalloonConfig> balloon;
    using B = BalloonConfig;
    balloon.fields = {
        {.key = "enabled",
         .codec = {[](B&, const json&, const Loc&) {}, nullptr, [](const B&) -> std::optional<json> { return json(true); }},
         .type = "bool",
         .doc = "virtio-balloon device; `false` (or `\"balloon\": null`) removes it",
         .def = "`false`; `true` when the `balloon` section is given"},
        {.key = "size", .codec = size_codec(&B::size, "256M", nullptr, false),
         .type = "size string or integer bytes",
         .doc = "initial balloon size, whole 4 KiB pages, leaving the guest at least 32 MiB",
         .cli = {.name = "size", .metavar = "SIZE"}},
        {.key = "deflate_on_oom", .codec = boolean_codec(&B::deflate_on_oom), .type = "bool",
         .doc = "the guest may deflate when out of memory", .cli = {.name = "deflate_on_oom", .metavar = "on"}},
        {.key = "free_page_reporting", .codec = boolean_codec(&B::free_page_reporting), .type = "bool",
         .doc = "free page reporting", .cli = {.name = "free_page_reporting", .metavar = "on"}},
        {.key = "stats_interval_s",
         .codec = uint_codec(&B::stats_interval_s, 0, check::kMaxBalloonStatsInterval,
                             in_range(0, check::kMaxBalloonStatsInterval)),
         .type = "integer 0–3600", .doc = "guest memory statistics refresh period; `0`: once",
         .cli = {.name = "stats_interval", .metavar = "SECONDS"}},
    };
    t.push_back(std::make_unique<Balloon>(
        std::move(balloon),
        NodeCli{.name = "--balloon", .metavar = nullptr,
                .help = "virtio-balloon with this initial size (change it at run time with the API's balloon "
                        "command; off removes a --config balloon)",
                .doc = "add a virtio-balloon device (see [Memory balloon](../README.md#memory-balloon)). `size` is "
                       "the balloon's initial size, the memory taken from the guest at boot (a whole number of 4 KiB "
                       "pages, leaving the guest at least 32 MiB; `0` for an empty balloon); change it at run time "
                       "with the API's `balloon` command. `deflate_on_oom=on` lets the guest shrink the balloon when "
                       "it runs out of memory; `free_page_reporting=on` makes the guest report freed memory, which the "
                       "VMM gives back to the host; `stats_interval` (0–3600, default 5) is how often the guest's "
                       "memory statistics are refreshed, `0` only once at boot. `--balloon off` removes a `--config` "
                       "balloon"}));

    Spec<NetConfig> net;
    net.required = "tap";
    using N = NetConfig;
    net.fields = {
        {.key = "tap", .codec = string_codec(&N::tap, check::tap_name), .type = "string, required",
         .doc = "host tap interface (1–15 characters)", .def = "", .cli = {.name = "tap", .metavar = "NAME"}},
        {.key = "mac", .codec = string_codec(&N::mac, check::mac_address), .type = "`\"52:54:00:12:34:56\"`",
         .doc = "guest MAC address, unicast", .def = ": derived from the tap name",
         .cli = {.name = "mac", .metavar = "MAC"}},
        {.key = "num_queues", .codec = uint_codec(&N::num_queues, 1, check::kMaxNetQueues, check::net_num_queues),
         .type = "integer 1–16", .doc = "queue pairs", .cli = {.name = "num_queues", .metavar = "N"}},
        {.key = "packed", .codec = boolean_codec(&N::packed), .type = "bool", .doc = "offer the packed virtqueue layout",
         .cli = {.name = "packed", .metavar = "off"}},
        bootindex_field(&N::bootindex),
        {.key = "rom",
         .codec = {[](N& n, const json& v, const Loc& l) {
                       std::string r = string(v, l);
                       n.rom = r == "auto" ? "" : r == "off" ? r : check::path(r, l.at());
                   },
                   [](N& n, const std::string& v, const std::string& what) {
                       n.rom = v == "auto" ? "" : v == "off" ? v : check::path(v, what);
                   },
                   [](const N& n) -> std::optional<json> { return json(n.rom.empty() ? "auto" : n.rom); }},
         .type = "`\"auto\"`, `\"off\"` or a path",
         .doc = "PCI expansion ROM for network boot under firmware (`rom=`); `\"auto\"`: Debian's iPXE when installed",
         .cli = {.name = "rom", .metavar = "auto|off|PATH"}},
    };
    t.push_back(std::make_unique<List<NetConfig>>(
        "net", &C::nets, "interfaces", std::move(net), check::net_list,
        NodeCli{.name = "--net", .metavar = nullptr,
                .help = "virtio-net interface on a host tap (repeatable; the tap is created if missing, which needs "
                        "CAP_NET_ADMIN; replaces the --config list)",
                .doc = "a virtio-net interface (the guest's `eth0`, `eth1`, ... in order) on the host tap `NAME`, see "
                       "[Networking](../README.md#networking). The VMM attaches to the tap, creating it if it does not "
                       "exist (that needs `CAP_NET_ADMIN`); `mac` is the guest's address (default `52:54:00` plus "
                       "three bytes derived from the tap name, so it is stable); `num_queues` (1–16) is the number of "
                       "queue pairs, each with its own I/O thread and tap queue (a multi-queue tap); `packed=off` stops "
                       "offering the packed virtqueue layout, as for `--disk`; `bootindex` and `rom` are for network "
                       "boot through `--firmware` (see [Firmware boot](../README.md#firmware-boot): `rom` is the PCI "
                       "expansion ROM, by default Debian's iPXE). Repeatable, at most 8; given at all, replaces the "
                       "`--config` file's list"},
        "array of interface objects", "virtio-net interfaces, `eth0`, `eth1`, ... in order; at most 8"));

    using L = ScsiLunConfig;
    Spec<L> scsi_disk;
    scsi_disk.required = "path";
    scsi_disk.fields = {
        {.key = "path", .codec = string_codec(&L::path, check::path), .type = "string, required",
         .doc = "raw image or block device", .def = "", .cli = {.name = "path", .metavar = "FILE"}},
        {.key = "lun", .codec = auto_codec(&L::lun, 0, check::kMaxScsiLun, nullptr, false),
         .type = "integer 0–16383 or `\"auto\"`",
         .doc = "LUN on target 0; `auto`: the lowest free one (disks first, then CD-ROMs)",
         .cli = {.name = "lun", .metavar = "N"}},
        {.key = "readonly", .codec = boolean_codec(&L::readonly), .type = "bool",
         .doc = "open read-only (writes get DATA PROTECT)", .cli = {.name = "readonly", .metavar = "on"}},
        bootindex_field(&L::bootindex),
        {.key = "direct", .codec = boolean_codec(&L::direct), .type = "bool",
         .doc = "O_DIRECT: bypass the host page cache, as `disks[].direct`", .cli = {.name = "direct", .metavar = "on"}},
        {.key = "format", .codec = string_codec(&L::format, check::disk_format),
         .type = "`\"auto\"`, `\"raw\"`, `\"qcow2\"`", .doc = "image format, as `disks[].format`",
         .def = "`\"auto\"`", .cli = {.name = "format", .metavar = "auto|raw|qcow2"}},
        {.key = "snapshot", .codec = boolean_codec(&L::snapshot), .type = "bool",
         .doc = "throwaway overlay, as `disks[].snapshot`", .cli = {.name = "snapshot", .metavar = "on"}},
    };
    Spec<L> cdrom;
    cdrom.required = "path";
    cdrom.fields = {scsi_disk.fields[0], scsi_disk.fields[1], scsi_disk.fields[3], scsi_disk.fields[5]};
    cdrom.fields[0].doc = "ISO image";
    cdrom.fields[1].doc = "as `scsi.disks[].lun`; no LUN twice across both lists";
    t.push_back(std::make_unique<Scsi>(
        Scsi::Kind{"disks", std::move(scsi_disk),
                   NodeCli{.name = "--scsi-disk", .metavar = nullptr,
                           .help = "virtio-scsi disk (repeatable; one controller, target 0; LUNs in order when not "
                                   "given; replaces the --config scsi.disks)",
                           .doc = "a disk on the virtio-scsi controller (raw or qcow2 image or host block device, 512-byte "
                                  "blocks); repeatable. All `--scsi-disk` and `--cdrom` LUNs share one controller (one "
                                  "PCI slot), target 0; without `lun=` (0–16383) each takes the lowest free LUN, disks "
                                  "first, then CD-ROMs; a LUN given twice is an error; `direct=on` bypasses the host "
                                  "page cache (O_DIRECT); `format` and `snapshot` as for `--disk`. At most 1024 LUNs. The guest sees `/dev/sdX` (`virtio_scsi`, `sd_mod`). Given at all, replaces the `--config` "
                                  "file's `scsi.disks` (see [SCSI disks and CD-ROMs](../README.md#scsi-disks-and-cd-roms))"},
                   "array of SCSI disk objects", "disks on the virtio-scsi controller"},
        Scsi::Kind{"cdroms", std::move(cdrom),
                   NodeCli{.name = "--cdrom", .metavar = "FILE",
                           .help = "virtio-scsi CD-ROM (read-only, 2048-byte blocks; repeatable; replaces the "
                                   "--config scsi.cdroms)",
                           .doc = "a read-only CD-ROM on the virtio-scsi controller: `FILE` (an ISO image) or "
                                  "`path=FILE[,lun=N][,bootindex=N][,format=F]`; 2048-byte blocks, medium always present; the "
                                  "guest sees `/dev/srN` (`sr_mod`). Repeatable; replaces the `--config` file's "
                                  "`scsi.cdroms`"},
                   "array of CD-ROM objects", "read-only CD-ROMs on the same controller"}));

    Spec<SerialPortConfig> port;
    port.required = "name";
    port.one_of[0] = "socket";
    port.one_of[1] = "file";
    using P = SerialPortConfig;
    auto port_path = [](SerialMode mode) -> Codec<P> {
        return {[mode](P& p, const json& v, const Loc& l) {
                    p.mode = mode;
                    p.path = check::path(string(v, l), l.at());
                },
                [mode](P& p, const std::string& s, const std::string& what) {
                    p.mode = mode;
                    p.path = check::path(s, what);
                },
                [mode](const P& p) -> std::optional<json> {
                    if ((p.mode == SerialMode::File) != (mode == SerialMode::File)) return std::nullopt;
                    return json(p.path);
                }};
    };
    port.fields = {
        {.key = "name", .codec = string_codec(&P::name, check::serial_port_name), .type = "string, required",
         .doc = "the port's name (rules as for `--serial-port`)", .def = "", .cli = {.name = "name", .metavar = "NAME"}},
        {.key = "socket", .codec = port_path(SerialMode::Socket), .type = "string",
         .doc = "UNIX socket the VMM listens on; exactly one of `socket` and `file`", .def = "",
         .cli = {.name = "socket", .metavar = "PATH"}},
        {.key = "file", .codec = port_path(SerialMode::File), .type = "string", .doc = "output file", .def = "",
         .cli = {.name = "file", .metavar = "PATH"}},
    };
    t.push_back(std::make_unique<List<SerialPortConfig>>(
        "serial_ports", &C::serial_ports, "serial ports", std::move(port), check::serial_port_list,
        NodeCli{.name = "--serial-port", .metavar = nullptr,
                .help = "Named virtio-serial port beside hvc0: socket=PATH is a UNIX socket the VMM listens on, "
                        "file=PATH output only; repeatable; the guest sees /dev/virtio-ports/NAME (replaces the "
                        "--config serial_ports)",
                .doc = "a named virtio-serial port beside `hvc0` (virtio-console MULTIPORT; brings the virtio-console "
                       "device along even with `--console off`); repeatable, at most 30. The guest gets `/dev/vportXpN` "
                       "with `/sys/class/virtio-ports/vportXpN/name` = NAME (and `/dev/virtio-ports/NAME` where udev "
                       "runs). `socket=PATH`: the VMM listens there (0600, removed at exit), one client at a time; see "
                       "[Named serial ports](../README.md#named-serial-ports). `file=PATH`: output only. NAME: 1–64 "
                       "printable ASCII characters without spaces, `/` or `,`; unique. Given at all, the "
                       "`--serial-port` options replace the `--config` file's `serial_ports`"},
        "array of port objects", "named virtio-serial ports, port 1, 2, ... in order; at most 30"));

    Spec<FwCfgItemConfig> fw;
    fw.required = "name";
    fw.one_of[0] = "file";
    fw.one_of[1] = "string";
    fw.joint_missing = true;
    using F = FwCfgItemConfig;
    auto nonempty = [](std::string F::*m) -> Codec<F> {
        Codec<F> c = string_codec(m);
        c.emit = [m](const F& f) -> std::optional<json> {
            bool file = m == &F::file;
            if (f.file.empty() == file) return std::nullopt;  // "file" when there is one, else "string"
            return json(f.*m);
        };
        return c;
    };
    fw.fields = {
        {.key = "name", .codec = string_codec(&F::name), .type = "string, required",
         .doc = "`opt/...` name of an extra fw_cfg file", .def = "", .cli = {.name = "name", .metavar = "opt/NAME"}},
        {.key = "file", .codec = nonempty(&F::file), .type = "string",
         .doc = "host file with its content (give this or `string`)", .def = "", .cli = {.name = "file", .metavar = "PATH"}},
        {.key = "string", .codec = nonempty(&F::text), .type = "string", .doc = "its content as text", .def = "",
         .cli = {.name = "string", .metavar = "TEXT"}},
    };
    t.push_back(std::make_unique<List<FwCfgItemConfig>>(
        "fw_cfg", &C::fw_cfg, "fw_cfg items", std::move(fw), check::fw_cfg_items,
        NodeCli{.name = "--fw-cfg", .metavar = nullptr,
                .help = "Extra fw_cfg file for the firmware (repeatable; replaces the --config fw_cfg list)",
                .doc = "an extra file the firmware can read through fw_cfg (with `--firmware`; e.g. OVMF's "
                       "`opt/ovmf/...` settings); names start with `opt/`, at most 55 bytes; repeatable, at most 32; "
                       "the file is read at start (at most 16 MiB); replaces the `--config` file's `fw_cfg`"},
        "array of fw_cfg objects", "extra fw_cfg files for the firmware"));

    Spec<SmbiosTypeConfig> smbios;
    smbios.required = "type";
    using S = SmbiosTypeConfig;
    auto smbios_str = [](std::string S::*m, const char* key, const char* doc) -> Field<S> {
        Codec<S> c = string_codec(m, check::smbios_string);
        c.emit = [m](const S& t) -> std::optional<json> {
            if ((t.*m).empty()) return std::nullopt;  // the VMM's default
            return json(t.*m);
        };
        return {.key = key, .codec = c, .type = "string, ≤ 64 printable characters", .doc = doc, .def = "",
                .cli = {.name = key, .metavar = "TEXT"}};
    };
    smbios.fields = {
        {.key = "type", .codec = uint_codec(&S::type, 0, 127, in_range(0, 127)), .type = "integer 0, 1 or 3, required",
         .doc = "structure type: 0 BIOS, 1 system, 3 chassis", .def = "", .cli = {.name = "type", .metavar = "0|1|3"}},
        smbios_str(&S::vendor, "vendor", "type 0: BIOS vendor"),
        smbios_str(&S::version, "version", "types 0, 1, 3: version"),
        smbios_str(&S::date, "date", "type 0: BIOS release date (MM/DD/YYYY)"),
        smbios_str(&S::manufacturer, "manufacturer", "types 1, 3: manufacturer"),
        smbios_str(&S::product, "product", "type 1: product name"),
        smbios_str(&S::serial, "serial", "types 1, 3: serial number (cloud-init reads `ds=nocloud...` from type 1)"),
        smbios_str(&S::sku, "sku", "types 1, 3: SKU number"),
        smbios_str(&S::family, "family", "type 1: family"),
        smbios_str(&S::asset, "asset", "type 3: asset tag"),
    };
    t.push_back(std::make_unique<List<SmbiosTypeConfig>>(
        "smbios", &C::smbios, "SMBIOS types", std::move(smbios), check::smbios_list,
        NodeCli{.name = "--smbios", .metavar = nullptr,
                .help = "SMBIOS strings the guest reads (dmidecode, /sys/class/dmi/id): type=1,serial=...; "
                        "repeatable, once per type (replaces the --config smbios list)",
                .doc = "strings of the SMBIOS tables the guest reads (`dmidecode`, `/sys/class/dmi/id`; see "
                       "[SMBIOS](../README.md#smbios)): `type=0` (BIOS: `vendor`, `version`, `date`), `type=1` "
                       "(system: `manufacturer`, `product`, `version`, `serial`, `sku`, `family`) or `type=3` "
                       "(chassis: `manufacturer`, `version`, `serial`, `asset`, `sku`); up to 64 printable "
                       "characters each. Repeatable, each type once; given at all, replaces the `--config` "
                       "file's `smbios`"},
        "array of SMBIOS objects", "SMBIOS string overrides, one object per type"));

    Spec<CloudInitConfig> ci;
    ci.required = "user_data";
    using CI = CloudInitConfig;
    ci.fields = {
        {.key = "user_data", .codec = string_codec(&CI::user_data, check::path), .type = "string, required",
         .doc = "host file that becomes `user-data` (`#cloud-config` YAML, a script, ...)", .def = "",
         .cli = {.name = "user-data", .metavar = "FILE"}},
        {.key = "meta_data", .codec = optional_path_codec(&CI::meta_data), .type = "string",
         .doc = "host file that becomes `meta-data`", .def = ": `instance-id` and `local-hostname` made up by the VMM",
         .cli = {.name = "meta-data", .metavar = "FILE"}},
        {.key = "network_config", .codec = optional_path_codec(&CI::network_config), .type = "string",
         .doc = "host file that becomes `network-config` (network configuration v1 or v2)", .def = ": none",
         .cli = {.name = "network-config", .metavar = "FILE"}},
    };
    t.push_back(std::make_unique<OptionalObject<CloudInitConfig>>(
        "cloud_init", &C::cloud_init, std::move(ci),
        NodeCli{.name = "--cloud-init", .metavar = nullptr,
                .help = "cloud-init NoCloud seed: an ISO 9660 volume labelled cidata made of these files, attached "
                        "as a read-only virtio-scsi CD-ROM (off removes a --config one)",
                .doc = "give the guest a cloud-init NoCloud seed: the VMM builds an ISO 9660 volume labelled "
                       "`cidata` (Rock Ridge and Joliet names) holding `user-data`, `meta-data` and, when given, "
                       "`network-config` from these host files (at most 16 MiB each, read when the VM starts) and "
                       "attaches it as a read-only CD-ROM on the virtio-scsi controller, after the `--cdrom` LUNs "
                       "and never a boot device. Without `meta-data=`, the VMM writes `instance-id: iid-UUID` "
                       "(`--uuid`) or `iid-` and a hash of the user-data and network-config, and `local-hostname: vmm`. `off` removes a "
                       "`--config` seed (see [cloud-init](../README.md#cloud-init))"},
        "cloud-init NoCloud seed CD-ROM; `null`: none"));
    return t;
}

const std::vector<std::unique_ptr<Node>>& table() {
    static const auto t = make_table();
    return t;
}

const std::vector<Option>& all_options() {
    static const auto opts = [] {
        std::vector<Option> o;
        for (auto& n : table()) n->options(o);
        return o;
    }();
    return opts;
}

// Options that the command-line parser itself handles.
struct Meta {
    CliOption opt;
    const char* doc;
    const char* def;
};
const Meta kMeta[] = {
    {{"--config", "FILE",
      "JSON VM configuration (README: Configuration file); options given on the command line override it", "", false,
      false},
     "JSON VM configuration, read first; every option given on the command line overrides it (see [Configuration "
     "file](../README.md#configuration-file))",
     "none"},
    {{"--print-config", "",
      "Print the effective configuration as JSON (a valid --config file) and exit without starting a VM", "", true,
      false},
     "print the effective configuration (defaults, `--config` file and options merged) as JSON and exit 0 without "
     "starting a VM; the output is itself a valid `--config` file",
     ""},
};

// Markdown table cells: '|' inside a cell must be escaped, in code spans too.
std::string cell(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '|') out += '\\';
        out += c;
    }
    return out;
}

}  // namespace

const std::vector<CliOption>& cli_options() {
    static const auto opts = [] {
        std::vector<CliOption> o;
        for (auto& m : kMeta) o.push_back(m.opt);
        for (auto& a : all_options()) o.push_back(a.opt);
        return o;
    }();
    return opts;
}

void apply_cli(VmConfig& cfg, const std::map<std::string, std::vector<std::string>>& given) {
    std::vector<const Option*> applied;
    for (auto& o : all_options()) {
        auto it = given.find(o.opt.name);
        if (it == given.end() || it->second.empty()) continue;
        o.apply(cfg, it->second);
        applied.push_back(&o);
    }
    std::set<std::string> done;
    for (auto* o : applied)
        if (o->after && done.insert(o->group ? o->group : o->opt.name).second) o->after(cfg);
}

void read_json(VmConfig& cfg, const json& doc, const std::string& source) {
    if (!doc.is_object()) fail("{}: expected an object at the top level, got {}", source, describe(doc));
    Loc root{&source, ""};
    std::vector<std::string> keys;
    for (auto& n : table()) keys.push_back(n->key());
    check_keys(doc, root, keys);
    for (auto& n : table())
        if (auto* v = find(doc, n->key())) n->read(cfg, *v, root.key(n->key()));
    check::distinct_paths({{"serial.path", cfg.serial_path},
                           {"console.path", cfg.console_path},
                           {"api.socket", cfg.api_socket},
                           {"logging.file", cfg.log_file}},
                          source);
    check::serial_port_paths(cfg, source);
}

json to_json(const VmConfig& cfg) {
    json out = json::object();
    for (auto& n : table()) out[n->key()] = n->emit(cfg);
    return out;
}

std::vector<std::string> json_keys() {
    std::vector<std::string> keys;
    for (auto& n : table()) n->keys(keys);
    return keys;
}

std::string reference_markdown() {
    std::string md =
        "# Options reference\n\n"
        "<!-- Generated by `build/vmm --print-options-markdown > docs/options.md` from the option table in\n"
        "     vmm/options.cpp; do not edit by hand (the unit tests compare). -->\n\n"
        "## Command line\n\n"
        "| option | meaning | default |\n| --- | --- | --- |\n";
    auto row = [&](const std::string& a, const std::string& b, const std::string& c) {
        md += "| " + cell(a) + " | " + cell(b) + " | " + cell(c) + " |\n";
    };
    for (auto& m : kMeta)
        row(code(m.opt.metavar.empty() ? m.opt.name : m.opt.name + " " + m.opt.metavar), m.doc, m.def);
    for (auto& o : all_options()) row(code(o.synopsis), o.doc, o.def);
    row(code("--help"), "all of the above", "");
    md += "\nFlags (";
    bool first = true;
    for (auto& o : all_options())
        if (o.opt.flag) md += (first ? "" : ", ") + code(o.opt.name), first = false;
    md += ") also take `=true`/`=false`, so `--reboot=false` undoes `\"reboot\": true` from a `--config` file.\n\n"
          "## Configuration file keys\n\n"
          "Every key is optional unless marked required; see [Configuration file](../README.md#configuration-file) "
          "for the rules.\n\n"
          "| key | type | default | meaning (option) |\n| --- | --- | --- | --- |\n";
    std::vector<Row> rows;
    for (auto& n : table()) n->rows(rows);
    for (auto& r : rows)
        md += "| " + cell(code(r.key)) + " | " + cell(r.type) + " | " + cell(r.def) + " | " + cell(r.doc) + " |\n";
    return md;
}

}  // namespace vmm::options
