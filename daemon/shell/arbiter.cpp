#include "daemon/shell/arbiter.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <spdlog/spdlog.h>

#include "daemon/os/load_board.hpp"
#include "daemon/os/logging.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/os/worker_command.hpp"
#include "daemon/shell/metrics_endpoint.hpp"
#include "daemon/version.hpp"

namespace workerd {
namespace {

// The loop is late when the timer fires this much past its time, or a turn takes this long;
// below it, the workers' clocks are left alone.
constexpr Clock::duration kLoopLagTolerance = std::chrono::milliseconds(100);

// The part of one turn that may go to spawning workers (each waits for its exec): a scale to
// 1024 workers goes in steps, with status requests and heartbeats read in between.
constexpr Clock::duration kSpawnBudget = std::chrono::milliseconds(10);

core::Fleet::Options fleet_options(Spec spec, const SystemdNotifier& systemd) {
    core::Fleet::Options o;
    o.spec = std::move(spec);
    o.memory_limit = detect_resources().memory_limit;
    if (auto w = systemd.watchdog_interval()) o.watchdog_interval = std::chrono::duration_cast<Duration>(*w);
    o.systemd = systemd.active() || systemd.watchdog_interval().has_value();
    // The shell chooses the randomness (jitter); the core only draws from it.
    o.seed = static_cast<std::uint64_t>(::getpid()) ^ static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
    return o;
}

// One process's memory by sharing (smaps_rollup), or its RSS alone where that is unreadable.
core::event::MemorySample memory_sample(pid_t pid) {
    core::event::MemorySample s;
    s.pid = pid;
    if (const auto m = proc_memory(pid)) {
        s.rss_bytes = m->rss_bytes;
        s.pss_bytes = m->pss_bytes;
        s.private_bytes = m->private_bytes;
    } else {
        s.rss_bytes = proc_rss_bytes(pid);
    }
    return s;
}

}  // namespace

Arbiter::Arbiter(Spec initial, std::vector<Listener> listeners, DaemonStart start)
    : self_exe_(std::move(start.self_exe)),
      argv_(std::move(start.argv)),
      allow_root_(start.allow_root),
      signals_(io_),
      timer_(io_),
      fleet_(fleet_options(std::move(initial), systemd_), Clock::now()),
      base_env_(current_environment()),
      sockets_(std::move(listeners)),
      processes_(io_, self_exe_, [this](pid_t pid, std::string_view line, bool overlong) { on_protocol_line(pid, line, overlong); }),
      zygotes_(io_, [this](long generation) {
          deliver(core::event::ZygoteReady{generation});
          if (fleet_.take_rearm()) arm_timer();  // its generation's workers can be forked now
      }) {
    launcher_ = std::make_unique<ProcessLauncher>(self_exe_, base_env_);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2}) signals_.add(sig);
    // A re-exec (SIGUSR2) starts with every signal blocked, so that none arriving while the
    // new image starts is lost or kills it; the handlers are in place now.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (spec().reuse_port && !SlotListeners::kernel_migrates_queues()) {
        spdlog::info("reuse_port: each worker slot accepts on its own socket; net.ipv4.tcp_migrate_req is not 1, "
                     "so connections queued on a slot removed by scaling down are reset rather than moved");
    }
    if (spec().app.builtin) board_ = LoadBoard::create();
    UniqueFd control_fd, metrics_fd;
    if (start.handover) {
        control_fd.reset(std::exchange(start.handover->control_fd, -1));
        metrics_fd.reset(std::exchange(start.handover->metrics_fd, -1));
    }
    if (spec().metrics.listen) {
        metrics_ = std::make_unique<MetricsServer>(io_, *spec().metrics.listen,
                                                   [this](const std::string& path) {
                                                       return metrics_endpoint(path, fleet_, [this] { return sockets_.queues(); });
                                                   },
                                                   std::move(metrics_fd));
    }
    // Throws ListenError when the socket is a live daemon's or cannot be made.
    control_ = std::make_unique<ControlServer>(
        io_, spec().control,
        [this](const std::string& command, const nlohmann::json& args) { return control(command, args); },
        std::move(control_fd));
    // Orphans of the workers' own children come to the daemon, not to init: they are seen,
    // reaped, and stopped with what their worker left (release_leftovers).
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        spdlog::warn("prctl(PR_SET_CHILD_SUBREAPER) failed: {}; orphans of the workers' children go to init",
                     std::strerror(errno));
    }
    if (start.handover && start.handover->guardian_fd >= 0) {
        processes_.adopt_guardian(start.handover->guardian_pid, UniqueFd(std::exchange(start.handover->guardian_fd, -1)));
    } else {
        processes_.start_guardian();
    }
    if (start.handover) adopt(*start.handover);
}

int Arbiter::run() {
    // A worker that closes a pipe must not kill the daemon.
    ::signal(SIGPIPE, SIG_IGN);
    std::string where;
    for (const auto& l : sockets_.current()) where += (where.empty() ? "" : ", ") + l->address().to_string();
    spdlog::info("workerd {} (pid {}) listening on {} with {} worker{} (generation {}); control socket {}", kVersion,
                 ::getpid(), where, fleet_.desired(), fleet_.desired() == 1 ? "" : "s", fleet_.generation(),
                 control_->path());
    control_->start();
    if (metrics_) {
        metrics_->start();
        spdlog::info("metrics on http://{}/metrics", spec().metrics.listen->to_string());
    }
    wait_for_signal();
    turn();
    io_.run();
    control_.reset();  // removes the socket file
    spdlog::info("all workers stopped; exiting");
    return 0;
}

