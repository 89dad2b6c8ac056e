#pragma once

// Canary analysis (rollout.analysis): the verdict on a new generation's first workers against
// the old generation's, over the same window of time. Pure: the fleet core takes the counts from
// the workers' STATS, and the simulator feeds it seeded streams of outcomes.

#include <string>

#include "daemon/wire/notify.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd::core {

struct CanaryVerdict {
    bool enough = false;  ///< the canaries answered min_requests in the window, the old some: judged
    bool pass = true;     ///< (when enough) as good as the old generation
    /// The numbers, for the log and the status: "5xx 4.1% vs 0.2%, p99 410 ms vs 95 ms over 60 s
    /// and 1,204 requests".
    std::string summary;
};

/// `canaries` and `old` are what each side served during the window (RequestStats::since).
/// Errors are 5xx and failed answers over all answered (protocol version 3: workers that do not
/// count answers by class are judged on latency alone). The canaries fail when their error
/// share is above both the old share plus max_error_increase and the old share times
/// max_error_ratio, or their p99 above the old p99 times max_p99_ratio (and 5 ms more: the
/// protocol's buckets are ~20% wide).
CanaryVerdict judge_canary(const AnalysisSpec& spec, const RequestStats& canaries, const RequestStats& old,
                           Duration window);

/// The 5xx and failed answers' share of all answered; nullopt without answers by class.
std::optional<double> error_share(const RequestStats& s);

}  // namespace workerd::core
