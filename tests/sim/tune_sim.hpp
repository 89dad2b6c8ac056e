#pragma once

// A deterministic simulator for `workerd tune` (issue 15): a seeded model of an app on a machine
// answers the load steps that the real decisions ask for: the run is driven by the core's own
// TuneSession (daemon/core/tune.hpp: the ladder, RateSearch at each count, the plateau stop, the
// memory cap from the measured PSS, recommend), as daemon/tune/tune_runner.cpp drives it. A brute
// force over the same model gives each count's true sustainable rate, and the run checks the
// issue's invariants against it:
//   (a) the recommended count sustains within 10% of the best count of 1..8 and of the sweep,
//       within the memory limit;
//   (b) no count of the sweep smaller than the recommended one is within that 10%;
//   (c) the recommendation fits the memory limit (its own cap, and the model's);
//   (d) at most the probe and max_open_trials steps per count, and no more load than planned;
//   (e) the rate reported at a count meets the objective again (p99 ≤ 1.25 × the objective).
// One step of 5 s is noisy near the knee (the rate at which it passes varies by ±5-10% from seed
// to seed), and the search has one step per rate: (a), (b) and (e) broken on the true medians
// but not beyond one step's noise are counted as near misses, not failures.
//
// The model (simulated clock, no sleeping; every random draw from the seed):
// - C cores (fractional allowed) shared by the runnable processes (processor sharing), with an
//   optional cost per runnable process beyond the cores, and the load generator's own CPU.
// - W workers, each with one serialized executor (an event loop, or the GIL): a request's CPU
//   parts queue on it in order. A sync worker takes one request at a time; an async one any
//   number; a thread pool runs at most `threads` blocking waits per worker.
// - A shared accept queue: an idle worker with a free slot takes a request at once; a busy one
//   takes the next waiting request between two pieces of work.
// - The generator as the real one works (daemon/load): open loop at constant intervals over at
//   most `connections` connections, latency from the scheduled time, requests waiting for a
//   connection longer than the timeout are timeouts, the run waits up to the timeout after the
//   schedule for the last answers; closed loop (the probe) over exactly `connections`, latency
//   from the send. Every step starts from an idle fleet (the runner waits for it).
// - Memory: each worker's PSS is shared / workers + private (pages shared by all, and its own).
// Not modelled: keep-alive connections staying with the worker that accepted them, memory that
// grows with load, a backlog carried from one step to the next, the OS's own jitter.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/tune.hpp"

namespace workerd::sim {

/// What a request does in its worker.
enum class RequestShape {
    compute,  ///< CPU only, holding the executor (a sync handler, a CPU-bound async one)
    await,    ///< CPU, an awaited wait off the executor (async I/O), CPU
    thread,   ///< CPU, a blocking wait in the worker's thread pool (at most `threads` at once), CPU
    block,    ///< CPU, a wait that holds the executor without using the CPU (time.sleep), CPU
};
const char* to_string(RequestShape shape);

/// One kind of request and its share of the load. Means; each request draws around them.
struct RequestKind {
    RequestShape shape = RequestShape::compute;
    double cpu_ms = 20;
    double wait_ms = 0;
    double weight = 1;
};

/// The app on its machine.
struct AppModel {
    double cores = 2;
    bool sync = false;  ///< one request at a time per worker: every wait holds it (a WSGI app)
    int threads = 40;   ///< the thread pool of each worker (anyio's default)
    std::vector<RequestKind> requests;
    double jitter = 0.3;                 ///< sigma of the lognormal each cpu_ms and wait_ms is drawn from
    double oversubscription_cost = 0;   ///< throughput lost per runnable process beyond the cores
    double generator_cpu_ms = 0;         ///< the load generator's CPU per request, on the same cores
    double shared_mib = 20, private_mib = 60;  ///< each worker's PSS: shared / workers + private

