#include "daemon/core/health.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>

namespace workerd {
namespace {

using std::chrono::duration_cast;

Duration since(TimePoint then, TimePoint now) { return duration_cast<Duration>(now - then); }

// Whether the worker is held to READY within boot_timeout and to heartbeats after.
bool watched(const HealthPolicy& policy, const HealthState& state) {
    switch (policy.mode) {
        case HeartbeatMode::required: return true;
        case HeartbeatMode::automatic: return state.speaks;
        case HeartbeatMode::off: return false;
    }
    return false;
}

}  // namespace

const char* to_string(HangReason reason) {
    switch (reason) {
        case HangReason::none: return "none";
        case HangReason::boot_timeout: return "boot timeout";
        case HangReason::heartbeat_timeout: return "heartbeat timeout";
        case HangReason::request_timeout: return "request timeout";
    }
    return "?";
}

bool note_message(HealthState& state, TimePoint now) {
    if (state.speaks) return false;
    state.speaks = true;
    if (state.ready_at) state.ready_at = now;
    return true;
}

void excuse_delay(HealthState& state, Duration delay, TimePoint now) {
    auto shift = [&](TimePoint& t) { t = std::min(now, t + delay); };
    shift(state.started);
    if (state.ready_at) shift(*state.ready_at);
    if (state.last_beat) shift(*state.last_beat);
    if (state.stats_at) shift(*state.stats_at);
}

bool ready_by_uptime(const HealthPolicy& policy, const HealthState& state, TimePoint now) {
    if (state.ready_at || watched(policy, state)) return false;
    return since(state.started, now) >= policy.ready_after;
}

Verdict judge(const HealthPolicy& policy, const HealthState& state, TimePoint now) {
    if (!watched(policy, state)) return {};
    if (!state.ready_at) {
        const Duration up = since(state.started, now);
        if (up > policy.boot_timeout) return {HangReason::boot_timeout, up};
        return {};
    }
    // Heartbeats are due from READY on: the last beat, or READY itself, starts the silence.
    const TimePoint last = std::max(*state.ready_at, state.last_beat.value_or(*state.ready_at));
    const Duration silence = since(last, now);
    if (silence > policy.timeout) return {HangReason::heartbeat_timeout, silence};
    if (policy.request_timeout && state.stats_at && state.oldest_ms > 0) {
        const Duration age = Duration(state.oldest_ms) + since(*state.stats_at, now);
        if (age > *policy.request_timeout) return {HangReason::request_timeout, age};
    }
    return {};
}

std::optional<TimePoint> next_check(const HealthPolicy& policy, const HealthState& state) {
    // One millisecond past each limit: judge() uses strict comparisons.
    constexpr Duration kPast{1};
    if (!watched(policy, state)) {
        if (state.ready_at || policy.mode == HeartbeatMode::required) return std::nullopt;
        return state.started + policy.ready_after;
    }
    if (!state.ready_at) return state.started + policy.boot_timeout + kPast;
    const TimePoint last = std::max(*state.ready_at, state.last_beat.value_or(*state.ready_at));
    TimePoint next = last + policy.timeout + kPast;
    if (policy.request_timeout && state.stats_at && state.oldest_ms > 0) {
        next = std::min(next, *state.stats_at + *policy.request_timeout - Duration(state.oldest_ms) + kPast);
    }
    return next;
}

Escalation begin_escalation(HangReason reason, TimePoint now) {
    Escalation esc;
    esc.reason = reason;
    esc.next = now;
    return esc;
}

std::optional<int> escalate(const HealthPolicy& policy, Escalation& esc, TimePoint now) {
    if (now < esc.next || esc.step >= 3) return std::nullopt;
    if (esc.step == 0 && policy.timeout_signal != 0) {
        esc.step = 1;
        esc.next = now + kTimeoutSignalGrace;
    } else if (esc.step <= 1) {
        esc.step = 2;
        esc.next = now + policy.kill_timeout;
    } else {
        esc.step = 3;
        esc.next = TimePoint::max();
    }
    esc.last_signal = esc.step == 1 ? policy.timeout_signal : esc.step == 2 ? SIGTERM : SIGKILL;
    esc.last_at = now;
    return esc.last_signal;
}

int signal_from_name(const std::string& name) {
    const std::string bare = name.rfind("SIG", 0) == 0 ? name.substr(3) : name;
    for (int sig = 1; sig < NSIG; ++sig) {
        const char* abbrev = ::sigabbrev_np(sig);
        if (abbrev != nullptr && bare == abbrev) return sig;
    }
    return 0;
}

std::string signal_name(int sig) {
    if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
    return "signal " + std::to_string(sig);
}

}  // namespace workerd
