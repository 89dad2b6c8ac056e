#include "daemon/core/tune.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "daemon/core/autoscale.hpp"  // memory_budget

namespace workerd {

namespace {

constexpr double kFirstShare = 0.9;  ///< of the probe's rate: the first open-loop step
constexpr double kRampUp = 1.25;     ///< while every step passed
constexpr double kFirstBackOff = 0.75;  ///< after the first step failed
constexpr double kBackOff = 0.6;     ///< while every step failed, after that
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr int kMaxLadder = 64;  ///< the climb never goes past this many workers

std::string percentile_name(double p) {
    return p == std::floor(p) ? fmt::format("p{}", static_cast<int>(p)) : fmt::format("p{}", p);
}

}  // namespace

std::string TuneObjective::describe() const {
    return fmt::format("{} ≤ {} ms", percentile_name(percentile), latency_ms);
}

double TrialResult::error_ratio() const {
    return requests == 0 ? 0.0 : static_cast<double>(errors) / static_cast<double>(requests);
}

std::string workers_word(int n) { return fmt::format("{} worker{}", n, n == 1 ? "" : "s"); }

std::string describe_trial(const TrialResult& t, const TuneObjective& objective) {
    if (t.kind == TrialResult::Kind::probe) {
        return fmt::format("probe (closed loop): {} req/s, p99 {:.1f} ms", thousands(t.rate), t.p99_ms);
    }
    return fmt::format("{} req/s offered: {} answered, {} {:.1f} ms, {} errors, {:.1f} CPUs: {}",
                       thousands(t.offered_rate), thousands(t.rate), percentile_name(objective.percentile),
                       t.objective_ms, t.errors, t.cpu_cores, t.passed ? "meets" : "misses");
}

// ---- RateSearch ---------------------------------------------------------------------------

RateSearch::RateSearch(TuneObjective objective, SearchLimits limits) : objective_(objective), limits_(limits) {}

bool meets_objective(const TuneObjective& objective, const TrialResult& t) {
    return t.requests > 0 && t.objective_ms <= objective.latency_ms && t.error_ratio() < objective.max_error_ratio;
}

bool RateSearch::meets(const TrialResult& t) const { return meets_objective(objective_, t); }

std::optional<RateSearch::Step> RateSearch::next() const {
    if (trials_.empty()) return Step{TrialResult::Kind::probe, 0};
    if (ceiling_ <= 0) return std::nullopt;  // the probe got nothing through
    const auto open = static_cast<int>(trials_.size()) - 1;
    if (open >= limits_.max_open_trials) return std::nullopt;
    const double low = best_pass_ ? trials_[*best_pass_].offered_rate : 0.0;
    if (open == 0) return Step{TrialResult::Kind::open, ceiling_ * kFirstShare};
    const TrialResult& last = trials_.back();
    if (low > 0 && lowest_fail_) {
        if (*lowest_fail_ <= low * (1 + limits_.precision)) return std::nullopt;
        return Step{TrialResult::Kind::open, std::sqrt(low * *lowest_fail_)};
    }
    if (!lowest_fail_) return Step{TrialResult::Kind::open, last.offered_rate * kRampUp};
    // Nothing passed yet. The first failure is mostly at 90% of a probe that was close: back off
    // less, or the bisection after it cannot reach the precision within the steps.
    return Step{TrialResult::Kind::open, last.offered_rate * (open == 1 ? kFirstBackOff : kBackOff)};
}

const TrialResult& RateSearch::record(TrialResult result) {
    if (result.kind == TrialResult::Kind::probe) {
        result.passed = false;  // a closed loop's latency says nothing about an arrival rate
        ceiling_ = result.rate;
        trials_.push_back(std::move(result));
        return trials_.back();
    }
    result.passed = meets(result);
    trials_.push_back(std::move(result));
    const auto i = trials_.size() - 1;
    const TrialResult& t = trials_[i];
    if (t.passed) {
        if (!best_pass_ || t.offered_rate > trials_[*best_pass_].offered_rate) best_pass_ = i;
    } else if (!lowest_fail_ || t.offered_rate < *lowest_fail_) {
        lowest_fail_ = t.offered_rate;
    }
    return t;
}

std::optional<double> RateSearch::sustainable() const {
    if (!best_pass_) return std::nullopt;
    return trials_[*best_pass_].offered_rate;
}

const TrialResult* RateSearch::sustainable_trial() const { return best_pass_ ? &trials_[*best_pass_] : nullptr; }

// ---- the ladder -------------------------------------------------------------------------

std::vector<int> worker_ladder(int max_workers) {
    std::vector<int> out;
    for (int n = 1; n <= max_workers;) {
        out.push_back(n);
        n = n < 6 ? n + 1 : n < 12 ? n + 2 : n + n / 2;
    }
    if (!out.empty() && out.back() != max_workers) out.push_back(max_workers);
    return out;
}

int default_max_workers(double usable_cpus, std::optional<int> memory_cap) {
    const int cpus = std::max(1, static_cast<int>(std::ceil(usable_cpus)));
    int top = std::clamp(2 * cpus + 1, 4, 64);
    if (memory_cap) top = std::min(top, std::max(1, *memory_cap));
    return top;
}

bool ladder_plateaued(const std::vector<CountResult>& done, double plateau) {
    if (done.size() < 3) return false;
    auto rate = [](const CountResult& c) { return c.sustainable_rate.value_or(0.0); };
    double best_before = 0;
    for (std::size_t i = 0; i + 2 < done.size(); ++i) best_before = std::max(best_before, rate(done[i]));
    if (best_before <= 0) return false;
    const double a = rate(done[done.size() - 2]);
    const double b = rate(done.back());
    return a < best_before * (1 + plateau) && b < std::max(best_before, a) * (1 + plateau);
}

// ---- memory ----------------------------------------------------------------------------

std::optional<int> measured_memory_cap(const std::vector<CountResult>& results, std::uint64_t limit, double margin) {
    // The fleet's total PSS at each measured count: a shared part counted once and a private
    // part per worker (PSS divides shared pages among the workers, so PSS per worker falls as
    // the fleet grows; the largest per worker would undercount what fits). A line through the
    // smallest and largest count measured; one count alone: its PSS per worker, as if private.
    const CountResult* low = nullptr;
    const CountResult* high = nullptr;
    for (const auto& c : results) {
        if (c.pss_per_worker == 0) continue;
        if (low == nullptr || c.workers < low->workers) low = &c;
        if (high == nullptr || c.workers > high->workers) high = &c;
    }
    if (low == nullptr) return std::nullopt;
    const double usable = static_cast<double>(limit) * (1.0 - margin);
    const double total_low = static_cast<double>(low->pss_per_worker) * low->workers;
    double per_worker = static_cast<double>(low->pss_per_worker);
    double shared = 0;
    if (high == low && low->private_per_worker > 0 && low->private_per_worker < low->pss_per_worker) {
        // One count: what one more worker adds is its USS; the rest of the PSS is shared. (With
        // the PSS alone, 1 worker's holds every shared page, and the budget would count them
        // once per worker: often no second count is ever tried.)
        per_worker = static_cast<double>(low->private_per_worker);
        shared = total_low - per_worker * low->workers;
    } else if (high != low) {
        const double total_high = static_cast<double>(high->pss_per_worker) * high->workers;
        // Never less than a tenth of what one worker shows: noise must not make workers free.
        per_worker = std::max((total_high - total_low) / (high->workers - low->workers), per_worker / 10);
        shared = std::max(0.0, total_low - per_worker * low->workers);
    }
    return std::max(1, static_cast<int>((usable - shared) / per_worker));
}

// ---- the session ------------------------------------------------------------------------

TuneSession::TuneSession(TuneObjective objective, SearchLimits limits, TuneBudget budget, std::vector<int> counts,
                         std::optional<std::uint64_t> memory_per_worker)
    : objective_(objective), limits_(limits), budget_(budget), climb_(counts.empty()) {
    if (budget_.memory_limit && memory_per_worker) {
        memory_cap_ = memory_budget(*budget_.memory_limit, budget_.memory_margin, *memory_per_worker);
    }
    // The spec's hint does not shorten the ladder: counts over it are skipped only while no
    // measurement says otherwise (next()), and measured memory usually says more fit.
    ladder_ = climb_ ? worker_ladder(default_max_workers(budget_.usable_cpus, std::nullopt)) : std::move(counts);
}

TuneSession::Next TuneSession::next() {
    while (!done_) {
        if (search_) {
            if (auto step = search_->next()) return Next{Next::Kind::run, ladder_[index_], *step};
            close_count();
            continue;
        }
        if (index_ >= ladder_.size()) break;
        const int workers = ladder_[index_];
        if (memory_cap_ && workers > *memory_cap_) {
            notes_.push_back(fmt::format("{}: skipped, over the memory budget ({} fit)", workers_word(workers),
                                         *memory_cap_));
            ++index_;
            continue;
        }
        search_.emplace(objective_, limits_);
    }
    done_ = true;
    return Next{};
}

void TuneSession::record(TrialResult result) {
    if (!search_) return;
    search_->record(std::move(result));
}

void TuneSession::close_count() {
    CountResult count;
    count.workers = ladder_[index_];
    count.trials = search_->trials();
    count.sustainable_rate = search_->sustainable();
    if (const TrialResult* best = search_->sustainable_trial()) {
        count.sustainable_trial = static_cast<std::size_t>(best - search_->trials().data());
    }
    // Memory under the heaviest load that met the objective (else the last step).
    const TrialResult* sample = count.at_sustainable();
    if (sample == nullptr && !count.trials.empty()) sample = &count.trials.back();
    auto mean = [](const std::vector<std::uint64_t>& v) -> std::uint64_t {
        std::uint64_t sum = 0;
        for (const auto b : v) sum += b;
        return v.empty() ? 0 : sum / v.size();
    };
    if (sample != nullptr) {
        count.pss_per_worker = mean(sample->pss_bytes);
        count.private_per_worker = mean(sample->private_bytes);
    }
    search_.reset();
    ++index_;
    if (count.trials.empty()) return;
    results_.push_back(std::move(count));
    // The memory budget, now with memory measured under load.
    if (budget_.memory_limit) {
        if (auto cap = measured_memory_cap(results_, *budget_.memory_limit, budget_.memory_margin)) memory_cap_ = cap;
    }
    if (climb_ && ladder_plateaued(results_)) {
        notes_.push_back(fmt::format("the last two counts added less than 5%: the climb stops at {}",
                                     workers_word(results_.back().workers)));
        done_ = true;
        return;
    }
    // At the ladder's top and not at a plateau (the rule above): one rung more, within the memory
    // budget. Apps that wait in threads or sockets can use more workers than 2 × CPUs + 1. (Not
    // "the last count added 5%": one unlucky step at the top would end the climb.)
    if (climb_ && index_ == ladder_.size() && ladder_.back() < kMaxLadder) {
        double best = 0;
        for (const auto& c : results_) best = std::max(best, c.sustainable_rate.value_or(0.0));
        const int n = ladder_.back();
        int up = std::min(kMaxLadder, n < 6 ? n + 1 : n < 12 ? n + 2 : n + n / 2);
        if (memory_cap_) up = std::min(up, *memory_cap_);  // as the default ladder ends at its top
        if (best > 0 && up > n) {
            ladder_.push_back(up);
            notes_.push_back(fmt::format("{}: still climbing, trying {} too", workers_word(n), up));
        }
    }
}

void TuneSession::finish() {
    if (search_ && !search_->trials().empty()) close_count();
    search_.reset();
    done_ = true;
}

std::vector<std::string> TuneSession::take_notes() {
    std::vector<std::string> out;
    out.swap(notes_);
    return out;
}

Recommendation TuneSession::recommendation() const { return recommend(results_, objective_, budget_); }

// ---- the recommendation ---------------------------------------------------------------

std::string thousands(double value) {
    const long long n = std::llround(value);
    const std::string digits = std::to_string(n < 0 ? -n : n);
    std::string out = n < 0 ? "-" : "";
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

namespace {

std::string mib(std::uint64_t bytes) { return fmt::format("{:.0f} MiB", static_cast<double>(bytes) / kMiB); }

/// The workload class from what the fleet did at one worker: CPU seconds per request against
/// the time a request took when the fleet was not loaded. Near 1: the request computes; near 0:
/// it waits.
std::string classify(const std::vector<CountResult>& results) {
    const CountResult* one = nullptr;
    for (const auto& c : results) {
        if (c.workers == 1) one = &c;
    }
    if (one == nullptr) return {};
    double cpu_per_request = 0;
    double lightest_p50 = 0;
    double lightest_rate = 0;
    for (const auto& t : one->trials) {
        if (t.kind != TrialResult::Kind::open || t.rate <= 0 || t.p50_ms <= 0 || t.cpu_cores <= 0) continue;
        if (lightest_rate == 0 || t.offered_rate < lightest_rate) {
            lightest_rate = t.offered_rate;
            cpu_per_request = t.cpu_cores / t.rate;
            lightest_p50 = t.p50_ms / 1000.0;
        }
    }
    if (lightest_p50 <= 0 || cpu_per_request <= 0) return {};
    const double share = cpu_per_request / lightest_p50;
    return share >= 0.6 ? "cpu" : share <= 0.25 ? "io" : "mixed";
}

}  // namespace

Recommendation recommend(const std::vector<CountResult>& results, const TuneObjective& objective,
                         const TuneBudget& budget) {
    Recommendation r;
    // The memory budget with the PSS measured under load (the largest seen per worker).
    std::uint64_t pss = 0;
    for (const auto& c : results) pss = std::max(pss, c.pss_per_worker);
    if (budget.memory_limit) r.memory_cap = measured_memory_cap(results, *budget.memory_limit, budget.memory_margin);

    double best = 0;
    const CountResult* best_count = nullptr;
    for (const auto& c : results) {
        if (r.memory_cap && c.workers > *r.memory_cap) continue;
        if (c.sustainable_rate && *c.sustainable_rate > best) {
            best = *c.sustainable_rate;
            best_count = &c;
        }
    }
    if (best_count == nullptr) {
        r.reasons.push_back(fmt::format("no worker count met {} with fewer than {}% errors at any rate tried",
                                        objective.describe(), objective.max_error_ratio * 100));
        return r;
    }
    const CountResult* pick = best_count;
    for (const auto& c : results) {
        if (r.memory_cap && c.workers > *r.memory_cap) continue;
        if (c.sustainable_rate && *c.sustainable_rate >= best * (1 - budget.tolerance) && c.workers < pick->workers) {
            pick = &c;
        }
    }
    r.workers = pick->workers;
    r.rate = *pick->sustainable_rate;
    r.objective_ms = pick->at_sustainable() ? pick->at_sustainable()->objective_ms : 0;
    r.workload = classify(results);

    r.reasons.push_back(fmt::format("{}: {} req/s at {} ({} {:.0f} ms at that rate)", workers_word(pick->workers),
                                    thousands(r.rate), objective.describe(),
                                    fmt::format("p{}", objective.percentile), r.objective_ms));
    // The next count measured above the pick: what one more step would buy.
    const CountResult* next = nullptr;
    for (const auto& c : results) {
        if (c.workers > pick->workers && (next == nullptr || c.workers < next->workers)) next = &c;
    }
    if (next != nullptr && next->sustainable_rate) {
        const double gain = (*next->sustainable_rate / r.rate - 1) * 100;
        const std::uint64_t more = next->pss_per_worker * static_cast<std::uint64_t>(next->workers) -
                                   std::min(next->pss_per_worker * static_cast<std::uint64_t>(next->workers),
                                            pick->pss_per_worker * static_cast<std::uint64_t>(pick->workers));
        r.reasons.push_back(fmt::format("{} {} {:.0f}%{}", next->workers, gain >= 0 ? "add" : "lose",
                                        std::abs(gain),
                                        more > 0 ? fmt::format(" for {} more", mib(more)) : std::string()));
    } else if (next != nullptr) {
        r.reasons.push_back(fmt::format("{} did not meet the objective at any rate tried", workers_word(next->workers)));
    }
    if (best_count != pick) {
        r.reasons.push_back(fmt::format("the best measured, {}, reached {} req/s ({:+.0f}%): within {:.0f}% is enough",
                                        workers_word(best_count->workers), thousands(best),
                                        (best / r.rate - 1) * 100, budget.tolerance * 100));
    }
    if (r.memory_cap) {
        r.reasons.push_back(fmt::format("{} would exceed the {} limit ({} per worker, {:.0f}% kept free)",
                                        workers_word(*r.memory_cap + 1), mib(*budget.memory_limit), mib(pss),
                                        budget.memory_margin * 100));
    }
    if (const auto* t = pick->at_sustainable(); t != nullptr && t->cpu_cores > 0) {
        r.reasons.push_back(fmt::format("at that rate the fleet uses {:.1f} of {:.1f} CPUs", t->cpu_cores,
                                        budget.usable_cpus));
    }

    r.spec_lines.push_back(fmt::format("workers: {}", r.workers));
    if (!r.workload.empty()) {
        r.spec_lines.push_back(fmt::format("workload: {}   # measured: {}", r.workload,
                                           r.workload == "cpu"   ? "requests mostly compute"
                                           : r.workload == "io" ? "requests mostly wait"
                                                                : "requests compute and wait"));
    }
    if (best_count->workers > r.workers) {
        r.spec_lines.push_back("autoscale:");
        r.spec_lines.push_back(fmt::format("  min: {}", r.workers));
        r.spec_lines.push_back(fmt::format("  max: {}   # the best rate measured", best_count->workers));
    }
    // The pick's own PSS: the largest (1 worker's, holding every shared page) would make the
    // daemon's budget (memory_per_worker × workers) hold fewer workers than recommended here.
    if (const std::uint64_t own = pick->pss_per_worker > 0 ? pick->pss_per_worker : pss; own > 0) {
        r.spec_lines.push_back(fmt::format("memory_per_worker: {}MiB   # measured PSS under load", (own + kMiB - 1) / kMiB));
    }
    return r;
}

}  // namespace workerd
