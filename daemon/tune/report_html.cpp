#include "daemon/tune/tune_report.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace workerd::tune {

namespace {

// Every chart has the same frame: the plot area inside margins, the legend in the right one.
constexpr double kWidth = 860, kHeight = 380;
constexpr double kLeft = 72, kRight = 690, kTop = 24, kBottom = 328;
constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kLatencyClamp = 4;  ///< the latency axis stops at 4 × the objective

// Readable on white, no red: red is for limits (the objective, the memory budget).
constexpr std::string_view kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                                         "#e377c2", "#17becf", "#7f7f7f", "#b8860b"};
constexpr std::string_view kLimit = "#d62728";
constexpr std::string_view kRecommended = "#1a9641";

template <typename... Args>
void put(std::string& out, fmt::format_string<Args...> format, Args&&... args) {
    fmt::format_to(std::back_inserter(out), format, std::forward<Args>(args)...);
}

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

/// Measurements come from outside: a NaN or an infinity must not reach the SVG.
double finite(double v) {
    return std::isfinite(v) ? v : 0.0;
}

/// "1,840" (req/s).
std::string rate_text(double v) {
    return thousands(finite(v));
}

std::string memory_text(double mib) {
    return mib < 10240 ? fmt::format("{:.0f} MiB", mib) : fmt::format("{:.1f} GiB", mib / 1024);
}

std::string ms(double v) {
    return fmt::format("{:.1f}", finite(v));
}

std::string percent(double ratio) {
    return fmt::format("{:g}%", finite(ratio) * 100);
}

std::string percentile_name(double p) {
    return fmt::format("p{:g}", finite(p));
}

std::string duration(double seconds) {
    const auto s = static_cast<long long>(std::llround(finite(seconds)));
    if (s < 60) return fmt::format("{} s", s);
    return fmt::format("{} min {} s", s / 60, s % 60);
}

/// 1, 2 or 5 × 10^k: the step that cuts `span` into about `ticks` pieces.
double nice_step(double span, int ticks) {
    const double raw = span / ticks;
    const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    const double norm = raw / magnitude;
    return (norm < 1.5 ? 1 : norm < 3.5 ? 2 : norm < 7.5 ? 5 : 10) * magnitude;
}

/// A linear scale from data values [lo, hi], rounded out to whole ticks, onto pixels [from, to].
struct Axis {
    double lo = 0, hi = 1, step = 1;
    double from = 0, to = 1;

    double at(double v) const { return from + (finite(v) - lo) / (hi - lo) * (to - from); }
    double clamped_at(double v) const { return at(std::clamp(finite(v), lo, hi)); }
    std::string label(double v) const {
        if (step >= 1) return rate_text(v);
        const int decimals = static_cast<int>(std::ceil(-std::log10(step)));
        return fmt::format("{:.{}f}", v, decimals);
    }
};

Axis make_axis(double lo, double hi, double from, double to, double min_step = 0) {
    lo = finite(lo);
    hi = finite(hi);
    if (hi <= lo) hi = lo + std::max(1.0, min_step);
    Axis a;
    a.step = std::max(nice_step(hi - lo, 6), min_step);
    a.lo = std::floor(lo / a.step) * a.step;
    a.hi = std::ceil(hi / a.step) * a.step;
    a.from = from;
    a.to = to;
    return a;
}

using Points = std::vector<std::pair<double, double>>;

/// "M x y L x y …" through pixel points.
std::string path_through(const Points& points) {
    std::string d;
    for (const auto& [x, y] : points) put(d, "{}{:.1f} {:.1f}", d.empty() ? "M" : " L", x, y);
    return d;
}

std::string open_chart(std::string_view id, std::string_view title) {
    return fmt::format(
        "<figure>\n<figcaption>{0}</figcaption>\n<svg class=\"chart\" id=\"{1}\" viewBox=\"0 0 {2} "
        "{3}\" role=\"img\" aria-label=\"{0}\" xmlns=\"http://www.w3.org/2000/svg\">\n",
        html_escape(title), id, kWidth, kHeight);
}

