// The fleet core's view of each worker's health: its protocol messages (READY, heartbeats,
// STATS), resource samples, the loop's own lateness, hang verdicts and their escalation, and
// the deadline of a draining worker.
#include <algorithm>
#include <csignal>

#include <fmt/format.h>

#include "daemon/core/fleet.hpp"

namespace workerd::core {
namespace {

// Malformed protocol lines are reported at most this often per worker.
constexpr std::chrono::seconds kBadLineLogInterval{10};
// Below this, the loop's lateness is not worth a line at info level.
constexpr std::chrono::seconds kLateWarning{1};

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

void Fleet::on(const event::Message& e, TimePoint now) {
    Worker* w = find(e.pid);
    if (w == nullptr) return;  // reaped; its last words do not matter any more
    using Kind = NotifyMessage::Kind;
    const NotifyMessage& m = e.message;
    if (m.kind == Kind::unknown) return;
    // A worker's first word gives it deadlines (heartbeats, READY): the shell re-arms for them.
    if (note_message(w->health, now)) rearm_ = true;
    switch (m.kind) {
        case Kind::ready:
            if (!w->health.ready_at) mark_ready(*w, now, "said READY");
            break;
        case Kind::watchdog: w->health.last_beat = now; break;
        case Kind::stats:
            w->stats = m.stats;
            w->health.last_beat = now;
            w->health.stats_at = now;
            w->health.oldest_ms = m.stats.oldest_ms;
            // The only message that can bring a deadline forward: a request now in flight.
            if (spec_.health.request_timeout && m.stats.oldest_ms > 0) rearm_ = true;
            // A worker past max_requests is recycled in the next turn.
            if (w->request_limit && m.stats.served >= *w->request_limit && w->phase == Phase::ready) turn_due_ = true;
            // A leaking worker waits for a moment with nothing in flight: this may be it.
            if (w->leak_found && m.stats.inflight == 0 && w->phase == Phase::ready) turn_due_ = true;
            break;
        case Kind::status:
            w->status = m.status;
            note(NoteKind::status, Level::debug, fmt::format("worker {} (pid {}) status: {}", w->slot, w->pid, m.status));
            break;
        case Kind::stopping: note(NoteKind::status, Level::debug, fmt::format("{} is stopping", who(*w))); break;
        case Kind::unknown: break;
    }
}

void Fleet::on(const event::BadLine& e, TimePoint now) {
    Worker* w = find(e.pid);
    if (w == nullptr) return;
    ++w->bad_lines;
    if (w->bad_lines_logged_at && now - *w->bad_lines_logged_at < kBadLineLogInterval) return;
    note(NoteKind::bad_line, Level::warn,
         fmt::format("worker {} (pid {}) sent {} malformed protocol line(s) (the last: {}); ignored", w->slot, w->pid,
                     w->bad_lines - w->bad_lines_logged, e.what));
    w->bad_lines_logged = w->bad_lines;
    w->bad_lines_logged_at = now;
}

void Fleet::on(const event::Samples& e, TimePoint now) {
    next_sample_ = now + std::chrono::seconds(1);
    queue_depth_ = e.queue_depth;
    for (const auto& m : e.memory) {
        if (Worker* w = find(m.pid)) {
            w->rss_bytes = m.rss_bytes;
            w->pss_bytes = m.pss_bytes;
            w->private_bytes = m.private_bytes;
            if (spec_.recycle.leak) watch_for_leak(*w, now);
            continue;
        }
        for (auto& [generation, z] : zygotes_) {
            if (z.pid == m.pid) z.pss_bytes = m.pss_bytes;
        }
    }
    fit_auto_to_memory();
}

namespace {

/// What a worker's leak trend follows: private memory where sampled, else RSS.
long trend_bytes(const Worker& w) { return w.private_bytes > 0 ? w.private_bytes : w.rss_bytes; }

}  // namespace

void Fleet::watch_for_leak(Worker& w, TimePoint now) {
    if (w.phase != Phase::ready || w.leak_found) return;
    const LeakSpec& spec = *spec_.recycle.leak;
    const long measure = trend_bytes(w);
    const std::size_t before = w.memory_trend.points().size();
    w.memory_trend.add({now, w.stats.served, measure}, spec.warmup);
    if (w.memory_trend.points().size() == before) return;  // no new point: nothing new to judge
    const auto limit = leak_limit(w);
    const auto v = judge_leak(spec, w.memory_trend, limit ? std::optional<long>(limit->first) : std::nullopt,
                              limit ? limit->second : std::string());
    if (!v.leaking) return;
    w.leak_found = now;
    w.leak_detail = v.summary;
    w.leak_urgent = v.crosses_in && *v.crosses_in <= spec.idle_wait;
    note(NoteKind::recycling, Level::info,
         fmt::format("{} {}; replacing it {}", who(w), v.summary,
                     w.leak_urgent ? "now" : fmt::format("when it is idle (within {})", format_duration(spec.idle_wait))));
    turn_due_ = true;
}

std::optional<std::pair<long, std::string>> Fleet::leak_limit(const Worker& w) const {
    // The trend follows private memory where sampled: an RSS limit leaves the worker the same
    // headroom in either measure (a leak grows both).
    const long measure = trend_bytes(w);
    const auto in_measure = [&](std::uint64_t rss_limit) { return static_cast<long>(rss_limit) - (w.rss_bytes - measure); };
    const RecycleSpec& r = spec_.recycle;
    if (r.max_private && w.private_bytes > 0) {
        return std::pair{static_cast<long>(*r.max_private), fmt::format("max_private {} MiB", *r.max_private >> 20)};
    }
    if (r.max_rss) return std::pair{in_measure(*r.max_rss), fmt::format("max_rss {} MiB", *r.max_rss >> 20)};
    const auto limit = spec_.memory_limit ? spec_.memory_limit : memory_limit_;
    if (!limit || desired_ <= 0) return std::nullopt;
    const auto share = static_cast<std::uint64_t>(static_cast<double>(*limit) * (1.0 - spec_.memory_margin)) /
                       static_cast<std::uint64_t>(desired_);
    return std::pair{in_measure(share), fmt::format("its share of the memory limit ({} MiB)", share >> 20)};
}

void Fleet::fit_auto_to_memory() {
    // `workers: auto` was sized before anything ran (memory_per_worker, if given). Once the
    // whole fleet runs and is measured, a budget that holds fewer workers wins; never more
    // than the auto count, and not after a `workerctl scale` (the user's call) or with the
    // autoscaler (which has the budget as its ceiling).
    if (!spec_.workers_auto || spec_.autoscale || mode_ != Mode::running || desired_ != spec_.workers || rolling()) return;
    int measured = 0;
    for (const auto& [id, w] : workers_) {
        if (serving(w.phase) && slots_.at(w.slot).active && w.rss_bytes > 0) ++measured;
    }
    if (measured < desired_) return;
    const auto cap = memory_cap();
    if (!cap || *cap >= desired_) return;
    scale_to(*cap, fmt::format("workers: auto: the memory budget holds {} worker{} as measured", *cap, *cap == 1 ? "" : "s"));
}

void Fleet::on(const event::Late& e, TimePoint now) {
    // The daemon's own delay is not the workers' silence: their heartbeat clocks move on.
    for (auto& [id, w] : workers_) excuse_delay(w.health, e.by, now);
    note(NoteKind::late, e.by >= kLateWarning ? Level::warn : Level::debug,
         fmt::format("the daemon's loop was {} late ({}); that time does not count against the workers' heartbeats",
                     format_duration(e.by), e.why));
}

void Fleet::expire_deadlines(TimePoint now) {
    for (auto& [id, w] : workers_) {
        if (w.kill_at && *w.kill_at <= now) {
            note(NoteKind::killed_late, Level::warn,
                 fmt::format("{} still running {} after SIGTERM; sending SIGKILL", who(w),
                             format_duration(spec_.graceful_timeout)));
            signal(w, SIGKILL);
            w.kill_at.reset();
        }
    }
}

HealthPolicy Fleet::policy_for(const Worker& w) const {
    HealthPolicy policy = spec_.health;
    policy.timeout = std::max(policy.timeout, w.heartbeat_timeout);
    return policy;
}

void Fleet::check_health(TimePoint now) {
    for (auto& [id, w] : workers_) {
        const HealthPolicy policy = policy_for(w);
        if (w.escalation) {
            const Escalation before = *w.escalation;
            if (auto sig = escalate(policy, *w.escalation, now)) {
                note(NoteKind::escalated, Level::warn,
                     fmt::format("{} still running {} after {} ({}); sending {}", who(w), seconds_text(now - before.last_at),
                                 signal_name(before.last_signal), to_string(before.reason), signal_name(*sig)));
                signal(w, *sig, w.escalation->step == 1 && *sig == policy.timeout_signal);
            }
            continue;
        }
        if (w.phase != Phase::booting && !serving(w.phase)) continue;  // draining: graceful_timeout governs it
        if (w.phase == Phase::booting && ready_by_uptime(policy, w.health, now)) {
            mark_ready(w, now, "no protocol messages, up");
        }
        const Verdict verdict = judge(policy, w.health, now);
        if (!verdict) continue;
        w.escalation = begin_escalation(verdict.reason, now);
        change(w, Change::hang);
        const int sig = *escalate(policy, *w.escalation, now);
        note(NoteKind::hung, Level::warn, fmt::format("{} {}; sending {}", who(w), describe_hang(verdict, policy), signal_name(sig)));
        signal(w, sig, w.escalation->step == 1 && sig == policy.timeout_signal);
        turn_due_ = true;  // its slot may want a replacement
    }
}

std::vector<pid_t> Fleet::overdue(TimePoint now) const {
    std::vector<pid_t> out;
    for (const auto& [id, w] : workers_) {
        if (!w.escalation && (w.phase == Phase::booting || serving(w.phase)) && judge(policy_for(w), w.health, now)) {
            out.push_back(w.pid);
        }
    }
    return out;
}

void Fleet::mark_ready(Worker& w, TimePoint now, const char* how) {
    w.health.ready_at = now;
    turn_due_ = true;  // a rollout or a --wait may be waiting for exactly this
    slots_[w.slot].exits_before_ready = 0;
    if (w.phase != Phase::booting) return;
    change(w, Change::ready);
    note(NoteKind::ready, Level::info, fmt::format("{} ready: {} after {}", who(w), how, seconds_text(now - w.started_at)));
}

}  // namespace workerd::core
