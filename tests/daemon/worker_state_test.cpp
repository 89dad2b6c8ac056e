#include "daemon/worker_state.hpp"

#include <doctest/doctest.h>

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
