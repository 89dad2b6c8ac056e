#include "daemon/shell/arbiter.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "daemon/os/load_board.hpp"
#include "daemon/os/logging.hpp"
#include "daemon/os/output_pipe.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/version.hpp"
#include "daemon/os/worker_command.hpp"

namespace workerd {
namespace {

// The loop is late when the timer fires this much past its time, or a turn takes this long;
// below it, the workers' clocks are left alone.
constexpr Clock::duration kLoopLagTolerance = std::chrono::milliseconds(100);

// The part of one turn that may go to spawning workers (each waits for its exec): a scale to
// 1024 workers goes in steps, with status requests and heartbeats read in between.
constexpr Clock::duration kSpawnBudget = std::chrono::milliseconds(10);

// A protocol line as it may appear in the log: printable ASCII, at most 80 characters.
std::string printable(std::string_view line) {
    std::string out;
    for (char c : line.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (line.size() > 80) out += "...";
    return out;
}

spdlog::level::level_enum level_of(core::Level level) {
    switch (level) {
        case core::Level::debug: return spdlog::level::debug;
        case core::Level::info: return spdlog::level::info;
        case core::Level::warn: return spdlog::level::warn;
        case core::Level::error: return spdlog::level::err;
    }
    return spdlog::level::info;
}

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

}  // namespace

Arbiter::Arbiter(Spec initial, std::vector<Listener> listeners, DaemonStart start)
    : self_exe_(std::move(start.self_exe)),
      argv_(std::move(start.argv)),
      allow_root_(start.allow_root),
      signals_(io_),
      timer_(io_),
      fleet_(fleet_options(std::move(initial), systemd_), Clock::now()),
      base_env_(current_environment()) {
    launcher_ = std::make_unique<ProcessLauncher>(self_exe_, base_env_);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2}) signals_.add(sig);
    // A re-exec (SIGUSR2) starts with every signal blocked, so that none arriving while the
    // new image starts is lost or kills it; the handlers are in place now.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (auto& l : listeners) listeners_.push_back(std::make_shared<Listener>(std::move(l)));
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
                                                   [this](const std::string& path) { return metrics_endpoint(path); },
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
        guardian_ = Guardian::adopt(start.handover->guardian_pid, UniqueFd(std::exchange(start.handover->guardian_fd, -1)));
    } else {
        start_guardian();
    }
    if (start.handover) adopt(*start.handover);
}

void Arbiter::start_guardian() {
    try {
        guardian_ = Guardian::start(self_exe_);
    } catch (const std::exception& e) {
        spdlog::error("cannot start the guardian ({}): if the daemon is killed, what its workers started may outlive it",
                      e.what());
        return;
    }
    for (const auto& [pid, process] : processes_) guardian_.watch(pid);
    spdlog::debug("guardian started (pid {})", guardian_.pid());
}

int Arbiter::run() {
    // A worker that closes a pipe must not kill the daemon.
    ::signal(SIGPIPE, SIG_IGN);
    std::string where;
    for (const auto& l : listeners_) where += (where.empty() ? "" : ", ") + l->address().to_string();
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
        orphans_.reaped(pid);
        if (guardian_.running() && pid == guardian_.pid()) {
            guardian_.lost();
            if (fleet_.mode() != core::Mode::running) continue;
            spdlog::error("the guardian (pid {}) {}; starting another", pid, core::describe_status(status));
            start_guardian();
            continue;
        }
        deliver(core::event::Exited{pid, status, cpu});
        processes_.erase(pid);
    }
}

