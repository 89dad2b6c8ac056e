#include "daemon/core/lifecycle.hpp"

#include <sys/wait.h>

#include <csignal>
#include <stdexcept>

#include <fmt/format.h>

namespace workerd::core {
namespace {

[[noreturn]] void impossible(Phase phase, Change change) {
    throw std::logic_error(fmt::format("bug: {} in worker phase {}", to_string(change), to_string(phase)));
}

}  // namespace

Phase next_phase(Phase phase, Change change) {
    using P = Phase;
    using C = Change;
    if (phase == P::exited) impossible(phase, change);
    if (change == C::exited) return P::exited;
    // The table, by phase: what each change leads to; "same" where it does not apply.
    switch (phase) {
        case P::spawning:
            if (change == C::started) return P::booting;
            if (change == C::drain) return P::draining;  // stopping before the pid came back
            break;
        case P::booting:
            if (change == C::ready) return P::ready;
            if (change == C::hang) return P::hung;
            if (change == C::drain) return P::draining;
            if (change == C::retire || change == C::keep) return P::booting;
            break;
        case P::ready:
            if (change == C::ready || change == C::keep) return P::ready;
            if (change == C::retire) return P::retiring;
            if (change == C::hang) return P::hung;
            if (change == C::drain) return P::draining;
            break;
        case P::retiring:
            if (change == C::ready || change == C::retire) return P::retiring;
            if (change == C::keep) return P::ready;
            if (change == C::hang) return P::hung;
            if (change == C::drain) return P::draining;
            break;
        case P::hung:
            // Its escalation governs it: nothing brings it back. Told to stop (the fleet stops),
            // it drains, and its escalation goes on.
            if (change == C::drain) return P::draining;
            if (change == C::ready || change == C::retire || change == C::keep || change == C::hang) return P::hung;
            break;
        case P::draining:
            if (change == C::ready || change == C::retire || change == C::keep || change == C::drain ||
                change == C::hang) {
                return P::draining;
            }
            break;
        case P::exited:
            break;
    }
    impossible(phase, change);
}

const char* to_string(Phase phase) {
    switch (phase) {
        case Phase::spawning: return "spawning";
        case Phase::booting: return "booting";
        case Phase::ready: return "ready";
        case Phase::retiring: return "retiring";
        case Phase::hung: return "hung";
        case Phase::draining: return "draining";
        case Phase::exited: return "exited";
    }
    return "?";
}

const char* to_string(Change change) {
    switch (change) {
        case Change::started: return "started";
        case Change::ready: return "ready";
        case Change::retire: return "retire";
        case Change::keep: return "keep";
        case Change::hang: return "hang";
        case Change::drain: return "drain";
        case Change::exited: return "exited";
    }
    return "?";
}

const char* to_string(StopReason reason) {
    switch (reason) {
        case StopReason::reload: return "reload";
        case StopReason::restart: return "restart";
        case StopReason::max_requests: return "max_requests";
        case StopReason::max_rss: return "max_rss";
        case StopReason::max_private: return "max_private";
        case StopReason::leak: return "leak";
        case StopReason::max_lifetime: return "max_lifetime";
        case StopReason::scale_down: return "scale down";
        case StopReason::stop: return "stop";
    }
    return "?";
}

std::string Ending::to_string() const {
    const std::string why = stop ? core::to_string(*stop) : "";
    switch (kind) {
        case Kind::exit: return "exit";
        case Kind::crash: return "crash by signal";
        case Kind::hang: return workerd::to_string(hang);
        case Kind::stopped: return fmt::format("stopped ({})", why);
        case Kind::killed: return fmt::format("killed after graceful_timeout ({})", why);
        case Kind::failed_stopping:
            return code != 0 ? fmt::format("exit status {} while stopping ({})", code, why)
                             : fmt::format("crash by signal while stopping ({})", why);
        case Kind::cannot_start: return "cannot start: " + detail;
    }
    return "?";
}

std::string Ending::metric_reason() const {
    std::string reason;
    switch (kind) {
        case Kind::hang: reason = workerd::to_string(hang); break;
        case Kind::stopped:
        case Kind::killed:
        case Kind::failed_stopping: reason = stop ? core::to_string(*stop) : "exit"; break;
        case Kind::crash: reason = "signal"; break;
        case Kind::exit:
        case Kind::cannot_start: reason = "exit"; break;
    }
    for (char& c : reason) c = c == ' ' ? '_' : c;
    return reason;
}

Ending classify_end(int wait_status, std::optional<StopReason> stopped_for) {
    const bool exited = WIFEXITED(wait_status);
    const int code = exited ? WEXITSTATUS(wait_status) : 0;
    const int sig = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    Ending e;
    if (!stopped_for) {
        e.kind = sig != 0 ? Ending::Kind::crash : Ending::Kind::exit;
        return e;
    }
    e.stop = stopped_for;
    if ((exited && (code == 0 || code == 128 + SIGTERM)) || sig == SIGTERM) {
        e.kind = Ending::Kind::stopped;
    } else if (sig == SIGKILL) {
        e.kind = Ending::Kind::killed;
    } else {
        e.kind = Ending::Kind::failed_stopping;
        e.code = exited ? code : 0;
    }
    return e;
}

Mode next_mode(Mode mode, bool fast) {
    if (fast || mode != Mode::running) return Mode::stopping_fast;
    return Mode::stopping_graceful;
}

const char* to_string(Mode mode) {
    switch (mode) {
        case Mode::running: return "running";
        case Mode::stopping_graceful: return "stopping";
        case Mode::stopping_fast: return "stopping now";
    }
    return "?";
}

const char* to_string(RolloutState state) {
    switch (state) {
        case RolloutState::none: return "none";
        case RolloutState::running: return "running";
        case RolloutState::done: return "done";
        case RolloutState::failed: return "failed";
    }
    return "?";
}

}  // namespace workerd::core
