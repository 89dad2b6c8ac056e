// Canary analysis (rollout.analysis, docs/operations.md): a reload's first `canaries` new
// workers take their slots while the rest of the fleet stays on the old generation (the last
// that rolled out); once they all serve, both sides' answers are counted over `window` (and at
// least `min_requests` of the canaries'), and judge_canary() compares them. As good: the rollout goes on at its usual pace.
// Worse: it fails, as one whose workers cannot boot does: the canaries are replaced by the old
// generation and the numbers are in the log, the status and reload --wait's answer.
#include <algorithm>

#include <fmt/format.h>

#include "daemon/core/canary.hpp"
#include "daemon/core/fleet.hpp"

namespace workerd::core {

const char* to_string(CanaryPhase phase) {
    switch (phase) {
        case CanaryPhase::none: return "none";
        case CanaryPhase::starting: return "starting";
        case CanaryPhase::judging: return "judging";
        case CanaryPhase::passed: return "passed";
    }
    return "?";
}

bool Fleet::canary_holds(int slot) const {
    if (rollout_.state != RolloutState::running) return false;
    if (rollout_.canary != CanaryPhase::starting && rollout_.canary != CanaryPhase::judging) return false;
    // The canaries' slots are the fleet's first (lowest) active ones.
    int before = 0;
    for (const auto& [index, s] : slots_) {
        if (index >= slot) break;
        if (s.active) ++before;
    }
    return before >= canaries_wanted();
}

RequestStats Fleet::generation_totals(long generation, bool older_too) const {
    RequestStats total;
    for (const auto& [g, stats] : retired_by_generation_) {
        if (g == generation || (older_too && g < generation)) total.add_counts(stats);
    }
    for (const auto& [id, w] : workers_) {
        if (w.generation == generation || (older_too && w.generation < generation)) total.add_counts(w.stats);
    }
    return total;
}

int Fleet::canaries_wanted() const {
    // At least one old worker stays beside them to be compared with.
    return spec_.rollout.analysis ? std::min(spec_.rollout.analysis->canaries, desired_ - 1) : 0;
}

void Fleet::analyse(TimePoint now) {
    if (rollout_.state != RolloutState::running || !spec_.rollout.analysis) return;
    const AnalysisSpec& a = *spec_.rollout.analysis;
    if ((rollout_.canary == CanaryPhase::starting || rollout_.canary == CanaryPhase::judging) && canaries_wanted() == 0) {
        // Scaled down to one worker meanwhile: nothing is left to compare a canary with.
        rollout_.canary = CanaryPhase::passed;
        rollout_.analysis.clear();
        note(NoteKind::canary, Level::warn,
             fmt::format("generation {}: canary analysis ends unjudged: the fleet is down to 1 worker; rolling out", generation_));
        turn_due_ = true;
        return;
    }
    if (rollout_.canary == CanaryPhase::starting) {
        // Judging starts when every canary slot is served by a ready worker of this generation
        // and its old worker is gone (it took over).
        int canaries = 0;
        for (const auto& [index, slot] : slots_) {
            if (!slot.active || canary_holds(index)) continue;
            const Worker* next = successor_in(slot);
            if (next == nullptr || next->phase != Phase::ready || outgoing_in(slot) != nullptr) return;
            ++canaries;
        }
        if (canaries == 0) return;
        rollout_.canary = CanaryPhase::judging;
        rollout_.judging_since = now;
        rollout_.canaries_at_start = generation_totals(generation_);
        // The old side: every older worker that serves beside them (the last generation that
        // rolled out, and one whose rollout this reload superseded).
        rollout_.old_at_start = generation_totals(generation_ - 1, true);
        note(NoteKind::canary, Level::info,
             fmt::format("generation {}: {} canar{} serving; judging them against the old workers for {} and at least {} requests",
                         generation_, canaries, canaries == 1 ? "y" : "ies", format_duration(a.window), a.min_requests));
        turn_due_ = true;
        return;
    }
    if (rollout_.canary != CanaryPhase::judging || now - *rollout_.judging_since < a.window || now < rollout_.judge_again) return;
    const RequestStats canaries_now = generation_totals(generation_);
    const RequestStats canaries = canaries_now.since(rollout_.canaries_at_start);
    const RequestStats old = generation_totals(generation_ - 1, true).since(rollout_.old_at_start);
    const auto took = std::chrono::duration_cast<Duration>(now - *rollout_.judging_since);
    const CanaryVerdict v = judge_canary(a, canaries, old, took);
    rollout_.analysis = v.summary;
    if (!v.enough) {
        // Nothing to judge by, whatever the wait: one side counts no answers while the other
        // has served enough (workers that send no STATS: an app without the protocol).
        const bool canaries_report = std::any_of(workers_.begin(), workers_.end(), [&](const auto& e) {
            return e.second.generation == generation_ && e.second.health.stats_at.has_value();
        });
        std::string unjudged;
        if (old.served == 0 && canaries.served >= a.min_requests) unjudged = "the old workers report no answers (STATS)";
        if (!canaries_report && old.served >= a.min_requests) unjudged = "the canaries send no STATS";
        if (!unjudged.empty()) {
            rollout_.canary = CanaryPhase::passed;
            rollout_.analysis.clear();
            note(NoteKind::canary, Level::warn,
                 fmt::format("generation {}: canary analysis ends unjudged: {}; rolling out", generation_, unjudged));
            turn_due_ = true;
            return;
        }
        rollout_.judge_again = now + std::chrono::seconds(1);
        if (!rollout_.waiting_logged) {
            const std::string what = canaries.served < a.min_requests
                                         ? fmt::format("the canaries answered {} of the {} requests needed to judge them",
                                                       canaries.served, a.min_requests)
                                         : std::string("the old workers answered none to compare the canaries with");
            note(NoteKind::canary, Level::info,
                 fmt::format("generation {}: {}; waiting (workerctl rollout promote|abort decides by hand)", generation_, what));
            rollout_.waiting_logged = true;
        }
        return;
    }
    if (!v.pass) {
        fail_rollout(now, "canary", fmt::format("generation {}: {}; rolled back", generation_, v.summary));
        return;
    }
    rollout_.canary = CanaryPhase::passed;
    note(NoteKind::canary, Level::info, fmt::format("generation {}: canaries as good as the old workers ({}); rolling out", generation_, v.summary));
    turn_due_ = true;
}

bool Fleet::promote(TimePoint) {
    if (rollout_.state != RolloutState::running ||
        (rollout_.canary != CanaryPhase::starting && rollout_.canary != CanaryPhase::judging)) {
        return false;
    }
    rollout_.canary = CanaryPhase::passed;
    note(NoteKind::canary, Level::info, fmt::format("control: generation {} promoted by hand; rolling out", generation_));
    turn_due_ = true;
    return true;
}

bool Fleet::abort_rollout(TimePoint now) {
    if (rollout_.state != RolloutState::running) return false;
    fail_rollout(now, "aborted", fmt::format("generation {}: aborted by hand (workerctl rollout abort)", generation_));
    return true;
}

}  // namespace workerd::core
