#include "daemon/worker_state.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <initializer_list>
#include <string>

using workerd::next_state;
using S = workerd::WorkerState;
using E = workerd::WorkerEvent;

TEST_CASE("the normal lifecycle") {
    S s = S::spawning;
    s = next_state(s, E::started);
    CHECK(s == S::booting);
    s = next_state(s, E::ready);
    CHECK(s == S::ready);
    s = next_state(s, E::drain);
    CHECK(s == S::draining);
    s = next_state(s, E::exited);
    CHECK(s == S::exited);
}

TEST_CASE("any live state can exit") {
    for (S s : {S::spawning, S::booting, S::ready, S::draining}) {
        CHECK(next_state(s, E::exited) == S::exited);
    }
}

TEST_CASE("late or repeated events do not revive a draining worker") {
    CHECK(next_state(S::draining, E::ready) == S::draining);
    CHECK(next_state(S::draining, E::drain) == S::draining);
    CHECK(next_state(S::booting, E::drain) == S::draining);
}

TEST_CASE("names") {
    CHECK(std::string(to_string(S::booting)) == "booting");
    CHECK(std::string(to_string(S::exited)) == "exited");
}

TEST_CASE("how a worker ended: told to stop, it ended as asked; untold, it exited or crashed") {
    using workerd::describe_end;
    const auto exit_code = [](int code) { return code << 8; };        // as wait() reports
    const auto signal_of = [](int sig) { return sig & 0x7f; };
    CHECK(describe_end(exit_code(0), "") == "exit");
    CHECK(describe_end(exit_code(3), "") == "exit");
    CHECK(describe_end(signal_of(SIGSEGV), "") == "crash by signal");
    CHECK(describe_end(signal_of(SIGTERM), "") == "crash by signal");  // nobody asked
    CHECK(describe_end(exit_code(0), "reload") == "stopped (reload)");
    CHECK(describe_end(signal_of(SIGTERM), "scale down") == "stopped (scale down)");  // uvicorn >= 0.29, Node
    CHECK(describe_end(exit_code(143), "stop") == "stopped (stop)");
    CHECK(describe_end(signal_of(SIGKILL), "reload") == "killed after graceful_timeout (reload)");
    CHECK(describe_end(exit_code(1), "restart") == "exit status 1 while stopping (restart)");
    CHECK(describe_end(signal_of(SIGSEGV), "max_requests") == "crash by signal while stopping (max_requests)");
}
