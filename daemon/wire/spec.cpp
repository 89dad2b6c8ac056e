#include "daemon/wire/spec.hpp"

#include <algorithm>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "daemon/wire/spec_keys.hpp"

namespace workerd {
namespace {

namespace fs = std::filesystem;


// Walks the YAML tree once, filling a Spec and collecting every error with its position.
// Each bad value yields one error; the walk goes on so that all errors are reported. What only
// the host can check (users, groups, directories, the program) is recorded, not looked up.
class SpecReader {
public:
    SpecReader(std::string file, SpecReading& out)
        : file_(std::move(file)), dir_(fs::path(file_).parent_path().string()), errors_(out.errors),
          lookups_(out.lookups) {}

    void read(const YAML::Node& root, int cpu_count, Spec& spec);

private:
    using KeyHandler = std::function<void(const std::string& path, const YAML::Node& value)>;

    void error(const YAML::Node& at, const std::string& key, const std::string& message) {
        errors_.push_back(at_node(at, key, message));
    }
    void lookup(HostLookup::What what, const YAML::Node& at, const std::string& key, const std::string& text) {
        const SpecError place = at_node(at, key, "");
        lookups_.push_back({what, key, text, place.line, place.column});
    }
    SpecError at_node(const YAML::Node& at, const std::string& key, const std::string& message) const {
        const YAML::Mark m = at.Mark();
        return {file_, m.line >= 0 ? m.line + 1 : 0, m.column >= 0 ? m.column + 1 : 0, key, message};
    }

    // Calls `handlers[key]` for each key of the mapping `node`; reports unknown and repeated
    // keys (with the nearest known key suggested) and a node that is not a mapping.
    void for_each_key(const YAML::Node& node, const std::string& path,
                      const std::vector<std::pair<const char*, KeyHandler>>& handlers);

    std::string child(const std::string& path, const std::string& key) {
        return path.empty() ? key : path + "." + key;
    }
    std::string absolute(const std::string& p) const {
        return fs::path(p).is_absolute() ? fs::path(p).lexically_normal().string()
                                         : (fs::path(dir_) / p).lexically_normal().string();
    }

    std::optional<std::string> scalar(const YAML::Node& n, const std::string& key, const char* expected);
    std::optional<long long> integer(const YAML::Node& n, const std::string& key, long long min, long long max);
    std::optional<bool> boolean(const YAML::Node& n, const std::string& key);
    // A scalar read by `parse` (which says why not).
    template <class T>
    std::optional<T> parsed(const YAML::Node& n, const std::string& key, const char* expected,
                            std::optional<T> (*parse)(const std::string&, std::string&));
    std::optional<Duration> duration(const YAML::Node& n, const std::string& key);
    std::optional<Duration> positive_duration(const YAML::Node& n, const std::string& key);
    std::optional<std::uint64_t> size(const YAML::Node& n, const std::string& key);
    std::optional<ListenAddress> address(const YAML::Node& n, const std::string& key);

    std::optional<double> ratio(const YAML::Node& n, const std::string& key, double min, double max);
    std::optional<double> percentage(const YAML::Node& n, const std::string& key);
    AnalysisSpec read_analysis(const YAML::Node& n, const std::string& key);
    LeakSpec read_leak(const YAML::Node& n, const std::string& key);
    void read_listen(const YAML::Node& n, std::vector<ListenAddress>& out);
    void read_workers(const YAML::Node& n, int cpu_count, Spec& spec);
    void read_app(const YAML::Node& n, AppSpec& app, bool& app_seen);
    void read_builtin(const YAML::Node& n, BuiltinAppSpec& b);
    void read_command(const YAML::Node& n, std::vector<std::string>& command);
    void check_command_fds(const Spec& spec);
    void note_program(const Spec& spec);
    void directory(const YAML::Node& n, const std::string& key, std::string& out);
    void names(const YAML::Node& n, const std::string& key, HostLookup::What what);

