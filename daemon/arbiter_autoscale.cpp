// The autoscaler on the daemon's loop: gathers what workerd already knows (listen queues,
// requests in flight, latency, memory), asks the pure policy (autoscale.hpp), and scales.
#include <unistd.h>

#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/arbiter.hpp"
#include "daemon/listen_queue.hpp"
#include "daemon/proc_stats.hpp"

namespace workerd {

std::optional<int> Arbiter::memory_cap() const {
    const auto limit = spec_.memory_limit ? spec_.memory_limit : cgroup_memory_limit_;
    if (!limit) return std::nullopt;
    // RSS per worker: measured from ready workers once they run, else the spec's hint.
    long total = 0;
    int sampled = 0;
    for (const auto& [pid, w] : workers_) {
        if (w.state == WorkerState::ready && w.rss_bytes > 0) {
            total += w.rss_bytes;
            ++sampled;
        }
    }
    const std::optional<std::uint64_t> per_worker =
        sampled > 0 ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(total / sampled)) : spec_.memory_per_worker;
    if (!per_worker || *per_worker == 0) return std::nullopt;
    return memory_budget(*limit, spec_.memory_margin, *per_worker);
}

void Arbiter::autoscale(Clock::time_point now) {
    if (!spec_.autoscale || autoscale_pinned_ || mode_ != Mode::running || now < next_autoscale_) return;
    next_autoscale_ = now + std::chrono::seconds(1);
    // Fresh RSS for the budget (the recycling check samples too, when max_rss is set).
    for (auto& [pid, w] : workers_) {
        if (w.state == WorkerState::ready) w.rss_bytes = proc_rss_bytes(pid);
    }
    AutoscaleInputs in;
    in.current = desired();
    for (const auto& l : listeners_) {
        if (auto q = queue_of(*l)) {
            in.queue_depth += static_cast<int>(q->depth);
        }
    }
    RequestStats recent;
    for (const auto& [pid, w] : workers_) {
        if (w.state != WorkerState::draining) in.inflight += static_cast<double>(w.stats.inflight);
        for (int k = 0; k < kLatencyBuckets; ++k) recent.buckets[k] += w.stats.buckets[k];
    }
    if (spec_.autoscale->target_latency) in.p99_ms = recent.percentile_ms(0.99);
    in.memory_cap = memory_cap();
    const auto decision = autoscale_decide(*spec_.autoscale, autoscale_state_, in, now);
    autoscale_view_ = decision.reason;
    if (decision.target == in.current) return;
    const std::string direction = decision.target > in.current ? "up" : "down";
    ++autoscale_decisions_[direction];
    scale_to(decision.target, fmt::format("autoscale ({})", decision.reason));
}

}  // namespace workerd