void Arbiter::wait_for_signal() {
    // The signal handler itself (asio's) only queues; the work happens here, on the loop.
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        wait_for_signal();
        on_signal(sig);
        turn();
    });
}

void Arbiter::on_signal(int sig) {
    switch (sig) {
        case SIGCHLD: reap_children(); return;
        case SIGHUP:
            if (fleet_.mode() != core::Mode::running) return;
            try {
                reload("SIGHUP");
            } catch (const ControlError&) {
                // Logged by reload(); the fleet keeps serving as it was.
            }
            return;
        case SIGUSR2:
            if (fleet_.mode() != core::Mode::running) return;
            try {
                upgrade();
            } catch (const std::exception& e) {
                // Out of descriptors for the check's pipe, say: nothing was handed over.
                spdlog::error("SIGUSR2: {}; the running daemon carries on", e.what());
            }
            return;
        case SIGUSR1:
            if (spec().log.file.empty()) {
                spdlog::info("SIGUSR1: the log goes to stderr; there is no file to reopen");
                return;
            }
            try {
                reopen_log(spec().log);
                spdlog::info("SIGUSR1: reopened {}", spec().log.file);
            } catch (const std::exception& e) {
                spdlog::error("SIGUSR1: cannot reopen {}: {}", spec().log.file, e.what());
            }
            return;
        default: deliver(core::event::Signal{sig});  // TERM, INT, QUIT, TTIN, TTOU: the core's
    }
}

void Arbiter::reap_children() {
    // The one place that reaps: every child of the daemon ends here.
    while (true) {
        int status = 0;
        rusage usage{};
        const pid_t pid = ::wait4(-1, &status, WNOHANG, &usage);
        if (pid == 0) return;
        if (pid < 0) {
            if (errno == EINTR) continue;
            if (errno != ECHILD) spdlog::error("waitpid failed: {}", std::strerror(errno));
            return;
        }
        const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
        processes_.reaped(pid);
        if (processes_.is_guardian(pid)) {
            const bool running = fleet_.mode() == core::Mode::running;
            if (running) spdlog::error("the guardian (pid {}) {}; starting another", pid, core::describe_status(status));
            processes_.guardian_lost(running);
            continue;
        }
        zygotes_.reaped(pid);
        deliver(core::event::Exited{pid, status, cpu});
        processes_.forget(pid);
    }
}

void Arbiter::turn() {
    const auto now = Clock::now();
    processes_.expire(now);
    // What is waiting on an overdue worker's protocol pipe is read first: the loop may have
    // been late (a long turn, a busy machine), not the worker.
    for (pid_t pid : fleet_.overdue(now)) processes_.read_protocol_now(pid);
    if (fleet_.sample_due(now)) deliver(take_samples());
    // Spawns wait for their exec: a turn spends about kSpawnBudget on them.
    const auto per_spawn = std::max<Clock::duration>(spawn_cost_, std::chrono::microseconds(100));
    const int limit = static_cast<int>(std::clamp<long>(kSpawnBudget / per_spawn, 1, core::kSpawnsPerTurn));
    carry_out(fleet_.handle(core::event::Turn{limit}, now));
    if (fleet_.stopped() && !processes_.leftovers()) {
        timer_.cancel();
        signals_.cancel();
        io_.stop();
        return;
    }
    arm_timer();
    last_turn_end_ = Clock::now();
    // A long turn (spawning, a slow /proc) kept the workers' pipes unread meanwhile.
    excuse_loop_delay(last_turn_end_ - now, "a long turn of the loop");
}

void Arbiter::deliver(const core::Event& event) { carry_out(fleet_.handle(event, Clock::now())); }

void Arbiter::arm_timer() {
    const auto now = Clock::now();
    std::optional<Clock::time_point> next = fleet_.next_deadline(now);
    if (auto t = processes_.next_deadline(); t && (!next || *t < *next)) next = *t;
    if (!next) {
        timer_due_.reset();
        timer_.cancel();
        return;
    }
    // Through the timer, not a posted handler: the loop serves the I/O that is waiting (a
    // status request, heartbeats) before a timer's turn.
    if (timer_due_ && *timer_due_ == *next) return;
    set_timer(*next);
}

void Arbiter::set_timer(Clock::time_point at) {
    timer_due_ = at;
    timer_.expires_at(at);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) on_timer();
    });
}

void Arbiter::on_timer() {
    const auto now = Clock::now();
    if (timer_due_) {
        // Late past the later of its time and the previous turn's end: the daemon did not run
        // (starved of CPU, stopped) or was busy outside the loop's turns (a large status).
        excuse_loop_delay(now - std::max(*timer_due_, last_turn_end_), "the timer fired late");
    }
    timer_due_.reset();
    turn();
}

void Arbiter::excuse_loop_delay(Clock::duration delay, const char* why) {
    if (delay < kLoopLagTolerance) return;
    deliver(core::event::Late{std::chrono::duration_cast<Duration>(delay), why});
}

core::event::Samples Arbiter::take_samples() {
    core::event::Samples samples;
    for (const auto& [id, w] : fleet_.workers()) {
        if (!core::serving(w.phase)) continue;
        // smaps_rollup walks the process's page tables: only when PSS and private memory are
        // wanted; RSS alone is one read of /proc/PID/stat.
        if (fleet_.memory_by_sharing()) samples.memory.push_back(memory_sample(w.pid));
        else samples.memory.push_back({w.pid, proc_rss_bytes(w.pid), 0, 0});
    }
    for (const auto& [generation, z] : fleet_.zygotes()) {
        if (z.pid > 0) samples.memory.push_back(memory_sample(z.pid));
    }
    samples.queue_depth = sockets_.queued();
    return samples;
}

}  // namespace workerd
