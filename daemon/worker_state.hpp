#pragma once

#include <string>

namespace workerd {

/// A worker's lifecycle. Every change goes through next_state().
///   spawning -> booting -> ready -> draining -> exited
/// and any live state -> exited when the process dies.
enum class WorkerState { spawning, booting, ready, draining, exited };

/// What can happen to a worker.
enum class WorkerEvent {
    started,   ///< execve succeeded
    ready,     ///< the worker said READY (or, without the protocol, is considered ready)
    drain,     ///< asked to finish in-flight work and exit (SIGTERM sent)
    exited,    ///< reaped
};

/// The one transition function. Events that do not apply in a state (a late READY from a
/// draining worker, a second drain) leave it unchanged; impossible ones (anything after
/// exited, started twice) abort: they are bugs.
WorkerState next_state(WorkerState state, WorkerEvent event);

/// "booting", "ready", ... for logs and status.
const char* to_string(WorkerState state);

/// How a worker ended, for status (`last_exit`) and logs, from its wait status and, when the
/// daemon had told it to stop, why (`stopped_for`: "reload", "scale down", "stop", ...; empty
/// when it was not told). A worker told to stop that exits, or dies of the SIGTERM it was
/// sent (uvicorn re-raises it; a Node server without a handler dies of it; a shell reports
/// 128 + 15), ended as asked: "stopped (reload)", never a crash. One killed with SIGKILL while
/// stopping outlived graceful_timeout. Unasked: "exit" or "crash by signal".
std::string describe_end(int wait_status, const std::string& stopped_for);

}  // namespace workerd
