// The fleet core's size and mode: scaling (by hand, by signal, by the autoscaler), stopping,
// adopting a previous image's workers, what systemd is told, and when the next turn is due.
#include <algorithm>
#include <csignal>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "daemon/core/fleet.hpp"

namespace workerd::core {

void Fleet::scale(int target, const std::string& why, bool pin, TimePoint) {
    scale_to(target, why);
    if (pin && spec_.autoscale && !autoscale_pinned_) {
        autoscale_pinned_ = true;
        note(NoteKind::autoscale, Level::info,
             fmt::format("control: size pinned at {}; `workerctl scale auto` hands it back to the autoscaler", desired_));
    }
    turn_due_ = true;
}

void Fleet::scale_auto(TimePoint now) {
    autoscale_pinned_ = false;
    next_autoscale_ = now;
    next_sample_ = now;
    note(NoteKind::autoscale, Level::info, "control: the autoscaler decides the size again");
    turn_due_ = true;
}

void Fleet::scale_to(int n, const std::string& why) {
    n = std::clamp(n, 1, kMaxWorkers);
    const int from = desired_;
    if (n == from) return;
    if (n > from) {
        // New slots take the lowest free numbers, so slots stay compact.
        for (int index = 0; desired_ < n; ++index) {
            Slot& s = slots_[index];
            if (s.active) continue;
            s.active = true;
            s.not_before = TimePoint{};
            s.backoff = Backoff{};
            s.exits_before_ready = 0;
            ++desired_;
        }
    } else {
        // The least busy go first: slots without a worker (backing off), then booting workers,
        // then serving ones by requests in flight; ties: the highest slot.
        std::vector<std::tuple<int, std::int64_t, int>> order;  // (rank, inflight, -slot)
        for (const auto& [index, s] : slots_) {
            // reuse_port: slot 0 accepts on the fleet's listeners, which stay open: it stays.
            if (!s.active || (spec_.reuse_port && index == 0)) continue;
            const Worker* w = current_in(index);
            const int rank = w == nullptr ? 0 : serving(w->phase) ? 2 : 1;
            order.emplace_back(rank, w != nullptr ? w->stats.inflight : 0, -index);
        }
        std::sort(order.begin(), order.end());
        for (int i = 0; i < from - n && i < static_cast<int>(order.size()); ++i) {
            const int index = -std::get<2>(order[static_cast<std::size_t>(i)]);
            slots_[index].active = false;
            --desired_;
            if (spec_.reuse_port) actions_.push_back(action::SlotRemoved{index});
        }
    }
    note(NoteKind::scaling, Level::info, fmt::format("{}: scaling from {} to {} worker{}", why, from, desired_,
                                                     desired_ == 1 ? "" : "s"));
    turn_due_ = true;
}

bool Fleet::memory_sampled() const {
    const bool budget = spec_.workers_auto && (spec_.memory_limit || memory_limit_);
    return spec_.recycle.max_rss || memory_by_sharing() || budget || (spec_.autoscale && !autoscale_pinned_);
}

std::optional<int> Fleet::memory_cap() const {
    const auto limit = spec_.memory_limit ? spec_.memory_limit : memory_limit_;
    if (!limit) return std::nullopt;
    // Measured from serving workers once they run, else the spec's hint. Preloaded workers
    // share the zygote's pages: each costs its private memory, and what they share (with the
    // zygote and each other: PSS less private) is counted once.
    long rss = 0, pss = 0, unique = 0;
    int sampled = 0, private_sampled = 0;
    for (const auto& [id, w] : workers_) {
        if (!serving(w.phase) || w.rss_bytes <= 0) continue;
        rss += w.rss_bytes;
        ++sampled;
        if (w.private_bytes > 0) {
            pss += w.pss_bytes;
            unique += w.private_bytes;
            ++private_sampled;
        }
    }
    if (spec_.app.preload && private_sampled > 0 && private_sampled == sampled) {
        long shared = pss - unique;
        for (const auto& [generation, z] : zygotes_) shared += z.pss_bytes;
        return memory_budget(*limit, spec_.memory_margin, static_cast<std::uint64_t>(unique / private_sampled),
                             static_cast<std::uint64_t>(std::max(0L, shared)));
    }
    const std::optional<std::uint64_t> per_worker =
        sampled > 0 ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(rss / sampled)) : spec_.memory_per_worker;
    if (!per_worker || *per_worker == 0) return std::nullopt;
    return memory_budget(*limit, spec_.memory_margin, *per_worker);
}

