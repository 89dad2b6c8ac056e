#pragma once

// `workerd tune`'s shell: starts the spec's fleet (the real daemon, on loopback ports of its own),
// scales it through each worker count, runs the load steps RateSearch asks for, samples the
// fleet's CPU and memory, and stops every process it started, whatever happens.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/tune.hpp"
#include "daemon/load/load_generator.hpp"
#include "daemon/tune/tune_report.hpp"

namespace workerd::tune {

struct TuneOptions {
    std::string spec_path;
    std::vector<load::RequestSpec> requests;  ///< what to load (default: GET /)
    TuneObjective objective;
    std::vector<int> counts;                  ///< empty: the default ladder, stopped at a plateau
    std::chrono::milliseconds step{5000};     ///< each open-loop step
    std::chrono::milliseconds probe{2000};    ///< each closed-loop probe
    int connections = 256;                    ///< the generator's pool (the probe uses up to 128)
    int threads = 1;                          ///< the generator's event loops
    std::chrono::milliseconds request_timeout{0};  ///< 0: 5 × the objective, at least 2 s
    SearchLimits limits;
    bool allow_root = false;                  ///< as `workerd start --allow-root`
    std::string workerd;                      ///< the workerd binary to run the fleet with
};

/// Why a run could not be done at all (spec invalid, app does not start, ...): what() is shown.
struct TuneError : std::runtime_error {
    TuneError(int exit_code, const std::string& message) : std::runtime_error(message), exit_code(exit_code) {}
    int exit_code;
};

/// The most a run can take with these options and this many worker counts (load steps only).
std::chrono::seconds planned_duration(const TuneOptions& o, std::size_t counts);

/// Runs the whole tuning. Progress goes to `progress` (a line per step; rewritten in place when
/// it is a terminal). When `stop` is set (Ctrl-C), the run ends at once and the report holds
/// what was measured so far (complete = false). Throws TuneError when nothing could be measured.
TuneReport run_tune(const TuneOptions& o, const std::atomic<bool>& stop, std::FILE* progress);

}  // namespace workerd::tune
