#pragma once

// A deterministic simulator for the fleet core: a seeded random source and a simulated clock
// drive the real core (daemon/core/fleet.hpp) through a fake launcher. Simulated workers have
// behaviour models (boot time, crashes during boot, hangs after READY, SIGTERM ignored, leaks,
// exits after N requests, silence); a fault injector adds kills, spawn failures, reloads (some
// to a generation that cannot boot), scale storms, TTIN/TTOU, restarts and stops. After every
// step the simulator checks the fleet's invariants; after the faults, that the fleet converges.

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "daemon/core/fleet.hpp"

namespace workerd::sim {

using core::TimePoint;
using Ms = std::chrono::milliseconds;

/// One simulated run.
struct Scenario {
    std::uint64_t seed = 1;
    int workers = 8;                 ///< the fleet's size at start
    Duration faults_for{std::chrono::hours(1)};   ///< simulated time with faults
    Duration fault_every{std::chrono::seconds(20)};  ///< mean time between faults
    Duration settle_within{std::chrono::minutes(10)};  ///< liveness: converged by then
    Duration grid{Ms(10)};           ///< worker events happen on this grid (coarser: faster)
    bool may_stop = true;            ///< a stop may come in the middle of everything
    bool preload = false;            ///< app.preload: workers are forked from zygotes
    std::size_t trace_lines = 60;    ///< the last events kept for a failure's report

    /// The scenario a seed stands for in the default run: sizes, durations and settings vary.
    static Scenario from_seed(std::uint64_t seed);
    std::string describe() const;
};

/// What a run did.
struct Outcome {
    bool ok = true;
    std::string failure;             ///< the invariant broken, and when
    std::vector<std::string> trace;  ///< the last events and actions before it
    std::uint64_t events = 0;        ///< events given to the core
    std::uint64_t turns = 0;
    std::uint64_t checks = 0;        ///< invariant checks passed
    std::uint64_t spawns = 0, exits = 0, faults = 0, reloads = 0;
    /// Preload: zygotes started, zygotes that ended unasked, forks asked of a zygote already gone.
    std::uint64_t zygotes = 0, zygote_deaths = 0, forks_lost = 0;
    std::uint64_t canary_rollbacks = 0;  ///< rollouts stopped by canary analysis
    std::uint64_t leak_recycles = 0;     ///< workers recycled as leaking
    bool stopped = false;            ///< the run ended in a stop
};

Outcome run(const Scenario& scenario);

}  // namespace workerd::sim