    /// The rate no fleet of `workers` can pass, whatever the latency objective (from the means).
    double capacity(int workers, int connections) const;
    std::string describe() const;
};

/// One load step, as run_tune asks the generator for it.
struct LoadStep {
    TrialResult::Kind kind = TrialResult::Kind::open;
    double rate = 0;             ///< open loop: requests/s scheduled
    double seconds = 5;          ///< the schedule's length
    int connections = 256;       ///< open loop: at most this many; closed loop: exactly this many
    double timeout_ms = 2000;    ///< per request
    double objective_percentile = 99;  ///< TrialResult::objective_ms is this percentile
};

/// Runs one step against `workers` workers, from idle, and measures it as the runner does.
TrialResult simulate_step(const AppModel& app, int workers, const LoadStep& step, std::uint64_t seed);

/// One simulated `workerd tune` run: the app, the machine's budget and the tool's options.
struct TuneScenario {
    std::uint64_t seed = 1;
    std::string kind;  ///< "cpu", "io", "threads" or "mix" (for the report)
    AppModel app;
    TuneObjective objective;
    SearchLimits limits;
    double probe_seconds = 2;   ///< TuneOptions' defaults
    double step_seconds = 5;
    int connections = 256;
    int probe_connections = 128;
    std::optional<std::uint64_t> memory_limit;  ///< bytes
    double memory_margin = 0.1;
    std::optional<std::uint64_t> memory_per_worker;  ///< the spec's memory_per_worker, bytes
    int truth_counts = 8;       ///< the brute force covers 1..this (and the recommendation)
    double tolerance = 0.10;    ///< the invariants': within 10% of the best
    double noise = 1.25;        ///< the re-measured latency at a reported rate may be this × the objective

    double timeout_ms() const;  ///< run_tune's default: 5 × the objective, at least 2 s
    LoadStep open_step(double rate) const;  ///< as run_tune asks for one
    /// The scenario a seed stands for in the default run.
    static TuneScenario from_seed(std::uint64_t seed);
    std::string describe() const;
};

/// The model's sustainable rate at `workers`, by brute force. With common random numbers each
/// seed's step has a threshold rate (it meets the objective below, misses above), found by
/// bisection to 1%; over 15 seeds, the median is the rate at which half the steps of the tool's
/// length meet the objective, and the 2nd lowest and 2nd highest bound what one step may show
/// (about the 10th and 90th percentiles: the noise of a single step, which is all the search
/// has at each rate). 0 when not even 1/64 of the model's capacity meets it.
struct TrueRate {
    double rate = 0;  ///< the median
    double low = 0;   ///< one step in ten passes only below this
    double high = 0;  ///< one step in ten still passes up to this
    int steps = 0;    ///< simulated
};
TrueRate true_sustainable_rate(const TuneScenario& s, int workers);

/// The share of `seeds` steps at `rate` that meet the objective (the noise around the knee).
double pass_fraction(const TuneScenario& s, int workers, double rate, int seeds, std::uint64_t salt = 0);

/// What a run found.
struct TuneOutcome {
    bool ok = true;
    std::vector<std::string> failures;  ///< each broken invariant, in words
    std::vector<std::string> trace;     ///< every step, the truth table, the recommendation
    Recommendation recommendation;
    std::map<int, TrueRate> true_rates; ///< the model's sustainable rate at each count (1..8, the sweep)
    std::optional<int> true_memory_cap;
    double pick_share = 1;              ///< the recommended count's true rate / the best's
    double smaller_share = 0;           ///< the best true rate of a smaller count / the best's
    std::vector<double> reported_share; ///< each measured count's reported rate / its true rate
    std::vector<double> brackets;       ///< each search's end: lowest failing / highest passing rate (0: none)
    std::vector<double> probe_share;    ///< each count's true rate / its probe's rate
    int counts = 0;                     ///< worker counts measured
    int steps = 0;                      ///< load steps run by the search
    int simulated_steps = 0;            ///< every step simulated (search, truth, re-checks)
    double load_seconds = 0;            ///< the search's simulated load time
    std::uint64_t checks = 0;           ///< invariant checks passed
    /// Invariants (a), (b) and (e) broken on the medians but within one step's noise: not
    /// failures (the search cannot measure closer with one step per rate), but counted.
    std::vector<std::string> near_misses;
};

TuneOutcome run_tune(const TuneScenario& scenario);

}  // namespace workerd::sim
