#pragma once

// /metrics, /healthz and /readyz (docs/metrics.md): read from the fleet core's state on the
// daemon's loop at scrape time, with what the shell measures then (/proc, the listen queues),
// and serialized with prometheus-cpp's text serializer.

#include <functional>
#include <string>
#include <vector>

#include "daemon/core/fleet.hpp"
#include "daemon/shell/metrics_server.hpp"
#include "daemon/shell/render.hpp"

namespace workerd {

/// The answer to a GET of `path` on the metrics listener; `queues` measures the listen queues
/// (for /metrics only).
MetricsResponse metrics_endpoint(const std::string& path, const core::Fleet& fleet,
                                 const std::function<std::vector<QueueFacts>()>& queues);

/// What /proc says of a process now: RSS and CPU time (/proc/PID/stat); with `by_sharing` also
/// PSS and private memory (/proc/PID/smaps_rollup, which costs a walk of its page tables: the
/// workers' come from the core's last sample instead). Zeros (cpu_seconds -1) when it is gone.
ProcessFacts sample_process(pid_t pid, bool by_sharing = false);

/// The whole /metrics text: the fleet's families, the workers' and the daemon's process_*.
std::string metrics_text(const core::Fleet& fleet, const std::vector<QueueFacts>& queues, core::TimePoint now);

}  // namespace workerd