    std::string file_;
    std::string dir_;
    std::vector<SpecError>& errors_;
    std::vector<HostLookup>& lookups_;
    YAML::Node command_node_;
};

void SpecReader::for_each_key(const YAML::Node& node, const std::string& path,
                              const std::vector<std::pair<const char*, KeyHandler>>& handlers) {
    if (node.IsNull()) return;  // "app:" with nothing under it: all defaults
    if (!node.IsMap()) {
        error(node, path, "must be a mapping of keys to values");
        return;
    }
    std::vector<std::string> known;
    for (const auto& [name, handler] : handlers) known.emplace_back(name);
    std::set<std::string> seen;
    // Range-for keeps each pair alive for the loop body; `it->first` would be a member of a
    // temporary proxy that dies at the end of the full expression.
    for (const auto& entry : node) {
        const YAML::Node& key_node = entry.first;
        const std::string key = key_node.IsScalar() ? key_node.Scalar() : std::string("?");
        const std::string key_path = child(path, key);
        if (!seen.insert(key).second) {
            error(key_node, key_path, "appears twice");
            continue;
        }
        auto found = std::find_if(handlers.begin(), handlers.end(),
                                  [&](const auto& h) { return key == h.first; });
        if (found == handlers.end()) {
            error(key_node, key_path, unknown_key_message(key, known));
            continue;
        }
        found->second(key_path, entry.second);
    }
}

std::optional<std::string> SpecReader::scalar(const YAML::Node& n, const std::string& key,
                                              const char* expected) {
    if (!n.IsScalar()) {
        error(n, key, fmt::format("must be {}", expected));
        return std::nullopt;
    }
    return n.Scalar();
}

std::optional<double> SpecReader::ratio(const YAML::Node& n, const std::string& key, double min, double max) {
    auto text = scalar(n, key, "a number such as 1.5");
    if (!text) return std::nullopt;
    char* end = nullptr;
    const double value = std::strtod(text->c_str(), &end);
    if (text->empty() || end != text->c_str() + text->size() || !(value >= min && value <= max)) {
        error(n, key, fmt::format("'{}' is not a number from {} to {}", *text, min, max));
        return std::nullopt;
    }
    return value;
}

std::optional<double> SpecReader::percentage(const YAML::Node& n, const std::string& key) {
    auto text = scalar(n, key, "a percentage such as 1% or 0.5%");
    if (!text) return std::nullopt;
    char* end = nullptr;
    const double value = std::strtod(text->c_str(), &end);
    if (text->size() < 2 || text->back() != '%' || end != text->c_str() + text->size() - 1 || !(value >= 0 && value <= 100)) {
        error(n, key, fmt::format("'{}' is not a percentage from 0% to 100% (e.g. 1% or 0.5%)", *text));
        return std::nullopt;
    }
    return value / 100.0;
}

AnalysisSpec SpecReader::read_analysis(const YAML::Node& n, const std::string& key) {
    AnalysisSpec a;
    for_each_key(n, key, {
        {"canaries", [&](auto& k, auto& v) { if (auto x = integer(v, k, 1, kMaxWorkers)) a.canaries = static_cast<int>(*x); }},
        {"window", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) a.window = *x; }},
        {"min_requests", [&](auto& k, auto& v) { if (auto x = integer(v, k, 1, 1LL << 40)) a.min_requests = static_cast<std::uint64_t>(*x); }},
        {"max_error_increase", [&](auto& k, auto& v) { if (auto x = percentage(v, k)) a.max_error_increase = *x; }},
        {"max_error_ratio", [&](auto& k, auto& v) { if (auto x = ratio(v, k, 1.0, 1000.0)) a.max_error_ratio = *x; }},
        {"max_p99_ratio", [&](auto& k, auto& v) { if (auto x = ratio(v, k, 1.0, 1000.0)) a.max_p99_ratio = *x; }},
    });
    return a;
}

LeakSpec SpecReader::read_leak(const YAML::Node& n, const std::string& key) {
    LeakSpec l;
    for_each_key(n, key, {
        {"min_growth", [&](auto& k, auto& v) { if (auto x = size(v, k)) l.min_growth = *x; }},
        {"per_request", [&](auto& k, auto& v) { if (auto x = size(v, k)) l.per_request = *x; }},
        {"horizon", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) l.horizon = *x; }},
        {"warmup", [&](auto& k, auto& v) { if (auto x = integer(v, k, 0, 1LL << 40)) l.warmup = static_cast<std::uint64_t>(*x); }},
        {"idle_wait", [&](auto& k, auto& v) { if (auto x = duration(v, k)) l.idle_wait = *x; }},
    });
    return l;
}