/// Grid, ticks, tick labels and the axis titles.
void draw_frame(std::string& svg, const Axis& x, const Axis& y, std::string_view x_title,
                std::string_view y_title) {
    for (double v = x.lo; v <= x.hi + x.step / 2; v += x.step) {
        put(svg, "<line class=\"grid\" x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\"/>",
            x.at(v), kTop, kBottom + 5);
        put(svg, "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x.at(v),
            kBottom + 19, x.label(v));
    }
    for (double v = y.lo; v <= y.hi + y.step / 2; v += y.step) {
        put(svg, "<line class=\"grid\" x1=\"{1}\" y1=\"{0:.1f}\" x2=\"{2}\" y2=\"{0:.1f}\"/>",
            y.at(v), kLeft - 5, kRight);
        put(svg, "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", kLeft - 8,
            y.at(v) + 4, y.label(v));
    }
    put(svg, "<path class=\"axis\" d=\"M{0} {1} V{2} H{3}\"/>\n", kLeft, kTop, kBottom, kRight);
    put(svg, "<text class=\"title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        (kLeft + kRight) / 2, kBottom + 42, html_escape(x_title));
    put(svg,
        "<text class=\"title\" transform=\"translate(18 {}) rotate(-90)\" "
        "text-anchor=\"middle\">{}</text>\n",
        (kTop + kBottom) / 2, html_escape(y_title));
}

/// A dashed horizontal line across the plot, its label above its right end. Labels go in
/// `labels`, drawn last, so that their white halo keeps them readable over the series.
void draw_level(std::string& svg, std::string& labels, double y, std::string_view colour,
                std::string_view label) {
    put(svg, "<path class=\"level\" stroke=\"{}\" d=\"M{} {:.1f} H{}\"/>\n", colour, kLeft, y,
        kRight);
    put(labels,
        "<text class=\"label\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" fill=\"{}\">{}</text>\n",
        kRight - 4, y - 5, colour, html_escape(label));
}

void draw_note(std::string& svg, std::string_view text) {
    put(svg, "<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        (kLeft + kRight) / 2, (kTop + kBottom) / 2, html_escape(text));
}

std::string_view colour_of(std::size_t i) {
    return kPalette[i % std::size(kPalette)];
}

int max_workers(const TuneReport& report) {
    int most = 1;
    for (const CountResult& c : report.counts) most = std::max(most, c.workers);
    return most;
}

/// The count's sustainable rate, if it has one that can be drawn.
std::optional<double> sustained(const CountResult& c) {
    if (c.sustainable_rate && std::isfinite(*c.sustainable_rate)) return c.sustainable_rate;
    return std::nullopt;
}

/// The counts from the fewest workers to the most (they are in the order measured).
std::vector<const CountResult*> by_workers(const TuneReport& report) {
    std::vector<const CountResult*> counts;
    for (const CountResult& c : report.counts) counts.push_back(&c);
    std::sort(counts.begin(), counts.end(),
              [](const CountResult* a, const CountResult* b) { return a->workers < b->workers; });
    return counts;
}

/// A legend row in the right margin: `mark` (SVG drawn around x, y) then its text.
void draw_key(std::string& svg, double y, const std::string& mark, std::string_view text) {
    put(svg, "{}<text x=\"{}\" y=\"{:.1f}\">{}</text>\n", mark, kRight + 42, y + 4,
        html_escape(text));
}

// ---- the charts ------------------------------------------------------------------------------
// Data lines carry class="series" (legend samples do not): tests/support/check_report.py counts
// them to tell a chart that drew from an empty frame.

std::string rate_chart(const TuneReport& report) {
    const Recommendation& rec = report.recommendation;
    double best = 0;
    for (const CountResult& c : report.counts) best = std::max(best, sustained(c).value_or(0));
    int x_hi = max_workers(report);
    // A memory cap far beyond the counts measured would squash them: it is then told in words.
    const bool cap_shown = rec.memory_cap && *rec.memory_cap <= 2 * x_hi;
    if (cap_shown) x_hi = std::max(x_hi, *rec.memory_cap);
    const Axis x = make_axis(0, x_hi + 1, kLeft, kRight, 1);
    const Axis y = make_axis(0, best * 1.1, kBottom, kTop);

    std::string svg = open_chart("chart-rate", "Sustainable rate by worker count");
    std::string labels;
    draw_frame(svg, x, y, "workers", "sustainable rate (req/s)");
    if (best > 0) {
        draw_level(svg, labels, y.at(best * (1 - report.budget.tolerance)), "#555",
                   fmt::format("within {} of best", percent(report.budget.tolerance)));
    }
    if (cap_shown) {
        put(svg, "<path class=\"level\" stroke=\"#8c564b\" d=\"M{:.1f} {} V{}\"/>\n",
            x.at(*rec.memory_cap), kBottom, kTop);
        put(labels,
            "<text class=\"label\" x=\"{:.1f}\" y=\"{}\" fill=\"#8c564b\">memory budget</text>\n",
            x.at(*rec.memory_cap) + 4, kTop + 12);
    }
    const std::vector<const CountResult*> counts = by_workers(report);
    Points line;
    for (const CountResult* c : counts) {
        if (sustained(*c)) line.emplace_back(x.at(c->workers), y.at(*sustained(*c)));
    }
    if (!line.empty())
        put(svg, "<path class=\"series\" stroke=\"{}\" d=\"{}\"/>\n", kPalette[0],
            path_through(line));
    for (const CountResult* c : counts) {
        const double cx = x.at(c->workers);
        const std::optional<double> rate = sustained(*c);
        if (!rate) {  // a cross on the axis: measured, but no rate met the objective
            put(svg,
                "<path class=\"miss\" d=\"M{0:.1f} {1:.1f} l8 -8 M{0:.1f} {2:.1f} l8 8\">"
                "<title>{3} workers: no rate met the objective</title></path>\n",
                cx - 4, kBottom + 4, kBottom - 4, c->workers);
            continue;
        }
        const bool chosen = c->workers == rec.workers;
        put(svg,
            "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\">"
            "<title>{} workers: {} req/s</title></circle>\n",
            cx, y.at(*rate), chosen ? 8 : 4.5, chosen ? kRecommended : kPalette[0], c->workers,
            rate_text(*rate));
        if (chosen) {
            put(labels,
                "<text class=\"title label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" "
                "fill=\"{}\">recommended: {}</text>\n",
                cx, y.at(*rate) + 24, kRecommended, c->workers);
        }
    }
    if (report.counts.empty())
        draw_note(svg, "no worker count measured");
    else if (line.empty())
        draw_note(svg, "no worker count met the objective");
    if (rec.memory_cap && !cap_shown) {
        put(svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#8c564b\">"
            "memory budget: {} workers (off the chart)</text>\n",
            kRight, kTop - 8, *rec.memory_cap);
    }
    return svg + labels + "</svg>\n</figure>\n";
}

/// One count's open-loop steps on the latency chart: a line by offered rate, a filled circle
/// for a step that passed, a hollow one for a step that failed, a triangle on the top edge for
/// one above the axis. Returns whether anything was drawn.
bool draw_latency_series(std::string& svg, const Axis& x, const Axis& y, const CountResult& c,
                         std::string_view colour, std::string_view dash, std::string_view pct) {
    std::vector<const TrialResult*> trials;
    for (const TrialResult& t : c.trials) {
        if (t.kind == TrialResult::Kind::open) trials.push_back(&t);
    }
    if (trials.empty()) return false;
    std::sort(trials.begin(), trials.end(), [](const TrialResult* a, const TrialResult* b) {
        return a->offered_rate < b->offered_rate;
    });
    Points line;
    for (const TrialResult* t : trials) {
        line.emplace_back(x.at(t->offered_rate), y.clamped_at(t->objective_ms));
    }
    put(svg, "<path class=\"series\" stroke=\"{}\"{} d=\"{}\"/>\n", colour, dash,
        path_through(line));
    for (std::size_t k = 0; k < trials.size(); ++k) {
        const TrialResult& t = *trials[k];
        const auto [px, py] = line[k];
        const bool above = finite(t.objective_ms) > y.hi;
        const std::string title = html_escape(fmt::format(
            "{} workers at {} req/s: {} {} ms, {} errors{}", c.workers, rate_text(t.offered_rate),
            pct, ms(t.objective_ms), t.errors, above ? " (above the axis)" : ""));
        if (above) {
            put(svg,
                "<path d=\"M{:.1f} {:.1f} l6 10 h-12 z\" fill=\"{}\"><title>{}</title></path>\n",
                px, py - 2, colour, title);
        } else {
            put(svg,
                "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" stroke=\"{}\" fill=\"{}\">"
                "<title>{}</title></circle>\n",
                px, py, colour, t.passed ? colour : "#fff", title);
        }
    }
    return true;
}

std::string latency_chart(const TuneReport& report) {
    const double objective = finite(report.objective.latency_ms);
    double x_hi = 0, y_seen = 0;
    for (const CountResult& c : report.counts) {
        for (const TrialResult& t : c.trials) {
            if (t.kind != TrialResult::Kind::open) continue;
            x_hi = std::max(x_hi, finite(t.offered_rate));
            y_seen = std::max(y_seen, finite(t.objective_ms));
        }
    }
    // One huge failed step (5 s against 200 ms) would flatten the rest: the axis stops at a few
    // times the objective and such points sit on its top edge, marked.
    const double y_top = objective > 0 ? std::min(kLatencyClamp * objective,
                                                  std::max(objective * 1.25, y_seen * 1.1))
                                       : y_seen * 1.1;
    const Axis x = make_axis(0, x_hi * 1.05, kLeft, kRight);
    const Axis y = make_axis(0, y_top, kBottom, kTop);
    const std::string pct = percentile_name(report.objective.percentile);

    std::string svg = open_chart("chart-latency", fmt::format("{} latency by offered rate", pct));
    std::string labels;
    draw_frame(svg, x, y, "offered rate (req/s)", fmt::format("{} latency (ms)", pct));
    if (objective > 0) {
        draw_level(svg, labels, y.at(objective), kLimit,
                   "objective " + report.objective.describe());
    }
    const std::vector<const CountResult*> counts = by_workers(report);
    const double row =
        std::min(18.0, (kHeight - kTop - 40) / static_cast<double>(counts.size() + 3));
    double key_y = kTop + 6;
    bool any = false;
    for (std::size_t i = 0; i < counts.size(); ++i, key_y += row) {
        const std::string_view colour = colour_of(i);
        // Past the palette's length the colours come round again, dashed.
        const std::string_view dash = i < std::size(kPalette) ? "" : " stroke-dasharray=\"6 3\"";
        any = draw_latency_series(svg, x, y, *counts[i], colour, dash, pct) || any;
        draw_key(
            svg, key_y,
            fmt::format("<path class=\"key-line\" stroke=\"{}\"{} d=\"M{} {:.1f} h22\"/>", colour,
                        dash, kRight + 14, key_y),
            fmt::format("{} worker{}", counts[i]->workers, counts[i]->workers == 1 ? "" : "s"));
    }
    const double key_x = kRight + 25;
    key_y += 6;
    draw_key(svg, key_y,
             fmt::format("<circle class=\"key\" cx=\"{}\" cy=\"{:.1f}\" r=\"4\"/>", key_x, key_y),
             "passed");
    key_y += row;
    draw_key(
        svg, key_y,
        fmt::format("<circle class=\"key hollow\" cx=\"{}\" cy=\"{:.1f}\" r=\"4\"/>", key_x, key_y),
        "failed");
    key_y += row;
    draw_key(svg, key_y,
             fmt::format("<path class=\"key\" d=\"M{} {:.1f} l6 10 h-12 z\"/>", key_x, key_y - 6),
             "above the axis");
    if (!any) draw_note(svg, "no open-loop step measured");
    return svg + labels + "</svg>\n</figure>\n";
}

std::string memory_chart(const TuneReport& report) {
    double total_hi = 0;
    for (const CountResult& c : report.counts) {
        total_hi = std::max(total_hi, static_cast<double>(c.pss_per_worker) * c.workers / kMiB);
    }
    if (total_hi <= 0)
        return "<p class=\"note\">No memory measured: no chart of memory per worker.</p>\n";
    const TuneBudget& budget = report.budget;
    const double budget_mib =
        budget.memory_limit
            ? (1 - budget.memory_margin) * static_cast<double>(*budget.memory_limit) / kMiB
            : 0;
    // A budget far above what the fleet uses would squash the bars: it is then told in words.
    const bool budget_shown = budget_mib > 0 && budget_mib <= 3 * total_hi;
    const Axis x = make_axis(0, max_workers(report) + 1, kLeft, kRight, 1);
    const Axis y =
        make_axis(0, std::max(total_hi, budget_shown ? budget_mib : 0) * 1.1, kBottom, kTop);

    std::string svg = open_chart("chart-memory", "Memory (PSS) by worker count");
    std::string labels;
    draw_frame(svg, x, y, "workers", "PSS (MiB)");
    const double bar = std::min(28.0, (x.at(1) - x.at(0)) * 0.6);
    Points totals;
    for (const CountResult* c : by_workers(report)) {
        if (c->pss_per_worker == 0) continue;  // not measured
        const double per = static_cast<double>(c->pss_per_worker) / kMiB;
        put(svg,
            "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\">"
            "<title>{} workers: {:.1f} MiB each</title></rect>\n",
            x.at(c->workers) - bar / 2, y.at(per), bar, kBottom - y.at(per), kPalette[0],
            c->workers, per);
        totals.emplace_back(x.at(c->workers), y.at(per * c->workers));
    }
    put(svg, "<path class=\"series\" stroke=\"{}\" d=\"{}\"/>\n", kPalette[1],
        path_through(totals));
    for (const auto& [px, py] : totals)
        put(svg, "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/>\n", px, py,
            kPalette[1]);
    if (budget_shown) {
        draw_level(svg, labels, y.at(budget_mib), kLimit,
                   "memory budget " + memory_text(budget_mib) + " (total)");
    } else if (budget_mib > 0) {
        put(svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{}\">"
            "memory budget {} (above the chart)</text>\n",
            kRight, kTop - 8, kLimit, memory_text(budget_mib));
    }
    draw_key(svg, kTop + 6,
             fmt::format("<rect x=\"{}\" y=\"{}\" width=\"22\" height=\"12\" fill=\"{}\"/>",
                         kRight + 14, kTop, kPalette[0]),
             "per worker");
    draw_key(svg, kTop + 24,
             fmt::format("<path class=\"key-line\" stroke=\"{}\" d=\"M{} {} h22\"/>", kPalette[1],
                         kRight + 14, kTop + 24),
             "total");
    return svg + labels + "</svg>\n</figure>\n";
}

// ---- the text ----------------------------------------------------------------------------------

std::string header(const TuneReport& report) {
    std::string out = fmt::format("<h1>workerd tune: {}</h1>\n<dl>\n<dt>targets</dt><dd>",
                                  html_escape(report.spec_file));
    for (std::size_t i = 0; i < report.targets.size(); ++i) {
        const TargetSummary& t = report.targets[i];
        put(out, "{}<code>{} {}</code> ×{}", i > 0 ? ", " : "", html_escape(t.method),
            html_escape(t.path), t.weight);
    }
    put(out, "</dd>\n<dt>objective</dt><dd>{}, errors under {}</dd>\n",
        html_escape(report.objective.describe()), percent(report.objective.max_error_ratio));
    put(out, "<dt>step length</dt><dd>{}</dd>\n<dt>run</dt><dd>", duration(report.step_seconds));
    if (report.complete)
        out += "complete";
    else
        put(out, "<strong class=\"warn\">interrupted: {}</strong>",
            html_escape(report.stopped_because));
    put(out, "; started {}, took {}</dd>\n</dl>\n", html_escape(report.started_at),
        duration(report.elapsed_seconds));
    return out;
}

std::string recommendation_box(const TuneReport& report) {
    const Recommendation& rec = report.recommendation;
    std::string out =
        fmt::format("<section class=\"recommendation{}\">\n", rec.workers > 0 ? "" : " none");
    if (rec.workers > 0) {
        put(out, "<h2>{} worker{}</h2>\n<p>sustains {} req/s with {} {} ms", rec.workers,
            rec.workers == 1 ? "" : "s", rate_text(rec.rate),
            percentile_name(report.objective.percentile), ms(rec.objective_ms));
        if (!rec.workload.empty()) put(out, "; workload: {}", html_escape(rec.workload));
        out += "</p>\n";
    } else {
        put(out,
            "<h2>No worker count met the objective</h2>\n<p>none kept {} at any rate tried.</p>\n",
            html_escape(report.objective.describe()));
    }
    if (!rec.reasons.empty()) {
        out += "<ul>\n";
        for (const std::string& r : rec.reasons) put(out, "<li>{}</li>\n", html_escape(r));
        out += "</ul>\n";
    }
    if (!rec.spec_lines.empty()) {
        out += "<pre>";
        for (const std::string& line : rec.spec_lines) put(out, "{}\n", html_escape(line));
        out += "</pre>\n";
    }
    return out + "</section>\n";
}

std::string trial_table(const TuneReport& report) {
    std::string out =
        "<table>\n<thead><tr><th>workers</th><th>kind</th><th>offered (req/s)</th>"
        "<th>rate (req/s)</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>errors</th>"
        "<th>CPU cores</th><th>passed</th></tr></thead>\n<tbody>\n";
    for (const CountResult& c : report.counts) {
        for (std::size_t i = 0; i < c.trials.size(); ++i) {
            const TrialResult& t = c.trials[i];
            const bool open = t.kind == TrialResult::Kind::open;
            const std::string_view verdict = !open ? "—" : t.passed ? "yes" : "no";
            std::string errors = std::to_string(t.errors);
            if (t.errors > 0) put(errors, " ({:.2g}%)", finite(t.error_ratio()) * 100);
            const std::string cells[] = {std::to_string(c.workers),
                                         open ? "open" : "probe",
                                         open ? rate_text(t.offered_rate) : "—",
                                         rate_text(t.rate),
                                         ms(t.p50_ms),
                                         ms(t.p90_ms),
                                         ms(t.p99_ms),
                                         errors,
                                         fmt::format("{:.2f}", finite(t.cpu_cores))};
            out += c.sustainable_trial == i ? "<tr class=\"sustainable\">" : "<tr>";
            for (const std::string& cell : cells) put(out, "<td>{}</td>", cell);
            put(out, "<td class=\"{}\">{}</td></tr>\n", verdict == "no" ? "no" : "", verdict);
        }
    }
    if (report.counts.empty()) out += "<tr><td colspan=\"10\">no measurements</td></tr>\n";
    return out +
           "</tbody>\n</table>\n<p class=\"note\">In bold: the highest rate each count "
           "sustained.</p>\n";
}

constexpr std::string_view kStyle = R"(
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 980px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { color: #666; } dd { margin: 0; }
.warn { color: #b00; }
.recommendation { border: 2px solid #1a9641; background: #f3faf3; border-radius: 6px;
                  padding: .2em 1.2em; margin: 1.5em 0; }
.recommendation h2 { margin: .4em 0 .2em; }
.recommendation.none { border-color: #d62728; background: #fdf3f3; }
pre { background: #fff; border: 1px solid #ccc; padding: .6em; overflow-x: auto; }
figure { margin: 2em 0; } figcaption { font-weight: 600; margin-bottom: .3em; }
svg.chart { width: 100%; height: auto; font: 12px system-ui, sans-serif; }
.chart text:not([fill]) { fill: #333; } .chart .title { font-weight: 600; }
.chart .note { fill: #888; font-size: 16px; }
.grid { stroke: #e8e8e8; } .axis { stroke: #444; fill: none; }
.series, .key-line { fill: none; stroke-width: 2.2; }
.level { fill: none; stroke-width: 1.6; stroke-dasharray: 7 4; }
.miss { stroke: #999; stroke-width: 2; }
.key { stroke: #444; fill: #444; } .key.hollow { fill: #fff; }
.chart text.label { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
.chart circle { stroke-width: 2; }
.note { color: #666; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .6em; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f4f4f4; } .sustainable { font-weight: 700; } td.no { color: #b00; }
)";

}  // namespace

std::string render_html(const TuneReport& report) {
    std::string out = fmt::format(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>workerd tune: {}</title>\n<style>{}</style>\n</head>\n<body>\n",
        html_escape(report.spec_file), kStyle);
    out += header(report);
    out += recommendation_box(report);
    out += rate_chart(report);
    out += latency_chart(report);
    out += memory_chart(report);
    out += "<h2>Every step</h2>\n";
    out += trial_table(report);
    return out + "</body>\n</html>\n";
}

}  // namespace workerd::tune
