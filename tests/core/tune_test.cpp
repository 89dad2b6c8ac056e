// `workerd tune`'s decisions (daemon/core/tune.hpp) and the latency recorder they read
// (daemon/core/latency_histogram.hpp): every measurement is a TrialResult built here, nothing
// runs a load.
#include "daemon/core/latency_histogram.hpp"
#include "daemon/core/tune.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace workerd;

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

TrialResult probe(double rate) {
    TrialResult t;
    t.kind = TrialResult::Kind::probe;
    t.rate = rate;
    t.requests = static_cast<std::uint64_t>(rate * 2);
    t.objective_ms = 900;  // a closed loop's latency: never judged
    return t;
}

/// An open-loop step at `offered` that meets p99 ≤ 200 ms or misses it.
TrialResult open_step(double offered, bool meets) {
    TrialResult t;
    t.kind = TrialResult::Kind::open;
    t.offered_rate = offered;
    t.rate = offered;
    t.requests = 1000;
    t.objective_ms = meets ? 120 : 450;
    return t;
}

/// The open-loop rates a search asks for when its steps pass or fail as `answers` says.
std::vector<double> rates_asked(RateSearch& s, double ceiling, const std::vector<bool>& answers) {
    std::vector<double> asked;
    auto first = s.next();
    REQUIRE(first);
    REQUIRE(first->kind == TrialResult::Kind::probe);
    s.record(probe(ceiling));
    for (const bool meets : answers) {
        const auto step = s.next();
        if (!step) break;
        REQUIRE(step->kind == TrialResult::Kind::open);
        asked.push_back(step->rate);
        s.record(open_step(step->rate, meets));
    }
    return asked;
}

void check_rates(const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-9));
}

CountResult count(int workers, std::optional<double> rate, std::uint64_t pss = 0) {
    CountResult c;
    c.workers = workers;
    TrialResult t = open_step(rate.value_or(10), rate.has_value());
    t.passed = rate.has_value();
    c.trials.push_back(t);
    c.sustainable_rate = rate;
    if (rate) c.sustainable_trial = 0;
    c.pss_per_worker = pss;
    return c;
}

bool has(const std::vector<std::string>& lines, const std::string& part) {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(part) != std::string::npos; });
}

/// The value the histogram's percentile should approach: the smallest recorded value that at
/// least p% of the values are at or below.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(p / 100.0 * sorted.size())));
    return sorted[rank - 1];
}

}  // namespace

// ---- LatencyHistogram ---------------------------------------------------------------------

TEST_CASE("below 256 µs every microsecond has its own bucket: percentiles are exact") {
    for (std::uint64_t v = 0; v < LatencyHistogram::kLinearLimit; ++v) {
        CHECK(LatencyHistogram::bucket_of(v) == v);
        CHECK(LatencyHistogram::bucket_low(v) == v);
        CHECK(LatencyHistogram::bucket_high(v) == v);
    }
    LatencyHistogram h;
    for (std::uint64_t v = 1; v <= 200; ++v) h.record(v);
    CHECK(h.percentile(50) == 100);
    CHECK(h.percentile(99) == 198);
    CHECK(h.percentile(99.5) == 199);
}

TEST_CASE("percentiles stay within 0.4% of the sorted values, log-uniform from 1 µs to 100 s") {
    std::mt19937_64 rng(15);
    std::uniform_real_distribution<double> exponent(0.0, 8.0);  // 10^0 .. 10^8 µs
    std::vector<std::uint64_t> values;
    LatencyHistogram h;
    for (int i = 0; i < 200000; ++i) {
        const auto v = static_cast<std::uint64_t>(std::pow(10.0, exponent(rng)));
        values.push_back(v);
        h.record(v);
    }
    std::sort(values.begin(), values.end());
    CHECK(h.count() == values.size());
    CHECK(h.min() == values.front());
    CHECK(h.max() == values.back());
    for (const double p : {0.1, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99}) {
        const auto exact = static_cast<double>(exact_percentile(values, p));
        const auto got = static_cast<double>(h.percentile(p));
        INFO("p", p, ": exact ", exact, ", histogram ", got);
        CHECK(std::abs(got - exact) <= 0.004 * exact);
    }
}

