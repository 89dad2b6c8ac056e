// The worker lifecycle, the daemon's mode and how a worker's end is classified: every legal
// and illegal transition, as tables.
#include <sys/wait.h>

#include <csignal>
#include <map>
#include <stdexcept>

#include <doctest/doctest.h>

#include "daemon/core/lifecycle.hpp"

using namespace workerd;
using namespace workerd::core;

namespace {

constexpr Phase kPhases[] = {Phase::spawning, Phase::booting, Phase::ready, Phase::retiring,
                             Phase::hung,     Phase::draining, Phase::exited};
constexpr Change kChanges[] = {Change::started, Change::ready, Change::retire, Change::keep,
                               Change::hang,    Change::drain, Change::exited};

// The whole table: the phase each change leads to; absent = a bug (throws).
const std::map<std::pair<Phase, Change>, Phase> kTable = {
    {{Phase::spawning, Change::started}, Phase::booting},
    {{Phase::spawning, Change::drain}, Phase::draining},
    {{Phase::spawning, Change::exited}, Phase::exited},
    {{Phase::booting, Change::ready}, Phase::ready},
    {{Phase::booting, Change::retire}, Phase::booting},
    {{Phase::booting, Change::keep}, Phase::booting},
    {{Phase::booting, Change::hang}, Phase::hung},
    {{Phase::booting, Change::drain}, Phase::draining},
    {{Phase::booting, Change::exited}, Phase::exited},
    {{Phase::ready, Change::ready}, Phase::ready},
    {{Phase::ready, Change::retire}, Phase::retiring},
    {{Phase::ready, Change::keep}, Phase::ready},
    {{Phase::ready, Change::hang}, Phase::hung},
    {{Phase::ready, Change::drain}, Phase::draining},
    {{Phase::ready, Change::exited}, Phase::exited},
    {{Phase::retiring, Change::ready}, Phase::retiring},
    {{Phase::retiring, Change::retire}, Phase::retiring},
    {{Phase::retiring, Change::keep}, Phase::ready},
    {{Phase::retiring, Change::hang}, Phase::hung},
    {{Phase::retiring, Change::drain}, Phase::draining},
    {{Phase::retiring, Change::exited}, Phase::exited},
    {{Phase::hung, Change::ready}, Phase::hung},
    {{Phase::hung, Change::retire}, Phase::hung},
    {{Phase::hung, Change::keep}, Phase::hung},
    {{Phase::hung, Change::hang}, Phase::hung},
    {{Phase::hung, Change::drain}, Phase::draining},
    {{Phase::hung, Change::exited}, Phase::exited},
    {{Phase::draining, Change::ready}, Phase::draining},
    {{Phase::draining, Change::retire}, Phase::draining},
    {{Phase::draining, Change::keep}, Phase::draining},
    {{Phase::draining, Change::hang}, Phase::draining},
    {{Phase::draining, Change::drain}, Phase::draining},
    {{Phase::draining, Change::exited}, Phase::exited},
};

}  // namespace

TEST_CASE("every (phase, change) pair: the table's phase, or a bug") {
    int legal = 0, illegal = 0;
    for (Phase p : kPhases) {
        for (Change c : kChanges) {
            CAPTURE(to_string(p));
            CAPTURE(to_string(c));
            auto it = kTable.find({p, c});
            if (it != kTable.end()) {
                CHECK(next_phase(p, c) == it->second);
                ++legal;
            } else {
                CHECK_THROWS_AS(next_phase(p, c), std::logic_error);
                ++illegal;
            }
        }
    }
    CHECK(legal == 33);
    CHECK(illegal == 16);  // started twice or late, and anything after exited
}

TEST_CASE("serving: ready and retiring workers serve; no other phase does") {
    for (Phase p : kPhases) CHECK(serving(p) == (p == Phase::ready || p == Phase::retiring));
}

TEST_CASE("the daemon's mode: TERM graceful, a second TERM or INT fast, never back") {
    CHECK(next_mode(Mode::running, false) == Mode::stopping_graceful);
    CHECK(next_mode(Mode::running, true) == Mode::stopping_fast);
    CHECK(next_mode(Mode::stopping_graceful, false) == Mode::stopping_fast);
    CHECK(next_mode(Mode::stopping_graceful, true) == Mode::stopping_fast);
    CHECK(next_mode(Mode::stopping_fast, false) == Mode::stopping_fast);
    CHECK(next_mode(Mode::stopping_fast, true) == Mode::stopping_fast);
    CHECK(std::string(to_string(Mode::stopping_graceful)) == "stopping");
    CHECK(std::string(to_string(Mode::stopping_fast)) == "stopping now");
}

