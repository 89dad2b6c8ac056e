#include "daemon/tune/tune_report.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace workerd::tune {

using json = nlohmann::json;

namespace {

double round2(double v) { return static_cast<double>(static_cast<long long>(v * 100 + (v >= 0 ? 0.5 : -0.5))) / 100; }

json trial_json(const TrialResult& t) {
    return json{{"kind", t.kind == TrialResult::Kind::probe ? "probe" : "open"},
                {"offered_rate", round2(t.offered_rate)},
                {"rate", round2(t.rate)},
                {"seconds", round2(t.seconds)},
                {"requests", t.requests},
                {"errors", t.errors},
                {"timeouts", t.timeouts},
                {"p50_ms", round2(t.p50_ms)},
                {"p90_ms", round2(t.p90_ms)},
                {"p99_ms", round2(t.p99_ms)},
                {"max_ms", round2(t.max_ms)},
                {"objective_ms", round2(t.objective_ms)},
                {"cpu_cores", round2(t.cpu_cores)},
                {"pss_bytes", t.pss_bytes},
                {"passed", t.passed}};
}

}  // namespace

std::string render_json(const TuneReport& r) {
    json targets = json::array();
    for (const auto& t : r.targets) targets.push_back({{"method", t.method}, {"path", t.path}, {"weight", t.weight}});
    json runs = json::array();
    for (const auto& c : r.counts) {
        json trials = json::array();
        for (const auto& t : c.trials) trials.push_back(trial_json(t));
        const TrialResult* at = c.at_sustainable();
        runs.push_back({{"workers", c.workers},
                        {"rate", c.sustainable_rate ? json(round2(*c.sustainable_rate)) : json(nullptr)},
                        {"answered_rate", at ? json(round2(at->rate)) : json(nullptr)},
                        {"p50_ms", at ? json(round2(at->p50_ms)) : json(nullptr)},
                        {"p90_ms", at ? json(round2(at->p90_ms)) : json(nullptr)},
                        {"p99_ms", at ? json(round2(at->p99_ms)) : json(nullptr)},
                        {"errors", at ? json(at->errors) : json(nullptr)},
                        {"cpu_cores", at ? json(round2(at->cpu_cores)) : json(nullptr)},
                        {"pss_per_worker_bytes", c.pss_per_worker},
                        {"trials", trials}});
    }
    const auto& rec = r.recommendation;
    json out{
        {"version", 1},
        {"spec", r.spec_file},
        {"started_at", r.started_at},
        {"elapsed_s", round2(r.elapsed_seconds)},
        {"complete", r.complete},
        {"stopped_because", r.complete ? json(nullptr) : json(r.stopped_because)},
        {"targets", targets},
        {"objective",
         {{"percentile", r.objective.percentile},
          {"latency_ms", r.objective.latency_ms},
          {"max_error_ratio", r.objective.max_error_ratio}}},
        {"step_s", round2(r.step_seconds)},
        {"budget",
         {{"memory_limit_bytes", r.budget.memory_limit ? json(*r.budget.memory_limit) : json(nullptr)},
          {"memory_margin", r.budget.memory_margin},
          {"cpus", round2(r.budget.usable_cpus)},
          {"tolerance", r.budget.tolerance}}},
        {"runs", runs},
        {"recommendation",
         {{"workers", rec.workers == 0 ? json(nullptr) : json(rec.workers)},
          {"rate", rec.workers == 0 ? json(nullptr) : json(round2(rec.rate))},
          {"objective_ms", rec.workers == 0 ? json(nullptr) : json(round2(rec.objective_ms))},
          {"memory_cap", rec.memory_cap ? json(*rec.memory_cap) : json(nullptr)},
          {"workload", rec.workload.empty() ? json(nullptr) : json(rec.workload)},
          {"reasons", rec.reasons},
          {"spec_lines", rec.spec_lines}}},
    };
    return out.dump(2) + "\n";
}

std::string render_text(const TuneReport& r) {
    std::string out;
    out += fmt::format("{:>7}  {:>10}  {:>8}  {:>8}  {:>8}  {:>6}  {:>5}  {:>9}\n", "workers", "req/s", "p50 ms",
                       "p90 ms", "p99 ms", "errors", "CPUs", "PSS/worker");
    for (const auto& c : r.counts) {
        const TrialResult* t = c.at_sustainable();
        const std::string pss = c.pss_per_worker > 0 ? fmt::format("{:.0f} MiB", static_cast<double>(c.pss_per_worker) / 1048576.0) : "-";
        if (t == nullptr) {
            out += fmt::format("{:>7}  {:>10}  {:>8}  {:>8}  {:>8}  {:>6}  {:>5}  {:>9}\n", c.workers, "none met", "-",
                               "-", "-", "-", "-", pss);
            continue;
        }
        out += fmt::format("{:>7}  {:>10}  {:>8.1f}  {:>8.1f}  {:>8.1f}  {:>6}  {:>5.1f}  {:>9}{}\n", c.workers,
                           thousands(*c.sustainable_rate), t->p50_ms, t->p90_ms, t->p99_ms, t->errors, t->cpu_cores,
                           pss, c.workers == r.recommendation.workers ? "  <-" : "");
    }
    out += fmt::format("\n(req/s: the highest rate offered at which {} with under {}% errors)\n",
                       r.objective.describe(), r.objective.max_error_ratio * 100);
    if (!r.complete) out += fmt::format("\nIncomplete: {}; the results above are what was measured.\n", r.stopped_because);
    const auto& rec = r.recommendation;
    if (rec.workers == 0) {
        out += "\nNo recommendation:\n";
    } else {
        out += fmt::format("\nRecommendation: {} worker{}\n", rec.workers, rec.workers == 1 ? "" : "s");
    }
    for (const auto& reason : rec.reasons) out += "  - " + reason + "\n";
    if (!rec.spec_lines.empty()) {
        out += "\nIn the spec:\n";
        for (const auto& l : rec.spec_lines) out += "  " + l + "\n";
    }
    return out;
}

}  // namespace workerd::tune
