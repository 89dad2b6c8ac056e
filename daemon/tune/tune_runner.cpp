#include "daemon/tune/tune_runner.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ctl/client.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/os/spawn.hpp"
#include "daemon/os/spec_host.hpp"
#include "daemon/os/unique_fd.hpp"
#include "daemon/tune/tune_spec.hpp"

extern char** environ;

namespace workerd::tune {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace {

constexpr int kExitBadSpec = 1;
constexpr int kExitStartFailed = 3;
constexpr int kProbeConnections = 128;

/// A loopback TCP port that was free a moment ago (the daemon binds it right after).
int free_port() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw TuneError(kExitStartFailed, fmt::format("socket failed: {}", std::strerror(errno)));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        throw TuneError(kExitStartFailed, fmt::format("bind 127.0.0.1:0 failed: {}", std::strerror(errno)));
    }
    return ntohs(a.sin_port);
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string last_lines(const std::string& path, int lines) {
    std::ifstream in(path);
    std::vector<std::string> all;
    for (std::string line; std::getline(in, line);) all.push_back(line);
    std::string out;
    for (std::size_t i = all.size() > static_cast<std::size_t>(lines) ? all.size() - static_cast<std::size_t>(lines) : 0;
         i < all.size(); ++i) {
        out += "  " + all[i] + "\n";
    }
    return out;
}

/// The tuning fleet: a real `workerd start` on a rewritten copy of the spec, in a temporary
/// directory with its control socket and log. Stopped (TERM, then KILL) and cleaned up when it
/// goes out of scope, whatever happened.
class TuningFleet {
public:
    TuningFleet(const TuneOptions& o, const Spec& spec, const std::string& text) {
        char tmpl[] = "/tmp/workerd-tune-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            throw TuneError(kExitStartFailed, fmt::format("mkdtemp failed: {}", std::strerror(errno)));
        }
        dir_ = tmpl;
        // Workers may run as another user (`user:`): they need nothing here, the daemon does.
        TunePlaces places;
        for (std::size_t i = 0; i < spec.listen.size(); ++i) places.ports.push_back(free_port());
        places.control_socket = dir_ + "/control.sock";
        places.workers = 1;
        port_ = places.ports.front();
        socket_ = places.control_socket;
        const std::string spec_file = dir_ + "/spec.yaml";
        std::ofstream(spec_file) << tuning_spec_text(text, spec, places);
        log_ = dir_ + "/workerd.log";
        UniqueFd log_fd(::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!log_fd) throw TuneError(kExitStartFailed, fmt::format("cannot create {}: {}", log_, std::strerror(errno)));
        SpawnRequest r;
        r.argv = {o.workerd, "start"};
        if (o.allow_root) r.argv.push_back("--allow-root");
        r.argv.push_back(spec_file);
        for (char** e = environ; *e != nullptr; ++e) {
            const std::string entry = *e;
            // The fleet must not take sockets meant for this process, nor talk to another daemon.
            if (entry.rfind("LISTEN_", 0) == 0 || entry.rfind("NOTIFY_SOCKET=", 0) == 0 ||
                entry.rfind("WORKERD_", 0) == 0) {
                continue;
            }
            r.env.push_back(entry);
        }
        r.stdout_fd = log_fd.get();
        r.stderr_fd = log_fd.get();
        r.die_with_parent = true;  // a tune killed outright takes its fleet with it
        try {
            pid_ = spawn_process(r);
        } catch (const SpawnError& e) {
            throw TuneError(kExitStartFailed, fmt::format("cannot start {}: {}", o.workerd, e.what()));
        }
    }

    ~TuningFleet() {
        stop();
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }
    TuningFleet(const TuningFleet&) = delete;
    TuningFleet& operator=(const TuningFleet&) = delete;

    int port() const { return port_; }
    pid_t pid() const { return pid_; }

    /// The daemon's status, or nullopt when it does not answer (yet).
    std::optional<json> status() {
        try {
            workerctl::Client client(socket_, std::chrono::milliseconds(2000));
            return client.call("status");
        } catch (const workerctl::Failure&) {
            return std::nullopt;
        }
    }

