// The canary verdict (rollout.analysis): a new generation's first workers against the old
// generation's over the same window.
#include <doctest/doctest.h>

#include "daemon/core/canary.hpp"

using namespace workerd;
using namespace workerd::core;

namespace {

// `n` answers: `errors` of them 5xx, the rest 2xx, all with latency in bucket `bucket`.
RequestStats served(std::uint64_t n, std::uint64_t errors, int bucket) {
    RequestStats s;
    s.served = n;
    s.buckets[static_cast<std::size_t>(bucket)] = n;
    s.responses[0] = n - errors;
    s.responses[3] = errors;
    return s;
}

const Duration kWindow = std::chrono::seconds(60);

}  // namespace

TEST_CASE("canaries as good as the old workers pass; 20% 5xx or 3x the p99 fail") {
    AnalysisSpec a;  // 1%, 2x, 2x p99, 100 requests
    const RequestStats old = served(5000, 10, 10);  // 0.2% errors, ~16 ms
    CHECK(judge_canary(a, served(1200, 3, 10), old, kWindow).pass);
    const CanaryVerdict bad = judge_canary(a, served(1204, 241, 10), old, kWindow);
    CHECK(bad.enough);
    CHECK_FALSE(bad.pass);
    CHECK(bad.summary.find("5xx 20.0% vs 0.2%") != std::string::npos);
    CHECK(bad.summary.find("1204 requests") != std::string::npos);
    // 3x slower is bucket 10 + 3 (sqrt(2) apart: 2.8x)
    CHECK_FALSE(judge_canary(a, served(1200, 0, 13), old, kWindow).pass);
    CHECK(judge_canary(a, served(1200, 0, 11), old, kWindow).pass);  // 1.4x: within 2x
}

TEST_CASE("a canary is judged only past min_requests; small shares and sub-5 ms p99s are not noise to fail on") {
    AnalysisSpec a;
    const RequestStats old = served(5000, 0, 0);
    CHECK_FALSE(judge_canary(a, served(99, 50, 0), old, kWindow).enough);
    CHECK(judge_canary(a, served(200, 1, 0), old, kWindow).pass);       // 0.5%: under +1%
    CHECK_FALSE(judge_canary(a, served(200, 4, 0), old, kWindow).pass); // 2%: over 0% + 1% and over 2 x 0%
    // 0.5 ms -> 1.4 ms is 2.8x, but 0.9 ms more: within the buckets' noise
    CHECK(judge_canary(a, served(200, 0, 3), old, kWindow).pass);
    // An old generation already failing 10%: 11% is neither 1% more... but 1% more is allowed and
    // 2x is not reached
    const RequestStats failing = served(5000, 500, 0);
    CHECK(judge_canary(a, served(1000, 110, 0), failing, kWindow).pass);
    CHECK_FALSE(judge_canary(a, served(1000, 250, 0), failing, kWindow).pass);
}

TEST_CASE("workers that do not count answers by class are judged on latency alone") {
    AnalysisSpec a;
    RequestStats old;
    old.served = 1000;
    old.buckets[5] = 1000;
    RequestStats canary;
    canary.served = 500;
    canary.buckets[5] = 500;
    CHECK_FALSE(error_share(canary));
    const CanaryVerdict v = judge_canary(a, canary, old, kWindow);
    CHECK(v.pass);
    CHECK(v.summary.find("5xx") == std::string::npos);
}