void Arbiter::turn() {
    const auto now = Clock::now();
    turn_started_ = now;
    for (pid_t pid : orphans_.expire(now)) guardian_.forget(pid);
    // What is waiting on an overdue worker's protocol pipe is read first: the loop may have
    // been late (a long turn, a busy machine), not the worker.
    for (pid_t pid : fleet_.overdue(now)) {
        if (auto it = processes_.find(pid); it != processes_.end()) {
            if (auto pipe = it->second.pipes[2].lock()) pipe->read_now();
        }
    }
    if (fleet_.sample_due(now)) deliver(take_samples());
    // Spawns wait for their exec: a turn spends about kSpawnBudget on them.
    const auto per_spawn = std::max<Clock::duration>(spawn_cost_, std::chrono::microseconds(100));
    const int limit = static_cast<int>(std::clamp<long>(kSpawnBudget / per_spawn, 1, core::kSpawnsPerTurn));
    carry_out(fleet_.handle(core::event::Turn{limit}, now));
    if (fleet_.stopped() && orphans_.empty()) {
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

void Arbiter::carry_out(std::vector<core::Action> actions) {
    namespace a = core::action;
    for (auto& action : actions) {
        if (auto* spawn = std::get_if<a::Spawn>(&action)) {
            launch(*spawn);
        } else if (auto* s = std::get_if<a::Signal>(&action)) {
            // timeout_signal goes to the worker's main thread, where an event loop usually runs
            // (and is stuck): a stack dump handler then prints the loop's stack first.
            if (s->main_thread && ::syscall(SYS_tgkill, s->pid, s->pid, s->sig) == 0) continue;
            if (::kill(s->pid, s->sig) != 0 && errno != ESRCH) {
                spdlog::error("kill {} pid {} failed: {}", signal_name(s->sig), s->pid, std::strerror(errno));
            }
        } else if (auto* note = std::get_if<a::Note>(&action)) {
            spdlog::log(level_of(note->level), "{}", note->text);
        } else if (auto* sd = std::get_if<a::Systemd>(&action)) {
            if (!sd->reloading) {
                systemd_.send(sd->message);
                continue;
            }
            timespec mono{};
            ::clock_gettime(CLOCK_MONOTONIC, &mono);
            systemd_.send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\n{}",
                                      static_cast<long long>(mono.tv_sec) * 1000000 + mono.tv_nsec / 1000,
                                      sd->message.substr(sd->message.find('\n') + 1)));
        } else if (auto* left = std::get_if<a::ReleaseLeftovers>(&action)) {
            release_leftovers(*left);
        } else if (auto* stop = std::get_if<a::Stopping>(&action)) {
            if (stop->first) stop_listening();
            if (stop->fast) orphans_.kill_all(Clock::now());
        } else if (std::get_if<a::Rollback>(&action)) {
            listeners_ = std::move(previous_listeners_);
            slot_listeners_.retain(spec().reuse_port ? listeners_ : std::vector<std::shared_ptr<Listener>>{});
        } else if (std::get_if<a::RolloutDone>(&action)) {
            previous_listeners_.clear();
        } else if (auto* removed = std::get_if<a::SlotRemoved>(&action)) {
            slot_listeners_.drop(removed->slot);  // its sockets close with its last worker
        } else if (auto* shut = std::get_if<a::StopSlotSockets>(&action)) {
            // Its slot's own sockets stop listening, so the kernel sends no more connections
            // there. Those already queued move to the other slots where net.ipv4.tcp_migrate_req
            // is 1 (else they are reset).
            if (auto it = processes_.find(shut->pid); it != processes_.end()) {
                for (const auto& l : it->second.listeners) {
                    const bool own = std::find(listeners_.begin(), listeners_.end(), l) == listeners_.end();
                    if (own && l->address().kind == ListenAddress::Kind::tcp) ::shutdown(l->fd(), SHUT_RD);
                }
            }
        }
    }
}

void Arbiter::launch(const core::action::Spawn& spawn) {
    LaunchRequest request;
    request.slot = spawn.slot;
    request.generation = spawn.generation;
    request.spec = &spec();
    request.listeners = listeners_for(spawn.slot);
    // With a socket per slot the kernel spreads connections; the board's holding back would
    // only delay a worker's own queue.
    if (board_ && !spec().reuse_port) request.board_fd = board_.get();
    const auto began = Clock::now();
    Launched launched;
    try {
        launched = launcher_->launch(request);
    } catch (const std::exception& e) {
        // SpawnError (exec failed, bad cwd) or a resource failure (pipe2: EMFILE).
        deliver(core::event::SpawnFailed{spawn.id, e.what()});
        return;
    }
    spawn_cost_ = (spawn_cost_ * 3 + (Clock::now() - began)) / 4;
    guardian_.watch(launched.pid);  // it leads its own process group
    processes_[launched.pid].listeners = std::move(request.listeners);
    // The core knows the pid before the first line is read (a pipe may be read at once).
    deliver(core::event::Spawned{spawn.id, launched.pid, launched.program});
    watch_pipes(launched.pid, spawn.slot, std::move(launched.out), std::move(launched.err), std::move(launched.notify));
}

void Arbiter::watch_pipes(pid_t pid, int slot, UniqueFd out, UniqueFd err, UniqueFd notify) {
    Process& process = processes_[pid];
    int i = 0;
    for (auto [fd, stream] : {std::pair{&out, "stdout"}, std::pair{&err, "stderr"}}) {
        if (fd->valid()) {
            process.pipes[i] = OutputPipe::start(io_, std::move(*fd), [slot, pid, name = stream](std::string_view line, bool) {
                spdlog::info("worker {} (pid {}) {}: {}", slot, pid, name, line);
            });
        }
        ++i;
    }
    if (notify.valid()) {
        process.pipes[2] = OutputPipe::start(
            io_, std::move(notify),
            [this, pid, overlong = false](std::string_view line, bool truncated) mutable {
                on_notify(pid, line, truncated, overlong);
            },
            kMaxNotifyLine - 1);
    }
}

