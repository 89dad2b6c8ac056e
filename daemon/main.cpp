// workerd: the daemon. `workerd start SPEC` supervises a fleet; `workerd check SPEC` only
// validates; `workerd tune SPEC` measures the app and recommends a worker count; `workerd load
// URL` is the load generator alone; `workerd serve-builtin ...` is the bundled HTTP worker the
// daemon runs.
//
// Exit codes (stable, documented in docs/operations.md):
//   0  stopped cleanly / spec is valid
//   1  the spec is invalid
//   2  usage error
//   3  the daemon could not start (listener, permissions, ...)
// (`tune` and `load` add theirs: daemon/tune/commands.hpp, docs/tuning.md.)
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <exception>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "daemon/shell/arbiter.hpp"
#include "daemon/os/guardian.hpp"
#include "daemon/wire/handover.hpp"
#include "daemon/http/builtin_worker.hpp"
#include "daemon/os/listener.hpp"
#include "daemon/os/logging.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/os/spawn.hpp"
#include "daemon/os/spec_host.hpp"
#include "daemon/tune/commands.hpp"
#include "daemon/version.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadSpec = 1;
constexpr int kExitUsage = 2;
constexpr int kExitStartFailed = 3;

int usage(FILE* out) {
    std::fprintf(out,
                 "usage: workerd start [--allow-root] SPEC\n"
                 "                              run the fleet described by SPEC (foreground);\n"
                 "                              --allow-root: as root, run workers as root even\n"
                 "                              though the spec sets no `user` (development)\n"
                 "       workerd check SPEC     validate SPEC and exit 0 (valid) or 1\n"
                 "       workerd check --explain [--root DIR] SPEC\n"
                 "                              also show how `workers: auto` was computed\n"
                 "       workerd check --strict [--allow-root] [--stdin] SPEC\n"
                 "                              fail (exit 1) where `start` as this user would\n"
                 "                              refuse; --stdin: read the text from stdin, SPEC\n"
                 "                              naming it (relative paths resolve against it)\n"
                 "       workerd tune SPEC [--url PATH]... [--slo p99=200ms] [--workers 1-8] [--json]\n"
                 "                              [--report FILE.html] ...\n"
                 "                              measure the app at several worker counts and\n"
                 "                              recommend one (workerd tune --help)\n"
                 "       workerd load URL [--rate R] [--duration 10s] [-c N] [--json] ...\n"
                 "                              the open-loop load generator (workerd load --help)\n"
                 "       workerd --version\n"
                 "\n"
                 "Signals: TERM graceful stop, INT/QUIT fast stop, HUP reload, TTIN/TTOU one worker\n"
                 "more/less, USR1 reopen the log, USR2 re-execute the workerd binary in place.\n"
                 "Socket activation: sockets passed with LISTEN_FDS (systemd) replace binding.\n"
                 "Spec reference: docs/spec.md\n");
    return out == stdout ? kExitOk : kExitUsage;
}

