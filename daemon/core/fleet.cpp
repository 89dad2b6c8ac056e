// The fleet core's events: the turn, signals, spawns and exits, and the slot index. Health
// (messages, hangs) is in fleet_health.cpp; rollouts and recycling in fleet_rollout.cpp;
// scaling, stopping, adoption and deadlines in fleet_control.cpp.
#include "daemon/core/fleet.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <utility>

#include <fmt/format.h>

namespace workerd::core {

std::string seconds_text(Clock::duration d) { return format_duration(std::chrono::duration_cast<Duration>(d)); }

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "was killed by " + signal_name(WTERMSIG(status));
    return "changed state " + std::to_string(status);
}

bool holds_slot(const Worker& w) {
    switch (w.phase) {
        case Phase::spawning:
        case Phase::booting:
        case Phase::ready:
        case Phase::retiring: return true;
        case Phase::hung: return w.escalation && w.escalation->reason == HangReason::boot_timeout;
        case Phase::draining:
        case Phase::exited: return false;
    }
    return false;
}

Fleet::Fleet(Options options, TimePoint now)
    : spec_(std::move(options.spec)),
      memory_limit_(options.memory_limit),
      watchdog_interval_(options.watchdog_interval),
      systemd_(options.systemd),
      rng_(static_cast<std::minstd_rand::result_type>(options.seed % 2147483646 + 1)),
      started_at_(now) {
    int initial = spec_.workers;
    if (spec_.autoscale) initial = std::clamp(initial, spec_.autoscale->min, spec_.autoscale->max);
    for (int slot = 0; slot < initial; ++slot) slots_[slot].active = true;
    desired_ = initial;
}

std::vector<Action> Fleet::handle(const Event& event, TimePoint now) {
    std::visit([&](const auto& e) { on(e, now); }, event);
    return take_actions();
}

std::vector<Action> Fleet::take_actions() { return std::exchange(actions_, {}); }

void Fleet::on(const event::Turn& e, TimePoint now) {
    // One turn: expire deadlines (SIGKILL after graceful_timeout), judge health (readiness,
    // heartbeats, boot and request timeouts, escalations), autoscale, then reconcile: start
    // workers for empty slots whose backoff has passed, drain surplus, recycle, roll.
    turn_due_ = false;
    if (wake_at_ && *wake_at_ <= now) wake_at_.reset();
    spawn_limit_ = std::max(1, e.spawn_limit);
    spawns_this_turn_ = 0;
    expire_deadlines(now);
    check_health(now);
    autoscale(now);
    reconcile(now);
    tend_zygotes(now);
    notify_systemd(now);
}

void Fleet::on(const event::Signal& e, TimePoint now) {
    switch (e.sig) {
        case SIGTERM: begin_stop(false, now); break;  // a second TERM: fast
        case SIGINT:
        case SIGQUIT: begin_stop(true, now); break;
        case SIGTTIN:
            if (mode_ == Mode::running) scale(desired_ + 1, "SIGTTIN", false, now);
            break;
        case SIGTTOU:
            if (mode_ == Mode::running && desired_ > 1) scale(desired_ - 1, "SIGTTOU", false, now);
            break;
        default: note(NoteKind::status, Level::debug, "ignoring " + signal_name(e.sig));
    }
}

void Fleet::on(const event::Spawned& e, TimePoint now) {
    auto it = workers_.find(e.id);
    if (it == workers_.end() || it->second.phase != Phase::spawning) return;
    Worker& w = it->second;
    Slot& slot = slots_[w.slot];
    w.pid = e.pid;
    pids_[e.pid] = &w;
    w.started_at = now;
    w.health.started = now;
    change(w, Change::started);
    spawn_failure_logged_.clear();  // a failure after this one is news again
    // A restart: a worker in a slot whose worker ended. A successor started beside the worker
    // it replaces (a reload, a recycle) counts when it takes over (roll()); one that fails
    // before that is the rollout's failure, not a restart of the slot.
    if (w.replaces_ended) ++slot.restarts;
    slot.started_once = true;
    // Recycling limits, each with this worker's own jitter so the fleet does not recycle at once.
    const RecycleSpec& r = spec_.recycle;
    if (r.max_requests) {
        w.request_limit = *r.max_requests + static_cast<std::uint64_t>(uniform() * static_cast<double>(r.max_requests_jitter));
    }
    if (r.max_lifetime) {
        w.retire_at = now + *r.max_lifetime +
                      Duration(static_cast<long>(uniform() * static_cast<double>(r.max_lifetime_jitter.count())));
    }
    note(NoteKind::started, Level::info, fmt::format("{} started: {}", who(w), e.program));
}

