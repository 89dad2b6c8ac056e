#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/wire/units.hpp"

namespace workerd {

using HealthClock = std::chrono::steady_clock;
using TimePoint = HealthClock::time_point;

/// `heartbeat:` how a worker's liveness is judged.
enum class HeartbeatMode {
    automatic,  ///< "auto": workers that speak the protocol are held to it; silent ones are not
    required,   ///< every worker must send READY within boot_timeout and heartbeats after
    off,        ///< only exits count; READY is still honoured
};

/// The spec's timeout settings, as the health checks use them.
struct HealthPolicy {
    HeartbeatMode mode = HeartbeatMode::automatic;
    Duration timeout{std::chrono::seconds(30)};       ///< heartbeat silence that means hung
    Duration boot_timeout{std::chrono::seconds(60)};  ///< READY must come within this
    Duration ready_after{std::chrono::seconds(1)};    ///< silent workers: up this long = ready
    Duration kill_timeout{std::chrono::seconds(5)};   ///< SIGTERM -> SIGKILL for a hung worker
    std::optional<Duration> request_timeout;          ///< oldest in-flight request limit
    int timeout_signal = 0;                           ///< sent first to a hung worker; 0 = none
};

/// The pause between timeout_signal and SIGTERM, so the app can dump its stacks.
inline constexpr Duration kTimeoutSignalGrace{std::chrono::seconds(1)};

/// What the daemon knows about one worker's health, fed by its protocol messages.
struct HealthState {
    TimePoint started;
    bool speaks = false;                  ///< sent at least one valid protocol message
    std::optional<TimePoint> ready_at;    ///< READY=1 received, or ready_after passed
    std::optional<TimePoint> last_beat;   ///< last WATCHDOG=1 or STATS
    std::optional<TimePoint> stats_at;    ///< when the last STATS came
    std::int64_t oldest_ms = 0;           ///< oldest in-flight request, per that STATS
};

/// Why a worker is judged hung.
enum class HangReason { none, boot_timeout, heartbeat_timeout, request_timeout };
const char* to_string(HangReason reason);

struct Verdict {
    HangReason reason = HangReason::none;
    Duration measured{0};  ///< the silence, time without READY, or the request's age
    explicit operator bool() const { return reason != HangReason::none; }
};

/// A valid protocol message arrived. The first one makes the worker a speaker; if it already
/// counted as ready by uptime, its heartbeat clock starts now, not back then. Returns true for
/// that first one: the worker has deadlines from now on (next_check), so arm for them.
bool note_message(HealthState& state, TimePoint now);

/// The daemon's own delay: for `delay` before `now` the loop could not read the worker's pipe
/// (a long turn, a late timer, the daemon stopped or starved of CPU). That time is not the
/// worker's silence: every clock judge() measures from moves forward by `delay`, never past
/// `now`.
void excuse_delay(HealthState& state, Duration delay, TimePoint now);

/// Whether a worker that has not said READY should count as ready now: under `off` or
/// `auto`, a worker that never spoke the protocol is ready once it has been up ready_after.
bool ready_by_uptime(const HealthPolicy& policy, const HealthState& state, TimePoint now);

/// Judges a live (booting or ready) worker at `now`.
Verdict judge(const HealthPolicy& policy, const HealthState& state, TimePoint now);

/// The earliest time at which judge() or ready_by_uptime() could change their answer without
/// a new message; nullopt when nothing is pending. For arming the daemon's one timer.
std::optional<TimePoint> next_check(const HealthPolicy& policy, const HealthState& state);

/// The escalation of one hung worker: optional timeout_signal, SIGTERM, SIGKILL.
struct Escalation {
    HangReason reason = HangReason::none;
    int step = 0;                 ///< 0 none sent, 1 timeout_signal, 2 SIGTERM, 3 SIGKILL
    TimePoint next;               ///< when the next signal is due
    int last_signal = 0;          ///< the last signal sent, and when
    TimePoint last_at;
};

/// Starts an escalation at `now`.
Escalation begin_escalation(HangReason reason, TimePoint now);

/// The signal due at `now`, if any, advancing `esc`. Steps: timeout_signal (when set), then
/// SIGTERM (kTimeoutSignalGrace later, or at once), then SIGKILL kill_timeout after SIGTERM.
/// After SIGKILL nothing more is due.
std::optional<int> escalate(const HealthPolicy& policy, Escalation& esc, TimePoint now);

/// Parses a signal name ("SIGABRT", "ABRT", "USR1") into its number; 0 when unknown.
int signal_from_name(const std::string& name);
/// "SIGTERM", "SIGKILL", ... or "signal N".
std::string signal_name(int sig);

}  // namespace workerd
