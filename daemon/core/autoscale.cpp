#include "daemon/core/autoscale.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace workerd {

double little_wait_seconds(int depth, double accepts_per_second) {
    if (depth <= 0) return 0.0;
    if (accepts_per_second <= 0) return INFINITY;
    return depth / accepts_per_second;
}

AutoscaleDecision autoscale_decide(const AutoscaleSpec& spec, AutoscaleState& state, const AutoscaleInputs& in,
                                   std::chrono::steady_clock::time_point now) {
    const int ceiling = std::min(spec.max, in.memory_cap.value_or(spec.max));
    const int floor = std::min(spec.min, ceiling);
    const double per_worker = in.inflight / std::max(1, in.current);
    const std::string seen = fmt::format("queue {}, {:.1f} in flight per worker (target {}){}{}", in.queue_depth, per_worker,
                                         spec.target_inflight,
                                         in.p99_ms ? fmt::format(", p99 {:.0f} ms", *in.p99_ms) : std::string(),
                                         in.queue_p99_ms ? fmt::format(", queue p99 {:.0f} ms", *in.queue_p99_ms) : std::string());
    auto change = [&](int target, const std::string& why) {
        if (target != in.current) {
            state.last_change = now;
            state.low_since.reset();
        }
        return AutoscaleDecision{target, why};
    };
    // Out of bounds (min/max or the memory budget changed): back inside at once.
    if (in.current > ceiling) {
        return change(ceiling, in.memory_cap && *in.memory_cap < spec.max
                                   ? fmt::format("over the memory budget ({} workers)", ceiling)
                                   : fmt::format("above max {}", spec.max));
    }
    if (in.current < floor) return change(floor, fmt::format("below min {}", spec.min));

    const bool latency_high = spec.target_latency && in.p99_ms && *in.p99_ms > static_cast<double>(spec.target_latency->count());
    const bool queue_high = spec.target_queue && in.queue_p99_ms &&
                            *in.queue_p99_ms > static_cast<double>(spec.target_queue->count());
    const bool busy = in.queue_depth > 0 || per_worker > spec.target_inflight || latency_high || queue_high;
    if (busy) {
        state.low_since.reset();
        if (in.current >= ceiling) {
            return {in.current, fmt::format("busy ({}) but at {}", seen,
                                            ceiling < spec.max ? "the memory budget" : "max")};
        }
        if (now - state.last_change < spec.up_cooldown) return {in.current, "busy (" + seen + "), cooling down"};
        // Up fast: enough for the in-flight target, at least half the fleet more, at least one.
        const int wanted = static_cast<int>(std::ceil(in.inflight / spec.target_inflight));
        const int step = std::max({1, (in.current + 1) / 2, wanted - in.current});
        return change(std::min(ceiling, in.current + step), "busy: " + seen);
    }
    const bool low = in.queue_depth == 0 && per_worker < spec.target_inflight * 0.3 && !latency_high && !queue_high;
    if (!low) {
        state.low_since.reset();
        return {in.current, "steady: " + seen};
    }
    if (!state.low_since) state.low_since = now;
    if (in.current <= floor) return {in.current, "idle at min: " + seen};
    if (now - *state.low_since < spec.down_delay || now - state.last_change < spec.down_cooldown) {
        return {in.current, "idle (" + seen + "), waiting before scaling down"};
    }
    // Down slowly: one at a time.
    return change(in.current - 1, "idle: " + seen);
}

int memory_budget(std::uint64_t limit, double margin, std::uint64_t per_worker, std::uint64_t shared) {
    if (per_worker == 0) return 1 << 20;
    const double usable = static_cast<double>(limit) * (1.0 - margin) - static_cast<double>(shared);
    return std::max(1, static_cast<int>(usable / static_cast<double>(per_worker)));
}

}  // namespace workerd
