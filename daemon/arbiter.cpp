#include "daemon/arbiter.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "daemon/logging.hpp"
#include "daemon/output_pipe.hpp"
#include "daemon/spawn.hpp"
#include "daemon/version.hpp"
#include "daemon/worker_command.hpp"

namespace workerd {
namespace {

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "was killed by " + signal_name(WTERMSIG(status));
    return "changed state " + std::to_string(status);
}

std::string seconds_text(Clock::duration d) {
    return format_duration(std::chrono::duration_cast<Duration>(d));
}

// The loop is late when the timer fires this much past its time, or a turn takes this long;
// below it, the workers' clocks are left alone.
constexpr Clock::duration kLoopLagTolerance = std::chrono::milliseconds(100);

// The part of one turn that may go to spawning workers (each waits for its exec): a scale to
// 1024 workers goes in steps, with status requests and heartbeats read in between.
constexpr Clock::duration kSpawnBudget = std::chrono::milliseconds(10);

// Malformed protocol lines are reported at most this often per worker.
constexpr std::chrono::seconds kBadLineLogInterval{10};

// A protocol line as it may appear in the log: printable ASCII, at most 80 characters.
std::string printable(std::string_view line) {
    std::string out;
    for (char c : line.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (line.size() > 80) out += "...";
    return out;
}

// "sent no heartbeat for 30.2s" and friends: what was measured, for the log.
std::string describe_hang(const Verdict& v, const HealthPolicy& policy) {
    switch (v.reason) {
        case HangReason::boot_timeout:
            return fmt::format("sent no READY within {} (boot_timeout)", format_duration(policy.boot_timeout));
        case HangReason::heartbeat_timeout:
            return fmt::format("sent no heartbeat for {} (timeout {})", format_duration(v.measured),
                               format_duration(policy.timeout));
        case HangReason::request_timeout:
            return fmt::format("has had a request in flight for {} (request_timeout {})",
                               format_duration(v.measured), format_duration(*policy.request_timeout));
        case HangReason::none: break;
    }
    return "is fine";
}

}  // namespace

Arbiter::Arbiter(Spec spec, std::vector<Listener> listeners, DaemonStart start)
    : spec_(std::move(spec)),
      self_exe_(std::move(start.self_exe)),
      argv_(std::move(start.argv)),
      allow_root_(start.allow_root),
      signals_(io_),
      timer_(io_),
      rng_(static_cast<unsigned>(::getpid()) ^
           static_cast<unsigned>(Clock::now().time_since_epoch().count())),
      base_env_(current_environment()) {
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2}) {
        signals_.add(sig);
    }
    // A re-exec (SIGUSR2) starts with every signal blocked, so that none arriving while the
    // new image starts is lost or kills it; the handlers are in place now.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (auto& l : listeners) listeners_.push_back(std::make_shared<Listener>(std::move(l)));
    if (spec_.reuse_port && !SlotListeners::kernel_migrates_queues()) {
        spdlog::info("reuse_port: each worker slot accepts on its own socket; net.ipv4.tcp_migrate_req is not 1, "
                     "so connections queued on a slot removed by scaling down are reset rather than moved");
    }
    if (spec_.app.builtin) board_ = LoadBoard::create();
    int initial = spec_.workers;
    if (spec_.autoscale) initial = std::clamp(initial, spec_.autoscale->min, spec_.autoscale->max);
    for (int slot = 0; slot < initial; ++slot) slots_[slot].active = true;
    cgroup_memory_limit_ = detect_resources().memory_limit;
    UniqueFd control_fd, metrics_fd;
    if (start.handover) {
        control_fd.reset(std::exchange(start.handover->control_fd, -1));
        metrics_fd.reset(std::exchange(start.handover->metrics_fd, -1));
    }
    if (spec_.metrics.listen) {
        metrics_ = std::make_unique<MetricsServer>(io_, *spec_.metrics.listen,
                                                   [this](const std::string& path) { return metrics_endpoint(path); },
                                                   std::move(metrics_fd));
    }
    // Throws ListenError when the socket is a live daemon's or cannot be made.
    control_ = std::make_unique<ControlServer>(
        io_, spec_.control,
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
    if (start.handover) adopt(*start.handover, Clock::now());
}

void Arbiter::start_guardian() {
    try {
        guardian_ = Guardian::start(self_exe_);
    } catch (const std::exception& e) {
        spdlog::error("cannot start the guardian ({}): if the daemon is killed, what its workers started may outlive it",
                      e.what());
        return;
    }
    for (const auto& [pid, worker] : workers_) guardian_.watch(pid);
    spdlog::debug("guardian started (pid {})", guardian_.pid());
}

