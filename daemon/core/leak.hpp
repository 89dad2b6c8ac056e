#pragma once

// Leak-aware recycling (recycle's `leak`): the trend of one worker's memory against the
// requests it served and time, and the verdict on it. Pure: the fleet core adds a point per
// memory sample, and the simulator and the unit tests feed it made-up series.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/health.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd::core {

struct MemoryPoint {
    TimePoint at;
    std::uint64_t served = 0;  ///< requests the worker had served then
    long bytes = 0;            ///< its private memory (or RSS) then
};

/// The points of one worker's life after its warmup, at most kMaxPoints of them: when full,
/// every other point goes and points are taken half as often, so the series spans the whole
/// life at an even spacing. The first point (the baseline) stays.
class MemoryTrend {
public:
    static constexpr std::size_t kMaxPoints = 64;

    /// A sample: taken once the worker served `warmup` requests (the baseline is the first).
    void add(const MemoryPoint& p, std::uint64_t warmup);
    const std::vector<MemoryPoint>& points() const { return points_; }

private:
    std::vector<MemoryPoint> points_;
    std::size_t stride_ = 1;   ///< samples per point
    std::size_t skipped_ = 0;  ///< samples since the last point
};

struct LeakVerdict {
    bool leaking = false;
    long growth = 0;                     ///< bytes past the baseline (smoothed)
    std::uint64_t requests = 0;          ///< served since the baseline
    double per_request = 0;              ///< bytes per request, lately (least squares)
    double per_second = 0;               ///< bytes per second, lately
    std::optional<Duration> crosses_in;  ///< at that pace, the time left to `limit`
    /// "grew 48 MiB over 9,100 requests (5.3 KiB/request)" and, when projected, "; at 2.1 MiB/s
    /// it reaches max_private 512 MiB in 3m"
    std::string summary;
};

/// The verdict on a worker's trend. Leaking: grown min_growth past the baseline and growing
/// lately by per_request or more a request; or grown min_growth/4 and, growing lately, due to
/// reach `limit` (bytes, named `limit_name`) within the horizon. "Lately": the newer half of
/// the points, so a worker that grew once (a cache filled) and stays flat is spared; and no
/// more than half of the growth in one step between two points (a jump is not a trend).
LeakVerdict judge_leak(const LeakSpec& spec, const MemoryTrend& trend, std::optional<long> limit,
                       const std::string& limit_name);

}  // namespace workerd::core