    void scale(int workers) {
        try {
            workerctl::Client client(socket_, std::chrono::milliseconds(5000));
            client.call("scale", json{{"workers", workers}});
        } catch (const workerctl::Failure& e) {
            throw TuneError(kExitStartFailed, fmt::format("scale to {} failed: {}", workers, e.what()));
        }
    }

    /// Whether the daemon has exited (reaped here); its exit is described in `why`.
    bool exited(std::string& why) {
        if (pid_ <= 0) return true;
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r != pid_) return false;
        pid_ = -1;
        why = WIFEXITED(status) ? fmt::format("workerd exited with status {}", WEXITSTATUS(status))
                                : fmt::format("workerd was killed by signal {}", WTERMSIG(status));
        return true;
    }

    std::string log_tail(int lines = 12) const { return last_lines(log_, lines); }

    /// Stops the fleet: SIGTERM (the daemon drains and stops its workers), SIGKILL after 20 s.
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        const auto deadline = Clock::now() + std::chrono::seconds(20);
        int status = 0;
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (Clock::now() > deadline) {
                ::kill(pid_, SIGKILL);  // its workers die with it (PR_SET_PDEATHSIG)
                ::waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        pid_ = -1;
    }

private:
    std::string dir_;
    std::string socket_;
    std::string log_;
    int port_ = 0;
    pid_t pid_ = -1;
};

/// The fleet's serving workers: pid of each, once `count` are ready and no other is left.
std::optional<std::vector<pid_t>> ready_workers(const json& status, int count) {
    if (!status.contains("workers") || status.value("rolling", false)) return std::nullopt;
    std::vector<pid_t> pids;
    for (const auto& w : status["workers"]) {
        if (w.value("state", "") != "ready") return std::nullopt;
        pids.push_back(w.value("pid", 0));
    }
    if (static_cast<int>(pids.size()) != count) return std::nullopt;
    return pids;
}

/// Why the fleet is not starting, from its status: a slot whose workers keep exiting.
std::optional<std::string> failing(const json& status) {
    auto describe = [](const json& w) {
        const auto& last = w["last_exit"];
        return last.is_string() ? last.get<std::string>() : std::string("exited");
    };
    for (const auto& w : status.value("workers", json::array())) {
        if (w.value("restarts", 0) >= 3 && w.value("state", "") != "ready") return describe(w);
    }
    for (const auto& w : status.value("waiting", json::array())) {
        if (w.value("flapping", false) || w.value("last_exit", json()).is_string()) {
            const auto& last = w["last_exit"];
            const std::string why = last.is_string() ? last.get<std::string>() : "exited";
            if (w.value("flapping", false) || why.rfind("cannot start", 0) == 0) return why;
        }
    }
    return std::nullopt;
}