void Fleet::on(const event::SpawnFailed& e, TimePoint now) {
    auto it = workers_.find(e.id);
    if (it == workers_.end() || it->second.phase != Phase::spawning) return;
    const int index = it->second.slot;
    forget(e.id);
    // The slot backs off and tries again; the daemon keeps serving with the workers it has.
    Slot& slot = slots_[index];
    const Duration delay = slot.backoff.on_spawn_failure(spec_.backoff, uniform());
    slot.not_before = now + delay;
    wake_at(slot.not_before);  // a successor's slot has no deadline of its own: try again then
    Ending end;
    end.kind = Ending::Kind::cannot_start;
    end.detail = e.error;
    slot.last_end = end;  // kept for status and /readyz: why this slot has no worker
    note_spawn_failure(index, e.error, delay, now);
}

void Fleet::note_spawn_failure(int slot, const std::string& what, Duration delay, TimePoint now) {
    // A new reason at once; the same one again at most once per backoff.max (1 s at least),
    // with how often it happened meanwhile: a fleet whose program is missing says so as long
    // as it lasts, without a line per slot per attempt.
    ++spawn_failures_unlogged_;
    const auto interval = std::max<Clock::duration>(spec_.backoff.max, std::chrono::seconds(1));
    if (what == spawn_failure_logged_ && now - spawn_failure_logged_at_ < interval) {
        note(NoteKind::spawn_failed, Level::debug,
             fmt::format("worker {}: {}; retrying in {}", slot, what, format_duration(delay)));
        return;
    }
    const bool repeat = what == spawn_failure_logged_;
    note(NoteKind::spawn_failed, Level::error,
         fmt::format("worker {}: {}; retrying in {}{}", slot, what, format_duration(delay),
                     repeat ? fmt::format(" (still: {} failed start(s) since {} ago)", spawn_failures_unlogged_,
                                          seconds_text(now - spawn_failure_logged_at_))
                            : ""));
    spawn_failure_logged_ = what;
    spawn_failure_logged_at_ = now;
    spawn_failures_unlogged_ = 0;
}

void Fleet::on(const event::Exited& e, TimePoint now) {
    Worker* found = find(e.pid);
    if (found == nullptr && on_zygote_exit(e, now)) return;
    if (found == nullptr) {
        note(NoteKind::reaped, Level::debug, fmt::format("reaped pid {} ({})", e.pid, describe_status(e.status)));
        return;
    }
    const Worker w = *found;
    forget(w.id);
    actions_.push_back(action::ReleaseLeftovers{w.pid, w.slot, w.generation, mode_ == Mode::stopping_fast});
    // Why the daemon had told it to stop, if it had.
    const bool told = w.phase == Phase::draining;
    Slot& slot = slots_[w.slot];
    std::optional<StopReason> stopped_for;
    if (mode_ != Mode::running) stopped_for = StopReason::stop;
    else if (told) stopped_for = w.stop_reason.value_or(StopReason::reload);
    // Its totals stay in the fleet's counters.
    slot.retired_requests += w.stats.served;
    slot.retired_cpu_seconds += e.cpu_seconds;
    retired_stats_.add_counts(w.stats);
    retired_by_generation_[w.generation].add_counts(w.stats);
    while (static_cast<long>(retired_by_generation_.size()) > kGenerationsKept) {
        retired_by_generation_.erase(retired_by_generation_.begin());
    }
    // How it ended: the hang that got it killed; as asked, when it was told to stop; else an
    // exit or a crash. Counted by reason, unless the whole fleet is stopping.
    Ending end;
    if (w.escalation) {
        end.kind = Ending::Kind::hang;
        end.hang = w.escalation->reason;
    } else {
        end = classify_end(e.status, stopped_for);
    }
    if (mode_ == Mode::running) ++restarts_by_reason_[end.metric_reason()];
    const std::string ended = end.to_string();
    const std::string why = w.escalation ? fmt::format(" ({})", ended) : "";
    const auto uptime = now - w.started_at;
    if (mode_ != Mode::running || !slot.active || told) {
        slot.last_end = end;
        note(NoteKind::ended, Level::info,
             fmt::format("{} {}: {} after {}{}", who(w), stopped_for ? "stopped" : "ended", describe_status(e.status),
                         seconds_text(uptime), why));
        return;
    }
    // A new-generation worker that never got ready counts against its rollout.
    bool rollout_failed = false;
    if (!w.health.ready_at && rollout_.state == RolloutState::running && w.generation == rollout_.generation) {
        ++rollout_.failures;
        rollout_.reason = fmt::format("worker {} {} after {}{}", w.slot, describe_status(e.status), seconds_text(uptime), why);
        if (rollout_.failures >= spec_.rollout.failure_threshold) {
            fail_rollout(now, "boot");
            rollout_failed = true;
        }
    }
    const std::string what = fmt::format("{} {} after {}{}", who(w), describe_status(e.status), seconds_text(uptime), why);
    if (w.escalation && w.escalation->reason != HangReason::boot_timeout && holders_in(w.slot) > 0) {
        // Its replacement was started when the hang was found.
        slot.last_end = end;
        note(NoteKind::ended, Level::warn, what + "; already replaced");
        return;
    }
    // An older worker still serves the slot: this one was its successor (a reload's new
    // generation, a recycle, a restart) and failed. The failure is the rollout's, not the
    // slot's: its serving worker keeps its record, and the successor is tried again after the
    // backoff, unless the rollout has just failed.
    const Worker* serving = current_in(w.slot);
    if (serving != nullptr && serving->started_at < w.started_at) {
        const Duration delay = slot.backoff.on_exit(spec_.backoff, std::chrono::duration_cast<Duration>(uptime), uniform());
        slot.not_before = now + delay;
        wake_at(slot.not_before);
        note(NoteKind::ended, Level::warn,
             fmt::format("{}, before it was ready; pid {} (gen {}) keeps serving the slot; {}", what, serving->pid,
                         serving->generation,
                         rollout_failed ? std::string("the rollout stops here")
                         : rollout_.state == RolloutState::running && w.generation == rollout_.generation
                             ? fmt::format("rollout failures {} of {}, next try in {}", rollout_.failures,
                                           spec_.rollout.failure_threshold, format_duration(delay))
                             : "next try in " + format_duration(delay)));
        return;
    }
    slot.last_end = end;
    if (serving != nullptr) {
        note(NoteKind::ended, Level::warn, fmt::format("{}; its successor pid {} takes the slot", what, serving->pid));
        return;
    }
    if (!w.health.ready_at && ++slot.exits_before_ready >= 3) {
        note(NoteKind::flapping, Level::warn,
             fmt::format("worker {} is flapping: {} exits in a row before it was ready", w.slot, slot.exits_before_ready));
    }
    const Duration delay = slot.backoff.on_exit(spec_.backoff, std::chrono::duration_cast<Duration>(uptime), uniform());
    slot.not_before = now + delay;
    note(NoteKind::restarting, Level::warn,
         fmt::format("{}; restarting {}", what, delay == Duration::zero() ? std::string("now") : "in " + format_duration(delay)));
    turn_due_ = true;
}