TEST_CASE("every bucket that can hold a value round-trips: its low and high fall in it, and the next starts after") {
    const std::size_t last = LatencyHistogram::bucket_of(LatencyHistogram::kMaxMicros);
    REQUIRE(last < LatencyHistogram::kBuckets);
    for (std::size_t b = 0; b <= last; ++b) {
        const auto low = LatencyHistogram::bucket_low(b);
        const auto high = LatencyHistogram::bucket_high(b);
        INFO("bucket ", b, ": [", low, ", ", high, "]");
        REQUIRE(low <= high);
        CHECK(LatencyHistogram::bucket_of(low) == b);
        CHECK(LatencyHistogram::bucket_of(high) == b);
        if (b > 0) CHECK(LatencyHistogram::bucket_high(b - 1) + 1 == low);
        // Half a bucket is at most 0.4% of the values it holds.
        CHECK(static_cast<double>(high - low) / 2 <= 0.004 * static_cast<double>(std::max<std::uint64_t>(low, 1)));
    }
    CHECK(LatencyHistogram::bucket_high(last) >= LatencyHistogram::kMaxMicros);
}

TEST_CASE("merging two histograms equals recording both into one") {
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::uint64_t> small(0, 5000), large(5000, 90'000'000);
    LatencyHistogram a, b, both;
    for (int i = 0; i < 20000; ++i) {
        const auto x = small(rng), y = large(rng);
        a.record(x);
        b.record(y, 2);
        both.record(x);
        both.record(y, 2);
    }
    a.merge(b);
    CHECK(a.count() == both.count());
    CHECK(a.min() == both.min());
    CHECK(a.max() == both.max());
    CHECK(a.mean() == doctest::Approx(both.mean()));
    for (double p = 0; p <= 100; p += 0.5) CHECK(a.percentile(p) == both.percentile(p));
    LatencyHistogram empty;
    a.merge(empty);
    CHECK(a.count() == both.count());
}

TEST_CASE("percentile 0 is the smallest value, 50 the median, 100 the largest") {
    LatencyHistogram h;
    for (const std::uint64_t v : {40, 10, 30, 20}) h.record(v);
    CHECK(h.percentile(0) == 10);
    CHECK(h.percentile(50) == 20);
    CHECK(h.percentile(100) == 40);
    CHECK(h.percentile(-5) == 10);    // clamped to 0..100
    CHECK(h.percentile(250) == 40);
    // Above 256 µs a percentile is its bucket's middle, kept within what was recorded.
    LatencyHistogram one;
    one.record(1000);
    CHECK(one.percentile(0) == 1000);
    CHECK(one.percentile(100) == 1000);
}

TEST_CASE("an empty histogram reports zeros") {
    LatencyHistogram h;
    CHECK(h.count() == 0);
    CHECK(h.percentile(50) == 0);
    CHECK(h.percentile(100) == 0);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.mean() == 0.0);
    h.record(123, 0);  // a count of zero records nothing
    CHECK(h.count() == 0);
    h.record(123);
    h.reset();
    CHECK(h.count() == 0);
    CHECK(h.percentile(99) == 0);
}

TEST_CASE("values over the maximum count as the maximum") {
    LatencyHistogram h;
    h.record(LatencyHistogram::kMaxMicros + 12345);
    h.record(std::numeric_limits<std::uint64_t>::max());
    CHECK(h.count() == 2);
    CHECK(h.max() == LatencyHistogram::kMaxMicros);
    CHECK(h.percentile(100) == LatencyHistogram::kMaxMicros);
    CHECK(LatencyHistogram::bucket_of(std::numeric_limits<std::uint64_t>::max()) ==
          LatencyHistogram::bucket_of(LatencyHistogram::kMaxMicros));
}

// ---- RateSearch ---------------------------------------------------------------------------

TEST_CASE("the search probes first, then offers 90% of the probe's rate") {
    RateSearch s(TuneObjective{}, SearchLimits{});
    const auto first = s.next();
    REQUIRE(first);
    CHECK(first->kind == TrialResult::Kind::probe);
    const TrialResult& kept = s.record(probe(1000));
    CHECK_FALSE(kept.passed);  // a closed loop's latency says nothing about an arrival rate
    const auto second = s.next();
    REQUIRE(second);
    CHECK(second->kind == TrialResult::Kind::open);
    CHECK(second->rate == doctest::Approx(900));
    CHECK_FALSE(s.sustainable());
}

