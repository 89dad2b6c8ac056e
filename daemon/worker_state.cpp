#include "daemon/worker_state.hpp"

#include <cstdio>
#include <cstdlib>

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

}  // namespace workerd