void Fleet::change(Worker& w, Change c) { w.phase = next_phase(w.phase, c); }

void Fleet::signal(const Worker& w, int sig, bool main_thread) {
    if (w.pid > 0) actions_.push_back(action::Signal{w.pid, sig, main_thread});
}

void Fleet::note(NoteKind kind, Level level, std::string text) {
    actions_.push_back(action::Note{kind, level, std::move(text)});
}

std::string Fleet::who(const Worker& w) const {
    return fmt::format("worker {} (pid {}, gen {})", w.slot, w.pid, w.generation);
}

Worker* Fleet::find(pid_t pid) {
    auto it = pids_.find(pid);
    return it == pids_.end() ? nullptr : it->second;
}

const Worker* Fleet::by_pid(pid_t pid) const {
    auto it = pids_.find(pid);
    return it == pids_.end() ? nullptr : it->second;
}

void Fleet::forget(WorkerId id) {
    auto it = workers_.find(id);
    if (it == workers_.end()) return;
    if (it->second.pid > 0) pids_.erase(it->second.pid);
    std::erase(slots_[it->second.slot].workers, id);
    workers_.erase(it);
}

std::vector<const Worker*> Fleet::workers_in(int slot) const {
    std::vector<const Worker*> out;
    if (auto s = slots_.find(slot); s != slots_.end()) {
        for (WorkerId id : s->second.workers) out.push_back(&workers_.at(id));
    }
    return out;
}

int Fleet::holders_in(const Slot& slot) const {
    int n = 0;
    for (WorkerId id : slot.workers) n += holds_slot(workers_.at(id)) ? 1 : 0;
    return n;
}

int Fleet::holders_in(int slot) const {
    auto s = slots_.find(slot);
    return s == slots_.end() ? 0 : holders_in(s->second);
}

const Worker* Fleet::current_in(int slot) const {
    auto s = slots_.find(slot);
    if (s == slots_.end()) return nullptr;
    for (WorkerId id : s->second.workers) {
        if (const Worker& w = workers_.at(id); w.phase != Phase::draining) return &w;
    }
    return nullptr;
}

std::map<long, ResponseCounts> Fleet::responses_by_generation() const {
    std::map<long, ResponseCounts> out;
    for (const auto& [generation, stats] : retired_by_generation_) {
        if (stats.has_responses()) out[generation] = stats.responses;
    }
    for (const auto& [id, w] : workers_) {
        if (!w.stats.has_responses()) continue;
        ResponseCounts& counts = out[w.generation];
        for (int k = 0; k < kResponseClasses; ++k) counts[k] += w.stats.responses[k];
    }
    while (static_cast<long>(out.size()) > kGenerationsKept) out.erase(out.begin());
    return out;
}

}  // namespace workerd::core
