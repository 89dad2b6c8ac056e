// The health checks with an injected clock: every time is a TimePoint built here, nothing sleeps.
#include "daemon/core/health.hpp"

#include <doctest/doctest.h>

#include <csignal>

using namespace workerd;
using namespace std::chrono_literals;

namespace {
const TimePoint t0 = TimePoint{} + 1000s;

HealthPolicy policy(HeartbeatMode mode) {
    HealthPolicy p;
    p.mode = mode;
    p.timeout = 30s;
    p.boot_timeout = 60s;
    p.ready_after = 1s;
    p.kill_timeout = 5s;
    return p;
}
HealthState started_at(TimePoint t) {
    HealthState s;
    s.started = t;
    return s;
}
}  // namespace

TEST_CASE("auto: a silent worker is ready after ready_after and never judged") {
    const auto p = policy(HeartbeatMode::automatic);
    const auto s = started_at(t0);
    CHECK_FALSE(ready_by_uptime(p, s, t0 + 999ms));
    CHECK(ready_by_uptime(p, s, t0 + 1s));
    CHECK(next_check(p, s) == t0 + 1s);
    CHECK_FALSE(judge(p, s, t0 + 1h));
}

TEST_CASE("auto: a worker that speaks is held to READY and heartbeats") {
    const auto p = policy(HeartbeatMode::automatic);
    auto s = started_at(t0);
    s.speaks = true;  // e.g. STATUS=starting before READY
    CHECK_FALSE(ready_by_uptime(p, s, t0 + 10s));
    CHECK_FALSE(judge(p, s, t0 + 60s));
    auto v = judge(p, s, t0 + 60s + 1ms);
    CHECK(v.reason == HangReason::boot_timeout);
    CHECK(v.measured == 60001ms);

    s.ready_at = t0 + 2s;
    CHECK_FALSE(judge(p, s, t0 + 32s));  // READY starts the heartbeat clock
    CHECK(judge(p, s, t0 + 32s + 1ms).reason == HangReason::heartbeat_timeout);
    s.last_beat = t0 + 20s;
    CHECK(next_check(p, s) == t0 + 50s + 1ms);
    CHECK_FALSE(judge(p, s, t0 + 50s));
    v = judge(p, s, t0 + 50s + 200ms);
    CHECK(v.reason == HangReason::heartbeat_timeout);
    CHECK(v.measured == 30200ms);
}

TEST_CASE("auto: a worker that starts speaking late is watched from then, not from its uptime") {
    const auto p = policy(HeartbeatMode::automatic);
    auto s = started_at(t0);
    REQUIRE(ready_by_uptime(p, s, t0 + 1s));
    s.ready_at = t0 + 1s;
    CHECK(note_message(s, t0 + 45s));  // e.g. READY after a slow startup: the first word
    CHECK(s.speaks);
    CHECK(next_check(p, s) == t0 + 75s + 1ms);  // a deadline now, which the daemon arms
    CHECK(s.ready_at == t0 + 45s);
    CHECK_FALSE(judge(p, s, t0 + 46s));
    CHECK(judge(p, s, t0 + 75s + 1ms).reason == HangReason::heartbeat_timeout);
    CHECK_FALSE(note_message(s, t0 + 80s));  // later messages change nothing here
    CHECK(s.ready_at == t0 + 45s);
}

TEST_CASE("required: even a silent worker must say READY within boot_timeout") {
    const auto p = policy(HeartbeatMode::required);
    const auto s = started_at(t0);
    CHECK_FALSE(ready_by_uptime(p, s, t0 + 10s));
    CHECK(next_check(p, s) == t0 + 60s + 1ms);
    CHECK(judge(p, s, t0 + 61s).reason == HangReason::boot_timeout);
}

TEST_CASE("off: only exits count, READY is still honoured") {
    const auto p = policy(HeartbeatMode::off);
    auto s = started_at(t0);
    s.speaks = true;
    CHECK(ready_by_uptime(p, s, t0 + 1s));
    s.ready_at = t0;
    CHECK_FALSE(judge(p, s, t0 + 1h));
    CHECK_FALSE(next_check(p, s));
}