void Arbiter::on_notify(pid_t pid, std::string_view line, bool truncated, bool& in_overlong_line) {
    if (truncated || in_overlong_line) {
        // Pieces of a line past the limit: counted once, the rest (up to its '\n') dropped.
        if (truncated && !in_overlong_line) {
            deliver(core::event::BadLine{pid, fmt::format("a line longer than {} bytes", kMaxNotifyLine)});
        }
        in_overlong_line = truncated;
        return;
    }
    if (auto message = parse_notify_line(line)) {
        deliver(core::event::Message{pid, std::move(*message)});
    } else {
        deliver(core::event::BadLine{pid, fmt::format("'{}'", printable(line))});
    }
    // A message may bring a deadline forward (a first word, a request now in flight) or
    // ask for a turn (READY during a rollout).
    if (fleet_.take_rearm()) arm_timer();
}

void Arbiter::arm_timer() {
    const auto now = Clock::now();
    std::optional<Clock::time_point> next = fleet_.next_deadline(now);
    if (auto t = orphans_.next_deadline(); t && (!next || *t < *next)) next = *t;
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
        if (core::serving(w.phase)) samples.rss_bytes.emplace_back(w.pid, proc_rss_bytes(w.pid));
    }
    for (const auto& l : listeners_) {
        if (auto q = queue_of(*l)) samples.queue_depth += static_cast<int>(q->depth);
    }
    return samples;
}

void Arbiter::release_leftovers(const core::action::ReleaseLeftovers& gone) {
    const pid_t pid = gone.pid;
    const bool at_once = gone.at_once;
    const int sig = at_once ? SIGKILL : SIGTERM;
    const auto grace = spec().graceful_timeout;
    const auto kill_at = Clock::now() + grace;
    const bool group_left = group_alive(pid) && orphans_.terminate(-pid, kill_at, sig);
    if (!group_left) guardian_.forget(pid);
    // Children of the daemon that are no worker of it: orphans that came to it. Those of a
    // group being stopped, or of a live worker's group, go with their group.
    int outside = 0;
    for (pid_t child : children_of_this_process()) {
        if (processes_.count(child) || (guardian_.running() && child == guardian_.pid())) continue;
        const pid_t group = ::getpgid(child);
        if (group < 0 || (group != pid && processes_.count(group)) || orphans_.tracks(-group) || orphans_.tracks(child)) {
            continue;
        }
        if (orphans_.terminate(child, kill_at, sig)) ++outside;
    }
    if (group_left || outside > 0) {
        spdlog::warn("worker {} (pid {}, gen {}) left processes behind ({}{}{}): sent {}{}", gone.slot, pid, gone.generation,
                     group_left ? "its process group" : "",
                     group_left && outside ? ", " : "", outside ? fmt::format("{} orphan(s) outside it", outside) : "",
                     signal_name(sig), at_once ? "" : ", SIGKILL in " + format_duration(grace));
    }
}

void Arbiter::stop_listening() {
    // Every socket a worker may accept on: the fleet's, each slot's own (reuse_port), and an
    // older generation's that a reload replaced. The daemon's copies close now; the workers
    // close theirs as they stop accepting (the bundled worker and workerd_uvicorn at SIGTERM),
    // and then the kernel refuses new connections.
    std::set<std::shared_ptr<Listener>> sockets(listeners_.begin(), listeners_.end());
    for (const auto& [pid, process] : processes_) sockets.insert(process.listeners.begin(), process.listeners.end());
    int closed = 0;
    for (const auto& l : sockets) {
        if (l->activated()) continue;  // systemd keeps it: connections wait for the next daemon
        l->close();
        ++closed;
    }
    if (closed > 0) spdlog::info("stopped listening: new connections are refused once the workers stop accepting");
}

std::vector<std::shared_ptr<Listener>> Arbiter::listeners_for(int slot) {
    return spec().reuse_port ? slot_listeners_.for_slot(slot, listeners_) : listeners_;
}

std::optional<ListenQueue> Arbiter::queue_of(const Listener& l) const {
    const bool unix_socket = l.address().kind == ListenAddress::Kind::unix_path;
    auto total = listen_queue(l.fd(), unix_socket);
    if (!total) return total;
    for (const auto& [slot, socket] : slot_listeners_.siblings_of(l)) {
        if (auto q = listen_queue(socket->fd(), unix_socket)) {
            total->depth += q->depth;
            total->max += q->max;
        }
    }
    return total;
}

}  // namespace workerd
