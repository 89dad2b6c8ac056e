#include "daemon/core/rollout_plan.hpp"

namespace workerd::core {

RolloutBudget rollout_budget(const RolloutSpec& spec, int fleet) {
    const int surge = spec.max_surge.resolve(fleet, /*round_up=*/true);
    const int unavailable = spec.max_unavailable.resolve(fleet, /*round_up=*/false);
    return {surge, surge + unavailable == 0 ? 1 : unavailable};
}

RolloutStep plan_rollout(const std::vector<SlotView>& slots, RolloutBudget budget) {
    RolloutStep step;
    int surge_used = 0;  // slots holding both an outgoing worker and its successor
    int missing = 0;     // slots without a serving worker
    std::vector<int> waiting;
    for (const SlotView& s : slots) {
        if (s.held) {
            if (!s.held_serving) ++missing;
            if (s.outgoing && s.successor) ++surge_used;
            continue;
        }
        if (s.outgoing && s.successor && s.successor_ready) {
            step.take_over.push_back(s.slot);
            continue;  // the successor serves; the outgoing one drains
        }
        const bool serving = s.outgoing || (s.successor && s.successor_ready);
        if (!serving) ++missing;
        if (s.outgoing && s.successor) ++surge_used;
        if (s.outgoing && !s.successor && s.may_start) waiting.push_back(s.slot);
    }
    for (int slot : waiting) {
        if (surge_used < budget.surge) {
            ++surge_used;
            step.surge.push_back(slot);
        } else if (missing < budget.unavailable) {
            ++missing;
            step.in_place.push_back(slot);
        } else {
            break;
        }
    }
    return step;
}

}  // namespace workerd::core
