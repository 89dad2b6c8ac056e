#pragma once

// Everything `workerd tune` measured and concluded, and its three renderings: the text a person
// reads at the end of a run, the JSON for scripts (--json, a stable schema documented in
// docs/tuning.md) and the HTML report (--report FILE.html: one self-contained file, inline SVG).

#include <string>
#include <vector>

#include "daemon/core/tune.hpp"

namespace workerd::tune {

/// One path the load goes to, with its share of the requests.
struct TargetSummary {
    std::string method = "GET";
    std::string path = "/";
    int weight = 1;
};

struct TuneReport {
    std::string spec_file;                ///< absolute
    std::vector<TargetSummary> targets;
    TuneObjective objective;
    TuneBudget budget;
    double step_seconds = 0;              ///< each load step's length
    std::vector<CountResult> counts;      ///< in the order measured
    Recommendation recommendation;
    bool complete = true;                 ///< false: interrupted (Ctrl-C) or failed part-way
    std::string stopped_because;          ///< when not complete
    double elapsed_seconds = 0;
    std::string started_at;               ///< UTC, ISO 8601
};

/// The report as text: a table of the counts, then the recommendation, its reasons and the spec
/// lines.
std::string render_text(const TuneReport& report);

/// The report as JSON (docs/tuning.md, "JSON output").
std::string render_json(const TuneReport& report);

/// The report as one self-contained HTML page: sustainable rate vs workers, the objective's
/// latency vs offered rate for each count, memory per worker, the objective as a line; inline SVG,
/// no script, nothing fetched.
std::string render_html(const TuneReport& report);

}  // namespace workerd::tune