TEST_CASE("while every step passes the rate ramps up by 25%, and stops after max_open_trials") {
    RateSearch s(TuneObjective{}, SearchLimits{});
    const auto asked = rates_asked(s, 1000, {true, true, true, true, true, true});
    check_rates(asked, {900, 1125, 1406.25, 1757.8125, 2197.265625});
    CHECK_FALSE(s.next());
    REQUIRE(s.sustainable());
    CHECK(*s.sustainable() == doctest::Approx(2197.265625));
    CHECK(s.trials().size() == 6);
}

TEST_CASE("while every step fails the rate backs off, to 75% once then to 60%, and nothing is sustainable") {
    RateSearch s(TuneObjective{}, SearchLimits{});
    const auto asked = rates_asked(s, 1000, {false, false, false, false, false, false});
    check_rates(asked, {900, 675, 405, 243, 145.8});
    CHECK_FALSE(s.next());
    CHECK_FALSE(s.sustainable());
    CHECK(s.sustainable_trial() == nullptr);
}

TEST_CASE("between the highest pass and the lowest failure the search bisects geometrically") {
    RateSearch s(TuneObjective{}, SearchLimits{});
    const auto asked = rates_asked(s, 1000, {true, false, true, false, true});
    const double third = std::sqrt(900.0 * 1125.0);
    const double fourth = std::sqrt(third * 1125.0);
    const double fifth = std::sqrt(third * fourth);
    check_rates(asked, {900, 1125, third, fourth, fifth});
    CHECK_FALSE(s.next());  // 5 open steps
    CHECK(*s.sustainable() == doctest::Approx(fifth));
    // Failing first, then passing: up from the highest pass toward the lowest failure.
    RateSearch down(TuneObjective{}, SearchLimits{});
    check_rates(rates_asked(down, 1000, {false, true, false}), {900, 675, std::sqrt(675.0 * 900.0)});
}

TEST_CASE("the search stops once the failing rate is within `precision` of the passing one") {
    SearchLimits limits;
    limits.max_open_trials = 20;
    limits.precision = 0.05;
    RateSearch s(TuneObjective{}, limits);
    // Never a failure: only the steps end the ramp.
    CHECK(rates_asked(s, 1000, std::vector<bool>(20, true)).size() == 20);
    // A fleet that sustains exactly 1000/s: the search ends within 5% below it.
    RateSearch b(TuneObjective{}, limits);
    std::vector<double> rates;
    b.next();
    b.record(probe(1000));
    while (auto step = b.next()) {
        rates.push_back(step->rate);
        b.record(open_step(step->rate, step->rate <= 1000));
    }
    REQUIRE(rates.size() < 20);
    const double pass = *b.sustainable();
    double lowest_fail = 1e18;
    for (const double r : rates) {
        if (r > 1000) lowest_fail = std::min(lowest_fail, r);
    }
    CHECK(pass <= 1000);
    CHECK(lowest_fail <= pass * 1.05);
    CHECK(pass >= 1000 / 1.05);
}

TEST_CASE("a probe that gets nothing through ends the search") {
    RateSearch s(TuneObjective{}, SearchLimits{});
    s.next();
    s.record(probe(0));
    CHECK_FALSE(s.next());
    CHECK_FALSE(s.sustainable());
}

TEST_CASE("sustainable() is the highest offered rate that met the objective, whatever came after") {
    RateSearch s(TuneObjective{}, SearchLimits{});
    const auto asked = rates_asked(s, 1000, {true, false, false, true, false});
    REQUIRE(asked.size() == 5);
    CHECK(*s.sustainable() == doctest::Approx(asked[3]));  // above 900, below the failures
    REQUIRE(s.sustainable_trial() != nullptr);
    CHECK(s.sustainable_trial()->offered_rate == doctest::Approx(asked[3]));
    CHECK(s.sustainable_trial()->passed);
}