std::optional<long long> SpecReader::integer(const YAML::Node& n, const std::string& key,
                                             long long min, long long max) {
    auto text = scalar(n, key, "an integer");
    if (!text) return std::nullopt;
    long long value = 0;
    try {
        std::size_t used = 0;
        value = std::stoll(*text, &used);
        if (used != text->size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
        error(n, key, fmt::format("must be an integer, not '{}'", *text));
        return std::nullopt;
    }
    if (value < min) {
        error(n, key, fmt::format("must be at least {}", min));
        return std::nullopt;
    }
    if (value > max) {
        error(n, key, fmt::format("must be at most {}", max));
        return std::nullopt;
    }
    return value;
}

std::optional<bool> SpecReader::boolean(const YAML::Node& n, const std::string& key) {
    bool value = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, value)) {
        error(n, key, fmt::format("must be true or false, not '{}'", n.IsScalar() ? n.Scalar() : "a collection"));
        return std::nullopt;
    }
    return value;
}

template <class T>
std::optional<T> SpecReader::parsed(const YAML::Node& n, const std::string& key, const char* expected,
                                    std::optional<T> (*parse)(const std::string&, std::string&)) {
    auto text = scalar(n, key, expected);
    if (!text) return std::nullopt;
    std::string why;
    auto value = parse(*text, why);
    if (!value) error(n, key, why);
    return value;
}

std::optional<Duration> SpecReader::duration(const YAML::Node& n, const std::string& key) {
    return parsed(n, key, "a duration such as 30s or 500ms", &parse_duration);
}

std::optional<Duration> SpecReader::positive_duration(const YAML::Node& n, const std::string& key) {
    auto d = duration(n, key);
    if (d && d->count() <= 0) {
        error(n, key, "must be longer than 0");
        return std::nullopt;
    }
    return d;
}

std::optional<std::uint64_t> SpecReader::size(const YAML::Node& n, const std::string& key) {
    return parsed(n, key, "a size such as 16KiB or 1MiB", &parse_size);
}

std::optional<ListenAddress> SpecReader::address(const YAML::Node& n, const std::string& key) {
    auto text = scalar(n, key, "an address: \"HOST:PORT\", \"[IPV6]:PORT\" or \"unix:/PATH\"");
    if (!text) return std::nullopt;
    std::string why;
    auto a = parse_listen_address(*text, why);
    if (!a) {
        error(n, key, why);
        return std::nullopt;
    }
    if (a->kind == ListenAddress::Kind::unix_path) a->path = absolute(a->path);
    return a;
}

void SpecReader::read_listen(const YAML::Node& n, std::vector<ListenAddress>& out) {
    if (n.IsScalar()) {
        if (auto a = address(n, "listen")) out.push_back(*a);
    } else if (n.IsSequence()) {
        if (n.size() == 0) error(n, "listen", "needs at least one address");
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::string key = fmt::format("listen[{}]", i);
            const YAML::Node item = n[i];
            if (item.IsMap()) {
                std::optional<ListenAddress> a;
                std::string name;
                for_each_key(item, key, {{"address", [&](auto& k, auto& v) { a = address(v, k); }},
                                         {"name", [&](auto& k, auto& v) {
                                              if (auto s = scalar(v, k, "a name")) name = *s;
                                          }}});
                if (!a && !item["address"]) error(item, key, "needs an 'address'");
                if (!a) continue;
                a->name = name;
                out.push_back(*a);
            } else if (auto a = address(item, key)) {
                out.push_back(*a);
            }
        }
    } else {
        error(n, "listen", "must be an address or a list of addresses, e.g. [\"127.0.0.1:8000\"]");
    }
    std::set<std::string> names, places;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out[i].name.empty()) out[i].name = fmt::format("listen{}", i);
        const YAML::Node at = n.IsSequence() && i < n.size() ? n[i] : n;
        if (out[i].name.find_first_of(":= ") != std::string::npos) {
            error(at, fmt::format("listen[{}].name", i), "must not contain ':', '=' or spaces");
        } else if (!names.insert(out[i].name).second) {
            error(at, fmt::format("listen[{}].name", i), fmt::format("'{}' is used twice", out[i].name));
        }
        if (!places.insert(out[i].to_string()).second) {
            error(at, fmt::format("listen[{}]", i), fmt::format("{} is listed twice", out[i].to_string()));
        }
    }
}

void SpecReader::read_workers(const YAML::Node& n, int cpu_count, Spec& spec) {
    if (n.IsScalar() && n.Scalar() == "auto") {
        spec.workers_auto = true;
        spec.workers = std::max(1, cpu_count);
        return;
    }
    if (n.IsScalar() && !n.Scalar().empty() &&
        n.Scalar().find_first_not_of("-0123456789") != std::string::npos) {
        error(n, "workers", fmt::format("must be an integer or \"auto\", not '{}'", n.Scalar()));
        return;
    }
    if (auto v = integer(n, "workers", 1, kMaxWorkers)) spec.workers = static_cast<int>(*v);
}

