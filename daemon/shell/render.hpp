#pragma once

// Status (`workerctl status --json`), the effective config and /metrics, rendered from the
// fleet core's state and what the shell measured (/proc, listen queues): pure functions, so
// what a person or Prometheus sees is a function of the state alone.

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/core/fleet.hpp"

namespace workerd {

/// What the shell measured of one worker process.
struct ProcessFacts {
    long rss_bytes = 0;
    double cpu_percent = 0;  ///< since the previous status request (or the worker's start)
    double cpu_seconds = -1; ///< so far; -1 when unknown
    long pss_bytes = 0;      ///< from smaps_rollup; 0 when unreadable
    long private_bytes = 0;
};

struct StatusFacts {
    core::TimePoint now;
    pid_t daemon_pid = 0;
    std::string version;
    std::map<pid_t, ProcessFacts> processes;
};

/// One listener's accept queue (with its slots' sockets, under reuse_port).
struct QueueFacts {
    std::string listener;
    long depth = 0;
    long max = 0;
};

struct MetricsFacts {
    core::TimePoint now;
    std::string version;
    std::map<pid_t, ProcessFacts> processes;
    std::vector<QueueFacts> queues;
    /// Little's law over the listen queues (depth / accept rate since the previous scrape);
    /// nullopt when unknown.
    std::optional<double> queue_wait_estimate;
};

nlohmann::json render_status(const core::Fleet& fleet, const StatusFacts& facts);
nlohmann::json render_config(const core::Fleet& fleet, const std::string& control_socket);
/// The fleet's families in Prometheus' text format (the daemon's own process_* come apart).
std::string render_metrics(const core::Fleet& fleet, const MetricsFacts& facts);

}  // namespace workerd