void Fleet::autoscale(TimePoint now) {
    if (!spec_.autoscale || autoscale_pinned_ || mode_ != Mode::running || now < next_autoscale_) return;
    next_autoscale_ = now + std::chrono::seconds(1);
    AutoscaleInputs in;
    in.current = desired_;
    in.queue_depth = queue_depth_;
    RequestStats recent;
    RequestStats total = retired_stats_;  // monotonic: what the last second added is the difference
    for (const auto& [id, w] : workers_) {
        if (w.phase != Phase::draining) in.inflight += static_cast<double>(w.stats.inflight);
        recent.add_counts(w.stats);
        total.add_counts(w.stats);
    }
    if (spec_.autoscale->target_latency) in.p99_ms = recent.percentile_ms(0.99);
    RequestStats last_second;
    for (int k = 0; k < kQueueBuckets; ++k) {
        last_second.queue[k] = total.queue[k] - std::min(total.queue[k], queue_seen_[k]);
    }
    queue_seen_ = total.queue;
    if (spec_.autoscale->target_queue) in.queue_p99_ms = last_second.queue_percentile_ms(0.99);
    in.memory_cap = memory_cap();
    const auto decision = autoscale_decide(*spec_.autoscale, autoscale_state_, in, now);
    autoscale_view_ = decision.reason;
    if (decision.target == in.current) return;
    ++autoscale_decisions_[decision.target > in.current ? "up" : "down"];
    scale_to(decision.target, fmt::format("autoscale ({})", decision.reason));
}

void Fleet::stop(bool fast, TimePoint now) {
    if (!fast && mode_ != Mode::running) return;  // already stopping
    begin_stop(fast, now);
}

void Fleet::begin_stop(bool fast, TimePoint now) {
    const Mode next = next_mode(mode_, fast);
    if (next == mode_) return;
    actions_.push_back(action::Stopping{next == Mode::stopping_fast, mode_ == Mode::running});
    mode_ = next;
    tend_zygotes(now);
    if (systemd_) {
        actions_.push_back(action::Systemd{
            fmt::format("STOPPING=1\nSTATUS=stopping {}", mode_ == Mode::stopping_graceful ? "gracefully" : "now"), false});
    }
    // Spawns not answered yet cannot exist (the shell answers each at once); the rest stop.
    if (mode_ == Mode::stopping_graceful) {
        note(NoteKind::stopping, Level::info,
             fmt::format("stopping gracefully: {} worker(s) get SIGTERM, SIGKILL after {}", workers_.size(),
                         format_duration(spec_.graceful_timeout)));
        for (auto& [id, w] : workers_) drain(w, StopReason::stop, now);
        return;
    }
    note(NoteKind::stopping, Level::info, fmt::format("stopping now: sending SIGKILL to {} worker(s)", workers_.size()));
    for (auto& [id, w] : workers_) {
        signal(w, SIGKILL);
        w.kill_at.reset();
    }
}

void Fleet::adopt(const std::vector<AdoptedWorker>& adopted, long generation, int desired, bool pinned,
                  const std::string& why, TimePoint now) {
    generation_ = generation;
    autoscale_pinned_ = pinned;
    slots_.clear();
    for (int index = 0; index < desired; ++index) slots_[index].active = true;
    desired_ = desired;
    for (const AdoptedWorker& a : adopted) {
        Worker w;
        w.id = next_id_++;
        w.pid = a.pid;
        w.slot = a.slot;
        w.generation = a.generation;
        w.started_at = now - a.age;
        w.health.started = w.started_at;
        w.health.last_beat = now;
        change(w, Change::started);
        if (a.ready || a.draining) {
            change(w, Change::ready);
            w.health.ready_at = now;
        }
        if (a.draining) {
            change(w, Change::drain);
            w.stop_reason = StopReason::reload;
            w.kill_at = now + spec_.graceful_timeout;
        }
        slots_[a.slot].started_once = true;
        slots_[a.slot].workers.push_back(w.id);
        pids_[w.pid] = &workers_.emplace(w.id, w).first->second;
    }
    // Then the rolling path replaces them: a new generation, as after a reload of the same
    // spec. systemd was told RELOADING=1 before the exec; READY=1 follows the rollout.
    rollout_.previous_spec = spec_;
    rollout_.previous_generation = generation_;
    last_generation_ = generation_;
    for (const AdoptedWorker& a : adopted) last_generation_ = std::max(last_generation_, a.generation);
    generation_ = ++last_generation_;
    rollout_.state = RolloutState::running;
    rollout_.generation = generation_;
    rollout_.started = now;
    for (auto& [id, w] : workers_) {
        if (w.phase == Phase::booting) drain(w, StopReason::reload, now);
        else if (w.phase == Phase::ready) retire(w, StopReason::reload, "");
    }
    systemd_ready_sent_ = true;
    systemd_reloading_ = systemd_ ? generation_ : 0;
    note(NoteKind::rollout_started, Level::info,
         fmt::format("{}: adopted {} worker(s) of generation {}; rolling out generation {} ({} workers)", why, adopted.size(),
                     rollout_.previous_generation, generation_, desired_));
    turn_due_ = true;
}

void Fleet::notify_systemd(TimePoint now) {
    if (!systemd_) return;
    if (mode_ == Mode::running && !systemd_ready_sent_ && ready() >= desired_) {
        systemd_ready_sent_ = true;
        actions_.push_back(action::Systemd{fmt::format("READY=1\nSTATUS={} workers ready, generation {}", ready(), generation_)});
    }
    if (systemd_reloading_ != 0 && rollout_.state != RolloutState::running) {
        // A failed rollout is still the end of the reload: the old generation serves.
        actions_.push_back(action::Systemd{fmt::format(
            "READY=1\nSTATUS={}", rollout_.state == RolloutState::failed
                                      ? fmt::format("reload failed ({}); generation {} serves", rollout_.reason, generation_)
                                      : fmt::format("{} workers ready, generation {}", ready(), generation_))});
        systemd_reloading_ = 0;
    }
    if (watchdog_interval_ && now >= next_watchdog_) {
        actions_.push_back(action::Systemd{"WATCHDOG=1"});
        next_watchdog_ = now + *watchdog_interval_;
    }
}