TEST_CASE("a step meets the objective on latency and on errors, and only with requests") {
    TuneObjective o;  // p99 ≤ 200 ms, fewer than 0.1% errors
    RateSearch s(o, SearchLimits{});
    TrialResult t = open_step(100, true);
    t.objective_ms = 200;
    CHECK(s.meets(t));
    t.objective_ms = 200.5;
    CHECK_FALSE(s.meets(t));
    t.objective_ms = 50;
    t.errors = 1;  // 1 of 1000: 0.1%, not fewer
    CHECK_FALSE(s.meets(t));
    t.requests = 2000;  // 0.05%
    CHECK(s.meets(t));
    t.requests = 0;
    t.errors = 0;
    CHECK_FALSE(s.meets(t));
    CHECK(meets_objective(o, open_step(100, true)));
    CHECK(o.describe() == "p99 ≤ 200 ms");
}

// ---- the ladder ---------------------------------------------------------------------------

TEST_CASE("the ladder: every count up to 6, then by 2 up to 12, then by half again, ending at the max") {
    CHECK(worker_ladder(1) == std::vector<int>{1});
    CHECK(worker_ladder(4) == std::vector<int>{1, 2, 3, 4});
    CHECK(worker_ladder(9) == std::vector<int>{1, 2, 3, 4, 5, 6, 8, 9});
    CHECK(worker_ladder(12) == std::vector<int>{1, 2, 3, 4, 5, 6, 8, 10, 12});
    CHECK(worker_ladder(20) == std::vector<int>{1, 2, 3, 4, 5, 6, 8, 10, 12, 18, 20});
    CHECK(worker_ladder(64) == std::vector<int>{1, 2, 3, 4, 5, 6, 8, 10, 12, 18, 27, 40, 60, 64});
    CHECK(worker_ladder(0).empty());
}

TEST_CASE("the default top: 2 x CPUs + 1, at least 4, at most 64, within the memory budget") {
    CHECK(default_max_workers(1, std::nullopt) == 4);
    CHECK(default_max_workers(0.5, std::nullopt) == 4);
    CHECK(default_max_workers(1.5, std::nullopt) == 5);  // CPUs round up
    CHECK(default_max_workers(2, std::nullopt) == 5);
    CHECK(default_max_workers(4, std::nullopt) == 9);
    CHECK(default_max_workers(48, std::nullopt) == 64);
    CHECK(default_max_workers(4, 3) == 3);
    CHECK(default_max_workers(4, 20) == 9);
    CHECK(default_max_workers(4, 0) == 1);  // never below one worker
}

TEST_CASE("the climb plateaus when each of the last two counts added less than 5% over the best before") {
    CHECK_FALSE(ladder_plateaued({count(1, 100), count(2, 104)}));  // too few to tell
    CHECK(ladder_plateaued({count(1, 100), count(2, 200), count(3, 205), count(4, 207)}));
    CHECK_FALSE(ladder_plateaued({count(1, 100), count(2, 200), count(3, 205), count(4, 260)}));
    CHECK_FALSE(ladder_plateaued({count(1, 100), count(2, 200), count(3, 300)}));
    CHECK(ladder_plateaued({count(1, 100), count(2, 104), count(3, 103)}));
    // A dip then a recovery to the old best is still no gain.
    CHECK(ladder_plateaued({count(1, 100), count(2, 200), count(3, 150), count(4, 205)}));
    // Nothing met the objective yet: keep climbing.
    CHECK_FALSE(ladder_plateaued({count(1, std::nullopt), count(2, std::nullopt), count(3, std::nullopt)}));
    // The share is a parameter.
    CHECK_FALSE(ladder_plateaued({count(1, 100), count(2, 200), count(3, 205), count(4, 207)}, 0.01));
}

// ---- the recommendation -------------------------------------------------------------------

