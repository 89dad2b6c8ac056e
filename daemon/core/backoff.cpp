#include "daemon/core/backoff.hpp"

#include <algorithm>

namespace workerd {

Duration Backoff::on_exit(const BackoffSpec& spec, Duration uptime, double jitter) {
    if (uptime >= spec.reset_after) {
        quick_exits_ = 0;
        return Duration::zero();
    }
    ++quick_exits_;
    // The first quick exit restarts at once: a single crash should not cost capacity.
    if (quick_exits_ == 1) return Duration::zero();
    double base = static_cast<double>(spec.initial.count());
    for (int i = 2; i < quick_exits_ && base < static_cast<double>(spec.max.count()); ++i) base *= 2;
    const double jittered = base * (0.8 + 0.4 * std::clamp(jitter, 0.0, 1.0));
    return Duration(static_cast<Duration::rep>(
        std::min(jittered, static_cast<double>(spec.max.count()))));
}

}  // namespace workerd
