#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/health.hpp"
#include "daemon/wire/listen_address.hpp"
#include "daemon/core/autoscale.hpp"
#include "daemon/wire/units.hpp"

namespace workerd {

/// The most workers a fleet may have (the spec, scaling, the autoscaler).
inline constexpr int kMaxWorkers = 1024;

/// `app.builtin`: the bundled C++ HTTP worker.
struct BuiltinAppSpec {
    std::string root;                    ///< static files; absolute after loading; empty = none
    bool demo = false;                   ///< serve /demo/* endpoints
    bool precompressed = true;           ///< serve file.br / file.gz to clients that accept them
    int max_connections = 1024;          ///< per worker; past it new connections get 503
    Duration keepalive_timeout{std::chrono::seconds(5)};
    std::uint64_t max_header_size = 16 * 1024;  ///< larger request heads get 431
    std::uint64_t max_body_size = 1024 * 1024;  ///< larger bodies get 413
};

/// `app`: what each worker runs. Exactly one of builtin / command is set.
struct AppSpec {
    std::optional<BuiltinAppSpec> builtin;
    std::vector<std::string> command;    ///< argv; {fd} and {fd:NAME} are substituted per worker
    std::string cwd;                     ///< absolute after loading (defaults to the spec's dir)
    std::map<std::string, std::string> env;  ///< added to the daemon's environment
    /// Preloaded workers: a zygote per generation imports the app once and forks each worker
    /// (command apps that speak the zygote protocol: workerd_uvicorn; docs/python.md).
    bool preload = false;
};

/// `backoff`: delays before restarting a slot whose worker keeps exiting.
struct BackoffSpec {
    Duration initial{std::chrono::seconds(1)};   ///< first delay after a quick exit
    Duration max{std::chrono::seconds(30)};      ///< cap
    Duration reset_after{std::chrono::seconds(10)};  ///< uptime that counts as stable
};

/// A count of workers, absolute ("2") or a share of the fleet ("25%").
struct WorkerAmount {
    int value = 0;
    bool percent = false;
    /// The number of workers for a fleet of `fleet`: percentages round up or down.
    int resolve(int fleet, bool round_up) const {
        if (!percent) return value;
        return round_up ? (fleet * value + 99) / 100 : fleet * value / 100;
    }
    bool operator==(const WorkerAmount&) const = default;
};

/// `rollout`: how a reload or a recycle replaces workers.
/// `rollout.analysis`: canary analysis (docs/operations.md). The first `canaries` new workers
/// take their slots while the rest of the fleet stays on the old generation; after `window`
/// and at least `min_requests` answered by them, they are compared with the old workers over
/// the same time. Worse: the rollout fails (rolled back); as good: it goes on.
struct AnalysisSpec {
    int canaries = 1;
    Duration window{std::chrono::seconds(60)};
    std::uint64_t min_requests = 100;
    double max_error_increase = 0.01;  ///< the canaries' 5xx+failed share may exceed the old's by this...
    double max_error_ratio = 2.0;      ///< ...or be this many times the old's, whichever is more
    double max_p99_ratio = 2.0;        ///< the canaries' p99 against the old's
};

struct RolloutSpec {
    WorkerAmount max_surge{25, true};      ///< extra workers while replacing (rounded up)
    WorkerAmount max_unavailable{0, false};  ///< workers that may be missing (rounded down)
    int failure_threshold = 3;             ///< new workers failing before READY: the rollout stops
    std::optional<AnalysisSpec> analysis;  ///< canary analysis; none: every slot rolls at once
};

/// Recycling: replacing a healthy worker that has served enough, grown too big, or lived long.
/// `leak`: leak-aware recycling (docs/operations.md). Each worker's private memory (USS; RSS
/// when /proc has no smaps_rollup) is followed against the requests it served and time, from
/// a baseline taken after `warmup` requests. A worker that grew `min_growth` past it and is
/// still growing by `per_request` or more per request, or that would cross its limit (max_private,
/// else max_rss, else its share of memory_limit) within `horizon` at its present pace, is
/// replaced through the rolling path: at a moment it has nothing in flight, or after `idle_wait`.
struct LeakSpec {
    std::uint64_t min_growth = 32ULL << 20;
    std::uint64_t per_request = 1024;  ///< bytes per request
    Duration horizon{std::chrono::minutes(10)};
    std::uint64_t warmup = 200;        ///< requests served before the baseline is taken
    Duration idle_wait{std::chrono::seconds(30)};
};

struct RecycleSpec {
    std::optional<std::uint64_t> max_requests;   ///< per STATS `served`
    std::uint64_t max_requests_jitter = 0;       ///< + random 0..jitter per worker
    std::optional<std::uint64_t> max_rss;        ///< bytes (RSS from /proc)
    std::optional<std::uint64_t> max_private;    ///< bytes (private memory, USS: smaps_rollup)
    std::optional<Duration> max_lifetime;
    Duration max_lifetime_jitter{0};
    Duration min_lifetime{std::chrono::seconds(10)};  ///< never recycled younger than this
    std::optional<LeakSpec> leak;
};

/// `control`: the Unix socket workerctl talks to (docs/control-protocol.md).
struct ControlSpec {
    std::string socket;  ///< absolute after loading; empty = default_control_socket()
    unsigned mode = 0600;                 ///< permissions of the socket file
    std::optional<unsigned> group;        ///< gid owning the socket file (`group: NAME`)
    std::vector<unsigned> allow_users;    ///< uids allowed besides root and the daemon's own
    std::vector<unsigned> allow_groups;   ///< gids whose members are allowed
};

struct MetricsSpec {
    std::optional<ListenAddress> listen;  ///< unset = no metrics endpoint
    int min_ready = 1;                    ///< /readyz is 200 with at least this many ready workers
};

struct LogSpec {
    std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
    bool json = false;           ///< `format: json`: one JSON object per line
    std::string file;            ///< absolute; empty = stderr. SIGUSR1 reopens it (logrotate).
};

/// `user` / `group`: the identity workers run as (the daemon switches before exec).
struct RunAsSpec {
    std::optional<std::string> user;  ///< as written (a name or a number)
    std::optional<unsigned> uid;
    std::optional<unsigned> gid;      ///< `group`, else the user's primary group
    std::string group;                ///< as written, for messages
    std::string login;                ///< the user's name in the user database ("" without an entry)
    std::string home;                 ///< and home directory: the workers' USER, LOGNAME and HOME
};

/// `workload:` how many workers a CPU can keep busy (how `workers: auto` counts).
enum class Workload { cpu, mixed, io, gunicorn };
const char* to_string(Workload w);

/// Load shedding (top level): requests a worker answers with 503 at once instead of running
/// them. Workers get these as WORKERD_QUEUE_TIMEOUT_MS and WORKERD_MAX_CONCURRENCY; the bundled
/// worker and workerd_uvicorn honour them (docs/spec.md, docs/python.md).
struct ShedSpec {
    std::optional<Duration> queue_timeout;  ///< waited longer than this in the kernel
    std::optional<int> max_concurrency;     ///< more than this many in flight in one worker
};

/// The whole spec, validated. Every path in it is absolute.
struct Spec {
    std::string file;                    ///< the spec file this came from (absolute)
    std::string text;                    ///< the YAML it was read from (a SIGUSR2 re-exec keeps it)
    std::vector<ListenAddress> listen;   ///< at least one
    int backlog = 2048;                  ///< requested; clamped to somaxconn when binding
    bool reuse_port = false;             ///< a SO_REUSEPORT socket per worker slot (TCP)
    /// `reuse_port: cpu`: each slot's socket takes the connections that arrive on one CPU
    /// (SO_INCOMING_CPU), and the bundled workers even out what arrives unevenly.
    bool reuse_port_cpu = false;
    bool workers_auto = false;           ///< `workers: auto`
    Workload workload = Workload::mixed; ///< how `auto` counts: cpu, mixed, io, gunicorn
    std::optional<std::uint64_t> memory_per_worker;  ///< a hint for the memory budget
    double memory_margin = 0.1;          ///< the share of the memory limit kept free
    std::optional<std::uint64_t> memory_limit;  ///< overrides the cgroup's limit for the budget
    std::optional<AutoscaleSpec> autoscale;     ///< off when absent
    int workers = 1;                     ///< the count (resolved when workers_auto)
    AppSpec app;
    RunAsSpec run_as;                    ///< `user`, `group`: unset = the daemon's own
    Duration graceful_timeout{std::chrono::seconds(30)};
    BackoffSpec backoff;
    HealthPolicy health;                 ///< timeout, boot_timeout, heartbeat, ... (top level)
    RolloutSpec rollout;
    RecycleSpec recycle;                 ///< max_requests, max_rss, max_lifetime, ... (top level)
    ShedSpec shed;                       ///< queue_timeout, max_concurrency (top level)
    ControlSpec control;
    MetricsSpec metrics;
    LogSpec log;
};

/// One problem found in a spec file, with where it is.
struct SpecError {
    std::string file;
    int line = 0;    ///< 1-based; 0 when unknown (e.g. file not readable)
    int column = 0;  ///< 1-based
    std::string key; ///< dotted path of the key, e.g. "app.builtin.root"; may be empty
    std::string message;

