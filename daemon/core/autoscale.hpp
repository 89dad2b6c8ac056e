#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/wire/units.hpp"

namespace workerd {

/// `autoscale:` (off when absent).
struct AutoscaleSpec {
    int min = 1;
    int max = 4;
    int target_inflight = 8;                 ///< requests in flight per worker the fleet aims at
    std::optional<Duration> target_latency;  ///< p99 above this also means "add workers"
    std::optional<Duration> target_queue;    ///< queue-time p99 (the last second's) above this too
    Duration up_cooldown{std::chrono::seconds(2)};     ///< between two steps up
    Duration down_delay{std::chrono::seconds(30)};     ///< load must stay low this long...
    Duration down_cooldown{std::chrono::seconds(10)};  ///< ...and this long since the last change
};

/// Little's law, W = L / lambda: how long a connection waits in the listen queues, from how many
/// wait (`depth`) and how fast they are accepted. 0 when none wait; +infinity when some wait and
/// none were accepted.
double little_wait_seconds(int depth, double accepts_per_second);

/// What the autoscaler looks at, once a second.
struct AutoscaleInputs {
    int current = 1;                ///< workers now (desired)
    int queue_depth = 0;            ///< connections waiting in the listen queues
    double inflight = 0;            ///< requests in flight over all workers (from STATS)
    std::optional<double> p99_ms;   ///< recent p99 latency, when known
    std::optional<double> queue_p99_ms;  ///< p99 of the queue times of the last second, when known
    std::optional<int> memory_cap;  ///< the memory budget's limit, when known
};

/// Its memory between decisions.
struct AutoscaleState {
    std::chrono::steady_clock::time_point last_change{};
    std::optional<std::chrono::steady_clock::time_point> low_since;
};

struct AutoscaleDecision {
    int target = 1;       ///< == inputs.current: no change
    std::string reason;   ///< why (also when nothing changes: what it saw)
};

/// The whole policy, a pure function of its inputs and a clock reading: scale up fast (by half
/// the fleet, at least one) when connections queue, the fleet is over its in-flight target or
/// p99 is over target; scale down slowly (one at a time) once load has stayed low for
/// down_delay; respect min, max, the cooldowns and the memory budget.
AutoscaleDecision autoscale_decide(const AutoscaleSpec& spec, AutoscaleState& state, const AutoscaleInputs& in,
                                   std::chrono::steady_clock::time_point now);

/// The memory budget: how many workers of `per_worker` bytes fit in `limit` less the margin
/// and less `shared` (what preloaded workers share with their zygote, counted once); at least one.
int memory_budget(std::uint64_t limit, double margin, std::uint64_t per_worker, std::uint64_t shared = 0);

}  // namespace workerd
