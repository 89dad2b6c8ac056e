#include "daemon/core/backoff.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using workerd::Backoff;
using workerd::BackoffSpec;
using workerd::Duration;

TEST_CASE("a stable worker is replaced at once and resets the count") {
    BackoffSpec spec;  // initial 1s, max 30s, reset_after 10s
    Backoff b;
    CHECK(b.on_exit(spec, 2s, 0.5) == 0ms);
    CHECK(b.on_exit(spec, 2s, 0.5) == 1s);
    CHECK(b.quick_exits() == 2);
    CHECK(b.on_exit(spec, 11s, 0.5) == 0ms);
    CHECK(b.quick_exits() == 0);
}

TEST_CASE("quick exits back off exponentially up to the cap") {
    BackoffSpec spec;
    Backoff b;
    std::vector<Duration> delays;
    for (int i = 0; i < 9; ++i) delays.push_back(b.on_exit(spec, 100ms, 0.5));  // no jitter
    CHECK(delays == std::vector<Duration>{0ms, 1s, 2s, 4s, 8s, 16s, 30s, 30s, 30s});
}

TEST_CASE("jitter stays within +-20% and never passes the cap") {
    BackoffSpec spec;
    Backoff low, high;
    for (int i = 0; i < 4; ++i) {
        low.on_exit(spec, 0ms, 0.0);
        high.on_exit(spec, 0ms, 0.999);
    }
    CHECK(low.on_exit(spec, 0ms, 0.0) == 6400ms);   // 8s * 0.8
    CHECK(high.on_exit(spec, 0ms, 0.999) > 9500ms); // 8s * ~1.2
    Backoff capped;
    for (int i = 0; i < 20; ++i) CHECK(capped.on_exit(spec, 0ms, 0.999) <= 30s);
}

TEST_CASE("spawn failures count as quick exits") {
    BackoffSpec spec;
    spec.initial = 100ms;
    Backoff b;
    CHECK(b.on_spawn_failure(spec, 0.5) == 0ms);
    CHECK(b.on_spawn_failure(spec, 0.5) == 100ms);
    CHECK(b.on_spawn_failure(spec, 0.5) == 200ms);
}