void SpecReader::directory(const YAML::Node& n, const std::string& key, std::string& out) {
    if (auto text = scalar(n, key, "a directory path")) {
        out = absolute(*text);
        lookup(HostLookup::What::directory, n, key, out);
    }
}

void SpecReader::names(const YAML::Node& n, const std::string& key, HostLookup::What what) {
    const bool users = what == HostLookup::What::control_user;
    if (!n.IsSequence()) {
        error(n, key, users ? "must be a list of user names" : "must be a list of group names");
        return;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        const std::string item_key = fmt::format("{}[{}]", key, i);
        if (auto s = scalar(n[i], item_key, users ? "a user name" : "a group name")) lookup(what, n[i], item_key, *s);
    }
}

void SpecReader::read_builtin(const YAML::Node& n, BuiltinAppSpec& b) {
    const std::string p = "app.builtin";
    for_each_key(n, p, {
        {"root", [&](auto& k, auto& v) { directory(v, k, b.root); }},
        {"demo", [&](auto& k, auto& v) { if (auto x = boolean(v, k)) b.demo = *x; }},
        {"precompressed", [&](auto& k, auto& v) { if (auto x = boolean(v, k)) b.precompressed = *x; }},
        {"max_connections", [&](auto& k, auto& v) {
             if (auto x = integer(v, k, 1, 1'000'000)) b.max_connections = static_cast<int>(*x);
         }},
        {"keepalive_timeout", [&](auto& k, auto& v) { if (auto x = duration(v, k)) b.keepalive_timeout = *x; }},
        {"max_header_size", [&](auto& k, auto& v) {
             if (auto x = size(v, k)) {
                 if (*x < 1024) error(v, k, "must be at least 1KiB");
                 else b.max_header_size = *x;
             }
         }},
        {"max_body_size", [&](auto& k, auto& v) { if (auto x = size(v, k)) b.max_body_size = *x; }},
    });
}

void SpecReader::read_command(const YAML::Node& n, std::vector<std::string>& command) {
    if (n.IsScalar()) {
        error(n, "app.command",
              "must be a list of arguments (argv), not a string: commands never run through a "
              "shell; write e.g. [\"/usr/bin/python3\", \"-m\", \"uvicorn\", \"app:app\", \"--fd\", \"{fd}\"]");
        return;
    }
    if (!n.IsSequence()) {
        error(n, "app.command", "must be a list of arguments (argv)");
        return;
    }
    if (n.size() == 0) {
        error(n, "app.command", "is empty; give the program and its arguments");
        return;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        const std::string key = fmt::format("app.command[{}]", i);
        if (auto s = scalar(n[i], key, "a string")) command.push_back(*s);
    }
    if (!command.empty() && command[0].empty()) error(n[0], "app.command[0]", "the program is empty");
    command_node_ = n;
}

void SpecReader::read_app(const YAML::Node& n, AppSpec& app, bool& app_seen) {
    app_seen = true;
    bool has_builtin = false;
    bool has_command = false;
    YAML::Node preload_node;
    for_each_key(n, "app", {
        {"preload", [&](auto& k, auto& v) {
             preload_node = v;
             if (auto x = boolean(v, k)) app.preload = *x;
         }},
        {"builtin", [&](auto&, auto& v) {
             has_builtin = true;
             app.builtin.emplace();
             read_builtin(v, *app.builtin);
         }},
        {"command", [&](auto&, auto& v) {
             has_command = true;
             read_command(v, app.command);
         }},
        {"cwd", [&](auto& k, auto& v) { directory(v, k, app.cwd); }},
        {"env", [&](auto& k, auto& v) {
             if (!v.IsMap()) {
                 error(v, k, "must be a mapping of variable names to values");
                 return;
             }
             for (const auto& entry : v) {
                 const std::string name = entry.first.Scalar();
                 const std::string key = k + "." + name;
                 if (name.empty() || name.find('=') != std::string::npos) {
                     error(entry.first, key, "is not a valid variable name");
                 } else if (auto value = scalar(entry.second, key, "a string")) {
                     app.env[name] = *value;
                 }
             }
         }},
    });
    if (has_builtin && has_command) {
        error(n, "app", "has both 'builtin' and 'command'; choose one");
    } else if (!has_builtin && !has_command && n.IsMap()) {
        error(n, "app", "needs either 'builtin' (the bundled worker) or 'command' (an argv list)");
    }
    if (has_builtin && has_command) app.builtin.reset();
    if (app.preload && has_builtin) {
        error(preload_node, "app.preload", "is for a command that forks its workers from a zygote (workerd_uvicorn); "
                                           "the bundled worker starts in milliseconds without it");
    }
}

