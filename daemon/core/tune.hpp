#pragma once

// `workerd tune`'s decisions, pure like the rest of the core: which worker counts to try, which
// rate to offer next at a count, whether a measured step meets the objective, and which count to
// recommend and why. The shell (daemon/tune/) runs the app and the load generator and feeds the
// measurements in; the simulator (tests/sim/) feeds in a model's.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace workerd {

/// The latency objective: the `percentile` of latency stays within `latency_ms`, and fewer
/// than `max_error_ratio` of the requests fail (`--slo p99=200ms`).
struct TuneObjective {
    double percentile = 99.0;
    double latency_ms = 200.0;
    double max_error_ratio = 0.001;

    /// "p99 ≤ 200 ms".
    std::string describe() const;
};

/// One load step's measurement.
struct TrialResult {
    enum class Kind { probe, open };
    Kind kind = Kind::open;    ///< probe: closed loop, as fast as the connections go
    double offered_rate = 0;   ///< requests/s scheduled (open loop); 0 for a probe
    double rate = 0;           ///< requests/s answered (2xx/3xx) over the step
    double seconds = 0;
    std::uint64_t requests = 0;  ///< sent or due in the step (answered or not)
    std::uint64_t errors = 0;    ///< of those: 4xx/5xx, connection errors, timeouts, never sent
    std::uint64_t timeouts = 0;  ///< (of the errors)
    double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
    double objective_ms = 0;     ///< the objective's percentile (p99 for --slo p99=...)
    double cpu_cores = 0;        ///< the fleet's CPU use over the step (1 = one core busy)
    std::vector<std::uint64_t> pss_bytes;  ///< each worker's PSS at the end of the step
    std::vector<std::uint64_t> private_bytes;  ///< each worker's USS (its pages no other maps), the same time
    bool passed = false;         ///< meets the objective (set by RateSearch::record)

    double error_ratio() const;
};

/// Whether a step met the objective: something was answered, the objective's percentile is
/// within its latency, and the errors are under its share.
bool meets_objective(const TuneObjective& objective, const TrialResult& t);

/// The step durations and counts of a search (what bounds the total duration).
struct SearchLimits {
    int max_open_trials = 5;  ///< open-loop steps per worker count after the probe
    double precision = 0.05;  ///< stop when the failing rate is within 5% of the passing one
};

/// The search for the highest rate a fleet sustains under the objective, at one worker count.
/// First a probe: closed loop, as fast as the connections go, which gives a ceiling. Then open
/// loop at 90% of it; up by 25% while steps pass and none failed, down to 75% after a first
/// failure and to 60% after each further one while none passed, then bisection (geometric)
/// between the highest passing and the lowest failing rate until they are within `precision` or
/// the steps run out.
class RateSearch {
public:
    RateSearch(TuneObjective objective, SearchLimits limits);

    struct Step {
        TrialResult::Kind kind;
        double rate = 0;  ///< open loop: the rate to offer
    };
    /// The next step to run; nullopt when the search is over.
    std::optional<Step> next() const;
    /// Records the step just run (its `passed` is decided here) and returns it.
    const TrialResult& record(TrialResult result);

    /// The highest offered rate that met the objective, if any did.
    std::optional<double> sustainable() const;
    /// The step measured at that rate.
    const TrialResult* sustainable_trial() const;
    const std::vector<TrialResult>& trials() const { return trials_; }
    bool meets(const TrialResult& t) const;

private:
    TuneObjective objective_;
    SearchLimits limits_;
    std::vector<TrialResult> trials_;
    std::optional<std::size_t> best_pass_;  ///< index into trials_
    std::optional<double> lowest_fail_;
    double ceiling_ = 0;
};

/// What was measured at one worker count.
struct CountResult {
    int workers = 1;
    std::vector<TrialResult> trials;
    std::optional<double> sustainable_rate;  ///< nullopt: not even the lowest rate met the objective
    std::optional<std::size_t> sustainable_trial;  ///< index into trials
    std::uint64_t pss_per_worker = 0;  ///< mean PSS per worker under that load (0: unknown)
    std::uint64_t private_per_worker = 0;  ///< mean USS per worker: what one more worker adds (0: unknown)

    const TrialResult* at_sustainable() const {
        return sustainable_trial ? &trials[*sustainable_trial] : nullptr;
    }
};

/// The worker counts to try, by default: 1 to `max_workers`, every count up to 6, then in
/// steps of 2 up to 12, then by half again.
std::vector<int> worker_ladder(int max_workers);