int Arbiter::run() {
    // A worker that closes a pipe must not kill the daemon.
    ::signal(SIGPIPE, SIG_IGN);
    std::string where;
    for (const auto& l : listeners_) where += (where.empty() ? "" : ", ") + l->address().to_string();
    spdlog::info("workerd {} (pid {}) listening on {} with {} worker{} (generation {}); control socket {}",
                 kVersion, ::getpid(), where, desired(), desired() == 1 ? "" : "s", generation_,
                 control_->path());
    control_->start();
    if (metrics_) {
        metrics_->start();
        spdlog::info("metrics on http://{}/metrics", spec_.metrics.listen->to_string());
    }
    wait_for_signal();
    tick();
    io_.run();
    control_.reset();  // removes the socket file
    spdlog::info("all workers stopped; exiting");
    return 0;
}

void Arbiter::wait_for_signal() {
    // The signal handler itself (asio's) only queues; the work happens in tick().
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        pending_signals_.push_back(sig);
        wait_for_signal();
        tick();
    });
}

void Arbiter::tick() {
    // One turn of the supervision loop, run after every event:
    // 1. handle queued signals (TERM, INT, QUIT, HUP, TTIN, TTOU, USR1, USR2);
    // 2. reap exited children, schedule their slots' restarts, stop what they left behind;
    // 3. expire deadlines: SIGKILL workers that outlived graceful_timeout after SIGTERM, and
    //    what gone workers left; check health: readiness, heartbeats, boot and request
    //    timeouts, and escalations; autoscale;
    // 4. reconcile: start workers for empty slots whose backoff has passed (a hung worker's slot
    //    counts as empty; at most kSpawnBudget of the turn), drain surplus, recycle, roll;
    // 5. tell systemd; exit the loop once a stopping fleet and what it left are gone, else arm
    //    the timer for the next deadline. A long turn is not counted against the workers.
    const auto now = Clock::now();
    turn_started_ = now;
    spawns_deferred_ = false;
    tick_requested_ = false;
    handle_signals();
    reap_children();
    expire_deadlines(now);
    check_health(now);
    autoscale(now);
    reconcile(now);
    notify_systemd(now);
    if (mode_ != Mode::running && workers_.empty() && orphans_.empty()) {
        timer_.cancel();
        signals_.cancel();
        io_.stop();
        return;
    }
    arm_timer(now);
    last_turn_end_ = Clock::now();
    // A long turn (spawning, a slow /proc) kept the workers' pipes unread meanwhile.
    excuse_loop_delay(last_turn_end_ - now, last_turn_end_, "a long turn of the loop");
}

void Arbiter::request_tick() {
    // Through the timer, not a posted handler: the loop serves the I/O that is waiting (a
    // status request, heartbeats) before a timer's turn, so a turn asked for again and again
    // (spawning 1024 workers in steps) cannot starve it.
    tick_requested_ = true;
    if (const auto now = Clock::now(); !timer_due_ || *timer_due_ > now) set_timer(now);
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
        excuse_loop_delay(now - std::max(*timer_due_, last_turn_end_), now, "the timer fired late");
    }
    timer_due_.reset();
    tick();
}

void Arbiter::excuse_loop_delay(Clock::duration delay, Clock::time_point now, const char* why) {
    if (delay < kLoopLagTolerance) return;
    const auto excused = std::chrono::duration_cast<Duration>(delay);
    for (auto& [pid, worker] : workers_) excuse_delay(worker.health, excused, now);
    spdlog::log(delay >= std::chrono::seconds(1) ? spdlog::level::warn : spdlog::level::debug,
                "the daemon's loop was {} late ({}); that time does not count against the workers' heartbeats",
                format_duration(excused), why);
}

bool Arbiter::may_spawn() {
    if (Clock::now() - turn_started_ < kSpawnBudget) return true;
    spawns_deferred_ = true;
    return false;
}