TEST_CASE("the recommendation is the smallest count within the tolerance of the best") {
    const std::vector<CountResult> results = {count(1, 100), count(2, 192), count(3, 200), count(4, 198)};
    TuneBudget budget;  // 5%
    const Recommendation r = recommend(results, TuneObjective{}, budget);
    CHECK(r.workers == 2);
    CHECK(r.rate == doctest::Approx(192));
    CHECK(r.objective_ms == doctest::Approx(120));
    REQUIRE_FALSE(r.reasons.empty());
    CHECK(r.reasons.front().find("2 workers: 192 req/s at p99 ≤ 200 ms") == 0);
    CHECK(has(r.reasons, "the best measured, 3 workers, reached 200 req/s"));
    CHECK(has(r.spec_lines, "workers: 2"));
    // The best is bigger: an autoscaling range from the pick to it.
    CHECK(has(r.spec_lines, "autoscale:"));
    CHECK(has(r.spec_lines, "  min: 2"));
    CHECK(has(r.spec_lines, "  max: 3"));
    budget.tolerance = 0.01;
    CHECK(recommend(results, TuneObjective{}, budget).workers == 3);
    budget.tolerance = 0.5;
    CHECK(recommend(results, TuneObjective{}, budget).workers == 1);
}

TEST_CASE("the reasons say what the next count measured would add") {
    const std::vector<CountResult> gains = {count(1, 100, 50 * kMiB), count(2, 190, 50 * kMiB),
                                            count(3, 200, 50 * kMiB)};
    const Recommendation r = recommend(gains, TuneObjective{}, TuneBudget{});
    REQUIRE(r.workers == 2);
    CHECK(has(r.reasons, "3 add 5% for 50 MiB more"));
    const std::vector<CountResult> worse = {count(1, 100), count(2, 90)};
    CHECK(has(recommend(worse, TuneObjective{}, TuneBudget{}).reasons, "2 lose 10%"));
    const std::vector<CountResult> unmet = {count(1, 100), count(2, std::nullopt)};
    CHECK(has(recommend(unmet, TuneObjective{}, TuneBudget{}).reasons,
              "2 workers did not meet the objective at any rate tried"));
}

TEST_CASE("counts over the memory budget are not recommended, and the reasons say why") {
    // 200 MiB per worker at every count, 1000 MiB with 10% kept free: 4 workers fit.
    std::vector<CountResult> results;
    for (int w = 1; w <= 6; ++w) results.push_back(count(w, 100.0 * w, 200 * kMiB));
    TuneBudget budget;
    budget.memory_limit = 1000 * kMiB;
    budget.memory_margin = 0.1;
    const Recommendation r = recommend(results, TuneObjective{}, budget);
    REQUIRE(r.memory_cap);
    CHECK(*r.memory_cap == 4);
    CHECK(r.workers == 4);
    CHECK(has(r.reasons, "5 workers would exceed the 1000 MiB limit"));
    CHECK(has(r.spec_lines, "memory_per_worker: 200MiB"));
    // Without a limit the best count wins.
    CHECK(recommend(results, TuneObjective{}, TuneBudget{}).workers == 6);
}

TEST_CASE("the memory budget counts the pages the workers share once: USS with one count, a line through more") {
    // 200 MiB shared by all the workers, 50 MiB of each own; 1000 MiB less 10%: 14 fit.
    auto measured = [](int w, bool uss) {
        CountResult c = count(w, 100.0 * w, 200 * kMiB / static_cast<std::uint64_t>(w) + 50 * kMiB);
        if (uss) c.private_per_worker = 50 * kMiB;
        return c;
    };
    TuneBudget budget;
    budget.memory_limit = 1000 * kMiB;
    CHECK(measured_memory_cap({measured(1, true)}, 1000 * kMiB, 0.1) == 14);
    CHECK(measured_memory_cap({measured(1, false)}, 1000 * kMiB, 0.1) == 3);  // 900 / 250: all counted private
    const std::vector<CountResult> three = {measured(1, false), measured(2, false), measured(3, false)};
    CHECK(measured_memory_cap(three, 1000 * kMiB, 0.1) == 14);
    const Recommendation r = recommend(three, TuneObjective{}, budget);
    REQUIRE(r.memory_cap);
    CHECK(*r.memory_cap == 14);
    CHECK(r.workers == 3);
    CHECK(has(r.spec_lines, "memory_per_worker: 117MiB"));  // the pick's own: the daemon's budget holds 3
}