TEST_CASE("request_timeout ages the oldest in-flight request from its STATS") {
    auto p = policy(HeartbeatMode::automatic);
    p.request_timeout = 10s;
    auto s = started_at(t0);
    s.speaks = true;
    s.ready_at = t0;
    s.last_beat = t0 + 20s;
    s.stats_at = t0 + 20s;
    s.oldest_ms = 4000;  // 4 s old at t0+20s
    CHECK(next_check(p, s) == t0 + 26s + 1ms);
    CHECK_FALSE(judge(p, s, t0 + 26s));
    const auto v = judge(p, s, t0 + 26s + 500ms);
    CHECK(v.reason == HangReason::request_timeout);
    CHECK(v.measured == 10500ms);
    s.oldest_ms = 0;  // nothing in flight
    CHECK_FALSE(judge(p, s, t0 + 40s));
    p.request_timeout.reset();
    s.oldest_ms = 100000;
    CHECK_FALSE(judge(p, s, t0 + 40s));
}

TEST_CASE("the daemon's own delay is not the worker's silence") {
    const auto p = policy(HeartbeatMode::required);
    HealthState s = started_at(t0);
    note_message(s, t0);
    s.ready_at = t0;
    s.last_beat = t0 + 5s;
    // The loop could not read pipes for 20 s (a long turn): at t0 + 40 s the silence is 15 s.
    const TimePoint now = t0 + 40s;
    CHECK(judge(p, s, now).reason == HangReason::heartbeat_timeout);
    excuse_delay(s, 20s, now);
    CHECK_FALSE(judge(p, s, now));
    CHECK(*s.last_beat == t0 + 25s);
    CHECK(next_check(p, s) == t0 + 25s + 30s + 1ms);
    // A real silence still counts: 31 s after the shifted beat.
    CHECK(judge(p, s, t0 + 56s).reason == HangReason::heartbeat_timeout);
}

TEST_CASE("an excused delay moves the boot and request clocks too, never past now") {
    auto p = policy(HeartbeatMode::required);
    p.request_timeout = 10s;
    HealthState booting = started_at(t0);
    excuse_delay(booting, 10s, t0 + 65s);
    CHECK(booting.started == t0 + 10s);
    CHECK_FALSE(judge(p, booting, t0 + 65s));
    excuse_delay(booting, 1h, t0 + 65s);
    CHECK(booting.started == t0 + 65s);

    HealthState busy = started_at(t0);
    note_message(busy, t0);
    busy.ready_at = busy.last_beat = busy.stats_at = t0 + 1s;
    busy.oldest_ms = 2000;
    CHECK(judge(p, busy, t0 + 10s).reason == HangReason::request_timeout);  // 2 s + 9 s
    excuse_delay(busy, 5s, t0 + 10s);
    CHECK_FALSE(judge(p, busy, t0 + 10s));  // 2 s + 4 s
}

TEST_CASE("escalation: timeout_signal, SIGTERM a second later, SIGKILL after kill_timeout") {
    auto p = policy(HeartbeatMode::required);
    p.timeout_signal = SIGABRT;
    auto esc = begin_escalation(HangReason::heartbeat_timeout, t0);
    CHECK(escalate(p, esc, t0) == SIGABRT);
    CHECK_FALSE(escalate(p, esc, t0 + 999ms));
    CHECK(escalate(p, esc, t0 + 1s) == SIGTERM);
    CHECK(esc.last_signal == SIGTERM);
    CHECK(esc.last_at == t0 + 1s);
    CHECK_FALSE(escalate(p, esc, t0 + 5999ms));
    CHECK(escalate(p, esc, t0 + 6s) == SIGKILL);
    CHECK_FALSE(escalate(p, esc, t0 + 1h));  // nothing after SIGKILL

    p.timeout_signal = 0;  // without one: SIGTERM at once
    esc = begin_escalation(HangReason::boot_timeout, t0);
    CHECK(escalate(p, esc, t0) == SIGTERM);
    CHECK(escalate(p, esc, t0 + 5s) == SIGKILL);
}

TEST_CASE("signal names") {
    CHECK(signal_from_name("SIGABRT") == SIGABRT);
    CHECK(signal_from_name("USR1") == SIGUSR1);
    CHECK(signal_from_name("SIGNOPE") == 0);
    CHECK(std::string(to_string(HangReason::request_timeout)) == "request timeout");
}