void Arbiter::handle_signals() {
    const auto now = Clock::now();
    while (!pending_signals_.empty()) {
        const int sig = pending_signals_.front();
        pending_signals_.pop_front();
        switch (sig) {
            case SIGCHLD:
                break;  // reaping follows in this tick
            case SIGTERM:
                begin_stop(mode_ == Mode::running ? Mode::stopping_graceful : Mode::stopping_fast,
                           now);
                break;
            case SIGINT:
            case SIGQUIT:
                begin_stop(Mode::stopping_fast, now);
                break;
            case SIGTTIN:
                if (mode_ != Mode::running) break;
                scale_to(desired() + 1, "SIGTTIN");
                break;
            case SIGTTOU:
                if (mode_ != Mode::running) break;
                if (desired() > 1) scale_to(desired() - 1, "SIGTTOU");
                break;
            case SIGHUP:
                if (mode_ != Mode::running) break;
                try {
                    reload("SIGHUP");
                } catch (const ControlError&) {
                    // Logged by reload(); the fleet keeps serving as it was.
                }
                break;
            case SIGUSR2:
                if (mode_ != Mode::running) break;
                try {
                    upgrade();
                } catch (const std::exception& e) {
                    // Out of descriptors for the check's pipe, say: nothing was handed over.
                    spdlog::error("SIGUSR2: {}; the running daemon carries on", e.what());
                }
                break;
            case SIGUSR1:
                if (spec_.log.file.empty()) {
                    spdlog::info("SIGUSR1: the log goes to stderr; there is no file to reopen");
                } else {
                    try {
                        reopen_log(spec_.log);
                        spdlog::info("SIGUSR1: reopened {}", spec_.log.file);
                    } catch (const std::exception& e) {
                        spdlog::error("SIGUSR1: cannot reopen {}: {}", spec_.log.file, e.what());
                    }
                }
                break;
            default:
                spdlog::debug("ignoring {}", signal_name(sig));
        }
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
            if (mode_ != Mode::running) continue;
            spdlog::error("the guardian (pid {}) {}; starting another", pid, describe_status(status));
            start_guardian();
            continue;
        }
        handle_exit(pid, status, cpu, Clock::now());
    }
}