// Loads the spec (from `text` when given, named `path`), printing every error as
// FILE:LINE:COLUMN: KEY: MESSAGE. Its warnings are left in `warnings`.
std::optional<workerd::Spec> load_or_report(const std::string& path, const std::optional<std::string>& text = {},
                                            std::vector<workerd::SpecError>* warnings = nullptr) {
    auto result = text ? workerd::load_spec_text(*text, path, workerd::available_cpus())
                       : workerd::load_spec_file(path, workerd::available_cpus());
    for (const auto& error : result.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
    if (warnings != nullptr) *warnings = std::move(result.warnings);
    return result.spec;
}

std::string self_executable() {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("workerd");
}

struct CheckOptions {
    bool explain = false;     ///< show how `workers: auto` was computed
    std::string root = "/";   ///< where the cgroup and /proc files are read (fixtures)
    bool strict = false;      ///< the root policy is an error, as for `start`
    bool allow_root = false;  ///< ... with `start --allow-root`
    bool from_stdin = false;  ///< the spec's text comes on stdin
};

int check(const std::string& path, const CheckOptions& o) {
    std::optional<std::string> text;
    if (o.from_stdin) {
        text.emplace(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    std::vector<workerd::SpecError> warnings;
    auto spec = load_or_report(path, text, &warnings);
    if (!spec) return kExitBadSpec;
    // A program that is not there (yet): a warning, or with --strict an error, like the root
    // policy below: both depend on the machine, not on the spec.
    for (const auto& w : warnings) {
        workerd::SpecError shown = w;
        if (!o.strict) shown.message = "warning: " + shown.message;
        std::fprintf(stderr, "%s\n", shown.to_string().c_str());
    }
    if (o.strict && !warnings.empty()) return kExitBadSpec;
    const auto sizing = workerd::resolve_workers(*spec, o.root);
    if (o.explain) {
        for (const auto& line : sizing.explanation) std::printf("%s\n", line.c_str());
    }
    if (const auto refused = workerd::check_run_as(*spec, ::geteuid(), ::getegid(), o.allow_root); !refused.empty()) {
        if (o.strict) {
            std::fprintf(stderr, "%s: %s\n", path.c_str(), refused.c_str());
            return kExitBadSpec;
        }
        std::fprintf(stderr, "%s: warning: `workerd start` as this user would refuse: %s\n", path.c_str(), refused.c_str());
    }
    std::printf("%s: ok (%d worker%s, %zu listener%s)\n", path.c_str(), spec->workers,
                spec->workers == 1 ? "" : "s", spec->listen.size(),
                spec->listen.size() == 1 ? "" : "s");
    return kExitOk;
}

int start(const std::string& path, bool allow_root, const std::vector<std::string>& argv) {
    // 0. What a previous image of this daemon (SIGUSR2) or systemd (socket activation) handed
    //    over. Taken first, so that nothing of it leaks into workers, whatever happens next.
    std::optional<workerd::Handover> handover;
    try {
        handover = workerd::take_handover();
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "workerd: %s is malformed: %s\n", workerd::Handover::kVariable, e.what());
        return kExitStartFailed;
    }
    std::vector<workerd::InheritedSocket> inherited =
        handover ? std::move(handover->listeners) : workerd::take_listen_fds();
    // 1. Read and validate the whole spec; nothing starts from an invalid one. Across a SIGUSR2
    //    re-exec, the spec in effect comes with the handover (the file may have been edited
    //    since the last reload; SIGHUP is what reads it).
    const bool keep_spec = handover && !handover->spec_text.empty();
    std::vector<workerd::SpecError> warnings;
    auto spec = load_or_report(path, keep_spec ? std::optional<std::string>(handover->spec_text) : std::nullopt,
                               &warnings);
    if (!spec) return kExitBadSpec;
    if (const auto refused = workerd::check_run_as(*spec, ::geteuid(), ::getegid(), allow_root); !refused.empty()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), refused.c_str());
        return kExitBadSpec;
    }
    const auto sizing = workerd::resolve_workers(*spec);
    // 2. Log to stderr at the spec's level (journald and terminals both read it there).
    try {
        workerd::setup_logging(spec->log);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "workerd: cannot open the log: %s\n", e.what());
        return kExitStartFailed;
    }
    if (keep_spec) {
        spdlog::info("SIGUSR2: the new image runs the spec in effect before the upgrade; SIGHUP re-reads {}", spec->file);
    }
    for (const auto& w : warnings) spdlog::warn("{}", w.to_string());
    if (spec->workers_auto) {
        std::string how;
        for (const auto& line : sizing.explanation) how += (how.empty() ? "" : "; ") + line;
        spdlog::info("workers: auto -> {} ({})", spec->workers, how);
    } else if (spec->memory_per_worker) {
        // A fixed count over the memory budget is the user's call, but say so.
        const auto limit = spec->memory_limit ? spec->memory_limit : workerd::detect_resources().memory_limit;
        if (limit) {
            const int cap = workerd::memory_budget(*limit, spec->memory_margin, *spec->memory_per_worker);
            if (spec->workers > cap) {
                spdlog::warn("workers: {} x {} MiB is over the memory budget ({} MiB less {:.0f}% fits {} workers)",
                             spec->workers, *spec->memory_per_worker >> 20, *limit >> 20, spec->memory_margin * 100, cap);
            }
        }
    }
    // The daemon holds three pipes per worker: room for a large fleet (workers keep the
    // limit the daemon was started with).
    const unsigned long nofile = workerd::raise_open_file_limit();
    spdlog::debug("open files: up to {}", nofile);
    // 3. Bind every listener (or take the inherited socket bound there); the daemon holds them
    //    for its whole life.
    std::vector<workerd::Listener> listeners;
    try {
        listeners = workerd::adopt_or_open_listeners(spec->listen, spec->backlog, inherited, spec->reuse_port);
    } catch (const workerd::ListenError& e) {
        spdlog::critical("{}", e.what());
        return kExitStartFailed;
    }
    for (const auto& s : inherited) {
        spdlog::warn("inherited socket {}{} matches no `listen` address; closing it", s.fd.get(),
                     s.name.empty() ? "" : " '" + s.name + "'");
    }
    inherited.clear();
    // 4. Supervise until stopped by a signal.
    try {
        workerd::DaemonStart how{self_executable(), argv, allow_root, std::move(handover)};
        workerd::Arbiter arbiter(std::move(*spec), std::move(listeners), std::move(how));
        return arbiter.run();
    } catch (const workerd::ListenError& e) {
        spdlog::critical("control socket: {}", e.what());
        return kExitStartFailed;
    }
}

