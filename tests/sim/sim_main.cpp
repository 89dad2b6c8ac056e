// workerd-sim: runs the fleet simulator (tests/sim/simulator.hpp) over many seeds, or replays
// one. `make sim` runs the default 200 seeds; `make sim SEED=N` replays seed N with its trace.
//
//   workerd-sim [--seeds N] [--first S] [--seed S] [--verbose] [--trace LINES]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "tests/sim/simulator.hpp"

int main(int argc, char** argv) {
    std::uint64_t first = 1, seeds = 200;
    bool one = false, verbose = false;
    std::size_t trace_lines = 60;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::uint64_t {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "workerd-sim: %s needs a number\n", arg.c_str());
                std::exit(2);
            }
            return std::strtoull(argv[++i], nullptr, 10);
        };
        if (arg == "--seeds") seeds = value();
        else if (arg == "--first") first = value();
        else if (arg == "--seed") first = value(), seeds = 1, one = true;
        else if (arg == "--verbose" || arg == "-v") verbose = true;
        else if (arg == "--trace") trace_lines = value();
        else {
            std::fprintf(stderr, "usage: workerd-sim [--seeds N] [--first S] [--seed S] [--verbose] [--trace LINES]\n");
            return 2;
        }
    }
    const auto began = std::chrono::steady_clock::now();
    workerd::sim::Outcome total;
    int failed = 0, stopped = 0;
    for (std::uint64_t seed = first; seed < first + seeds; ++seed) {
        auto scenario = workerd::sim::Scenario::from_seed(seed);
        scenario.trace_lines = trace_lines;
        const auto t = std::chrono::steady_clock::now();
        const auto out = workerd::sim::run(scenario);
        total.events += out.events;
        total.turns += out.turns;
        total.checks += out.checks;
        total.spawns += out.spawns;
        total.exits += out.exits;
        total.faults += out.faults;
        total.reloads += out.reloads;
        total.zygotes += out.zygotes;
        total.zygote_deaths += out.zygote_deaths;
        total.forks_lost += out.forks_lost;
        total.canary_rollbacks += out.canary_rollbacks;
        total.leak_recycles += out.leak_recycles;
        stopped += out.stopped ? 1 : 0;
        if (verbose || one || !out.ok) {
            fmt::print("{}: {} ({} events, {} faults, {:.2f}s)\n", scenario.describe(), out.ok ? "ok" : "FAILED",
                       out.events, out.faults, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
        }
        if (!out.ok) {
            ++failed;
            fmt::print("  invariant broken at {}\n  last events:\n", out.failure);
            for (const auto& line : out.trace) fmt::print("    {}\n", line);
            fmt::print("  replay: make sim SEED={}\n", seed);
        }
    }
    fmt::print("workerd-sim: {} seed(s) from {}, {} failed, {} ended in a stop; {} events, {} turns, {} spawns, {} exits, "
               "{} faults ({} reloads), {} invariant checks; preload: {} zygotes, {} died unasked, {} forks lost; {} canary rollbacks, {} leak recycles; {:.1f}s\n",
               seeds, first, failed, stopped, total.events, total.turns, total.spawns, total.exits, total.faults,
               total.reloads, total.checks, total.zygotes, total.zygote_deaths, total.forks_lost, total.canary_rollbacks,
               total.leak_recycles, std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    return failed == 0 ? 0 : 1;
}
