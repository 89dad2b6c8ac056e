// /metrics, /healthz and /readyz (docs/metrics.md). Everything is read from the Arbiter's own
// state on its loop at scrape time and serialized with prometheus-cpp's text serializer.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "daemon/arbiter.hpp"
#include "daemon/listen_queue.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/version.hpp"

namespace workerd {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Builds metric families in order of first use.
class Families {
public:
    MetricFamily& family(const std::string& name, const std::string& help, MetricType type) {
        auto it = index_.find(name);
        if (it != index_.end()) return families_[it->second];
        index_[name] = families_.size();
        families_.push_back(MetricFamily{name, help, type, {}});
        return families_.back();
    }
    void gauge(const std::string& name, const std::string& help, double value,
               std::vector<ClientMetric::Label> labels = {}) {
        ClientMetric m;
        m.label = std::move(labels);
        m.gauge.value = value;
        family(name, help, MetricType::Gauge).metric.push_back(std::move(m));
    }
    void counter(const std::string& name, const std::string& help, double value,
                 std::vector<ClientMetric::Label> labels = {}) {
        ClientMetric m;
        m.label = std::move(labels);
        m.counter.value = value;
        family(name, help, MetricType::Counter).metric.push_back(std::move(m));
    }
    void histogram(const std::string& name, const std::string& help, const RequestStats& stats) {
        ClientMetric m;
        std::uint64_t cumulative = 0;
        for (int k = 0; k < kLatencyBuckets; ++k) {
            cumulative += stats.buckets[k];
            m.histogram.bucket.push_back({cumulative, latency_bound_ms(k) / 1000.0});
        }
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = static_cast<double>(stats.sum_us) / 1e6;
        family(name, help, MetricType::Histogram).metric.push_back(std::move(m));
    }
    std::string text() const { return prometheus::TextSerializer().Serialize(families_); }

private:
    std::vector<MetricFamily> families_;
    std::map<std::string, std::size_t> index_;
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The daemon's own /proc/self numbers, the way client libraries name them.
void process_metrics(Families& f) {
    rusage self{};
    ::getrusage(RUSAGE_SELF, &self);
    f.counter("process_cpu_seconds_total", "CPU time of the workerd daemon process (user + system).",
              static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                  static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6);
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    f.gauge("process_resident_memory_bytes", "Resident memory of the workerd daemon process.",
            static_cast<double>(resident * ::sysconf(_SC_PAGESIZE)));
    f.gauge("process_virtual_memory_bytes", "Virtual memory of the workerd daemon process.",
            static_cast<double>(size * ::sysconf(_SC_PAGESIZE)));
    int fds = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (::readdir(d) != nullptr) ++fds;
        ::closedir(d);
        fds -= 3;  // ".", ".." and the directory's own descriptor
    }
    f.gauge("process_open_fds", "Open file descriptors of the workerd daemon process.", fds);
    // Start time: boot time + the process's start in clock ticks.
    std::ifstream stat("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    long long start_ticks = 0;
    for (int i = 3; i <= 22 && fields >> field; ++i) {
        if (i == 22) start_ticks = std::stoll(field);
    }
    std::ifstream boot("/proc/stat");
    double btime = 0;
    for (std::string key; boot >> key;) {
        if (key == "btime") {
            boot >> btime;
            break;
        }
    }
    f.gauge("process_start_time_seconds", "Start time of the workerd daemon process since the Unix epoch.",
            btime + static_cast<double>(start_ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

}  // namespace

MetricsResponse Arbiter::metrics_endpoint(const std::string& path) {
    if (path == "/metrics") {
        return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(Clock::now())};
    }
    if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};  // answered by the loop itself
    if (path == "/readyz") {
        const int ready = fleet_.ready();
        const bool running = fleet_.mode() == core::Mode::running;
        const bool ok = running && ready >= spec().metrics.min_ready;
        std::string why;
        if (!running) {
            why = ", stopping";
        } else if (!ok) {
            // What keeps the slots without a worker empty: a program that cannot start, say.
            for (const auto& [slot, s] : fleet_.slots()) {
                if (s.active && fleet_.current_in(slot) == nullptr && s.last_end) {
                    why = fmt::format("; worker {}: {}", slot, s.last_end->to_string());
                    break;
                }
            }
        }
        return {ok ? 200 : 503, "text/plain; charset=utf-8",
                fmt::format("{}: {} of {} workers ready (min_ready {}){}\n", ok ? "ready" : "not ready", ready,
                            fleet_.desired(), spec().metrics.min_ready, why)};
    }
    return {404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n"};
}

std::string Arbiter::metrics_text(Clock::time_point now) {
    Families f;
    f.gauge("workerd_build_info", "workerd's version; always 1.", 1, {{"version", kVersion}});
    f.gauge("workerd_uptime_seconds", "Time since the daemon started.", seconds(now - fleet_.started_at()));

    // The fleet.
    std::map<std::string, int> by_state{{"booting", 0}, {"ready", 0}, {"draining", 0}};
    for (const auto& [id, w] : fleet_.workers()) {
        // As status words them: a retiring worker still serves, a hung one is what it was.
        const bool ready = core::serving(w.phase) || (w.phase == core::Phase::hung && w.health.ready_at);
        ++by_state[w.phase == core::Phase::draining ? "draining" : ready ? "ready" : "booting"];
    }
    for (const auto& [state, n] : by_state) {
        f.gauge("workerd_workers", "Worker processes by state.", n, {{"state", state}});
    }
    f.gauge("workerd_workers_desired", "Workers the fleet should have.", fleet_.desired());
    f.gauge("workerd_workers_ready", "Slots with a ready worker (what /readyz compares with min_ready).", fleet_.ready());
    f.gauge("workerd_generation", "The current generation (each reload starts a new one).",
            static_cast<double>(fleet_.generation()));
    f.gauge("workerd_rollout_in_progress", "1 while workers are being replaced (reload, restart, recycling).",
            fleet_.rolling() ? 1 : 0);
    f.gauge("workerd_rollout_failed", "1 when the latest reload's rollout failed and was rolled back.",
            fleet_.rollout().state == core::RolloutState::failed ? 1 : 0);

    // Per slot: the slot's current workers (two during a replacement), and what its gone
    // workers did, so counters never go backwards.
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    for (const auto& [slot, s] : fleet_.slots()) {
        double rss = 0, cpu = s.retired_cpu_seconds, inflight = 0;
        double requests = static_cast<double>(s.retired_requests);
        std::optional<Clock::time_point> started, beat;
        bool any = false;
        for (const core::Worker* w : fleet_.workers_in(slot)) {
            if (w->pid <= 0) continue;
            any = true;
            const ProcSample sample = proc_sample(w->pid);
            rss += static_cast<double>(sample.rss_bytes);
            if (sample.cpu_ticks >= 0) cpu += static_cast<double>(sample.cpu_ticks) / static_cast<double>(ticks_per_second);
            requests += static_cast<double>(w->stats.served);
            inflight += static_cast<double>(w->stats.inflight);
            if (w->phase != core::Phase::draining) {
                started = w->started_at;
                beat = w->health.last_beat;
            }
        }
        if (!any && !s.active) continue;
        const std::vector<ClientMetric::Label> labels{{"slot", std::to_string(slot)}};
        f.gauge("workerd_worker_resident_memory_bytes", "Resident memory of the slot's worker processes.", rss, labels);
        f.counter("workerd_worker_cpu_seconds_total", "CPU time of the slot's workers, past ones included.", cpu, labels);
        f.counter("workerd_worker_requests_total", "Requests served by the slot's workers (from STATS), past ones included.",
                  requests, labels);
        f.gauge("workerd_worker_requests_in_flight", "Requests in flight in the slot's workers (from STATS).", inflight, labels);
        f.gauge("workerd_worker_uptime_seconds", "Age of the slot's current worker (0 when it has none).",
                started ? seconds(now - *started) : 0.0, labels);
        f.gauge("workerd_worker_heartbeat_age_seconds", "Time since the slot's current worker last sent a heartbeat (-1: none yet).",
                beat ? seconds(now - *beat) : -1.0, labels);
    }

    if (spec().autoscale) {
        for (const char* direction : {"up", "down"}) {
            f.counter("workerd_autoscale_decisions_total", "Autoscaler decisions that changed the fleet's size.",
                      static_cast<double>(fleet_.autoscale_decisions().count(direction) ? fleet_.autoscale_decisions().at(direction) : 0),
                      {{"direction", direction}});
        }
    }
    if (auto cap = fleet_.memory_cap()) {
        f.gauge("workerd_memory_budget_workers", "Workers that fit in the memory budget (limit less margin, by RSS per worker).", *cap);
    }

    // Restarts by reason; every reason is present from the start, at 0.
    for (const char* reason : {"exit", "signal", "heartbeat_timeout", "boot_timeout", "request_timeout", "max_requests",
                               "max_rss", "max_lifetime", "reload", "restart", "scale_down"}) {
        f.counter("workerd_worker_restarts_total", "Workers that ended while the fleet was running, by reason.",
                  static_cast<double>(fleet_.restarts_by_reason().count(reason) ? fleet_.restarts_by_reason().at(reason) : 0),
                  {{"reason", reason}});
    }

    // Listen queues: the saturation signal.
    for (const auto& l : listeners_) {
        if (auto q = queue_of(*l)) {
            const std::vector<ClientMetric::Label> labels{{"listener", l->address().name}};
            f.gauge("workerd_listen_queue_depth", "Connections waiting in the listener's accept queue.", q->depth, labels);
            f.gauge("workerd_listen_queue_max", "Capacity of the listener's accept queue (backlog).", q->max, labels);
        }
    }

    // Requests and latency over the whole fleet, gone workers included.
    RequestStats total = fleet_.retired_stats();
    for (const auto& [id, w] : fleet_.workers()) {
        total.served += w.stats.served;
        total.sum_us += w.stats.sum_us;
        for (int k = 0; k < kLatencyBuckets; ++k) total.buckets[k] += w.stats.buckets[k];
    }
    f.counter("workerd_requests_total", "Requests served by all workers (from STATS), past ones included.",
              static_cast<double>(total.served));
    f.histogram("workerd_request_duration_seconds",
                "Request latency over all workers, in the worker protocol's buckets (0.5 ms to 65.5 s).", total);

    process_metrics(f);
    return f.text();
}

}  // namespace workerd
