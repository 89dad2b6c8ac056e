#include "daemon/shell/metrics_endpoint.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "daemon/core/autoscale.hpp"
#include "daemon/shell/metric_families.hpp"
#include "daemon/shell/render.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/version.hpp"

namespace workerd {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

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

// Little's law over the listen queues: how many wait, over how fast connections were accepted
// since the previous scrape (the network namespace's PassiveOpens). 0 when none wait.
std::optional<double> queue_wait_estimate(const std::vector<QueueFacts>& queues, core::TimePoint now) {
    struct Reading {
        std::uint64_t opens = 0;
        core::TimePoint at;
    };
    static std::optional<Reading> previous;  // the daemon's one loop scrapes
    long depth = 0;
    for (const auto& q : queues) depth += q.depth;
    const auto opens = tcp_passive_opens();
    std::optional<double> estimate;
    if (depth == 0) {
        estimate = 0.0;
    } else if (opens && previous && *opens >= previous->opens && now > previous->at) {
        const double seconds = std::chrono::duration<double>(now - previous->at).count();
        estimate = little_wait_seconds(static_cast<int>(depth), static_cast<double>(*opens - previous->opens) / seconds);
    }
    if (opens) previous = Reading{*opens, now};
    return estimate;
}

}  // namespace

MetricsResponse metrics_endpoint(const std::string& path, const core::Fleet& fleet,
                                 const std::function<std::vector<QueueFacts>()>& queues) {
    if (path == "/metrics") {
        return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(fleet, queues(), core::Clock::now())};
    }
    if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};  // answered by the loop itself
    if (path == "/readyz") {
        const int ready = fleet.ready();
        const bool running = fleet.mode() == core::Mode::running;
        const bool ok = running && ready >= fleet.spec().metrics.min_ready;
        std::string why;
        if (!running) {
            why = ", stopping";
        } else if (!ok) {
            // What keeps the slots without a worker empty: a program that cannot start, say.
            for (const auto& [slot, s] : fleet.slots()) {
                if (s.active && fleet.current_in(slot) == nullptr && s.last_end) {
                    why = fmt::format("; worker {}: {}", slot, s.last_end->to_string());
                    break;
                }
            }
        }
        return {ok ? 200 : 503, "text/plain; charset=utf-8",
                fmt::format("{}: {} of {} workers ready (min_ready {}){}\n", ok ? "ready" : "not ready", ready,
                            fleet.desired(), fleet.spec().metrics.min_ready, why)};
    }
    return {404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n"};
}

ProcessFacts sample_process(pid_t pid, bool by_sharing) {
    static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    ProcessFacts p;
    const ProcSample sample = proc_sample(pid);
    p.rss_bytes = sample.rss_bytes;
    if (sample.cpu_ticks >= 0) p.cpu_seconds = static_cast<double>(sample.cpu_ticks) / static_cast<double>(ticks_per_second);
    if (!by_sharing) return p;
    if (const auto m = proc_memory(pid)) {
        p.pss_bytes = m->pss_bytes;
        p.private_bytes = m->private_bytes;
    }
    return p;
}

std::string metrics_text(const core::Fleet& fleet, const std::vector<QueueFacts>& queues, core::TimePoint now) {
    MetricsFacts facts;
    facts.now = now;
    facts.version = kVersion;
    for (const auto& [id, w] : fleet.workers()) {
        if (w.pid > 0) facts.processes[w.pid] = sample_process(w.pid);
    }
    for (const auto& [generation, z] : fleet.zygotes()) {
        if (z.pid > 0) facts.processes[z.pid] = sample_process(z.pid, true);
    }
    facts.queues = queues;
    facts.queue_wait_estimate = queue_wait_estimate(queues, now);
    Families f;
    process_metrics(f);
    return render_metrics(fleet, facts) + f.text();
}

}  // namespace workerd