void Arbiter::handle_exit(pid_t pid, int status, double cpu_seconds, Clock::time_point now) {
    auto it = workers_.find(pid);
    if (it == workers_.end()) {
        // A child whose exec failed: spawn_worker already reported it.
        spdlog::debug("reaped pid {} ({})", pid, describe_status(status));
        return;
    }
    Worker worker = it->second;
    workers_.erase(it);
    std::erase(slots_[worker.slot].pids, pid);
    release_leftovers(worker, now);
    // A worker that was draining was stopped on purpose (scaled down, restarted, stopping):
    // its slot, if still in the fleet, already has its successor.
    const bool was_draining = worker.state == WorkerState::draining;
    transition(worker, WorkerEvent::exited);
    const auto uptime = now - worker.started_at;
    Slot& slot = slots_[worker.slot];
    // Why the daemon had told it to stop, if it had: readable, for status and the log.
    std::string stopped_for;
    if (mode_ != Mode::running) stopped_for = "stop";
    else if (!worker.replace_kind.empty() && was_draining) stopped_for = worker.replace_kind;
    else if (was_draining && !slot.active) stopped_for = "scale down";
    else if (was_draining) stopped_for = "reload";
    {
        // Its totals stay in the fleet's counters.
        slot.retired_requests += worker.stats.served;
        slot.retired_cpu_seconds += cpu_seconds;
        retired_stats_.served += worker.stats.served;
        retired_stats_.sum_us += worker.stats.sum_us;
        for (int k = 0; k < kLatencyBuckets; ++k) retired_stats_.buckets[k] += worker.stats.buckets[k];
        // Why it went, by reason (a stop of the whole fleet is not a restart).
        std::string reason;
        if (mode_ != Mode::running) reason.clear();
        else if (worker.escalation) reason = to_string(worker.escalation->reason);
        else if (!stopped_for.empty()) reason = stopped_for;
        else reason = WIFSIGNALED(status) ? "signal" : "exit";
        std::replace(reason.begin(), reason.end(), ' ', '_');
        if (!reason.empty()) ++restarts_by_reason_[reason];
    }
    const std::string who = fmt::format("worker {} (pid {}, gen {})", worker.slot, pid,
                                        worker.generation);
    const bool wanted = mode_ == Mode::running && slot.active && !was_draining;
    // How it ended: the hang that got it killed; as asked, when it was told to stop; else an
    // exit or a crash.
    const std::string ended = worker.escalation ? to_string(worker.escalation->reason) : describe_end(status, stopped_for);
    const std::string why = worker.escalation ? fmt::format(" ({})", ended) : "";
    if (!wanted) {
        slot.last_exit = ended;
        spdlog::info("{} {}: {} after {}{}", who, stopped_for.empty() ? "ended" : "stopped", describe_status(status),
                     seconds_text(uptime), why);
        return;
    }
    // A new-generation worker that never got ready counts against its rollout.
    bool rollout_failed = false;
    if (!worker.health.ready_at && rollout_.state == Rollout::State::running &&
        worker.generation == rollout_.generation) {
        ++rollout_.failures;
        rollout_.reason = fmt::format("worker {} {} after {}{}", worker.slot, describe_status(status),
                                      seconds_text(uptime), why);
        if (rollout_.failures >= spec_.rollout.failure_threshold) {
            fail_rollout(now);
            rollout_failed = true;
        }
    }
    if (replaced_when_hung(worker) && live_workers_in_slot(worker.slot) > 0) {
        // Its replacement was started when the hang was found.
        slot.last_exit = ended;
        spdlog::warn("{} {} after {}{}; already replaced", who, describe_status(status), seconds_text(uptime), why);
        return;
    }
    // An older worker still serves the slot: this one was its successor (a reload's new
    // generation, a recycle, a restart) and failed. The failure is the rollout's, not the
    // slot's: its serving worker keeps its record, and the successor is tried again after the
    // backoff, unless the rollout has just failed.
    const Worker* serving = live_worker_in_slot(worker.slot);
    if (serving != nullptr && serving->started_at < worker.started_at) {
        const Duration delay = slot.backoff.on_exit(spec_.backoff, std::chrono::duration_cast<Duration>(uptime),
                                                    std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
        slot.not_before = now + delay;
        spdlog::warn("{} {} after {}{}, before it was ready; pid {} (gen {}) keeps serving the slot; {}", who,
                     describe_status(status), seconds_text(uptime), why, serving->pid, serving->generation,
                     rollout_failed ? std::string("the rollout stops here")
                     : rollout_.state == Rollout::State::running && worker.generation == rollout_.generation
                         ? fmt::format("rollout failures {} of {}, next try in {}", rollout_.failures,
                                       spec_.rollout.failure_threshold, format_duration(delay))
                         : "next try in " + format_duration(delay));
        return;
    }
    slot.last_exit = ended;
    if (serving != nullptr) {
        // A successor already stands in the slot (it will take over when ready).
        spdlog::warn("{} {} after {}{}; its successor pid {} takes the slot", who, describe_status(status),
                     seconds_text(uptime), why, serving->pid);
        return;
    }
    if (!worker.health.ready_at && ++slot.exits_before_ready >= 3) {
        spdlog::warn("worker {} is flapping: {} exits in a row before it was ready", worker.slot,
                     slot.exits_before_ready);
    }
    const Duration delay = slot.backoff.on_exit(
        spec_.backoff, std::chrono::duration_cast<Duration>(uptime),
        std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
    slot.not_before = now + delay;
    spdlog::warn("{} {} after {}{}; restarting {}", who, describe_status(status),
                 seconds_text(uptime), why,
                 delay == Duration::zero() ? std::string("now") : "in " + format_duration(delay));
}

void Arbiter::release_leftovers(const Worker& worker, Clock::time_point now) {
    const bool at_once = mode_ == Mode::stopping_fast;
    const int sig = at_once ? SIGKILL : SIGTERM;
    const auto kill_at = now + spec_.graceful_timeout;
    const bool group_left = group_alive(worker.pid) && orphans_.terminate(-worker.pid, kill_at, sig);
    if (!group_left) guardian_.forget(worker.pid);
    // Children of the daemon that are no worker of it: orphans that came to it. Those of a
    // group being stopped, or of a live worker's group, go with their group.
    int outside = 0;
    for (pid_t child : children_of_this_process()) {
        if (workers_.count(child) || (guardian_.running() && child == guardian_.pid())) continue;
        const pid_t group = ::getpgid(child);
        if (group < 0 || workers_.count(group) || orphans_.tracks(-group) || orphans_.tracks(child)) continue;
        if (orphans_.terminate(child, kill_at, sig)) ++outside;
    }
    if (group_left || outside > 0) {
        spdlog::warn("worker {} (pid {}, gen {}) left processes behind ({}{}{}): sent {}{}", worker.slot, worker.pid,
                     worker.generation, group_left ? "its process group" : "", group_left && outside ? ", " : "",
                     outside ? fmt::format("{} orphan(s) outside it", outside) : "", signal_name(sig),
                     at_once ? "" : ", SIGKILL in " + format_duration(spec_.graceful_timeout));
    }
}

void Arbiter::expire_deadlines(Clock::time_point now) {
    for (pid_t group : orphans_.expire(now)) guardian_.forget(group);
    for (auto& [pid, worker] : workers_) {
        if (worker.kill_at && *worker.kill_at <= now) {
            spdlog::warn("worker {} (pid {}, gen {}) still running {} after SIGTERM; sending SIGKILL",
                         worker.slot, pid, worker.generation, format_duration(spec_.graceful_timeout));
            kill_now(worker);
        }
    }
}

void Arbiter::reconcile(Clock::time_point now) {
    if (mode_ != Mode::running) return;
    for (auto& [slot, state] : slots_) {
        if (state.active && live_workers_in_slot(slot) == 0 && now >= state.not_before) {
            if (!may_spawn()) break;
            spawn_worker(slot, now);
        }
    }
    // Surplus after a scale-down: workers of slots no longer in the fleet drain gracefully.
    for (auto& [pid, worker] : workers_) {
        if (!slots_[worker.slot].active && worker.state != WorkerState::draining) drain(worker, now);
    }
    check_recycling(now);
    roll(now);
}

void Arbiter::arm_timer(Clock::time_point now) {
    std::optional<Clock::time_point> next;
    auto consider = [&](Clock::time_point t) {
        if (!next || t < *next) next = t;
    };
    // Asked for, or spawns left for the next turn: at once (after the waiting I/O).
    if (tick_requested_ || spawns_deferred_) consider(now);
    if (auto t = orphans_.next_deadline()) consider(*t);
    for (const auto& [pid, worker] : workers_) {
        if (worker.kill_at) consider(*worker.kill_at);
        if (worker.escalation) {
            if (worker.escalation->step < 3) consider(worker.escalation->next);
        } else if (worker.state != WorkerState::draining) {
            if (auto t = next_check(spec_.health, worker.health)) consider(*t);
        }
    }
    if (mode_ == Mode::running) {
        // Recycling by memory is sampled once a second; by age, at each worker's time.
        if (spec_.recycle.max_rss) consider(std::max(now, next_rss_sample_));
        if (spec_.autoscale && !autoscale_pinned_) consider(std::max(now, next_autoscale_));
        if (systemd_.watchdog_interval()) consider(std::max(now, next_watchdog_));
        for (const auto& [pid, worker] : workers_) {
            if (worker.retire_at && worker.replace_reason.empty()) {
                consider(std::max(*worker.retire_at, worker.started_at + spec_.recycle.min_lifetime));
            }
        }
        for (const auto& [slot, state] : slots_) {
            if (state.active && live_workers_in_slot(slot) == 0) consider(std::max(now, state.not_before));
        }
    }
    if (!next) {
        timer_due_.reset();
        timer_.cancel();
        return;
    }
    set_timer(*next);
}

void Arbiter::spawn_worker(int slot_index, Clock::time_point now) {
    Slot& slot = slots_[slot_index];
    const auto addresses = listen_addresses();
    PipePair out, err, notify;
    SpawnRequest request;
    pid_t pid = 0;
    try {
        out = make_pipe();
        err = make_pipe();
        notify = make_pipe();
        request.argv = worker_argv(spec_.app, addresses, self_exe_);
        request.cwd = spec_.app.cwd;
        request.env = worker_env(base_env_, spec_.app, addresses, slot_index, generation_, spec_.run_as);
        for (const auto& l : listeners_for(slot_index)) request.inherit_fds.push_back(l->fd());
        // With a socket per slot the kernel spreads connections; the board's holding back
        // would only delay a worker's own queue.
        if (board_ && !spec_.reuse_port) {
            request.env.push_back(fmt::format("WORKERD_BOARD_FD={}", 3 + request.inherit_fds.size()));
            request.inherit_fds.push_back(board_.get());
        }
        // The worker protocol (docs/worker-protocol.md).
        request.env.push_back(fmt::format("WORKERD_NOTIFY_FD={}", 3 + request.inherit_fds.size()));
        request.env.push_back(fmt::format("WORKERD_PROTOCOL={}", kProtocolVersion));
        if (spec_.health.mode != HeartbeatMode::off) {
            request.env.push_back(fmt::format(
                "WORKERD_WATCHDOG_USEC={}",
                std::chrono::duration_cast<std::chrono::microseconds>(spec_.health.timeout).count()));
        }
        request.inherit_fds.push_back(notify.write_end.get());
        request.stdout_fd = out.write_end.get();
        request.stderr_fd = err.write_end.get();
        request.uid = spec_.run_as.uid;
        request.gid = spec_.run_as.gid;
        request.user = spec_.run_as.user.value_or("");
        pid = spawn_process(request);
    } catch (const std::exception& e) {
        // SpawnError (exec failed, bad cwd) or a resource failure (pipe2: EMFILE): the slot
        // backs off and tries again; the daemon keeps serving with the workers it has.
        const Duration delay = slot.backoff.on_spawn_failure(
            spec_.backoff, std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
        slot.not_before = now + delay;
        // Kept for status and /readyz: why this slot has no worker.
        slot.last_exit = fmt::format("cannot start: {}", e.what());
        note_spawn_failure(slot_index, e.what(), delay, now);
        return;
    }
    guardian_.watch(pid);  // it leads its own process group
    spawn_failure_logged_.clear();  // a failure after this one is news again
    // A restart: a worker in a slot whose worker ended. A successor started beside the worker
    // it replaces (a reload, a recycle) counts when it takes over (roll()); one that fails
    // before that is the rollout's failure, not a restart of the slot.
    if (slot.started_once && live_workers_in_slot(slot_index) == 0) ++slot.restarts;
    slot.started_once = true;

    Worker worker;
    worker.slot = slot_index;
    worker.generation = generation_;
    worker.pid = pid;
    worker.started_at = now;
    worker.health.started = now;
    worker.listeners = listeners_for(slot_index);
    // Recycling limits, each with this worker's own jitter so the fleet does not recycle at once.
    const auto& recycle = spec_.recycle;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    if (recycle.max_requests) {
        worker.request_limit = *recycle.max_requests +
                               static_cast<std::uint64_t>(unit(rng_) * static_cast<double>(recycle.max_requests_jitter));
    }
    if (recycle.max_lifetime) {
        worker.retire_at = now + *recycle.max_lifetime +
                           Duration(static_cast<long>(unit(rng_) * static_cast<double>(recycle.max_lifetime_jitter.count())));
    }
    transition(worker, WorkerEvent::started);
    spdlog::info("worker {} (pid {}, gen {}) started: {}", slot_index, pid, generation_,
                 request.argv.front());
    watch_pipes(add_worker(std::move(worker)), std::move(out.read_end), std::move(err.read_end),
                std::move(notify.read_end));
}

void Arbiter::note_spawn_failure(int slot, const std::string& what, Duration delay, Clock::time_point now) {
    // A new reason at once; the same one again at most once per backoff.max (the longest a
    // slot waits between attempts, 30 s by default, 1 s at least), with how often it happened
    // meanwhile: a fleet whose program is missing says so in the log as long as it lasts,
    // without a line per slot per attempt.
    ++spawn_failures_unlogged_;
    const auto interval = std::max<Clock::duration>(spec_.backoff.max, std::chrono::seconds(1));
    if (what == spawn_failure_logged_ && now - spawn_failure_logged_at_ < interval) {
        spdlog::debug("worker {}: {}; retrying in {}", slot, what, format_duration(delay));
        return;
    }
    const bool repeat = what == spawn_failure_logged_;
    spdlog::error("worker {}: {}; retrying in {}{}", slot, what, format_duration(delay),
                  repeat ? fmt::format(" (still: {} failed start(s) since {} ago)", spawn_failures_unlogged_,
                                       seconds_text(now - spawn_failure_logged_at_))
                         : "");
    spawn_failure_logged_ = what;
    spawn_failure_logged_at_ = now;
    spawn_failures_unlogged_ = 0;
}

void Arbiter::watch_pipes(Worker& worker, UniqueFd out, UniqueFd err, UniqueFd notify) {
    const int slot = worker.slot;
    const pid_t pid = worker.pid;
    int i = 0;
    for (auto [fd, stream] : {std::pair{&out, "stdout"}, std::pair{&err, "stderr"}}) {
        if (fd->valid()) {
            worker.pipes[i] = OutputPipe::start(io_, std::move(*fd), [slot, pid, name = stream](std::string_view line, bool) {
                spdlog::info("worker {} (pid {}) {}: {}", slot, pid, name, line);
            });
        }
        ++i;
    }
    if (notify.valid()) {
        worker.pipes[2] = OutputPipe::start(
            io_, std::move(notify),
            [this, pid](std::string_view line, bool truncated) { on_notify(pid, line, truncated); },
            kMaxNotifyLine - 1);
    }
}

void Arbiter::on_notify(pid_t pid, std::string_view line, bool truncated) {
    auto it = workers_.find(pid);
    if (it == workers_.end()) return;  // reaped; its last words do not matter any more
    Worker& worker = it->second;
    const auto now = Clock::now();
    if (truncated || worker.in_overlong_line) {
        // Pieces of a line past the limit: counted once, the rest (up to its '\n') dropped.
        if (truncated && !worker.in_overlong_line) {
            note_bad_line(worker, fmt::format("a line longer than {} bytes", kMaxNotifyLine), now);
        }
        worker.in_overlong_line = truncated;
        return;
    }
    const auto message = parse_notify_line(line);
    if (!message) {
        note_bad_line(worker, fmt::format("'{}'", printable(line)), now);
        return;
    }
    using Kind = NotifyMessage::Kind;
    if (message->kind == Kind::unknown) return;
    // A worker's first word gives it deadlines (heartbeats, READY): arm the timer for them, or
    // a worker already counted ready by its uptime could hang unnoticed until some other event.
    if (note_message(worker.health, now)) arm_timer(now);
    switch (message->kind) {
        case Kind::ready:
            if (!worker.health.ready_at) mark_ready(worker, now, "said READY");
            break;
        case Kind::watchdog:
            worker.health.last_beat = now;
            break;
        case Kind::stats:
            worker.stats = message->stats;
            worker.health.last_beat = now;
            worker.health.stats_at = now;
            worker.health.oldest_ms = message->stats.oldest_ms;
            // The only message that can bring a deadline forward: a request now in flight.
            if (spec_.health.request_timeout && message->stats.oldest_ms > 0) arm_timer(now);
            // A worker past max_requests is recycled in the next turn of the loop.
            if (worker.request_limit && message->stats.served >= *worker.request_limit &&
                worker.replace_reason.empty()) {
                request_tick();
            }
            break;
        case Kind::status:
            worker.status = message->status;
            spdlog::debug("worker {} (pid {}) status: {}", worker.slot, pid, printable(worker.status));
            break;
        case Kind::stopping:
            spdlog::debug("worker {} (pid {}, gen {}) is stopping", worker.slot, pid, worker.generation);
            break;
        case Kind::unknown:
            break;
    }
}

void Arbiter::note_bad_line(Worker& worker, std::string_view what, Clock::time_point now) {
    ++worker.bad_lines;
    if (worker.bad_lines_logged_at && now - *worker.bad_lines_logged_at < kBadLineLogInterval) return;
    spdlog::warn("worker {} (pid {}) sent {} malformed protocol line(s) (the last: {}); ignored",
                 worker.slot, worker.pid, worker.bad_lines - worker.bad_lines_logged, what);
    worker.bad_lines_logged = worker.bad_lines;
    worker.bad_lines_logged_at = now;
}

void Arbiter::mark_ready(Worker& worker, Clock::time_point now, const char* how) {
    worker.health.ready_at = now;
    // A rollout or a --wait may be waiting for exactly this: take the next step now.
    request_tick();
    slots_[worker.slot].exits_before_ready = 0;
    if (worker.state != WorkerState::booting) return;
    transition(worker, WorkerEvent::ready);
    spdlog::info("worker {} (pid {}, gen {}) ready: {} after {}", worker.slot, worker.pid,
                 worker.generation, how, seconds_text(now - worker.started_at));
}

void Arbiter::check_health(Clock::time_point now) {
    const HealthPolicy& policy = spec_.health;
    for (auto& [pid, worker] : workers_) {
        if (worker.escalation) {
            const Escalation before = *worker.escalation;
            if (auto sig = escalate(policy, *worker.escalation, now)) {
                spdlog::warn("worker {} (pid {}, gen {}) still running {} after {} ({}); sending {}",
                             worker.slot, pid, worker.generation, seconds_text(now - before.last_at),
                             signal_name(before.last_signal), to_string(before.reason),
                             signal_name(*sig));
                send_signal(worker, *sig);
            }
            continue;
        }
        if (worker.state == WorkerState::draining) continue;  // graceful_timeout governs it
        if (worker.state == WorkerState::booting && ready_by_uptime(policy, worker.health, now)) {
            mark_ready(worker, now, "no protocol messages, up");
        }
        Verdict verdict = judge(policy, worker.health, now);
        if (verdict) {
            // What is waiting on its protocol pipe is read first: the loop may have been late
            // (a long turn, a busy machine), not the worker.
            if (auto pipe = worker.pipes[2].lock()) pipe->read_now();
            verdict = judge(policy, worker.health, now);
        }
        if (!verdict) continue;
        worker.escalation = begin_escalation(verdict.reason, now);
        const int sig = *escalate(policy, *worker.escalation, now);
        spdlog::warn("worker {} (pid {}, gen {}) {}; sending {}", worker.slot, pid, worker.generation,
                     describe_hang(verdict, policy), signal_name(sig));
        send_signal(worker, sig);
    }
}

void Arbiter::send_signal(Worker& worker, int sig) {
    // timeout_signal goes to the worker's main thread, where an event loop usually runs (and
    // is stuck): a stack dump handler (faulthandler's) then prints the loop's stack first. A
    // process whose main thread is gone gets it as a process signal.
    const bool dump = worker.escalation && worker.escalation->step == 1 && sig == spec_.health.timeout_signal;
    if (dump && ::syscall(SYS_tgkill, worker.pid, worker.pid, sig) == 0) return;
    if (::kill(worker.pid, sig) != 0 && errno != ESRCH) {
        spdlog::error("kill {} worker {} (pid {}) failed: {}", signal_name(sig), worker.slot,
                      worker.pid, std::strerror(errno));
    }
}

void Arbiter::drain(Worker& worker, Clock::time_point now) {
    if (::kill(worker.pid, SIGTERM) != 0 && errno != ESRCH) {
        spdlog::error("kill SIGTERM worker {} (pid {}) failed: {}", worker.slot, worker.pid,
                      std::strerror(errno));
    }
    transition(worker, WorkerEvent::drain);
    worker.kill_at = now + spec_.graceful_timeout;
    if (spec_.reuse_port && !slots_[worker.slot].active) {
        // A slot scaled away (reuse_port): its own sockets stop listening now, so the kernel
        // sends no more connections there while the worker drains. Those already queued move
        // to the other slots where net.ipv4.tcp_migrate_req is 1 (else they are reset).
        for (const auto& l : worker.listeners) {
            const bool own = std::find(listeners_.begin(), listeners_.end(), l) == listeners_.end();
            if (own && l->address().kind == ListenAddress::Kind::tcp) ::shutdown(l->fd(), SHUT_RD);
        }
    }
    spdlog::info("worker {} (pid {}, gen {}) draining: sent SIGTERM, SIGKILL in {}", worker.slot,
                 worker.pid, worker.generation, format_duration(spec_.graceful_timeout));
}

void Arbiter::kill_now(Worker& worker) {
    if (::kill(worker.pid, SIGKILL) != 0 && errno != ESRCH) {
        spdlog::error("kill SIGKILL worker {} (pid {}) failed: {}", worker.slot, worker.pid,
                      std::strerror(errno));
    }
    worker.kill_at.reset();
}

void Arbiter::begin_stop(Mode mode, Clock::time_point now) {
    if (mode_ == mode || mode_ == Mode::stopping_fast) return;
    if (mode_ == Mode::running) stop_listening();
    mode_ = mode;
    systemd_.send(fmt::format("STOPPING=1\nSTATUS=stopping {}", mode == Mode::stopping_graceful ? "gracefully" : "now"));
    if (mode == Mode::stopping_graceful) {
        spdlog::info("stopping gracefully: {} worker(s) get SIGTERM, SIGKILL after {}",
                     workers_.size(), format_duration(spec_.graceful_timeout));
        for (auto& [pid, worker] : workers_) {
            if (worker.state != WorkerState::draining) drain(worker, now);
        }
        return;
    }
    spdlog::info("stopping now: sending SIGKILL to {} worker(s)", workers_.size());
    for (auto& [pid, worker] : workers_) kill_now(worker);
    orphans_.kill_all(now);
}

void Arbiter::stop_listening() {
    // Every socket a worker may accept on: the fleet's, each slot's own (reuse_port), and an
    // older generation's that a reload replaced. The daemon's copies close now; the workers
    // close theirs as they stop accepting (the bundled worker and workerd_uvicorn at SIGTERM),
    // and then the kernel refuses new connections. Until today the daemon kept its copy to the
    // end, and connections made during the stop waited in a queue nobody read, to be reset.
    std::set<std::shared_ptr<Listener>> sockets(listeners_.begin(), listeners_.end());
    for (const auto& [pid, worker] : workers_) sockets.insert(worker.listeners.begin(), worker.listeners.end());
    int closed = 0;
    for (const auto& l : sockets) {
        if (l->activated()) continue;  // systemd keeps it: connections wait for the next daemon
        l->close();
        ++closed;
    }
    if (closed > 0) spdlog::info("stopped listening: new connections are refused once the workers stop accepting");
}

void Arbiter::transition(Worker& worker, WorkerEvent event) {
    worker.state = next_state(worker.state, event);
}

std::vector<ListenAddress> Arbiter::listen_addresses() const {
    std::vector<ListenAddress> out;
    for (const auto& l : listeners_) out.push_back(l->address());
    return out;
}

std::vector<std::shared_ptr<Listener>> Arbiter::listeners_for(int slot) {
    return spec_.reuse_port ? slot_listeners_.for_slot(slot, listeners_) : listeners_;
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

bool Arbiter::replaced_when_hung(const Worker& w) {
    return w.escalation && w.escalation->reason != HangReason::boot_timeout;
}

int Arbiter::live_workers_in_slot(int slot) const {
    // A worker found hung after it was ready (heartbeat or request timeout) no longer counts:
    // its replacement starts at once, beside it, since the daemon holds the listen socket. The
    // hung one serves nothing meanwhile, and may take kill_timeout to die (a Python worker
    // stuck in time.sleep ignores SIGTERM). One that never got ready (boot timeout) still
    // counts: its slot waits for the exit and the backoff, as after a crash.
    const auto in_slot = workers_in(slot);
    return static_cast<int>(std::count_if(in_slot.begin(), in_slot.end(), [](const Worker* w) {
        return w->state != WorkerState::draining && !replaced_when_hung(*w);
    }));
}

std::vector<Arbiter::Worker*> Arbiter::workers_in(int slot) {
    std::vector<Worker*> out;
    if (auto s = slots_.find(slot); s != slots_.end()) {
        for (pid_t pid : s->second.pids) out.push_back(&workers_.at(pid));
    }
    return out;
}

std::vector<const Arbiter::Worker*> Arbiter::workers_in(int slot) const {
    std::vector<const Worker*> out;
    if (auto s = slots_.find(slot); s != slots_.end()) {
        for (pid_t pid : s->second.pids) out.push_back(&workers_.at(pid));
    }
    return out;
}

Arbiter::Worker& Arbiter::add_worker(Worker worker) {
    const pid_t pid = worker.pid;
    slots_[worker.slot].pids.push_back(pid);
    return workers_[pid] = std::move(worker);
}

}  // namespace workerd