    /// "FILE:LINE:COLUMN: KEY: MESSAGE" (parts that are unknown are left out).
    std::string to_string() const;
};

/// Either a valid Spec or every error found. Validation is complete: nothing is started from
/// a spec with errors.
struct SpecLoadResult {
    std::optional<Spec> spec;
    std::vector<SpecError> errors;
    /// Not errors: what is valid but will not work as things are (a program not found yet).
    std::vector<SpecError> warnings;
    bool ok() const { return spec.has_value(); }
};


/// Whether a daemon with effective uid `euid` may start this spec's workers: one running as
/// root refuses to run them as root unless the spec says `user: root` (or `allow_root`, the
/// `--allow-root` flag for development); one not running as root cannot switch to another
/// user or group. Returns the reason when not, else an empty string.
std::string check_run_as(const Spec& spec, unsigned euid, unsigned egid, bool allow_root);

/// A value of the spec that only the host can check, with where it stands: a user or group
/// name (the user database), a directory that must exist and the program to run (the file
/// system). Reading records them; the host step (daemon/os/spec_host.hpp) resolves them and
/// reports what fails at this line and column.
struct HostLookup {
    enum class What {
        user,            ///< `user`: uid, primary gid, login and home
        group,           ///< `group`
        control_group,   ///< `control.group`: the socket file's group
        control_user,    ///< an entry of `control.users`
        control_member,  ///< an entry of `control.groups`
        directory,       ///< `app.cwd`, `app.builtin.root`: must be a directory (`text` is absolute)
        program,         ///< `app.command[0]`: found in PATH or executable (a warning if not)
    };
    What what;
    std::string key;   ///< "user", "control.users[1]", "app.builtin.root"
    std::string text;  ///< as written (directories: made absolute against the spec's folder)
    int line = 0;
    int column = 0;
};

/// What reading the YAML gives, before the host step: the spec as far as it could be read,
/// every error in it, and the values only the host can check.
struct SpecReading {
    Spec spec;
    std::vector<SpecError> errors;
    std::vector<HostLookup> lookups;
};

/// Reads and validates a spec's text without asking the host anything: no file system, user
/// database or environment. `file` names it in errors and anchors relative paths (its
/// directory; pass it absolute for absolute paths). `cpu_count` sizes `workers: auto` until
/// the host step sizes it from cgroups (os/sizing.hpp). Reading and loading from a file, with
/// the host step: daemon/os/spec_host.hpp.
SpecReading read_spec(const std::string& text, const std::string& file, int cpu_count);

}  // namespace workerd
