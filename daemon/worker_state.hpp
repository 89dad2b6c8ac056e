#pragma once

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

}  // namespace workerd
