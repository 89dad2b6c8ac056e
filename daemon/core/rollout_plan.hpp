#pragma once

// Rollout arithmetic, as plain functions of plain data (the way Kubernetes' deployment
// controller keeps MaxSurge/MaxUnavailable apart from acting on them).

#include <vector>

#include "daemon/wire/spec.hpp"

namespace workerd::core {

/// How far a rollout may go beyond and below the fleet's size at once.
struct RolloutBudget {
    int surge = 1;        ///< extra workers while replacing (max_surge, rounded up)
    int unavailable = 0;  ///< slots that may lack a serving worker (max_unavailable, rounded down)
};

/// The budget for a fleet of `fleet` slots. Both 0 would stall a rollout: then one slot may be
/// replaced in place (drained first), as Kubernetes does.
///   max_surge 25%, max_unavailable 0, fleet 10 -> surge 3, unavailable 0
///   max_surge 0, max_unavailable 0, fleet 4    -> surge 0, unavailable 1
RolloutBudget rollout_budget(const RolloutSpec& spec, int fleet);

/// One slot of the fleet as a rollout sees it.
struct SlotView {
    int slot = 0;
    bool outgoing = false;          ///< holds a worker to replace (retiring: it serves until drained)
    bool successor = false;         ///< holds its successor (booting or ready)
    bool successor_ready = false;
    bool may_start = true;          ///< its backoff has passed
    /// Canary analysis: the slot waits for the verdict. It counts (serving or not) against
    /// max_unavailable, and no successor starts in it.
    bool held = false;
    bool held_serving = false;      ///< (held) a ready worker serves it, of either generation
};

/// One step of a rollout.
struct RolloutStep {
    std::vector<int> take_over;  ///< successor ready: drain the outgoing worker
    std::vector<int> surge;      ///< start a successor beside the outgoing worker
    std::vector<int> in_place;   ///< drain the outgoing worker first, then start its successor
};

/// What to do now, in slot order: every ready successor takes over; then successors start
/// within the budgets, surge first (capacity never drops), then in place while slots without
/// a serving worker stay within `unavailable`. Slots taking over now count as serving.
RolloutStep plan_rollout(const std::vector<SlotView>& slots, RolloutBudget budget);

}  // namespace workerd::core