TEST_CASE("the default ladder goes on past its top while the climb has not reached a plateau") {
    TuneBudget budget;
    budget.usable_cpus = 1;  // the default top: 4
    TuneSession session(TuneObjective{}, SearchLimits{}, budget, {});
    REQUIRE(session.ladder() == std::vector<int>{1, 2, 3, 4});
    for (;;) {
        const auto next = session.next();
        if (next.kind == TuneSession::Next::Kind::done) break;
        const double sustains = 100.0 * std::min(next.workers, 10);  // workers that mostly wait
        const bool is_probe = next.step.kind == TrialResult::Kind::probe;
        session.record(is_probe ? probe(1.1 * sustains) : open_step(next.step.rate, next.step.rate <= sustains));
    }
    CHECK(session.ladder() == std::vector<int>{1, 2, 3, 4, 5, 6, 8, 10, 12, 18});
    CHECK(session.recommendation().workers == 10);
}

TEST_CASE("when nothing met the objective the recommendation is 0 workers, and says so") {
    const std::vector<CountResult> results = {count(1, std::nullopt), count(2, std::nullopt)};
    const Recommendation r = recommend(results, TuneObjective{}, TuneBudget{});
    CHECK(r.workers == 0);
    CHECK(r.spec_lines.empty());
    REQUIRE(r.reasons.size() == 1);
    CHECK(r.reasons.front().find("no worker count met p99 ≤ 200 ms") == 0);
    CHECK(recommend({}, TuneObjective{}, TuneBudget{}).workers == 0);
}

TEST_CASE("the workload class comes from CPU per request against the unloaded latency at 1 worker") {
    auto one_worker = [](double cpu_cores, double p50_ms) {
        CountResult c = count(1, 50);
        c.trials.front().cpu_cores = cpu_cores;
        c.trials.front().p50_ms = p50_ms;
        return c;
    };
    CHECK(recommend({one_worker(1.0, 20)}, TuneObjective{}, TuneBudget{}).workload == "cpu");   // 20 ms CPU of 20
    CHECK(recommend({one_worker(0.05, 50)}, TuneObjective{}, TuneBudget{}).workload == "io");   // 1 ms of 50
    CHECK(recommend({one_worker(0.5, 25)}, TuneObjective{}, TuneBudget{}).workload == "mixed");  // 10 ms of 25
    CHECK(has(recommend({one_worker(1.0, 20)}, TuneObjective{}, TuneBudget{}).spec_lines, "workload: cpu"));
}

TEST_CASE("thousands() groups digits by three and rounds") {
    CHECK(thousands(0) == "0");
    CHECK(thousands(999) == "999");
    CHECK(thousands(1000) == "1,000");
    CHECK(thousands(1840) == "1,840");
    CHECK(thousands(1234567) == "1,234,567");
    CHECK(thousands(999.6) == "1,000");
    CHECK(thousands(-1234.4) == "-1,234");
}

// ---- the session --------------------------------------------------------------------------

TEST_CASE("a session with given counts runs a search at each, in order, then recommends") {
    TuneSession session(TuneObjective{}, SearchLimits{}, TuneBudget{}, {2, 4});
    CHECK(session.ladder() == std::vector<int>{2, 4});
    std::vector<int> fleet_sizes;
    for (;;) {
        const auto next = session.next();
        if (next.kind == TuneSession::Next::Kind::done) break;
        fleet_sizes.push_back(next.workers);
        // The fleet sustains 100 requests/s per worker.
        const double sustains = 100.0 * next.workers;
        const bool is_probe = next.step.kind == TrialResult::Kind::probe;
        session.record(is_probe ? probe(1.1 * sustains) : open_step(next.step.rate, next.step.rate <= sustains));
    }
    REQUIRE_FALSE(fleet_sizes.empty());
    CHECK(fleet_sizes.front() == 2);
    CHECK(fleet_sizes.back() == 4);
    CHECK(std::is_sorted(fleet_sizes.begin(), fleet_sizes.end()));
    REQUIRE(session.results().size() == 2);
    CHECK(*session.results()[0].sustainable_rate <= 200);
    CHECK(*session.results()[0].sustainable_rate >= 200 / 1.05 / 1.05);
    CHECK(session.recommendation().workers == 4);
    CHECK(session.next().kind == TuneSession::Next::Kind::done);  // and stays done
}