/// Waits until `count` workers are ready and nothing else runs; their pids.
std::vector<pid_t> wait_ready(TuningFleet& fleet, int count, std::chrono::milliseconds bound,
                              const std::atomic<bool>& stop) {
    const auto deadline = Clock::now() + bound;
    std::string why;
    while (Clock::now() < deadline && !stop) {
        if (fleet.exited(why)) {
            throw TuneError(kExitStartFailed, fmt::format("the fleet did not start: {}\n{}", why, fleet.log_tail()));
        }
        if (auto s = fleet.status()) {
            if (auto pids = ready_workers(*s, count)) return *pids;
            if (auto failure = failing(*s)) {
                throw TuneError(kExitStartFailed,
                                fmt::format("the app does not start: {}\n{}", *failure, fleet.log_tail()));
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (stop) return {};
    throw TuneError(kExitStartFailed, fmt::format("{} worker{} not ready within {} s\n{}", count,
                                                  count == 1 ? " was" : "s were",
                                                  std::chrono::duration_cast<std::chrono::seconds>(bound).count(),
                                                  fleet.log_tail()));
}

long total_cpu_ticks(const std::vector<pid_t>& pids) {
    long ticks = 0;
    for (const pid_t p : pids) ticks += std::max(0L, proc_cpu_ticks(p));
    return ticks;
}

/// Waits (up to 10 s) until the fleet is idle: the workers that report STATS have nothing in
/// flight, and the fleet's CPU over the last 200 ms is under a tenth of a core. What an
/// overloaded step left behind (requests the generator gave up on are still computed by apps
/// that do not notice the closed connection) must not be served during the next step.
void wait_idle(TuningFleet& fleet, const std::vector<pid_t>& pids, const std::atomic<bool>& stop) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
    long ticks = total_cpu_ticks(pids);
    while (Clock::now() < deadline && !stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const long now = total_cpu_ticks(pids);
        const double cores = static_cast<double>(now - ticks) / ticks_per_second / 0.2;
        ticks = now;
        if (cores >= 0.1) continue;
        const auto s = fleet.status();
        if (!s) return;
        long inflight = 0;
        for (const auto& w : s->value("workers", json::array())) {
            if (w.contains("inflight") && w["inflight"].is_number()) inflight += w["inflight"].get<long>();
        }
        if (inflight == 0) return;
    }
}

class ProgressLine {
public:
    explicit ProgressLine(std::FILE* out) : out_(out), tty_(out != nullptr && ::isatty(::fileno(out)) == 1) {}

    void live(const std::string& step, const load::Progress& p) {
        if (out_ == nullptr || !tty_) return;
        std::fprintf(out_, "\r\033[K%s  %.1fs  %s req/s  p99 %.1f ms  errors %llu", step.c_str(), p.elapsed_s,
                     thousands(p.rate).c_str(), p.p99_ms, static_cast<unsigned long long>(p.errors));
        std::fflush(out_);
    }
    void done(const std::string& line) {
        if (out_ == nullptr) return;
        std::fprintf(out_, "%s%s\n", tty_ ? "\r\033[K" : "", line.c_str());
        std::fflush(out_);
    }

private:
    std::FILE* out_;
    bool tty_;
};


}  // namespace

std::chrono::seconds planned_duration(const TuneOptions& o, std::size_t counts) {
    const auto per_count = o.probe + o.step * o.limits.max_open_trials;
    // Each step may wait up to the request timeout for its last answers.
    return std::chrono::duration_cast<std::chrono::seconds>(per_count * static_cast<long>(counts)) +
           std::chrono::seconds(1);
}

TuneReport run_tune(const TuneOptions& o, const std::atomic<bool>& stop, std::FILE* progress) {
    const auto began = Clock::now();
    TuneReport report;
    report.started_at = utc_now();
    report.objective = o.objective;
    report.step_seconds = std::chrono::duration<double>(o.step).count();

    // 1. The spec, read and checked as `workerd start` would.
    auto loaded = load_spec_file(o.spec_path, available_cpus());
    if (!loaded.spec) {
        std::string all;
        for (const auto& e : loaded.errors) all += (all.empty() ? "" : "\n") + e.to_string();
        throw TuneError(kExitBadSpec, all);
    }
    const Spec& spec = *loaded.spec;
    report.spec_file = spec.file;
    for (const auto& r : o.requests) report.targets.push_back(TargetSummary{r.method, r.target, r.weight});

    // 2. The budget: the spec's memory limit, else the cgroup's; the CPUs this may use.
    const Resources resources = detect_resources();
    report.budget.memory_limit = spec.memory_limit ? spec.memory_limit : resources.memory_limit;
    report.budget.memory_margin = spec.memory_margin;
    report.budget.usable_cpus = resources.usable_cpus();
    TuneSession session(o.objective, o.limits, report.budget, o.counts, spec.memory_per_worker);
    auto print_notes = [&] {
        for (const auto& note : session.take_notes()) {
            if (progress != nullptr) std::fprintf(progress, "%s\n", note.c_str());
        }
    };
    if (progress != nullptr) {
        const auto total = planned_duration(o, session.ladder().size());
        std::string counts;
        for (const int n : session.ladder()) counts += (counts.empty() ? "" : ", ") + std::to_string(n);
        std::fprintf(progress,
                     "tune: %zu worker counts (%s), each a %llds probe and up to %d steps of %llds: at most "
                     "%lldm%02llds of load, plus start-up; Ctrl-C stops and reports what was measured\n",
                     session.ladder().size(), counts.c_str(), static_cast<long long>(o.probe.count() / 1000),
                     o.limits.max_open_trials, static_cast<long long>(o.step.count() / 1000),
                     static_cast<long long>(total.count() / 60), static_cast<long long>(total.count() % 60));
    }

    // 3. The fleet, on loopback ports of its own.
    std::ifstream in(spec.file);
    std::stringstream text;
    text << in.rdbuf();
    TuningFleet fleet(o, spec, text.str());
    const auto boot_bound = std::chrono::duration_cast<std::chrono::milliseconds>(spec.health.boot_timeout) +
                            std::chrono::seconds(10);
    ProgressLine line(progress);
    const auto timeout = o.request_timeout.count() > 0
                             ? o.request_timeout
                             : std::max(std::chrono::milliseconds(2000),
                                        std::chrono::milliseconds(static_cast<long>(o.objective.latency_ms * 5)));

    // 4. What the session asks for, step by step.
    auto interrupted = [&](const std::string& why) {
        report.complete = false;
        if (report.stopped_because.empty()) report.stopped_because = why;
    };
    try {
        // The fleet starts with one worker: a spec that cannot start fails here, once.
        std::vector<pid_t> pids = wait_ready(fleet, 1, boot_bound, stop);
        int current = 1;
        while (!stop) {
            const auto next = session.next();
            print_notes();
            if (next.kind == TuneSession::Next::Kind::done) break;
            const int workers = next.workers;
            if (workers != current) {
                fleet.scale(workers);
                pids = wait_ready(fleet, workers, boot_bound, stop);
                current = workers;
                if (stop) break;
            }
            const bool probe = next.step.kind == TrialResult::Kind::probe;
            load::Options lo;
            lo.port = std::to_string(fleet.port());
            lo.requests = o.requests;
            lo.threads = o.threads;
            lo.timeout = timeout;
            lo.stop = &stop;
            lo.rate = probe ? 0 : next.step.rate;
            lo.duration = probe ? o.probe : o.step;
            lo.connections = probe ? std::min(kProbeConnections, o.connections) : o.connections;
            const std::string label = probe ? fmt::format("{}: probe", workers_word(workers))
                                            : fmt::format("{}: {} req/s", workers_word(workers), thousands(lo.rate));
            lo.on_progress = [&](const load::Progress& p) { line.live(label, p); };
            const long ticks_before = total_cpu_ticks(pids);
            const auto t0 = Clock::now();
            const load::Result r = load::run(lo);
            const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
            if (r.stopped) break;
            TrialResult t;
            t.kind = next.step.kind;
            t.offered_rate = lo.rate;
            t.rate = r.rate();
            t.seconds = r.seconds;
            t.requests = r.requests();
            t.errors = r.errors();
            t.timeouts = r.timeouts + r.unsent;
            t.p50_ms = r.ms(50);
            t.p90_ms = r.ms(90);
            t.p99_ms = r.ms(99);
            t.max_ms = static_cast<double>(r.latency.max()) / 1000.0;
            t.objective_ms = r.ms(o.objective.percentile);
            t.cpu_cores = static_cast<double>(total_cpu_ticks(pids) - ticks_before) /
                          static_cast<double>(::sysconf(_SC_CLK_TCK)) / seconds;
            for (const pid_t p : pids) {
                if (const auto m = proc_memory(p)) {
                    t.pss_bytes.push_back(static_cast<std::uint64_t>(m->pss_bytes));
                    t.private_bytes.push_back(static_cast<std::uint64_t>(m->private_bytes));
                }
            }
            t.passed = session.meets(t);
            line.done(fmt::format("{}: {}", workers_word(workers), describe_trial(t, o.objective)));
            session.record(std::move(t));
            wait_idle(fleet, pids, stop);
        }
    } catch (const TuneError& e) {
        if (session.results().empty()) throw;
        interrupted(e.what());
    } catch (const std::exception& e) {
        if (session.results().empty()) throw TuneError(kExitStartFailed, e.what());
        interrupted(e.what());
    }
    if (stop) interrupted("interrupted (Ctrl-C)");
    session.finish();
    fleet.stop();
    report.counts = session.results();
    report.recommendation = session.recommendation();
    report.elapsed_seconds = std::chrono::duration<double>(Clock::now() - began).count();
    return report;
}

}  // namespace workerd::tune
