// Rollout arithmetic: the budget from max_surge / max_unavailable, and one step's plan.
#include <doctest/doctest.h>

#include "daemon/core/rollout_plan.hpp"

using namespace workerd;
using namespace workerd::core;

namespace {

RolloutSpec spec(WorkerAmount surge, WorkerAmount unavailable) {
    RolloutSpec r;
    r.max_surge = surge;
    r.max_unavailable = unavailable;
    return r;
}

SlotView outgoing(int slot) { return SlotView{slot, true, false, false, true}; }

}  // namespace

TEST_CASE("the budget: surge rounds up, unavailable down, and never both 0") {
    struct Row {
        RolloutSpec r;
        int fleet, surge, unavailable;
    };
    const Row rows[] = {
        {spec({25, true}, {0, false}), 10, 3, 0},
        {spec({25, true}, {0, false}), 1, 1, 0},
        {spec({0, false}, {0, false}), 4, 0, 1},
        {spec({2, false}, {1, false}), 4, 2, 1},
        {spec({50, true}, {25, true}), 10, 5, 2},
        {spec({0, false}, {25, true}), 3, 0, 1},  // 0.75 rounds down to 0: both 0, so 1
    };
    for (const Row& row : rows) {
        CAPTURE(row.fleet);
        const auto b = rollout_budget(row.r, row.fleet);
        CHECK(b.surge == row.surge);
        CHECK(b.unavailable == row.unavailable);
    }
}

TEST_CASE("ready successors take over; new ones start within the surge, in slot order") {
    std::vector<SlotView> slots = {outgoing(0), outgoing(1), outgoing(2), outgoing(3)};
    slots[0].successor = slots[0].successor_ready = true;  // takes over now
    slots[1].successor = true;                             // booting: uses one surge
    const auto step = plan_rollout(slots, {2, 0});
    CHECK(step.take_over == std::vector<int>{0});
    CHECK(step.surge == std::vector<int>{2});  // one surge left
    CHECK(step.in_place.empty());
}

TEST_CASE("without surge, in place only while slots without a serving worker stay within the budget") {
    std::vector<SlotView> slots = {outgoing(0), outgoing(1), outgoing(2)};
    auto step = plan_rollout(slots, {0, 1});
    CHECK(step.surge.empty());
    CHECK(step.in_place == std::vector<int>{0});
    slots[0] = SlotView{0, false, true, false, true};  // slot 0 replaced in place, booting
    step = plan_rollout(slots, {0, 1});
    CHECK(step.in_place.empty());  // slot 0 lacks a serving worker: the budget is spent
}

TEST_CASE("a slot still backing off waits") {
    std::vector<SlotView> slots = {outgoing(0), outgoing(1)};
    slots[0].may_start = false;
    const auto step = plan_rollout(slots, {1, 0});
    CHECK(step.surge == std::vector<int>{1});
}