void SpecReader::check_command_fds(const Spec& spec) {
    if (!command_node_ || spec.listen.empty()) return;
    for (std::size_t i = 0; i < spec.app.command.size() && i < command_node_.size(); ++i) {
        try {
            substitute_fds(spec.app.command[i], spec.listen);
        } catch (const std::invalid_argument& e) {
            error(command_node_[i], fmt::format("app.command[{}]", i), e.what());
        }
    }
}

void SpecReader::note_program(const Spec& spec) {
    // The host checks it: a warning, not an error, if it is not there (os/spec_host.cpp).
    if (!command_node_ || spec.app.command.empty() || command_node_.size() == 0) return;
    const std::string& program = spec.app.command[0];
    if (program.empty() || program.find('{') != std::string::npos) return;
    lookup(HostLookup::What::program, command_node_[0], "app.command[0]", program);
}

void SpecReader::read(const YAML::Node& root, int cpu_count, Spec& spec) {
    if (!root.IsMap()) {
        error(root, "", root.IsNull() ? "the spec is empty; it needs at least 'listen' and 'app'"
                                      : "the spec must be a mapping of keys to values");
        return;
    }
    bool app_seen = false;
    bool listen_seen = false;
    for_each_key(root, "", {
        {"listen", [&](auto&, auto& v) { listen_seen = true; read_listen(v, spec.listen); }},
        {"backlog", [&](auto& k, auto& v) { if (auto x = integer(v, k, 1, 1 << 20)) spec.backlog = static_cast<int>(*x); }},
        {"reuse_port", [&](auto& k, auto& v) {
             if (v.IsScalar() && v.Scalar() == "cpu") {
                 spec.reuse_port = spec.reuse_port_cpu = true;
             } else if (bool x = false; v.IsScalar() && YAML::convert<bool>::decode(v, x)) {
                 spec.reuse_port = x;
             } else {
                 error(v, k, fmt::format("must be true, false or cpu, not '{}'", v.IsScalar() ? v.Scalar() : "a collection"));
             }
         }},
        {"workers", [&](auto&, auto& v) { read_workers(v, cpu_count, spec); }},
        {"app", [&](auto&, auto& v) { read_app(v, spec.app, app_seen); }},
        {"graceful_timeout", [&](auto& k, auto& v) { if (auto x = duration(v, k)) spec.graceful_timeout = *x; }},
        {"user", [&](auto& k, auto& v) {
             auto s = scalar(v, k, "a user name");
             if (!s) return;
             spec.run_as.user = *s;
             lookup(HostLookup::What::user, v, k, *s);
         }},
        {"group", [&](auto& k, auto& v) {
             auto s = scalar(v, k, "a group name");
             if (!s) return;
             spec.run_as.group = *s;
             lookup(HostLookup::What::group, v, k, *s);
         }},
        {"timeout", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) spec.health.timeout = *x; }},
        {"boot_timeout", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) spec.health.boot_timeout = *x; }},
        {"ready_after", [&](auto& k, auto& v) { if (auto x = duration(v, k)) spec.health.ready_after = *x; }},
        {"kill_timeout", [&](auto& k, auto& v) { if (auto x = duration(v, k)) spec.health.kill_timeout = *x; }},
        {"request_timeout", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) spec.health.request_timeout = *x; }},
        {"queue_timeout", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) spec.shed.queue_timeout = *x; }},
        {"max_concurrency", [&](auto& k, auto& v) { if (auto x = integer(v, k, 1, 1 << 20)) spec.shed.max_concurrency = static_cast<int>(*x); }},
        {"heartbeat", [&](auto& k, auto& v) {
             auto s = scalar(v, k, "auto, required or off");
             if (!s) return;
             if (*s == "auto") spec.health.mode = HeartbeatMode::automatic;
             else if (*s == "required") spec.health.mode = HeartbeatMode::required;
             else if (*s == "off" || *s == "false") spec.health.mode = HeartbeatMode::off;
             else error(v, k, fmt::format("'{}' is not a heartbeat mode; use auto, required or off", *s));
         }},
        {"timeout_signal", [&](auto& k, auto& v) {
             auto s = scalar(v, k, "a signal name such as SIGABRT or SIGUSR1");
             if (!s) return;
             const int sig = signal_from_name(*s);
             if (sig == 0 || sig == SIGKILL || sig == SIGSTOP) {
                 error(v, k, fmt::format("'{}' is not a signal to send first; use e.g. SIGABRT, SIGUSR1, SIGQUIT", *s));
             } else {
                 spec.health.timeout_signal = sig;
             }
         }},
        {"workload", [&](auto& k, auto& v) {
             auto s = scalar(v, k, "cpu, mixed, io or gunicorn");
             if (!s) return;
             if (*s == "cpu") spec.workload = Workload::cpu;
             else if (*s == "mixed") spec.workload = Workload::mixed;
             else if (*s == "io") spec.workload = Workload::io;
             else if (*s == "gunicorn") spec.workload = Workload::gunicorn;
             else error(v, k, fmt::format("'{}' is not a workload; use cpu (1 x CPUs), mixed (1.5 x), io (2 x) or gunicorn (2 x + 1)", *s));
         }},
        {"memory_per_worker", [&](auto& k, auto& v) { if (auto x = size(v, k)) spec.memory_per_worker = *x; }},
        {"memory_limit", [&](auto& k, auto& v) { if (auto x = size(v, k)) spec.memory_limit = *x; }},
        {"autoscale", [&](auto& k, auto& v) {
             AutoscaleSpec a;
             for_each_key(v, k, {
                 {"min", [&](auto& kk, auto& vv) { if (auto x = integer(vv, kk, 1, kMaxWorkers)) a.min = static_cast<int>(*x); }},
                 {"max", [&](auto& kk, auto& vv) { if (auto x = integer(vv, kk, 1, kMaxWorkers)) a.max = static_cast<int>(*x); }},
                 {"target_inflight", [&](auto& kk, auto& vv) { if (auto x = integer(vv, kk, 1, 100000)) a.target_inflight = static_cast<int>(*x); }},
                 {"target_latency", [&](auto& kk, auto& vv) { if (auto x = positive_duration(vv, kk)) a.target_latency = *x; }},
                 {"target_queue", [&](auto& kk, auto& vv) { if (auto x = positive_duration(vv, kk)) a.target_queue = *x; }},
                 {"up_cooldown", [&](auto& kk, auto& vv) { if (auto x = duration(vv, kk)) a.up_cooldown = *x; }},
                 {"down_delay", [&](auto& kk, auto& vv) { if (auto x = duration(vv, kk)) a.down_delay = *x; }},
                 {"down_cooldown", [&](auto& kk, auto& vv) { if (auto x = duration(vv, kk)) a.down_cooldown = *x; }},
             });
             if (a.min > a.max) error(v, k, fmt::format("min ({}) is above max ({})", a.min, a.max));
             spec.autoscale = a;
         }},
        {"memory_margin", [&](auto& k, auto& v) {
             auto s = scalar(v, k, "a percentage such as 10%");
             if (!s) return;
             const bool ok = s->size() >= 2 && s->size() <= 3 && s->back() == '%' &&
                             s->substr(0, s->size() - 1).find_first_not_of("0123456789") == std::string::npos;
             if (!ok || std::stoi(s->substr(0, s->size() - 1)) > 90) {
                 error(v, k, fmt::format("'{}' is not a margin; use a percentage from 0% to 90%", *s));
             } else {
                 spec.memory_margin = std::stoi(s->substr(0, s->size() - 1)) / 100.0;
             }
         }},
        {"max_requests", [&](auto& k, auto& v) { if (auto x = integer(v, k, 1, 1LL << 50)) spec.recycle.max_requests = static_cast<std::uint64_t>(*x); }},
        {"max_requests_jitter", [&](auto& k, auto& v) { if (auto x = integer(v, k, 0, 1LL << 50)) spec.recycle.max_requests_jitter = static_cast<std::uint64_t>(*x); }},
        {"max_rss", [&](auto& k, auto& v) { if (auto x = size(v, k)) spec.recycle.max_rss = *x; }},
        {"max_private", [&](auto& k, auto& v) { if (auto x = size(v, k)) spec.recycle.max_private = *x; }},
        {"max_lifetime", [&](auto& k, auto& v) { if (auto x = positive_duration(v, k)) spec.recycle.max_lifetime = *x; }},
        {"max_lifetime_jitter", [&](auto& k, auto& v) { if (auto x = duration(v, k)) spec.recycle.max_lifetime_jitter = *x; }},
        {"min_lifetime", [&](auto& k, auto& v) { if (auto x = duration(v, k)) spec.recycle.min_lifetime = *x; }},
        {"leak", [&](auto& k, auto& v) {
             // `leak: true` takes the defaults, `leak: false` turns it off, a mapping sets keys.
             if (v.IsScalar()) {
                 if (auto on = boolean(v, k)) spec.recycle.leak = *on ? std::optional<LeakSpec>(LeakSpec{}) : std::nullopt;
                 return;
             }
             spec.recycle.leak = read_leak(v, k);
         }},
        {"rollout", [&](auto& k, auto& v) {
             auto amount = [&](const std::string& kk, const YAML::Node& vv, WorkerAmount& out) {
                 auto s = scalar(vv, kk, "a number of workers or a percentage, e.g. 1 or 25%");
                 if (!s) return;
                 const bool percent = !s->empty() && s->back() == '%';
                 const std::string digits = percent ? s->substr(0, s->size() - 1) : *s;
                 if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos ||
                     (percent && std::stoi(digits) > 100)) {
                     error(vv, kk, fmt::format("'{}' is not a number of workers or a percentage (0-100%)", *s));
                     return;
                 }
                 out = WorkerAmount{std::stoi(digits), percent};
             };
             for_each_key(v, k, {
                 {"max_surge", [&](auto& kk, auto& vv) { amount(kk, vv, spec.rollout.max_surge); }},
                 {"max_unavailable", [&](auto& kk, auto& vv) { amount(kk, vv, spec.rollout.max_unavailable); }},
                 {"failure_threshold", [&](auto& kk, auto& vv) { if (auto x = integer(vv, kk, 1, 1000)) spec.rollout.failure_threshold = static_cast<int>(*x); }},
                 {"analysis", [&](auto& kk, auto& vv) { spec.rollout.analysis = read_analysis(vv, kk); }},
             });
             if (spec.rollout.max_surge.value == 0 && spec.rollout.max_unavailable.value == 0) {
                 error(v, k, "max_surge and max_unavailable cannot both be 0: nothing could be replaced");
             }
         }},
        {"backoff", [&](auto& k, auto& v) {
             bool bad = false;
             for_each_key(v, k, {
                 {"initial", [&](auto& kk, auto& vv) { if (auto x = duration(vv, kk)) spec.backoff.initial = *x; else bad = true; }},
                 {"max", [&](auto& kk, auto& vv) { if (auto x = duration(vv, kk)) spec.backoff.max = *x; else bad = true; }},
                 {"reset_after", [&](auto& kk, auto& vv) { if (auto x = duration(vv, kk)) spec.backoff.reset_after = *x; else bad = true; }},
             });
             if (!bad && spec.backoff.initial > spec.backoff.max) {
                 error(v, k, fmt::format("initial ({}) is longer than max ({})",
                                         format_duration(spec.backoff.initial), format_duration(spec.backoff.max)));
             }
         }},
        {"control", [&](auto& k, auto& v) {
             for_each_key(v, k, {
                 {"socket", [&](auto& kk, auto& vv) { if (auto s = scalar(vv, kk, "a path")) spec.control.socket = absolute(*s); }},
                 {"mode", [&](auto& kk, auto& vv) {
                      auto s = scalar(vv, kk, "an octal mode such as \"0660\"");
                      if (!s) return;
                      const bool octal = !s->empty() && s->size() <= 4 &&
                                         s->find_first_not_of("01234567") == std::string::npos;
                      const unsigned mode = octal ? static_cast<unsigned>(std::stoul(*s, nullptr, 8)) : 0;
                      if ((mode & 0600) != 0600) {
                          error(vv, kk, fmt::format("'{}' is not a usable mode; use an octal string that keeps the owner's rw, e.g. \"0600\" or \"0660\"", *s));
                      } else {
                          spec.control.mode = mode;
                      }
                  }},
                 {"group", [&](auto& kk, auto& vv) {
                      if (auto s = scalar(vv, kk, "a group name")) lookup(HostLookup::What::control_group, vv, kk, *s);
                  }},
                 {"users", [&](auto& kk, auto& vv) { names(vv, kk, HostLookup::What::control_user); }},
                 {"groups", [&](auto& kk, auto& vv) { names(vv, kk, HostLookup::What::control_member); }},
             });
         }},
        {"metrics", [&](auto& k, auto& v) {
             for_each_key(v, k, {{"listen", [&](auto& kk, auto& vv) {
                                      auto a = address(vv, kk);
                                      if (a && a->kind != ListenAddress::Kind::tcp) {
                                          error(vv, kk, "must be a TCP address (HOST:PORT)");
                                      } else if (a) {
                                          spec.metrics.listen = a;
                                      }
                                  }},
                                 {"min_ready", [&](auto& kk, auto& vv) {
                                      if (auto x = integer(vv, kk, 0, kMaxWorkers)) spec.metrics.min_ready = static_cast<int>(*x);
                                  }}});
         }},
        {"log", [&](auto& k, auto& v) {
             for_each_key(v, k, {{"level", [&](auto& kk, auto& vv) {
                                     auto s = scalar(vv, kk, "a level name");
                                     static const std::vector<std::string> levels = {
                                         "trace", "debug", "info", "warn", "error", "critical", "off"};
                                     if (s && std::find(levels.begin(), levels.end(), *s) == levels.end()) {
                                         error(vv, kk, fmt::format("'{}' is not a level; use one of trace, debug, info, warn, error, critical, off", *s));
                                     } else if (s) {
                                         spec.log.level = *s;
                                     }
                                 }},
                                 {"format", [&](auto& kk, auto& vv) {
                                     auto s = scalar(vv, kk, "text or json");
                                     if (s && *s != "text" && *s != "json") {
                                         error(vv, kk, fmt::format("'{}' is not a log format; use text or json", *s));
                                     } else if (s) {
                                         spec.log.json = *s == "json";
                                     }
                                 }},
                                 {"file", [&](auto& kk, auto& vv) {
                                     if (auto s = scalar(vv, kk, "a path")) spec.log.file = absolute(*s);
                                 }}});
         }},
    });
    if (!listen_seen) error(root, "listen", "is missing; e.g. listen: [\"127.0.0.1:8000\"]");
    if (!app_seen) error(root, "app", "is missing; use app: {builtin: {}} or app: {command: [...]}");
    if (spec.app.cwd.empty()) spec.app.cwd = dir_;
    check_command_fds(spec);
    note_program(spec);
}

}  // namespace