/// The default top of the ladder: 2 × CPUs + 1 (gunicorn's rule, the most the folklore asks
/// for), at least 4, at most 64, and capped by the memory budget when one is known.
int default_max_workers(double usable_cpus, std::optional<int> memory_cap);

/// Whether to stop climbing the ladder: the last two counts each added less than
/// `plateau` over the best rate before them (more workers only cost memory from here).
bool ladder_plateaued(const std::vector<CountResult>& done, double plateau = 0.05);

/// How many workers the memory budget (`limit` less `margin`) holds, from the PSS measured at
/// each count: a shared part once plus a private part per worker, fitted through the smallest
/// and largest count measured (one count: its USS per worker as the private part, else its PSS
/// per worker, all counted as private). nullopt before any memory was measured.
std::optional<int> measured_memory_cap(const std::vector<CountResult>& results, std::uint64_t limit, double margin);

/// What the recommendation weighs besides the measurements.
struct TuneBudget {
    std::optional<std::uint64_t> memory_limit;  ///< bytes (spec's memory_limit, else cgroup)
    double memory_margin = 0.1;
    double usable_cpus = 1;                      ///< the CPU quota / affinity
    /// "Within a few percent of the best": more than the search's precision (5%) plus one step's
    /// noise, or two counts that sustain the same rate often measure further apart than it.
    double tolerance = 0.10;
};

struct Recommendation {
    int workers = 0;             ///< 0: nothing met the objective
    double rate = 0;             ///< its sustainable rate
    double objective_ms = 0;     ///< its measured latency at that rate (the objective's percentile)
    std::optional<int> memory_cap;  ///< workers the memory budget holds, with the measured PSS
    std::string workload;        ///< "cpu", "mixed" or "io": from CPU per request vs latency
    std::vector<std::string> reasons;     ///< plain sentences
    std::vector<std::string> spec_lines;  ///< to paste into the spec
};

/// The smallest worker count whose sustainable rate is within `tolerance` of the best
/// measured, among those the memory budget holds; the reasoning and the spec lines.
Recommendation recommend(const std::vector<CountResult>& results, const TuneObjective& objective,
                         const TuneBudget& budget);

/// A whole tuning run's decisions, step by step: the counts of the ladder (skipping those over
/// the memory budget, which becomes known from the PSS measured under load), the rate search
/// at each, the climb's stop at a plateau, the recommendation. The shell (or the simulator) asks
/// next(), does it, and reports back; it decides nothing itself.
class TuneSession {
public:
    /// `counts` empty: the default ladder up to default_max_workers, stopped at a plateau;
    /// given: exactly those (each tried, memory permitting). `memory_per_worker`: the spec's hint,
    /// for the budget before anything is measured.
    TuneSession(TuneObjective objective, SearchLimits limits, TuneBudget budget, std::vector<int> counts,
                std::optional<std::uint64_t> memory_per_worker = std::nullopt);

    struct Next {
        enum class Kind { run, done };
        Kind kind = Kind::done;
        int workers = 0;        ///< the fleet's size for this step (scale to it first if it differs)
        RateSearch::Step step{};
    };
    /// What to do now.
    Next next();
    /// The step next() asked for was run: its measurement.
    void record(TrialResult result);
    /// Ends the run early (interrupted): the results so far stand.
    void finish();
    /// Whether a step's measurement meets the objective.
    bool meets(const TrialResult& t) const { return meets_objective(objective_, t); }

    const std::vector<int>& ladder() const { return ladder_; }
    const std::vector<CountResult>& results() const { return results_; }
    /// The memory budget's count, when known.
    std::optional<int> memory_cap() const { return memory_cap_; }
    /// What happened besides the steps, for the progress lines ("6 workers: skipped, ...").
    std::vector<std::string> take_notes();
    Recommendation recommendation() const;

private:
    void close_count();

    TuneObjective objective_;
    SearchLimits limits_;
    TuneBudget budget_;
    bool climb_;
    std::vector<int> ladder_;
    std::size_t index_ = 0;
    std::optional<RateSearch> search_;
    std::vector<CountResult> results_;
    std::optional<int> memory_cap_;
    std::vector<std::string> notes_;
    bool done_ = false;
};

/// "1,840".
std::string thousands(double value);

/// "1 worker", "3 workers".
std::string workers_word(int n);

/// One step as the progress lines show it: "1,200 req/s offered: 1,198 answered, p99 41.0 ms,
/// 0 errors, 0.9 CPUs: meets" (a probe: its rate and p99).
std::string describe_trial(const TrialResult& t, const TuneObjective& objective);

}  // namespace workerd