int Fleet::ready() const {
    // Slots in the fleet with a serving worker (during a replacement a slot briefly has two).
    std::set<int> ready;
    for (const auto& [id, w] : workers_) {
        if (serving(w.phase) && slots_.at(w.slot).active) ready.insert(w.slot);
    }
    return static_cast<int>(ready.size());
}

bool Fleet::rolling() const {
    if (rollout_.state == RolloutState::running) return true;
    return std::any_of(workers_.begin(), workers_.end(),
                       [&](const auto& e) { return e.second.phase == Phase::retiring && slots_.at(e.second.slot).active; });
}

bool Fleet::sample_due(TimePoint now) const {
    if (mode_ != Mode::running || now < next_sample_) return false;
    return memory_sampled();
}

std::optional<TimePoint> Fleet::next_deadline(TimePoint now) const {
    std::optional<TimePoint> next;
    auto consider = [&](TimePoint t) {
        if (!next || t < *next) next = t;
    };
    if (turn_due_) return now;
    if (wake_at_) consider(std::max(now, *wake_at_));
    for (const auto& [generation, z] : zygotes_) {
        if (z.kill_at) consider(*z.kill_at);
        if (!z.ready && !z.stopping && !z.boot_killed && z.pid != 0) consider(z.started_at + spec_.health.boot_timeout);
    }
    for (const auto& [id, w] : workers_) {
        if (w.kill_at) consider(*w.kill_at);
        if (w.escalation) {
            if (w.escalation->step < 3) consider(w.escalation->next);
        } else if (w.phase == Phase::booting || serving(w.phase)) {
            if (auto t = next_check(policy_for(w), w.health)) consider(*t);
        }
    }
    if (watchdog_interval_ && systemd_) consider(std::max(now, next_watchdog_));
    if (mode_ != Mode::running) return next;
    // Canary analysis: the verdict at the window's end, then each second until enough requests.
    if (rollout_.state == RolloutState::running && rollout_.canary == CanaryPhase::judging && spec_.rollout.analysis) {
        consider(std::max(*rollout_.judging_since + spec_.rollout.analysis->window, rollout_.judge_again));
    }
    // Recycling by memory and the autoscaler sample once a second; by age, at each worker's time.
    if (memory_sampled()) consider(std::max(now, next_sample_));
    if (spec_.autoscale && !autoscale_pinned_) consider(std::max(now, next_autoscale_));
    for (const auto& [id, w] : workers_) {
        if (w.retire_at && w.phase == Phase::ready) consider(std::max(*w.retire_at, w.started_at + spec_.recycle.min_lifetime));
        if (w.leak_found && spec_.recycle.leak && w.phase == Phase::ready) {
            consider(std::max(*w.leak_found + spec_.recycle.leak->idle_wait, w.started_at + spec_.recycle.min_lifetime));
        }
    }
    // Empty slots to fill; with preload, once the zygote is ready (ZygoteReady asks for a turn)
    // or, when there is none, once it may start.
    const bool can_spawn = zygote_is_ready();
    if (spec_.app.preload && zygotes_.count(generation_) == 0) consider(std::max(now, zygote_not_before_));
    for (const auto& [index, s] : slots_) {
        if (!s.active || holders_in(s) > 0) continue;
        if (can_spawn) consider(std::max(now, s.not_before));
    }
    return next;
}

const char* to_string(NoteKind kind) {
    switch (kind) {
        case NoteKind::started: return "started";
        case NoteKind::ready: return "ready";
        case NoteKind::replaced: return "replaced";
        case NoteKind::draining: return "draining";
        case NoteKind::ended: return "ended";
        case NoteKind::restarting: return "restarting";
        case NoteKind::hung: return "hung";
        case NoteKind::escalated: return "escalated";
        case NoteKind::killed_late: return "killed_late";
        case NoteKind::spawn_failed: return "spawn_failed";
        case NoteKind::flapping: return "flapping";
        case NoteKind::scaling: return "scaling";
        case NoteKind::recycling: return "recycling";
        case NoteKind::restart: return "restart";
        case NoteKind::rollout_started: return "rollout_started";
        case NoteKind::rollout_done: return "rollout_done";
        case NoteKind::rollout_failed: return "rollout_failed";
        case NoteKind::stopping: return "stopping";
        case NoteKind::late: return "late";
        case NoteKind::autoscale: return "autoscale";
        case NoteKind::bad_line: return "bad_line";
        case NoteKind::status: return "status";
        case NoteKind::reaped: return "reaped";
        case NoteKind::zygote: return "zygote";
        case NoteKind::canary: return "canary";
    }
    return "?";
}

}  // namespace workerd::core