const char* to_string(Workload w) {
    switch (w) {
        case Workload::cpu: return "cpu";
        case Workload::mixed: return "mixed";
        case Workload::io: return "io";
        case Workload::gunicorn: return "gunicorn";
    }
    return "?";
}

std::string check_run_as(const Spec& spec, unsigned euid, unsigned egid, bool allow_root) {
    const RunAsSpec& r = spec.run_as;
    const unsigned uid = r.uid.value_or(euid);
    const unsigned gid = r.gid.value_or(egid);
    if (euid == 0) {
        if (uid == 0 && !r.user && !allow_root) {
            return "workerd runs as root and the spec sets no `user`, so the workers would run as root; "
                   "set `user: NAME` (e.g. www-data), or `user: root` to run them as root on purpose";
        }
        return {};
    }
    if (uid != euid || gid != egid) {
        return fmt::format("`user`/`group` ask for uid {} gid {}, but workerd runs as uid {} gid {}; "
                           "only a daemon started as root can switch", uid, gid, euid, egid);
    }
    return {};
}

std::string SpecError::to_string() const {
    std::string out = file;
    if (line > 0) out += fmt::format(":{}:{}", line, column);
    out += ": ";
    if (!key.empty()) out += key + ": ";
    return out + message;
}

SpecReading read_spec(const std::string& text, const std::string& file, int cpu_count) {
    SpecReading out;
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        out.errors.push_back({file, e.mark.line + 1, e.mark.column + 1, "", "invalid YAML: " + e.msg});
        return out;
    }
    out.spec.file = file;
    out.spec.text = text;
    SpecReader(file, out).read(root, cpu_count, out.spec);
    // The bundled worker always speaks the protocol: under `auto` it is held to READY, so a
    // worker slow to start (a loaded machine) is not taken for a silent one and counted ready
    // before it accepts.
    if (out.spec.app.builtin && out.spec.health.mode == HeartbeatMode::automatic) {
        out.spec.health.mode = HeartbeatMode::required;
    }
    return out;
}

}  // namespace workerd
