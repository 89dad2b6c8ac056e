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

TEST_CASE("STATS version 2: queue times and shed count round-trip; a version-1 line still parses") {
    RequestStats s;
    s.served = 10;
    s.buckets[3] = 10;
    CHECK(s.format().find("queue") == std::string::npos);  // nothing measured: not sent
    s.queue[0] = 4;
    s.queue[9] = 6;
    s.queue_sum_us = 4321;
    s.shed = 2;
    CHECK(s.format() == "served=10 inflight=0 oldest_ms=0 sum_us=0 buckets=0,0,0,10 queue_sum_us=4321 "
                        "queue=4,0,0,0,0,0,0,0,0,6 shed=2");
    auto m = parse_notify_line("STATS=" + s.format());
    REQUIRE(m);
    CHECK(m->stats.queue == s.queue);
    CHECK(m->stats.queue_sum_us == 4321);
    CHECK(m->stats.shed == 2);
    CHECK(m->stats.queued() == 10);
    auto v1 = parse_notify_line("STATS=served=3 inflight=0 oldest_ms=0 buckets=3");
    REQUIRE(v1);
    CHECK(v1->stats.queued() == 0);
    CHECK_FALSE(v1->stats.queue_percentile_ms(0.5));
    std::string too_many = "STATS=queue=0";
    for (int k = 1; k <= kQueueBuckets; ++k) too_many += ",1";
    CHECK_FALSE(parse_notify_line(too_many));
    CHECK_FALSE(parse_notify_line("STATS=shed=-1"));
    // Totals add up.
    RequestStats total;
    total.add_counts(s);
    total.add_counts(s);
    CHECK(total.served == 20);
    CHECK(total.queued() == 20);
    CHECK(total.shed == 4);
}

TEST_CASE("queue buckets: 2^(1/8) apart from 0.125 ms; every fourth bound from 0.5 ms on is a latency bound") {
    CHECK(queue_bound_ms(0) == doctest::Approx(0.125));
    CHECK(queue_bound_ms(16) == doctest::Approx(0.5));
    CHECK(queue_bound_ms(152) == doctest::Approx(65536.0));
    CHECK(std::isinf(queue_bound_ms(153)));
    for (int k = 16; k < kQueueBuckets - 1; k += 4) {
        CHECK(queue_bound_ms(k) == doctest::Approx(latency_bound_ms((k - 16) / 4)));
    }
    CHECK(queue_bucket(0) == 0);
    CHECK(queue_bucket(125) == 0);
    CHECK(queue_bucket(126) == 1);
    CHECK(queue_bucket(65'536'000) == 152);
    CHECK(queue_bucket(65'536'001) == 153);
    // Percentiles within a bucket's width (9%): 100 requests spread evenly over 10-20 ms.
    RequestStats st;
    for (int i = 0; i < 100; ++i) ++st.queue[queue_bucket(10'000 + i * 100)];
    CHECK(*st.queue_percentile_ms(0.5) == doctest::Approx(15.0).epsilon(0.1));
    CHECK(*st.queue_percentile_ms(0.99) == doctest::Approx(19.9).epsilon(0.1));
}

TEST_CASE("STATS version 3: answers by class round-trip, add up, and are absent from older workers") {
    RequestStats s;
    s.served = 12;
    s.buckets[0] = 12;
    CHECK(s.format().find("responses") == std::string::npos);  // none counted: not sent
    s.responses = {9, 1, 0, 2, 0};
    CHECK(s.format() == "served=12 inflight=0 oldest_ms=0 sum_us=0 buckets=12 responses=9,1,0,2");
    auto m = parse_notify_line("STATS=" + s.format());
    REQUIRE(m);
    CHECK(m->stats.responses == s.responses);
    CHECK(m->stats.has_responses());
    auto v2 = parse_notify_line("STATS=served=3 inflight=0 oldest_ms=0 buckets=3 shed=1");
    REQUIRE(v2);
    CHECK_FALSE(v2->stats.has_responses());
    CHECK_FALSE(parse_notify_line("STATS=responses=1,2,3,4,5,6"));  // more classes than there are
    CHECK_FALSE(parse_notify_line("STATS=responses=1,x"));
    RequestStats total;
    total.add_counts(s);
    total.add_counts(s);
    CHECK(total.responses == ResponseCounts{18, 2, 0, 4, 0});
    CHECK(response_class(101) == ResponseClass::informational_or_success);
    CHECK(response_class(204) == ResponseClass::informational_or_success);
    CHECK(response_class(304) == ResponseClass::redirect);
    CHECK(response_class(404) == ResponseClass::client_error);
    CHECK(response_class(503) == ResponseClass::server_error);
    CHECK(response_class(0) == ResponseClass::failed);
    CHECK(response_class(600) == ResponseClass::failed);
    CHECK(std::string(to_string(ResponseClass::server_error)) == "5xx");
}