int serve_builtin(const std::vector<std::string>& args) {
    try {
        return workerd::http::run_builtin_worker(workerd::http::parse_builtin_worker_args(args));
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "workerd serve-builtin: %s\n", e.what());
        return kExitUsage;
    }
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) return usage(stderr);
    const std::string& command = args[0];
    if (command == "--version" || command == "version") {
        std::printf("workerd %s\n", workerd::kVersion);
        return kExitOk;
    }
    if (command == "--help" || command == "-h" || command == "help") return usage(stdout);
    if (command == "serve-builtin") return serve_builtin({args.begin() + 1, args.end()});
    if (command == "tune") return workerd::tune::tune_command({args.begin() + 1, args.end()}, self_executable());
    if (command == "load") return workerd::tune::load_command({args.begin() + 1, args.end()});
    // Internal: the guardian the daemon starts (daemon/os/guardian.hpp), reading its stdin.
    if (command == "guard" && args.size() == 1) return workerd::run_guardian(STDIN_FILENO);
    if (command == "check" && args.size() >= 2) {
        // workerd check [--explain] [--root DIR] [--strict] [--allow-root] [--stdin] SPEC
        CheckOptions o;
        std::string path;
        for (std::size_t i = 1; i < args.size(); ++i) {
            if (args[i] == "--explain") o.explain = true;
            else if (args[i] == "--root" && i + 1 < args.size()) o.root = args[++i];
            else if (args[i] == "--strict") o.strict = true;
            else if (args[i] == "--allow-root") o.allow_root = true;
            else if (args[i] == "--stdin") o.from_stdin = true;
            else if (path.empty() && (args[i].empty() || args[i][0] != '-')) path = args[i];
            else return usage(stderr);
        }
        if (path.empty()) return usage(stderr);
        try {
            return check(path, o);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "workerd: %s\n", e.what());
            return kExitStartFailed;
        }
    }
    if (command == "start" && (args.size() == 2 || (args.size() == 3 && args[1] == "--allow-root"))) {
        try {
            return start(args.back(), args.size() == 3, std::vector<std::string>(argv, argv + argc));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "workerd: %s\n", e.what());
            return kExitStartFailed;
        }
    }
    return usage(stderr);
}
