// The autoscaler's policy on a fake clock: every time is a time point built here.
#include "daemon/core/autoscale.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace workerd;
using namespace std::chrono_literals;
using TP = std::chrono::steady_clock::time_point;

namespace {
const TP t0 = TP{} + 1000s;
AutoscaleSpec spec() {
    AutoscaleSpec s;
    s.min = 1;
    s.max = 6;
    s.target_inflight = 4;
    s.up_cooldown = 2s;
    s.down_delay = 10s;
    s.down_cooldown = 5s;
    return s;
}
AutoscaleInputs load(int current, double inflight, int queue = 0) {
    AutoscaleInputs in;
    in.current = current;
    in.inflight = inflight;
    in.queue_depth = queue;
    return in;
}
}  // namespace

TEST_CASE("up fast: enough for the in-flight target, at least half the fleet, within max") {
    AutoscaleState st;
    auto d = autoscale_decide(spec(), st, load(1, 32), t0);
    CHECK(d.target == 6);  // 32 in flight / 4 per worker = 8 wanted, capped at max 6
    CHECK(d.reason.find("busy") == 0);
    st = {};
    CHECK(autoscale_decide(spec(), st, load(2, 9), t0).target == 3);  // wants 3
    st = {};
    CHECK(autoscale_decide(spec(), st, load(2, 0, /*queue=*/5), t0).target == 3);  // queue: half again
}

TEST_CASE("cooldown between steps up, and nothing past max or the memory budget") {
    AutoscaleState st;
    CHECK(autoscale_decide(spec(), st, load(2, 9), t0).target == 3);
    CHECK(autoscale_decide(spec(), st, load(3, 20), t0 + 1s).target == 3);  // cooling down
    CHECK(autoscale_decide(spec(), st, load(3, 20), t0 + 2s).target == 5);
    auto in = load(5, 100);
    in.memory_cap = 5;
    const auto d = autoscale_decide(spec(), st, in, t0 + 10s);
    CHECK(d.target == 5);
    CHECK(d.reason.find("memory budget") != std::string::npos);
    in.memory_cap = 3;  // the budget shrank (workers grew): back under it at once
    CHECK(autoscale_decide(spec(), st, in, t0 + 11s).target == 3);
}

TEST_CASE("down slowly: only after down_delay of low load and down_cooldown, one at a time, not below min") {
    AutoscaleState st;
    st.last_change = t0;
    CHECK(autoscale_decide(spec(), st, load(4, 1), t0 + 1s).target == 4);  // low since now
    CHECK(autoscale_decide(spec(), st, load(4, 1), t0 + 10s).target == 4);  // 9 s low
    CHECK(autoscale_decide(spec(), st, load(4, 1), t0 + 11s).target == 3);  // 10 s low
    CHECK(autoscale_decide(spec(), st, load(3, 1), t0 + 12s).target == 3);  // a new low period starts
    CHECK(autoscale_decide(spec(), st, load(3, 1), t0 + 22s).target == 2);
    // Load comes back in between: the low period restarts.
    CHECK(autoscale_decide(spec(), st, load(2, 5), t0 + 23s).target == 2);  // steady (2.5 per worker)
    CHECK(autoscale_decide(spec(), st, load(2, 0), t0 + 24s).target == 2);
    CHECK(autoscale_decide(spec(), st, load(2, 0), t0 + 34s).target == 1);
    CHECK(autoscale_decide(spec(), st, load(1, 0), t0 + 100s).target == 1);  // min
}

TEST_CASE("p99 over target_latency counts as busy; bounds are restored at once") {
    auto s = spec();
    s.target_latency = Duration(200);
    AutoscaleState st;
    auto in = load(2, 1);
    in.p99_ms = 350;
    CHECK(autoscale_decide(s, st, in, t0).target == 3);
    st = {};
    CHECK(autoscale_decide(s, st, load(9, 0), t0).target == 6);  // above max
    s.min = 2;
    CHECK(autoscale_decide(s, st, load(1, 0), t0).target == 2);  // below min
}

TEST_CASE("queue-time p99 over target_queue counts as busy, and keeps the fleet from shrinking") {
    auto s = spec();
    s.target_queue = Duration(50);
    AutoscaleState st;
    auto in = load(2, 1);
    in.queue_p99_ms = 120;
    const auto d = autoscale_decide(s, st, in, t0);
    CHECK(d.target == 3);
    CHECK(d.reason.find("queue p99 120 ms") != std::string::npos);
    // Low in flight, but requests still wait: not low load, no step down.
    st = {};
    in = load(3, 0);
    in.queue_p99_ms = 80;
    for (int i = 0; i <= 60; ++i) CHECK(autoscale_decide(s, st, in, t0 + std::chrono::seconds(i)).target >= 3);
    // Under the target: the usual slow way down.
    st = {};
    in.queue_p99_ms = 10;
    CHECK(autoscale_decide(s, st, in, t0).target == 3);
    CHECK(autoscale_decide(s, st, in, t0 + 11s).target == 2);
}

TEST_CASE("Little's law: the listen queue's wait is its depth over the accept rate") {
    CHECK(little_wait_seconds(0, 0) == 0);
    CHECK(little_wait_seconds(0, 100) == 0);
    CHECK(little_wait_seconds(50, 100) == doctest::Approx(0.5));
    CHECK(std::isinf(little_wait_seconds(3, 0)));  // some wait, none accepted
}
