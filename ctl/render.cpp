#include "ctl/render.hpp"

#include <algorithm>
#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace workerctl {

using json = nlohmann::json;

std::string human_duration(double s) {
    if (s < 10) return fmt::format("{:.1f}s", s);
    const long t = static_cast<long>(s);
    if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
    if (t < 86400) return fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60);
    return fmt::format("{}d{:02}h", t / 86400, t % 86400 / 3600);
}

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    return u == 0 ? fmt::format("{:.0f}B", b) : fmt::format("{:.1f}{}", b, units[u]);
}

namespace {

std::string ms_text(const json& v) {
    if (!v.is_number()) return "-";
    const double ms = v.get<double>();
    return ms < 10 ? fmt::format("{:.2f}ms", ms) : ms < 1000 ? fmt::format("{:.0f}ms", ms) : fmt::format("{:.1f}s", ms / 1000);
}

std::string text_or_dash(const json& v) {
    if (v.is_null()) return "-";
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
}

// Left-aligned columns, each as wide as its widest cell.
std::string table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> width;
    for (const auto& r : rows) {
        width.resize(std::max(width.size(), r.size()));
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    }
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
        }
        out += line + "\n";
    }
    return out;
}

std::string header(const json& s) {
    std::string out = fmt::format("workerd {}, pid {}, up {}, generation {}, {}\nspec {}\n",
                                  s.value("version", "?"), s.value("pid", 0),
                                  human_duration(s.value("uptime_s", 0.0)), s.value("generation", 0),
                                  s.value("state", "?"), s.value("spec", "?"));
    out += fmt::format("workers: {} ready of {} desired{}\n", s.value("ready", 0), s.value("desired", 0),
                       s.value("rolling", false) ? " (rolling restart in progress)" : "");
    const json queue = s.value("queue", json());
    if (queue.is_object() && (queue.value("measured", 0) > 0 || queue.value("shed", 0) > 0)) {
        out += fmt::format("queue time: p50 {}, p99 {} ({} requests measured), {} shed\n",
                           ms_text(queue.value("p50_ms", json())), ms_text(queue.value("p99_ms", json())),
                           queue.value("measured", 0), queue.value("shed", 0));
    }
    for (const auto& z : s.value("zygotes", json::array())) {
        out += fmt::format("zygote: generation {}, pid {}, {}, up {}, RSS {}, PSS {}\n", z.value("generation", 0),
                           z.value("pid", 0), z.value("state", "?"), human_duration(z.value("uptime_s", 0.0)),
                           human_bytes(z.value("rss_bytes", 0.0)), human_bytes(z.value("pss_bytes", 0.0)));
    }
    const json memory = s.value("memory", json());
    if (memory.is_object() && memory.value("pss_bytes", 0.0) > 0) {
        const json budget = memory.value("budget_workers", json());
        out += fmt::format("memory: {} PSS in all (shared pages counted once), {} private{}\n",
                           human_bytes(memory.value("pss_bytes", 0.0)), human_bytes(memory.value("private_bytes", 0.0)),
                           budget.is_number() ? fmt::format("; the budget fits {} workers", budget.get<int>()) : "");
    }
    for (const auto& w : s.value("waiting", json::array())) {
        out += fmt::format("slot {}: no worker, restarting in {} (last exit: {}){}\n", w.value("slot", 0),
                           human_duration(w.value("restart_in_s", 0.0)), text_or_dash(w.value("last_exit", json())),
                           w.value("flapping", false) ? ", flapping" : "");
    }
    return out;
}

std::string worker_table(const json& s) {
    std::vector<std::vector<std::string>> rows{{"SLOT", "PID", "GEN", "STATE", "UPTIME", "RESTARTS", "LAST EXIT",
                                                "RSS", "PRIVATE", "CPU%", "REQUESTS", "INFLIGHT", "BEAT", "P50", "P99", "QUEUE P99", "SHED"}};
    auto workers = s.value("workers", json::array());
    std::sort(workers.begin(), workers.end(), [](const json& a, const json& b) {
        return std::make_pair(a.value("slot", 0), a.value("pid", 0)) < std::make_pair(b.value("slot", 0), b.value("pid", 0));
    });
    for (const auto& w : workers) {
        const json beat = w.value("heartbeat_age_s", json());
        rows.push_back({std::to_string(w.value("slot", 0)), std::to_string(w.value("pid", 0)),
                        std::to_string(w.value("generation", 0)), w.value("state", "?"),
                        human_duration(w.value("uptime_s", 0.0)), std::to_string(w.value("restarts", 0)),
                        text_or_dash(w.value("last_exit", json())), human_bytes(w.value("rss_bytes", 0.0)),
                        w.value("private_bytes", 0.0) > 0 ? human_bytes(w.value("private_bytes", 0.0)) : "-",
                        fmt::format("{:.1f}", w.value("cpu_percent", 0.0)), text_or_dash(w.value("requests", json())),
                        text_or_dash(w.value("inflight", json())),
                        beat.is_number() ? human_duration(beat.get<double>()) : "-",
                        ms_text(w.value("p50_ms", json())), ms_text(w.value("p99_ms", json())),
                        ms_text(w.value("queue_p99_ms", json())), text_or_dash(w.value("shed", json()))});
    }
    return table(rows);
}

double total_requests(const json& s) {
    double n = 0;
    for (const auto& w : s.value("workers", json::array())) {
        if (w.value("requests", json()).is_number()) n += w["requests"].get<double>();
    }
    return n;
}

}  // namespace

std::string render_status(const json& status) { return header(status) + "\n" + worker_table(status); }

std::string render_top(const json& status, const json* previous, double interval_s, int rows) {
    std::string out = header(status);
    double rss = 0, cpu = 0, inflight = 0;
    for (const auto& w : status.value("workers", json::array())) {
        rss += w.value("rss_bytes", 0.0);
        cpu += w.value("cpu_percent", 0.0);
        if (w.value("inflight", json()).is_number()) inflight += w["inflight"].get<double>();
    }
    const std::string rate = previous != nullptr && interval_s > 0
                                 ? fmt::format("{:.0f}", std::max(0.0, total_requests(status) - total_requests(*previous)) / interval_s)
                                 : "-";
    out += fmt::format("totals: {} requests, {} req/s, {} in flight, {:.1f}% CPU, {} RSS\n\n",
                       static_cast<long>(total_requests(status)), rate, static_cast<long>(inflight), cpu, human_bytes(rss));
    out += worker_table(status);
    // Cut to the terminal's height, keeping the last line for the hint.
    std::istringstream in(out);
    std::string line, cut;
    int n = 0;
    while (n < rows - 1 && std::getline(in, line)) {
        cut += line + "\x1b[K\n";  // clear the rest of each line
        ++n;
    }
    return cut + "\x1b[J" + "q to quit";
}

}  // namespace workerctl
