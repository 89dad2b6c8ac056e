#include "daemon/shell/render.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "daemon/shell/metric_families.hpp"

namespace workerd {

using json = nlohmann::json;

namespace {

double seconds(core::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Status keeps the words it always had: a retiring worker still serves ("ready"), a hung one
// is shown as what it was when it stopped answering.
const char* state_word(const core::Worker& w) {
    switch (w.phase) {
        case core::Phase::spawning:
        case core::Phase::booting: return "booting";
        case core::Phase::ready:
        case core::Phase::retiring: return "ready";
        case core::Phase::hung: return w.health.ready_at ? "ready" : "booting";
        case core::Phase::draining: return "draining";
        case core::Phase::exited: return "exited";
    }
    return "?";
}

// {"2xx": N, "3xx": N, "4xx": N, "5xx": N, "failed": N}; null from a worker that does not
// count them (protocol version 2 or older).
json responses_json(const RequestStats& stats) {
    if (!stats.has_responses()) return nullptr;
    json out = json::object();
    for (int k = 0; k < kResponseClasses; ++k) {
        out[to_string(static_cast<ResponseClass>(k))] = stats.responses[static_cast<std::size_t>(k)];
    }
    return out;
}

}  // namespace

json render_status(const core::Fleet& fleet, const StatusFacts& facts) {
    const auto now = facts.now;
    json workers = json::array();
    for (const auto& [id, w] : fleet.workers()) {
        if (w.pid <= 0) continue;
        const core::Slot& slot = fleet.slots().at(w.slot);
        const auto found = facts.processes.find(w.pid);
        const ProcessFacts process = found != facts.processes.end() ? found->second : ProcessFacts{};
        json row = {
            {"slot", w.slot},
            {"pid", w.pid},
            {"generation", w.generation},
            {"state", state_word(w)},
            {"uptime_s", seconds(now - w.started_at)},
            {"restarts", slot.restarts},
            {"recycles", slot.recycles},
            {"replacing", w.phase == core::Phase::retiring && !w.retire_detail.empty() ? json(w.retire_detail) : json(nullptr)},
            {"last_exit", slot.last_end ? json(slot.last_end->to_string()) : json(nullptr)},
            // recycle.leak: judged leaking, waiting for an idle moment to be replaced
            {"leaking", w.leak_found && w.phase == core::Phase::ready ? json(w.leak_detail) : json(nullptr)},
            {"rss_bytes", process.rss_bytes},
            {"pss_bytes", w.pss_bytes},  // the last sample (memory_by_sharing), 0 without
            {"private_bytes", w.private_bytes},
            {"cpu_percent", process.cpu_percent},
            {"status", w.status.empty() ? json(nullptr) : json(w.status)},
        };
        row["heartbeat_age_s"] = w.health.last_beat ? json(seconds(now - *w.health.last_beat)) : json(nullptr);
        if (w.health.stats_at) {
            row["requests"] = w.stats.served;
            row["inflight"] = w.stats.inflight;
            const auto p50 = w.stats.percentile_ms(0.5);
            const auto p99 = w.stats.percentile_ms(0.99);
            row["p50_ms"] = p50 ? json(*p50) : json(nullptr);
            row["p99_ms"] = p99 ? json(*p99) : json(nullptr);
            row["mean_ms"] = w.stats.served > 0 && w.stats.sum_us > 0
                                 ? json(static_cast<double>(w.stats.sum_us) / 1000.0 / static_cast<double>(w.stats.served))
                                 : json(nullptr);
            const auto q50 = w.stats.queue_percentile_ms(0.5);
            const auto q99 = w.stats.queue_percentile_ms(0.99);
            row["queue_p50_ms"] = q50 ? json(*q50) : json(nullptr);
            row["queue_p99_ms"] = q99 ? json(*q99) : json(nullptr);
            row["shed"] = w.stats.shed;
            row["responses"] = responses_json(w.stats);
        } else {
            row["requests"] = row["inflight"] = row["p50_ms"] = row["p99_ms"] = nullptr;
            row["queue_p50_ms"] = row["queue_p99_ms"] = row["shed"] = row["mean_ms"] = nullptr;
            row["responses"] = nullptr;
        }
        workers.push_back(std::move(row));
    }
    json waiting = json::array();
    for (const auto& [index, s] : fleet.slots()) {
        if (s.active && fleet.current_in(index) == nullptr) {
            waiting.push_back({{"slot", index},
                               {"restart_in_s", std::max(0.0, seconds(s.not_before - now))},
                               {"last_exit", s.last_end ? json(s.last_end->to_string()) : json(nullptr)},
                               {"flapping", s.exits_before_ready >= 3}});
        }
    }
    // Preload: each generation's zygote, and its memory (what its workers share with it).
    json zygotes = json::array();
    for (const auto& [generation, z] : fleet.zygotes()) {
        if (z.pid <= 0) continue;
        const auto found = facts.processes.find(z.pid);
        const ProcessFacts process = found != facts.processes.end() ? found->second : ProcessFacts{};
        zygotes.push_back({{"generation", generation},
                           {"pid", z.pid},
                           {"state", z.stopping ? "stopping" : z.ready ? "ready" : "importing"},
                           {"uptime_s", seconds(now - z.started_at)},
                           {"rss_bytes", process.rss_bytes},
                           {"pss_bytes", process.pss_bytes},
                           {"private_bytes", process.private_bytes}});
    }
    // The fleet's memory, shared pages counted once: PSS adds up to what the processes cost.
    long pss = 0, private_bytes = 0;
    for (const auto& [pid, p] : facts.processes) {  // the zygotes
        pss += p.pss_bytes;
        private_bytes += p.private_bytes;
    }
    for (const auto& [id, w] : fleet.workers()) {
        pss += w.pss_bytes;
        private_bytes += w.private_bytes;
    }
    const auto& rollout = fleet.rollout();
    const auto& autoscale = fleet.spec().autoscale;
    const auto cap = fleet.memory_cap();
    // Queue times over the workers running now (their whole lives), and every shed request.
    RequestStats live;
    for (const auto& [id, w] : fleet.workers()) live.add_counts(w.stats);
    const auto q50 = live.queue_percentile_ms(0.5);
    const auto q99 = live.queue_percentile_ms(0.99);
    json queue = {{"p50_ms", q50 ? json(*q50) : json(nullptr)},
                  {"p99_ms", q99 ? json(*q99) : json(nullptr)},
                  {"measured", live.queued()},
                  {"shed", live.shed + fleet.retired_stats().shed}};
    return {
        {"pid", facts.daemon_pid},
        {"version", facts.version},
        {"uptime_s", seconds(now - fleet.started_at())},
        {"spec", fleet.spec().file},
        {"generation", fleet.generation()},
        {"state", core::to_string(fleet.mode())},
        {"desired", fleet.desired()},
        {"ready", fleet.ready()},
        {"rolling", fleet.rolling()},
        {"memory", {{"pss_bytes", pss},
                    {"private_bytes", private_bytes},
                    {"budget_workers", cap ? json(*cap) : json(nullptr)}}},
        {"autoscale", autoscale ? json{{"pinned", fleet.autoscale_pinned()},
                                       {"min", autoscale->min},
                                       {"max", autoscale->max},
                                       {"memory_cap", cap ? json(*cap) : json(nullptr)},
                                       {"view", fleet.autoscale_view()}}
                                : json(nullptr)},
        {"rollout", rollout.state == core::RolloutState::none
                        ? json(nullptr)
                        : json{{"generation", rollout.generation},
                               {"state", core::to_string(rollout.state)},
                               {"failures", rollout.failures},
                               {"reason", rollout.reason.empty() ? json(nullptr) : json(rollout.reason)},
                               {"canary", rollout.canary == core::CanaryPhase::none ? json(nullptr)
                                                                                    : json(core::to_string(rollout.canary))},
                               {"analysis", rollout.analysis.empty() ? json(nullptr) : json(rollout.analysis)}}},
        {"queue", std::move(queue)},
        {"workers", std::move(workers)},
        {"zygotes", std::move(zygotes)},
        {"waiting", std::move(waiting)},
    };
}

json render_config(const core::Fleet& fleet, const std::string& control_socket) {
    const auto ms = [](Duration d) { return d.count(); };
    json listen = json::array();
    for (const auto& a : fleet.spec().listen) listen.push_back({{"address", a.to_string()}, {"name", a.name}});
    json app;
    if (fleet.spec().app.builtin) {
        const auto& b = *fleet.spec().app.builtin;
        app["builtin"] = {{"root", b.root}, {"demo", b.demo}, {"precompressed", b.precompressed}, {"max_connections", b.max_connections},
                          {"keepalive_timeout_ms", ms(b.keepalive_timeout)},
                          {"max_header_size", b.max_header_size}, {"max_body_size", b.max_body_size}};
    } else {
        app["command"] = fleet.spec().app.command;
        app["preload"] = fleet.spec().app.preload;
    }
    app["cwd"] = fleet.spec().app.cwd;
    app["env"] = fleet.spec().app.env;
    const auto& h = fleet.spec().health;
    return {
        {"file", fleet.spec().file},
        {"listen", listen},
        {"backlog", fleet.spec().backlog},
        {"reuse_port", fleet.spec().reuse_port_cpu ? json("cpu") : json(fleet.spec().reuse_port)},
        {"workers", fleet.desired()},
        {"workers_in_spec", fleet.spec().workers_auto ? json("auto") : json(fleet.spec().workers)},
        {"app", app},
        {"graceful_timeout_ms", ms(fleet.spec().graceful_timeout)},
        {"timeout_ms", ms(h.timeout)},
        {"boot_timeout_ms", ms(h.boot_timeout)},
        {"ready_after_ms", ms(h.ready_after)},
        {"heartbeat", h.mode == HeartbeatMode::automatic ? "auto" : h.mode == HeartbeatMode::required ? "required" : "off"},
        {"timeout_signal", h.timeout_signal ? json(signal_name(h.timeout_signal)) : json(nullptr)},
        {"kill_timeout_ms", ms(h.kill_timeout)},
        {"request_timeout_ms", h.request_timeout ? json(ms(*h.request_timeout)) : json(nullptr)},
        {"backoff", {{"initial_ms", ms(fleet.spec().backoff.initial)}, {"max_ms", ms(fleet.spec().backoff.max)},
                     {"reset_after_ms", ms(fleet.spec().backoff.reset_after)}}},
        {"control", {{"socket", control_socket}, {"mode", fmt::format("{:04o}", fleet.spec().control.mode)}}},
        {"metrics", {{"listen", fleet.spec().metrics.listen ? json(fleet.spec().metrics.listen->to_string()) : json(nullptr)}}},
        {"log", {{"level", fleet.spec().log.level}}},
    };
}

std::string render_metrics(const core::Fleet& fleet, const MetricsFacts& facts) {
    const auto now = facts.now;
    Families f;
    f.gauge("workerd_build_info", "workerd's version; always 1.", 1, {{"version", facts.version}});
    f.gauge("workerd_uptime_seconds", "Time since the daemon started.", seconds(now - fleet.started_at()));

    // The fleet.
    std::map<std::string, int> by_state{{"booting", 0}, {"ready", 0}, {"draining", 0}};
    for (const auto& [id, w] : fleet.workers()) {
        // As status words them: a retiring worker still serves, a hung one is what it was.
        const bool ready = core::serving(w.phase) || (w.phase == core::Phase::hung && w.health.ready_at);
        ++by_state[w.phase == core::Phase::draining ? "draining" : ready ? "ready" : "booting"];
    }
    for (const auto& [state, n] : by_state) {
        f.gauge("workerd_workers", "Worker processes by state.", n, {{"state", state}});
    }
    f.gauge("workerd_workers_desired", "Workers the fleet should have.", fleet.desired());
    f.gauge("workerd_workers_ready", "Slots with a ready worker (what /readyz compares with min_ready).", fleet.ready());
    f.gauge("workerd_generation", "The current generation (each reload starts a new one).",
            static_cast<double>(fleet.generation()));
    f.gauge("workerd_rollout_in_progress", "1 while workers are being replaced (reload, restart, recycling).",
            fleet.rolling() ? 1 : 0);
    f.gauge("workerd_rollout_failed", "1 when the latest reload's rollout failed and was rolled back.",
            fleet.rollout().state == core::RolloutState::failed ? 1 : 0);

    // Per slot: the slot's current workers (two during a replacement), and what its gone
    // workers did, so counters never go backwards.
    for (const auto& [slot, s] : fleet.slots()) {
        double rss = 0, pss = 0, unique = 0, cpu = s.retired_cpu_seconds, inflight = 0;
        double requests = static_cast<double>(s.retired_requests);
        std::optional<core::TimePoint> started, beat;
        bool any = false;
        for (const core::Worker* w : fleet.workers_in(slot)) {
            if (w->pid <= 0) continue;
            any = true;
            pss += static_cast<double>(w->pss_bytes);
            unique += static_cast<double>(w->private_bytes);
            if (auto p = facts.processes.find(w->pid); p != facts.processes.end()) {
                rss += static_cast<double>(p->second.rss_bytes);
                if (p->second.cpu_seconds >= 0) cpu += p->second.cpu_seconds;
            }
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
        f.gauge("workerd_worker_proportional_memory_bytes",
                "PSS of the slot's worker processes: each shared page divided among the processes sharing it.", pss, labels);
        f.gauge("workerd_worker_private_memory_bytes", "Private memory (USS) of the slot's worker processes.", unique, labels);
        f.counter("workerd_worker_cpu_seconds_total", "CPU time of the slot's workers, past ones included.", cpu, labels);
        f.counter("workerd_worker_requests_total", "Requests served by the slot's workers (from STATS), past ones included.",
                  requests, labels);
        f.gauge("workerd_worker_requests_in_flight", "Requests in flight in the slot's workers (from STATS).", inflight, labels);
        f.gauge("workerd_worker_uptime_seconds", "Age of the slot's current worker (0 when it has none).",
                started ? seconds(now - *started) : 0.0, labels);
        f.gauge("workerd_worker_heartbeat_age_seconds", "Time since the slot's current worker last sent a heartbeat (-1: none yet).",
                beat ? seconds(now - *beat) : -1.0, labels);
    }

    // Preload: each generation's zygote (the memory its workers share with it).
    for (const auto& [generation, z] : fleet.zygotes()) {
        if (z.pid <= 0) continue;
        const auto p = facts.processes.find(z.pid);
        if (p == facts.processes.end()) continue;
        const std::vector<ClientMetric::Label> labels{{"generation", std::to_string(generation)}};
        f.gauge("workerd_zygote_resident_memory_bytes", "Resident memory of the generation's zygote (app.preload).",
                static_cast<double>(p->second.rss_bytes), labels);
        f.gauge("workerd_zygote_proportional_memory_bytes", "PSS of the generation's zygote (app.preload).",
                static_cast<double>(p->second.pss_bytes), labels);
        f.gauge("workerd_zygote_ready", "1 once the generation's zygote has imported the app and forks workers.",
                z.ready ? 1 : 0, labels);
    }

    double fleet_pss = 0;
    for (const auto& [pid, p] : facts.processes) fleet_pss += static_cast<double>(p.pss_bytes);  // the zygotes
    for (const auto& [id, w] : fleet.workers()) fleet_pss += static_cast<double>(w.pss_bytes);
    f.gauge("workerd_fleet_proportional_memory_bytes",
            "PSS of every worker and zygote together: what the fleet costs, shared pages counted once.", fleet_pss);

    if (fleet.spec().autoscale) {
        for (const char* direction : {"up", "down"}) {
            f.counter("workerd_autoscale_decisions_total", "Autoscaler decisions that changed the fleet's size.",
                      static_cast<double>(fleet.autoscale_decisions().count(direction) ? fleet.autoscale_decisions().at(direction) : 0),
                      {{"direction", direction}});
        }
    }
    if (auto cap = fleet.memory_cap()) {
        f.gauge("workerd_memory_budget_workers", "Workers that fit in the memory budget (limit less margin, by RSS per worker; with preload by private memory per worker, shared memory once).", *cap);
    }

    for (const char* cause : {"boot", "canary", "aborted"}) {
        f.counter("workerd_rollbacks_total",
                  "Rollouts that failed and were rolled back, by cause: boot (new workers failed before READY), "
                  "canary (canary analysis judged them worse), aborted (workerctl rollout abort).",
                  static_cast<double>(fleet.rollbacks_by_cause().count(cause) ? fleet.rollbacks_by_cause().at(cause) : 0),
                  {{"cause", cause}});
    }
    // Restarts by reason; every reason is present from the start, at 0.
    for (const char* reason : {"exit", "signal", "heartbeat_timeout", "boot_timeout", "request_timeout", "max_requests",
                               "max_rss", "max_private", "leak", "max_lifetime", "reload", "restart", "scale_down"}) {
        f.counter("workerd_worker_restarts_total", "Workers that ended while the fleet was running, by reason.",
                  static_cast<double>(fleet.restarts_by_reason().count(reason) ? fleet.restarts_by_reason().at(reason) : 0),
                  {{"reason", reason}});
    }

    // Listen queues: the saturation signal.
    for (const QueueFacts& q : facts.queues) {
        const std::vector<ClientMetric::Label> labels{{"listener", q.listener}};
        f.gauge("workerd_listen_queue_depth", "Connections waiting in the listener's accept queue.", static_cast<double>(q.depth), labels);
        f.gauge("workerd_listen_queue_max", "Capacity of the listener's accept queue (backlog).", static_cast<double>(q.max), labels);
    }

    if (facts.queue_wait_estimate) {
        f.gauge("workerd_listen_queue_wait_estimate_seconds",
                "Little's law: connections waiting in the listen queues over the rate the network namespace accepts "
                "TCP connections (PassiveOpens) since the previous scrape; +Inf when some wait and none are accepted.",
                *facts.queue_wait_estimate);
    }

    // Requests and latency over the whole fleet, gone workers included.
    RequestStats total = fleet.retired_stats();
    for (const auto& [id, w] : fleet.workers()) total.add_counts(w.stats);
    f.counter("workerd_requests_total", "Requests served by all workers (from STATS), past ones included.",
              static_cast<double>(total.served));
    f.histogram("workerd_request_duration_seconds",
                "Request latency over all workers, in the worker protocol's buckets (0.5 ms to 65.5 s).", total.buckets,
                total.sum_us, latency_bound_ms);
    f.histogram("workerd_request_queue_seconds",
                "How long requests waited in the kernel before a worker took them up (workers that measure it: "
                "the bundled one, workerd_uvicorn), shed ones included; buckets sqrt(2) apart from 0.125 ms.",
                total.queue, total.queue_sum_us, queue_bound_ms, 4);
    f.counter("workerd_requests_shed_total",
              "Requests answered 503 at once, without running them (queue_timeout, max_concurrency), past workers included.",
              static_cast<double>(total.shed));
    // By class and generation (protocol version 3): a reload's new code against the old.
    for (const auto& [generation, counts] : fleet.responses_by_generation()) {
        for (int k = 0; k < kResponseClasses; ++k) {
            f.counter("workerd_responses_total",
                      "Requests answered, by class (2xx also counts 1xx; failed: no answer written) and generation, "
                      "from the workers' STATS (protocol version 3), past workers included.",
                      static_cast<double>(counts[static_cast<std::size_t>(k)]),
                      {{"class", to_string(static_cast<ResponseClass>(k))}, {"generation", std::to_string(generation)}});
        }
    }

    return f.text();
}

}  // namespace workerd
