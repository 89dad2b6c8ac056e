// Leak-aware recycling (recycle.leak): a worker's memory trend and the verdict on it.
#include <doctest/doctest.h>

#include <cmath>

#include "daemon/core/leak.hpp"

using namespace workerd;
using namespace workerd::core;

namespace {

const TimePoint t0{std::chrono::hours(1)};
constexpr long MiB = 1L << 20;

/// One sample a second for `seconds` seconds, `rate` requests a second; memory from `base`
/// by `per_request` bytes a request, plus `wobble` up and down (a GC's saw-tooth).
MemoryTrend series(int seconds, std::uint64_t rate, long base, double per_request, long wobble = 0,
                   std::uint64_t warmup = 0) {
    MemoryTrend t;
    for (int i = 0; i <= seconds; ++i) {
        const std::uint64_t served = rate * static_cast<std::uint64_t>(i);
        const long bytes = base + static_cast<long>(per_request * static_cast<double>(served)) + (i % 2 ? wobble : -wobble);
        t.add({t0 + std::chrono::seconds(i), served, bytes}, warmup);
    }
    return t;
}

}  // namespace

TEST_CASE("a worker growing 5 KiB a request is leaking, with its numbers; a flat one is not") {
    LeakSpec spec;  // 32 MiB, 1 KiB/request
    const LeakVerdict leak = judge_leak(spec, series(100, 100, 40 * MiB, 5 * 1024.0), std::nullopt, "");
    CHECK(leak.leaking);
    CHECK(leak.requests == 10000);
    CHECK(leak.growth > 45 * MiB);
    CHECK(leak.per_request == doctest::Approx(5 * 1024.0).epsilon(0.01));
    CHECK(leak.summary.find("grew 4") == 0);
    CHECK(leak.summary.find("over 10,000 requests (5.0 KiB/request)") != std::string::npos);

    const LeakVerdict flat = judge_leak(spec, series(100, 100, 40 * MiB, 0.0, 3 * MiB), std::nullopt, "");
    CHECK_FALSE(flat.leaking);
    CHECK(std::abs(flat.growth) < 4 * MiB);
}

TEST_CASE("growth short of min_growth, or slower than per_request, is spared") {
    LeakSpec spec;
    // 20 MiB over 10,000 requests: 2 KiB a request, but only 20 MiB.
    CHECK_FALSE(judge_leak(spec, series(100, 100, 40 * MiB, 2 * 1024.0), std::nullopt, "").leaking);
    // 100 MiB, but over 200,000 requests: 0.5 KiB a request.
    CHECK_FALSE(judge_leak(spec, series(100, 2000, 40 * MiB, 512.0), std::nullopt, "").leaking);
    spec.per_request = 256;
    CHECK(judge_leak(spec, series(100, 2000, 40 * MiB, 512.0), std::nullopt, "").leaking);
}

TEST_CASE("a worker that grew once (a cache filled) and stays flat is spared") {
    LeakSpec spec;
    MemoryTrend t;
    for (int i = 0; i <= 100; ++i) {
        const std::uint64_t served = 100 * static_cast<std::uint64_t>(i);
        const long bytes = 40 * MiB + (i < 30 ? i * 2 * MiB : 60 * MiB);  // +60 MiB in 30 s, then flat
        t.add({t0 + std::chrono::seconds(i), served, bytes}, 0);
    }
    const LeakVerdict v = judge_leak(spec, t, std::nullopt, "");
    CHECK(v.growth > 50 * MiB);
    CHECK_FALSE(v.leaking);
}

TEST_CASE("one jump is not a trend: judged a leak only once growth goes on after it") {
    LeakSpec spec;
    MemoryTrend t;
    long bytes = 40 * MiB;
    int i = 0;
    for (; i <= 60; ++i) {
        if (i == 50) bytes += 40 * MiB;  // one request kept 40 MiB
        t.add({t0 + std::chrono::seconds(i), 100U * static_cast<std::uint64_t>(i), bytes}, 0);
    }
    CHECK_FALSE(judge_leak(spec, t, std::nullopt, "").leaking);
    for (; i <= 120; ++i) {  // then 8 KiB a request
        bytes += 100 * 8192;
        t.add({t0 + std::chrono::seconds(i), 100U * static_cast<std::uint64_t>(i), bytes}, 0);
    }
    CHECK(judge_leak(spec, t, std::nullopt, "").leaking);
}

TEST_CASE("nothing is judged during the warmup, and the baseline is taken after it") {
    LeakSpec spec;
    spec.warmup = 5000;
    // 40 MiB grown in the first 5,000 requests (imports, caches), flat after.
    MemoryTrend t;
    for (int i = 0; i <= 100; ++i) {
        const std::uint64_t served = 100 * static_cast<std::uint64_t>(i);
        t.add({t0 + std::chrono::seconds(i), served, 40 * MiB + static_cast<long>(std::min<std::uint64_t>(served, 5000)) * 8192},
              spec.warmup);
    }
    CHECK(t.points().front().served == 5000);
    CHECK_FALSE(judge_leak(spec, t, std::nullopt, "").leaking);
    MemoryTrend early;
    for (int i = 0; i < 40; ++i) early.add({t0 + std::chrono::seconds(i), 100U * static_cast<std::uint64_t>(i), 40 * MiB}, spec.warmup);
    CHECK(early.points().empty());
}

TEST_CASE("a slow leak is caught when it would reach the limit within the horizon") {
    LeakSpec spec;  // horizon 10 min
    // 12 MiB in 100 s (0.12 MiB/s) at 100 requests/s: 1.2 KiB... below min_growth, so only the
    // projection can find it: 60 MiB left at 0.12 MiB/s is ~8 min.
    const MemoryTrend t = series(100, 100, 100 * MiB, 1258.0);
    const long limit = 172 * MiB;
    const LeakVerdict v = judge_leak(spec, t, limit, "max_private 172 MiB");
    CHECK(v.leaking);
    REQUIRE(v.crosses_in);
    CHECK(*v.crosses_in > std::chrono::minutes(7));
    CHECK(*v.crosses_in < std::chrono::minutes(10));
    CHECK(v.summary.find("it reaches max_private 172 MiB in") != std::string::npos);
    // The same pace with 2 GiB to go: not within the horizon.
    CHECK_FALSE(judge_leak(spec, t, 2048 * MiB, "max_private 2048 MiB").leaking);
}

TEST_CASE("the trend keeps at most 64 points over the whole life, the baseline first") {
    MemoryTrend t;
    for (int i = 0; i < 1000; ++i) t.add({t0 + std::chrono::seconds(i), static_cast<std::uint64_t>(i), 40 * MiB + i}, 0);
    CHECK(t.points().size() <= MemoryTrend::kMaxPoints);
    CHECK(t.points().size() >= MemoryTrend::kMaxPoints / 2);
    CHECK(t.points().front().served == 0);
    CHECK(t.points().back().served >= 960);
    for (std::size_t i = 1; i < t.points().size(); ++i) CHECK(t.points()[i].served > t.points()[i - 1].served);
}
