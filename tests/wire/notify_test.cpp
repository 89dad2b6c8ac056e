#include "daemon/wire/notify.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace workerd;
using Kind = NotifyMessage::Kind;

TEST_CASE("the sd_notify-like messages") {
    CHECK(parse_notify_line("READY=1")->kind == Kind::ready);
    CHECK(parse_notify_line("WATCHDOG=1")->kind == Kind::watchdog);
    CHECK(parse_notify_line("STOPPING=1")->kind == Kind::stopping);
    auto status = parse_notify_line("STATUS=warming caches: 3/10");
    REQUIRE(status);
    CHECK(status->kind == Kind::status);
    CHECK(status->status == "warming caches: 3/10");
    CHECK(parse_notify_line("FUTURE_KEY=whatever")->kind == Kind::unknown);  // ignored, not bad
}

TEST_CASE("malformed lines") {
    for (const char* bad : {"", "READY", "=1", "ready=1", "READY=yes", "WATCHDOG=0", "RE ADY=1",
                            "STATS=served=x", "STATS=served=-1", "STATS=inflight", "STATS=buckets=1,,2"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_notify_line(bad));
    }
}

TEST_CASE("STATS round-trips and ignores unknown fields") {
    RequestStats s;
    s.served = 1520;
    s.inflight = 3;
    s.oldest_ms = 41;
    s.buckets[0] = 7;
    s.buckets[4] = 9;
    s.sum_us = 123456;
    CHECK(s.format() == "served=1520 inflight=3 oldest_ms=41 sum_us=123456 buckets=7,0,0,0,9");
    auto m = parse_notify_line("STATS=" + s.format() + " p99_hint=12");
    REQUIRE(m);
    CHECK(m->kind == Kind::stats);
    CHECK(m->stats.served == 1520);
    CHECK(m->stats.inflight == 3);
    CHECK(m->stats.oldest_ms == 41);
    CHECK(m->stats.sum_us == 123456);
    CHECK(m->stats.buckets == s.buckets);
    std::string too_many = "STATS=buckets=0";
    for (int k = 1; k <= kLatencyBuckets; ++k) too_many += ",1";
    CHECK_FALSE(parse_notify_line(too_many));
}

TEST_CASE("latency buckets: sqrt(2) apart from 0.5 ms to 65.5 s") {
    CHECK(latency_bound_ms(0) == doctest::Approx(0.5));
    CHECK(latency_bound_ms(2) == doctest::Approx(1.0));
    CHECK(latency_bound_ms(34) == doctest::Approx(65536.0));
    CHECK(std::isinf(latency_bound_ms(35)));
    for (int k = 1; k < kLatencyBuckets - 1; ++k) {
        CHECK(latency_bound_ms(k) / latency_bound_ms(k - 1) == doctest::Approx(std::sqrt(2.0)).epsilon(0.01));
    }
    CHECK(latency_bucket(0) == 0);
    CHECK(latency_bucket(500) == 0);
    CHECK(latency_bucket(501) == 1);
    CHECK(latency_bucket(1000) == 2);
    CHECK(latency_bucket(1001) == 3);
    CHECK(latency_bucket(65'536'000) == 34);
    CHECK(latency_bucket(65'536'001) == 35);
    CHECK(latency_bucket(INT64_MAX) == 35);
}

TEST_CASE("percentiles from the histogram, within a bucket's width") {
    RequestStats s;
    CHECK_FALSE(s.percentile_ms(0.5));
    // 90 requests at ~1 ms (bucket 2: (0.707, 1]), 10 at ~100 ms (bucket 16: (90.5, 128]).
    s.buckets[latency_bucket(1000)] = 90;
    s.buckets[latency_bucket(100000)] = 10;
    const double p50 = *s.percentile_ms(0.5);
    CHECK(p50 > 0.707);
    CHECK(p50 <= 1.0);
    const double p99 = *s.percentile_ms(0.99);
    CHECK(p99 > 90.5);
    CHECK(p99 <= 128.0);
}
