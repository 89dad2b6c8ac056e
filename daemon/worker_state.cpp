#include "daemon/worker_state.hpp"

#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace workerd {
namespace {

[[noreturn]] void impossible(WorkerState state, WorkerEvent event) {
    std::fprintf(stderr, "workerd: bug: event %d in worker state %s\n", static_cast<int>(event),
                 to_string(state));
    std::abort();
}

}  // namespace

WorkerState next_state(WorkerState state, WorkerEvent event) {
    using S = WorkerState;
    using E = WorkerEvent;
    if (state == S::exited) impossible(state, event);
    if (event == E::exited) return S::exited;
    switch (state) {
        case S::spawning:
            if (event == E::started) return S::booting;
            break;
        case S::booting:
            if (event == E::ready) return S::ready;
            if (event == E::drain) return S::draining;
            break;
        case S::ready:
            if (event == E::ready) return S::ready;
            if (event == E::drain) return S::draining;
            break;
        case S::draining:
            if (event == E::ready || event == E::drain) return S::draining;
            break;
        case S::exited:
            break;
    }
    impossible(state, event);
}

const char* to_string(WorkerState state) {
    switch (state) {
        case WorkerState::spawning: return "spawning";
        case WorkerState::booting: return "booting";
        case WorkerState::ready: return "ready";
        case WorkerState::draining: return "draining";
        case WorkerState::exited: return "exited";
    }
    return "?";
}

std::string describe_end(int wait_status, const std::string& stopped_for) {
    const bool exited = WIFEXITED(wait_status);
    const int code = exited ? WEXITSTATUS(wait_status) : 0;
    const int sig = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
    if (stopped_for.empty()) return sig != 0 ? "crash by signal" : "exit";
    if ((exited && (code == 0 || code == 128 + SIGTERM)) || sig == SIGTERM) return fmt::format("stopped ({})", stopped_for);
    if (sig == SIGKILL) return fmt::format("killed after graceful_timeout ({})", stopped_for);
    if (exited) return fmt::format("exit status {} while stopping ({})", code, stopped_for);
    return fmt::format("crash by signal while stopping ({})", stopped_for);
}

}  // namespace workerd
