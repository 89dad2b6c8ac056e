// Status and /metrics as functions of the fleet core's state and the shell's measurements.
#include "daemon/shell/render.hpp"

#include <csignal>

#include <doctest/doctest.h>

using namespace workerd;
using json = nlohmann::json;

namespace {

// A fleet of `workers`, every spawn answered with pids 100, 101, ...
core::Fleet fleet_of(int workers, core::TimePoint now) {
    core::Fleet::Options o;
    o.spec.workers = workers;
    o.spec.file = "/etc/workerd/app.yaml";
    core::Fleet fleet(std::move(o), now);
    pid_t pid = 100;
    std::vector<core::Action> pending = fleet.handle(core::event::Turn{}, now);
    while (!pending.empty()) {
        auto a = pending.front();
        pending.erase(pending.begin());
        if (auto* s = std::get_if<core::action::Spawn>(&a)) {
            auto more = fleet.handle(core::event::Spawned{s->id, pid++, "app"}, now);
            pending.insert(pending.end(), more.begin(), more.end());
        }
    }
    return fleet;
}

}  // namespace

TEST_CASE("status: the fleet's workers with what the shell measured, in the words status always had") {
    const core::TimePoint t0{std::chrono::seconds(1000)};
    core::Fleet fleet = fleet_of(2, t0);
    fleet.handle(core::event::Message{100, *parse_notify_line("READY=1")}, t0 + std::chrono::seconds(1));
    fleet.handle(core::event::Message{100, *parse_notify_line("STATS=served=42 inflight=3 oldest_ms=5")},
                 t0 + std::chrono::seconds(2));
    StatusFacts facts;
    facts.now = t0 + std::chrono::seconds(3);
    facts.daemon_pid = 7;
    facts.version = "9.9";
    facts.processes[100] = {50 << 20, 12.5, 1.0};
    const json s = render_status(fleet, facts);
    CHECK(s["pid"] == 7);
    CHECK(s["version"] == "9.9");
    CHECK(s["state"] == "running");
    CHECK(s["desired"] == 2);
    CHECK(s["ready"] == 1);
    CHECK(s["uptime_s"] == doctest::Approx(3.0));
    REQUIRE(s["workers"].size() == 2);
    const json& w = s["workers"][0];
    CHECK(w["pid"] == 100);
    CHECK(w["state"] == "ready");
    CHECK(w["requests"] == 42);
    CHECK(w["inflight"] == 3);
    CHECK(w["rss_bytes"] == 50 << 20);
    CHECK(w["cpu_percent"] == doctest::Approx(12.5));
    CHECK(w["heartbeat_age_s"] == doctest::Approx(1.0));
    CHECK(s["workers"][1]["state"] == "booting");
    CHECK(s["workers"][1]["requests"].is_null());
    CHECK(s["rollout"].is_null());
}

TEST_CASE("metrics: counters include gone workers; every restart reason is present from the start") {
    const core::TimePoint t0{std::chrono::seconds(1000)};
    core::Fleet fleet = fleet_of(1, t0);
    fleet.handle(core::event::Message{100, *parse_notify_line("READY=1")}, t0);
    fleet.handle(core::event::Message{100, *parse_notify_line("STATS=served=10 inflight=0 oldest_ms=0 buckets=10")}, t0);
    fleet.handle(core::event::Exited{100, SIGSEGV, 2.5}, t0 + std::chrono::seconds(20));
    MetricsFacts facts;
    facts.now = t0 + std::chrono::seconds(21);
    facts.version = "9.9";
    facts.queues.push_back({"web", 3, 128});
    const std::string text = render_metrics(fleet, facts);
    CHECK(text.find("workerd_build_info{version=\"9.9\"} 1") != std::string::npos);
    CHECK(text.find("workerd_requests_total 10") != std::string::npos);
    CHECK(text.find("workerd_worker_restarts_total{reason=\"signal\"} 1") != std::string::npos);
    CHECK(text.find("workerd_worker_restarts_total{reason=\"scale_down\"} 0") != std::string::npos);
    CHECK(text.find("workerd_worker_cpu_seconds_total{slot=\"0\"} 2.5") != std::string::npos);
    CHECK(text.find("workerd_listen_queue_depth{listener=\"web\"} 3") != std::string::npos);
    CHECK(text.find("workerd_workers_desired 1") != std::string::npos);
}
