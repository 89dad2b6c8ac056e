#pragma once

// One worker's lifecycle: one phase, one transition function, and the reasons for leaving a
// phase as enums. Nothing else in the daemon derives "hung", "retiring" or "ready" from side
// fields. The daemon's mode and the rollout's state are here too, with their own transitions.

#include <optional>
#include <string>

#include "daemon/core/health.hpp"

namespace workerd::core {

/// Where a worker is in its life.
///
///   spawning -> booting -> ready -> retiring -> draining -> exited
///                  |         |          \                  ^
///                  +---------+-----------+---> hung -------+  (a hung worker told to stop)
///                  \------------------------> draining
/// and every live phase -> exited when the process is reaped.
///
/// - spawning: asked of the launcher; no pid yet.
/// - booting:  running, not READY (nor up ready_after, for a worker that never speaks).
/// - ready:    serving.
/// - retiring: serving, and to be replaced: a successor is wanted in its slot (a reload's new
///             generation, a recycle, a restart); it drains once the successor is READY.
/// - hung:     judged hung (boot, heartbeat or request timeout); its escalation runs.
/// - draining: told to stop (SIGTERM); SIGKILL at its deadline (and a hung one's escalation
///             goes on).
/// - exited:   reaped.
enum class Phase { spawning, booting, ready, retiring, hung, draining, exited };

/// What can happen to a worker.
enum class Change {
    started,  ///< the launcher returned its pid
    ready,    ///< READY, or up ready_after without a word
    retire,   ///< a successor is wanted
    keep,     ///< a successor is no longer wanted (the rollout that wanted one failed)
    hang,     ///< judged hung
    drain,    ///< told to stop
    exited,   ///< reaped
};

/// The one transition function. Changes that do not apply in a phase leave it as it is (a
/// late READY from a draining worker, a second drain); impossible ones (anything after
/// exited, started twice) throw std::logic_error: they are bugs.
Phase next_phase(Phase phase, Change change);

const char* to_string(Phase phase);
const char* to_string(Change change);

/// Serving: ready, or retiring (still serving until its successor takes over).
inline bool serving(Phase p) { return p == Phase::ready || p == Phase::retiring; }

/// Why the daemon tells a worker to stop, or wants it replaced.
enum class StopReason { reload, restart, max_requests, max_rss, max_private, leak, max_lifetime, scale_down, stop };
const char* to_string(StopReason reason);  ///< "reload", "restart", "max_requests", "scale down", ...

/// How a worker ended, for status (`last_exit`), the log and the restarts metric.
struct Ending {
    enum class Kind {
        exit,              ///< exited on its own
        crash,             ///< killed by a signal nobody sent
        hang,              ///< killed as hung (hang says why)
        stopped,           ///< told to stop, and did (exit 0, or the SIGTERM it was sent)
        killed,            ///< told to stop, SIGKILLed at the end of graceful_timeout
        failed_stopping,   ///< told to stop, and exited with a failure or another signal
        cannot_start,      ///< the program could not be started
    };
    Kind kind = Kind::exit;
    HangReason hang = HangReason::none;
    std::optional<StopReason> stop;  ///< kinds stopped, killed, failed_stopping
    int code = 0;                    ///< failed_stopping: the exit status (0: a signal)
    std::string detail;              ///< cannot_start: the launcher's message

    /// As status shows it: "exit", "crash by signal", "heartbeat timeout", "stopped (reload)",
    /// "killed after graceful_timeout (scale down)", "cannot start: ...".
    std::string to_string() const;
    /// The restarts metric's `reason` label: "exit", "signal", "heartbeat_timeout",
    /// "reload", "scale_down", ...
    std::string metric_reason() const;
};

/// How a worker with wait status `status` ended, given why it had been told to stop (if it
/// had). A worker told to stop that exits, or dies of the SIGTERM it was sent (uvicorn 0.29+
/// re-raises it; a Node server without a handler dies of it; a shell reports 128 + 15),
/// ended as asked.
Ending classify_end(int wait_status, std::optional<StopReason> stopped_for);

/// The daemon's mode.
enum class Mode { running, stopping_graceful, stopping_fast };
/// TERM while running: graceful; a second TERM, or INT/QUIT: fast. Never back to running.
Mode next_mode(Mode mode, bool fast);
const char* to_string(Mode mode);  ///< "running", "stopping", "stopping now"

/// The latest rollout's state.
enum class RolloutState { none, running, done, failed };
const char* to_string(RolloutState state);  ///< "running", "done", "failed" ("none" for none)

}  // namespace workerd::core
