#pragma once

// What the shell tells the fleet core (events) and what the core asks of the shell (actions).
// Plain data: the core takes an event and the time, and returns actions; it makes no system
// call and reads no clock.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "daemon/wire/notify.hpp"
#include "daemon/wire/units.hpp"

namespace workerd::core {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
/// A worker as the core knows it, from its spawn on (before it has a pid).
using WorkerId = std::uint64_t;

/// The most spawns one turn asks for by default: a scale to 1024 goes in steps, and the shell
/// serves the I/O waiting between them. The shell may ask for fewer (Turn::spawn_limit) when
/// its spawns are slow.
inline constexpr int kSpawnsPerTurn = 10;

namespace event {
/// A turn of the loop: deadlines, health, scaling, replacement. Due at next_deadline().
struct Turn { int spawn_limit = kSpawnsPerTurn; };
/// A signal the daemon received: TERM, INT, QUIT, TTIN, TTOU. (HUP is prepared by the shell
/// and handed over as Fleet::reload; CHLD, USR1 and USR2 are the shell's own.)
struct Signal { int sig = 0; };
/// The launcher started a Spawn action's process, or could not. Answered at once.
struct Spawned { WorkerId id = 0; pid_t pid = 0; std::string program; };
struct SpawnFailed { WorkerId id = 0; std::string error; };
/// A child was reaped: its wait status and CPU time.
struct Exited { pid_t pid = 0; int status = 0; double cpu_seconds = 0; };
/// A worker protocol message (docs/worker-protocol.md), parsed.
struct Message { pid_t pid = 0; NotifyMessage message; };
/// A malformed or over-long protocol line.
struct BadLine { pid_t pid = 0; std::string what; };
/// One process's memory (/proc/PID/smaps_rollup); 0 where unknown.
struct MemorySample {
    pid_t pid = 0;
    long rss_bytes = 0;      ///< resident, shared pages counted in full
    long pss_bytes = 0;      ///< each shared page divided among the processes that map it
    long private_bytes = 0;  ///< pages only this process maps (USS): what a leak grows
};
/// Memory of the workers (and preload's zygotes), and connections waiting in the listen
/// queues, sampled by the shell when sample_due() says so (recycling by memory, the
/// autoscaler, the memory budget).
struct Samples {
    std::vector<MemorySample> memory;
    int queue_depth = 0;
};
/// The loop could not read the workers' pipes for `by` (a long turn, a late timer).
struct Late { Duration by{0}; std::string why; };
/// Preload (app.preload): the shell started a StartZygote action's zygote, or could not
/// (answered at once); later, the zygote said it has imported the app and takes fork requests.
/// Its exit comes as Exited, like a worker's.
struct ZygoteStarted { long generation = 0; pid_t pid = 0; };
struct ZygoteFailed { long generation = 0; std::string error; };
struct ZygoteReady { long generation = 0; };
}  // namespace event

using Event = std::variant<event::Turn, event::Signal, event::Spawned, event::SpawnFailed, event::Exited,
                           event::Message, event::BadLine, event::Samples, event::Late, event::ZygoteStarted,
                           event::ZygoteFailed, event::ZygoteReady>;

/// What a note is about: the structured log the shell prints and tests can count.
enum class NoteKind {
    started, ready, replaced, draining, ended, restarting, hung, escalated, killed_late, spawn_failed, flapping,
    scaling, recycling, restart, rollout_started, rollout_done, rollout_failed, stopping, late, autoscale,
    bad_line, status, reaped, zygote, canary,
};
const char* to_string(NoteKind kind);

enum class Level { debug, info, warn, error };

namespace action {
/// Start a worker for `slot` in `generation`; answer with Spawned or SpawnFailed at once.
/// With preload, the core asks only once that generation's zygote is ready: the worker is
/// forked from it.
struct Spawn { WorkerId id = 0; int slot = 0; long generation = 0; };
/// Preload: start the zygote of `generation` (its spec is the fleet's now); answer with
/// ZygoteStarted or ZygoteFailed at once.
struct StartZygote { long generation = 0; };
/// Preload: the zygote of `generation` is no longer needed (its generation was replaced, or
/// the fleet stops): close its socket, which ends it, and SIGTERM it. SIGKILL comes as a
/// Signal action if it is still there after kill_timeout.
struct StopZygote { long generation = 0; pid_t pid = 0; };
/// Send `sig` to a worker (to its main thread only: a stack dump, `timeout_signal`).
struct Signal { pid_t pid = 0; int sig = 0; bool main_thread = false; };
/// reuse_port: a slot left the fleet; its own sockets close with its last worker.
struct SlotRemoved { int slot = 0; };
/// reuse_port: a worker of a slot that left the fleet drains; its slot's own sockets stop
/// listening now, so the kernel sends no more connections there.
struct StopSlotSockets { pid_t pid = 0; };
/// The fleet stops: `first` when it was running until now (close the daemon's copies of the
/// listening sockets); `fast`: what gone workers left is killed at once.
struct Stopping { bool fast = false; bool first = false; };
/// A failed rollout went back to `generation`: its listeners are the fleet's again.
struct Rollback { long generation = 0; };
/// The rollout of `generation` is done: the previous generation's listeners may go.
struct RolloutDone { long generation = 0; };
/// A worker ended: stop what it left behind (its process group, orphans), at once or after
/// graceful_timeout.
struct ReleaseLeftovers { pid_t pid = 0; int slot = 0; long generation = 0; bool at_once = false; };
/// Tell systemd (sd_notify); `reloading`: a RELOADING=1 message, to which the shell adds
/// MONOTONIC_USEC.
struct Systemd { std::string message; bool reloading = false; };
/// Write to the log.
struct Note { NoteKind kind = NoteKind::started; Level level = Level::info; std::string text; };
}  // namespace action

using Action = std::variant<action::Spawn, action::Signal, action::SlotRemoved, action::StopSlotSockets,
                            action::Stopping, action::Rollback, action::RolloutDone, action::ReleaseLeftovers,
                            action::Systemd, action::Note, action::StartZygote, action::StopZygote>;

}  // namespace workerd::core
