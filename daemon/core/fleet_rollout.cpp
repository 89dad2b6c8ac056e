// Replacing workers without a gap: reloads (a new generation), recycling and restarts all go
// through roll(): a successor starts in the slot, and the outgoing (retiring) worker drains
// only once the successor is READY, within rollout.max_surge and rollout.max_unavailable.
#include <algorithm>
#include <csignal>
#include <string_view>

#include <fmt/format.h>

#include "daemon/core/fleet.hpp"

namespace workerd::core {

void Fleet::reconcile(TimePoint now) {
    if (mode_ != Mode::running) return;
    for (auto& [index, slot] : slots_) {
        if (slot.active && now >= slot.not_before && holders_in(slot) == 0) {
            if (!may_spawn(now)) break;
            spawn(index, now);
        }
    }
    // Surplus after a scale-down: workers of slots no longer in the fleet drain gracefully.
    for (auto& [id, w] : workers_) {
        if (!slots_[w.slot].active && w.phase != Phase::draining && w.phase != Phase::spawning) {
            drain(w, StopReason::scale_down, now);
        }
    }
    recycle(now);
    roll(now);
}

bool Fleet::may_spawn(TimePoint now) {
    if (spawns_this_turn_ >= spawn_limit_) {
        turn_due_ = true;  // the next turn goes on, after the I/O waiting
        return false;
    }
    return zygote_ready(now);
}

void Fleet::spawn(int index, TimePoint) {
    Slot& slot = slots_[index];
    ++spawns_this_turn_;
    Worker w;
    w.id = next_id_++;
    w.slot = index;
    w.generation = generation_;
    w.heartbeat_timeout = spec_.health.timeout;
    w.replaces_ended = slot.started_once && holders_in(slot) == 0;
    slot.workers.push_back(w.id);
    workers_.emplace(w.id, w);
    actions_.push_back(action::Spawn{w.id, index, generation_});
}

void Fleet::drain(Worker& w, StopReason why, TimePoint now) {
    if (w.phase == Phase::draining) return;
    if (!w.stop_reason) w.stop_reason = why;
    change(w, Change::drain);
    signal(w, SIGTERM);
    w.kill_at = now + spec_.graceful_timeout;
    // reuse_port: a slot scaled away stops listening on its own sockets while its worker drains.
    if (spec_.reuse_port && !slots_[w.slot].active) actions_.push_back(action::StopSlotSockets{w.pid});
    note(NoteKind::draining, Level::info,
         fmt::format("{} draining: sent SIGTERM, SIGKILL in {}", who(w), format_duration(spec_.graceful_timeout)));
}

void Fleet::retire(Worker& w, StopReason why, std::string detail) {
    if (w.phase != Phase::ready) return;
    change(w, Change::retire);
    w.stop_reason = why;
    w.retire_detail = std::move(detail);
    turn_due_ = true;
}

long Fleet::reload(Spec next, const std::string& why, TimePoint now) {
    const bool rescale = next.workers != spec_.workers;
    // What a failure goes back to: the last generation that rolled out (or the one a failed
    // rollout restored). A reload during a rollout supersedes that rollout's target, which
    // never proved itself, so the state to return to stays the one before it.
    if (rollout_.state != RolloutState::running) {
        rollout_.previous_spec = spec_;
        rollout_.previous_generation = generation_;
    }
    spec_ = std::move(next);
    generation_ = ++last_generation_;  // never reused, even after a rollback
    rollout_.state = RolloutState::running;
    rollout_.generation = generation_;
    rollout_.started = now;
    rollout_.failures = 0;
    rollout_.reason.clear();
    rollout_.canary = canaries_wanted() > 0 ? CanaryPhase::starting : CanaryPhase::none;
    if (spec_.rollout.analysis && rollout_.canary == CanaryPhase::none) {
        note(NoteKind::canary, Level::warn,
             fmt::format("generation {}: no canary analysis with {} worker (nothing to compare a canary with)", generation_, desired_));
    }
    rollout_.judging_since.reset();
    rollout_.analysis.clear();
    rollout_.waiting_logged = false;
    rollout_.judge_again = {};
    // A new generation's zygote (preload) is a new try: no backoff left from the last one's.
    zygote_backoff_ = {};
    zygote_not_before_ = {};
    // The worker count follows the spec only if the spec changed it, so a `workerctl scale`
    // survives a reload of an unchanged spec.
    if (rescale) scale_to(spec_.workers, why);
    for (auto& [id, w] : workers_) {
        if (w.generation >= generation_) continue;
        // Booting (or hung) workers of a superseded generation serve nobody: they stop now.
        // Serving ones are replaced, each once its successor is READY.
        if (w.phase == Phase::booting || w.phase == Phase::hung) drain(w, StopReason::reload, now);
        else if (w.phase == Phase::ready) retire(w, StopReason::reload, "");
    }
    note(NoteKind::rollout_started, Level::info,
         fmt::format("{}: spec re-read; rolling out generation {} ({} workers)", why, generation_, desired_));
    if (systemd_) {
        actions_.push_back(action::Systemd{fmt::format("RELOADING=1\nSTATUS=rolling out generation {}", generation_), true});
        systemd_reloading_ = generation_;
    }
    turn_due_ = true;
    return generation_;
}

void Fleet::restart(const std::vector<int>& slots, const std::string& why) {
    for (int index : slots) {
        auto s = slots_.find(index);
        if (s == slots_.end()) continue;
        for (WorkerId id : s->second.workers) {
            Worker& w = workers_.at(id);
            if (w.phase == Phase::ready) retire(w, StopReason::restart, why);
        }
    }
    note(NoteKind::restart, Level::info, fmt::format("{}: restarting {} worker(s), one step at a time", why, slots.size()));
    turn_due_ = true;
}

void Fleet::recycle(TimePoint now) {
    const RecycleSpec& r = spec_.recycle;
    for (auto& [id, w] : workers_) {
        if (w.phase != Phase::ready || !slots_[w.slot].active || now - w.started_at < r.min_lifetime) continue;
        std::string detail;
        StopReason why = StopReason::max_requests;
        if (w.request_limit && w.stats.served >= *w.request_limit) {
            detail = fmt::format("served {} requests (max_requests {})", w.stats.served, *w.request_limit);
        } else if (r.max_rss && w.rss_bytes > static_cast<long>(*r.max_rss)) {
            detail = fmt::format("RSS {} MiB (max_rss {} MiB)", w.rss_bytes >> 20, *r.max_rss >> 20);
            why = StopReason::max_rss;
        } else if (r.max_private && w.private_bytes > static_cast<long>(*r.max_private)) {
            detail = fmt::format("private memory {} MiB (max_private {} MiB)", w.private_bytes >> 20, *r.max_private >> 20);
            why = StopReason::max_private;
        } else if (w.leak_found && r.leak && (w.leak_urgent || w.stats.inflight == 0 || now - *w.leak_found >= r.leak->idle_wait)) {
            // Judged leaking (watch_for_leak): replaced at a moment nothing is in flight, or
            // once it waited idle_wait for one (the drain lets in-flight requests finish).
            detail = w.leak_detail + " (leaking)";
            why = StopReason::leak;
        } else if (w.retire_at && now >= *w.retire_at) {
            detail = fmt::format("lived {} (max_lifetime)",
                                 format_duration(std::chrono::duration_cast<Duration>(now - w.started_at)));
            why = StopReason::max_lifetime;
        }
        if (detail.empty()) continue;
        retire(w, why, "recycled: " + detail);
        ++slots_[w.slot].recycles;
        note(NoteKind::recycling, Level::info, fmt::format("{} {}", who(w), w.retire_detail));
    }
}

Worker* Fleet::outgoing_in(const Slot& slot) {
    Worker* out = nullptr;
    for (WorkerId id : slot.workers) {
        if (Worker& w = workers_.at(id); w.phase == Phase::retiring) out = &w;
    }
    return out;
}

Worker* Fleet::successor_in(const Slot& slot) {
    for (WorkerId id : slot.workers) {
        Worker& w = workers_.at(id);
        // A successor hung at boot still holds the slot: no second one starts beside it.
        if (w.generation == generation_ && w.phase != Phase::retiring && holds_slot(w)) return &w;
    }
    return nullptr;
}

void Fleet::roll(TimePoint now) {
    if (mode_ != Mode::running) return;
    // Most turns have nothing to replace: one pass to see, no plan. (Again after the canary
    // analysis, whose verdict may end the rollout.)
    const auto idle = [&] {
        return rollout_.state != RolloutState::running &&
               std::none_of(workers_.begin(), workers_.end(), [](const auto& e) { return e.second.phase == Phase::retiring; });
    };
    if (idle()) return;
    analyse(now);
    if (idle()) return;
    // Each slot as a rollout sees it: its outgoing worker (retiring) and its successor.
    std::vector<SlotView> views;
    for (auto& [index, slot] : slots_) {
        if (!slot.active) continue;
        // Two outgoing workers in a slot (a failed rollout retired a successor that was about to
        // take over): the newer one serves on until its own successor; the older one goes.
        Worker* out = outgoing_in(slot);
        for (WorkerId id : slot.workers) {  // drain() leaves the index as it is
            Worker& w = workers_.at(id);
            if (w.phase == Phase::retiring && &w != out) {
                note(NoteKind::replaced, Level::info, fmt::format("{} replaced by pid {} (gen {})", who(w), out->pid, out->generation));
                drain(w, w.stop_reason.value_or(StopReason::reload), now);
            }
        }
        if (canary_holds(index)) {
            // Waiting for the verdict: counted against max_unavailable, not replaced.
            SlotView v;
            v.slot = index;
            v.held = true;
            v.outgoing = out != nullptr;
            v.successor = successor_in(slot) != nullptr;
            for (WorkerId id : slot.workers) {
                const Worker& w = workers_.at(id);
                v.held_serving = v.held_serving || serving(w.phase);
            }
            views.push_back(v);
            continue;
        }
        const Worker* next = successor_in(slot);
        SlotView v;
        v.slot = index;
        v.outgoing = out != nullptr;
        v.successor = next != nullptr;
        v.successor_ready = next != nullptr && next->phase == Phase::ready;
        v.may_start = now >= slot.not_before;
        views.push_back(v);
    }
    const RolloutStep step = plan_rollout(views, rollout_budget(spec_.rollout, desired_));
    for (int index : step.take_over) {
        Slot& slot = slots_[index];
        Worker* out = outgoing_in(slot);
        const Worker* next = successor_in(slot);
        note(NoteKind::replaced, Level::info,
             fmt::format("{} replaced by pid {} (gen {}){}", who(*out), next->pid, next->generation,
                         out->retire_detail.empty() ? "" : "; " + out->retire_detail));
        drain(*out, out->stop_reason.value_or(StopReason::reload), now);
        ++slot.restarts;  // the successor took over
    }
    for (int index : step.surge) {
        if (!may_spawn(now)) break;
        spawn(index, now);
    }
    for (int index : step.in_place) {
        if (!may_spawn(now)) break;
        Worker* out = outgoing_in(slots_[index]);
        drain(*out, out->stop_reason.value_or(StopReason::reload), now);
        spawn(index, now);
    }
    // The canaries may have just taken over their slots: judging starts now, not at the next
    // event.
    if (rollout_.canary == CanaryPhase::starting && !step.take_over.empty()) analyse(now);
    finish_rollout(now);
}

void Fleet::finish_rollout(TimePoint now) {
    if (rollout_.state != RolloutState::running) return;
    // Not before the verdict: slots whose old worker ended meanwhile were restarted on the new
    // generation (they count with the canaries), and a fleet of them is judged all the same.
    if (rollout_.canary == CanaryPhase::starting || rollout_.canary == CanaryPhase::judging) return;
    // Done when nothing is outgoing and every slot has a ready worker of this generation.
    for (auto& [index, slot] : slots_) {
        if (!slot.active) continue;
        const Worker* next = successor_in(slot);
        if (next == nullptr || next->phase != Phase::ready || outgoing_in(slot) != nullptr) return;
    }
    rollout_.state = RolloutState::done;
    rollout_.previous_spec.reset();
    actions_.push_back(action::RolloutDone{generation_});
    note(NoteKind::rollout_done, Level::info,
         fmt::format("generation {} rolled out in {}", generation_,
                     format_duration(std::chrono::duration_cast<Duration>(now - rollout_.started))));
}

void Fleet::fail_rollout(TimePoint now, const char* cause, const std::string& why) {
    const long failed = generation_;
    ++rollbacks_by_cause_[cause];
    if (!why.empty()) rollout_.reason = why;
    note(NoteKind::rollout_failed, Level::error,
         why.empty() ? fmt::format("rollout of generation {} failed: {} new workers failed before READY (last: {}); "
                                   "generation {} keeps serving",
                                   failed, rollout_.failures, rollout_.reason, rollout_.previous_generation)
                     : fmt::format("rollout of generation {} failed: {}; generation {} keeps serving", failed, why,
                                   rollout_.previous_generation));
    rollout_.state = RolloutState::failed;
    if (rollout_.previous_spec) spec_ = std::move(*rollout_.previous_spec);
    rollout_.previous_spec.reset();
    generation_ = rollout_.previous_generation;
    actions_.push_back(action::Rollback{generation_});
    // Judged worse (or aborted) while the restored generation serves elsewhere: the canaries
    // stop serving at once rather than answer badly until their slots are taken back.
    const bool judged = std::string_view(cause) != "boot";
    const bool others_serve = std::any_of(workers_.begin(), workers_.end(), [&](const auto& e) {
        return e.second.generation == generation_ && e.second.phase != Phase::draining && serving(e.second.phase) &&
               slots_.at(e.second.slot).active;
    });
    for (auto& [id, w] : workers_) {
        if (w.generation > generation_) {
            // The failed generation goes: booting and hung workers now, ready ones once a worker
            // of the restored generation has taken their slot back.
            const bool at_once = judged && others_serve && w.phase == Phase::ready;
            if (w.phase == Phase::booting || w.phase == Phase::hung || at_once) drain(w, StopReason::reload, now);
            else if (w.phase == Phase::ready) retire(w, StopReason::reload, "");
        } else if (w.generation == generation_ && w.phase == Phase::retiring && w.stop_reason == StopReason::reload) {
            change(w, Change::keep);  // it serves on
            w.stop_reason.reset();
        }
    }
    turn_due_ = true;
}

}  // namespace workerd::core