TEST_CASE("how a worker ended, as status and the restarts metric say it") {
    struct Row {
        int status;
        std::optional<StopReason> asked;
        const char* text;
        const char* metric;
    };
    const Row rows[] = {
        {0 << 8, std::nullopt, "exit", "exit"},
        {3 << 8, std::nullopt, "exit", "exit"},
        {SIGSEGV, std::nullopt, "crash by signal", "signal"},
        {SIGTERM, StopReason::reload, "stopped (reload)", "reload"},
        {0, StopReason::scale_down, "stopped (scale down)", "scale_down"},
        {(128 + SIGTERM) << 8, StopReason::restart, "stopped (restart)", "restart"},
        {SIGKILL, StopReason::max_requests, "killed after graceful_timeout (max_requests)", "max_requests"},
        {2 << 8, StopReason::max_rss, "exit status 2 while stopping (max_rss)", "max_rss"},
        {SIGSEGV, StopReason::max_lifetime, "crash by signal while stopping (max_lifetime)", "max_lifetime"},
    };
    for (const Row& r : rows) {
        CAPTURE(r.text);
        const Ending e = classify_end(r.status, r.asked);
        CHECK(e.to_string() == r.text);
        CHECK(e.metric_reason() == r.metric);
    }
    Ending hang;
    hang.kind = Ending::Kind::hang;
    hang.hang = HangReason::heartbeat_timeout;
    CHECK(hang.to_string() == "heartbeat timeout");
    CHECK(hang.metric_reason() == "heartbeat_timeout");
    Ending cannot;
    cannot.kind = Ending::Kind::cannot_start;
    cannot.detail = "cannot execute /x: No such file or directory";
    CHECK(cannot.to_string() == "cannot start: cannot execute /x: No such file or directory");
}

// The assertions of the former daemon/worker_state (WorkerState), on the phases that replaced it.
TEST_CASE("the normal lifecycle, late events, and how a worker ended (as worker_state_test had them)") {
    Phase p = Phase::spawning;
    p = next_phase(p, Change::started);
    CHECK(p == Phase::booting);
    p = next_phase(p, Change::ready);
    CHECK(p == Phase::ready);
    p = next_phase(p, Change::drain);
    CHECK(p == Phase::draining);
    CHECK(next_phase(p, Change::exited) == Phase::exited);
    for (Phase live : {Phase::spawning, Phase::booting, Phase::ready, Phase::draining}) {
        CHECK(next_phase(live, Change::exited) == Phase::exited);
    }
    CHECK(next_phase(Phase::draining, Change::ready) == Phase::draining);
    CHECK(next_phase(Phase::draining, Change::drain) == Phase::draining);
    CHECK(next_phase(Phase::booting, Change::drain) == Phase::draining);
    CHECK(std::string(to_string(Phase::booting)) == "booting");
    CHECK(std::string(to_string(Phase::exited)) == "exited");

    const auto exit_code = [](int code) { return code << 8; };  // as wait() reports
    const auto signal_of = [](int sig) { return sig & 0x7f; };
    const auto ended = [](int status, std::optional<StopReason> why) { return classify_end(status, why).to_string(); };
    CHECK(ended(exit_code(0), std::nullopt) == "exit");
    CHECK(ended(exit_code(3), std::nullopt) == "exit");
    CHECK(ended(signal_of(SIGSEGV), std::nullopt) == "crash by signal");
    CHECK(ended(signal_of(SIGTERM), std::nullopt) == "crash by signal");  // nobody asked
    CHECK(ended(exit_code(0), StopReason::reload) == "stopped (reload)");
    CHECK(ended(signal_of(SIGTERM), StopReason::scale_down) == "stopped (scale down)");  // uvicorn >= 0.29, Node
    CHECK(ended(exit_code(143), StopReason::stop) == "stopped (stop)");
    CHECK(ended(signal_of(SIGKILL), StopReason::reload) == "killed after graceful_timeout (reload)");
    CHECK(ended(exit_code(1), StopReason::restart) == "exit status 1 while stopping (restart)");
    CHECK(ended(signal_of(SIGSEGV), StopReason::max_requests) == "crash by signal while stopping (max_requests)");
}
