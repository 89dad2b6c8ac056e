// End-to-end: the autoscaler under a burst of load, and the memory budget.
#include <doctest/doctest.h>

#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;

TEST_CASE("autoscale 1..6: the fleet grows under a burst, returns to 1 after it, and no request fails") {
    TempDir dir;
    const int port = free_tcp_port();
    const int metrics_port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).builtin()
                           .set("autoscale", "{min: 1, max: 6, target_inflight: 4, up_cooldown: 1s, down_delay: 1s, down_cooldown: 1s}")
                           .metrics(metrics_port));
    REQUIRE(daemon.wait_ready(1, 10s));
    WrkLoad load(dir, port, 5, "/demo/io?ms=200", 32, /*request_timeout=*/2s);
    int most = 1;
    CHECK(eventually([&] {
        most = std::max(most, daemon.status()["desired"].get<int>());
        return most >= 4;
    }, 5s));
    load.finish();
    // After the burst: back to min, one step at a time.
    CHECK_MESSAGE(eventually([&] {
        const json s = daemon.status();
        return s["desired"] == 1 && s["workers"].size() == 1;
    }, 30s), daemon.log());
    CHECK(daemon.count_in_log("autoscale (busy") >= 1);
    CHECK(daemon.count_in_log("autoscale (idle") >= 2);
    const auto metrics = http_get(metrics_port, "/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("workerd_autoscale_decisions_total{direction=\"up\"} 0") == std::string::npos);
    CHECK(metrics->body.find("workerd_autoscale_decisions_total{direction=\"down\"}") != std::string::npos);
    // workerctl scale pins the size; scale auto hands it back.
    CHECK(daemon.ctl({"scale", "3", "--wait"}).exit_code == 0);
    std::this_thread::sleep_for(2500ms);
    CHECK(daemon.status()["desired"] == 3);  // pinned: the idle autoscaler leaves it
    CHECK(daemon.status()["autoscale"]["pinned"] == true);
    CHECK(daemon.ctl({"scale", "auto"}).exit_code == 0);
    CHECK(eventually([&] { return daemon.status()["desired"] == 1; }, 15s));
}

TEST_CASE("a memory budget smaller than max x RSS stops growth at the budget") {
    // A budget of about three bundled workers, measured on this build (sanitizers make them
    // several times bigger).
    long rss_kib = 0;
    {
        TempDir probe_dir;
        Daemon probe(probe_dir, SpecBuilder(free_tcp_port()).builtin());
        REQUIRE(probe.wait_ready(1, 10s));
        const std::string status = read_file("/proc/" + std::to_string(probe.workers().front()) + "/status");
        rss_kib = std::stol(status.substr(status.find("VmRSS:") + 6));
    }
    REQUIRE(rss_kib > 0);
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).builtin().set("memory_limit", fmt::format("{}KiB", rss_kib * 7 / 2))
                           .set("memory_margin", "0%")
                           .set("autoscale", "{min: 1, max: 8, target_inflight: 2, up_cooldown: 1s, down_delay: 30s}"));
    REQUIRE(daemon.wait_ready(1, 10s));
    REQUIRE(eventually([&] { return daemon.status()["autoscale"]["memory_cap"].is_number(); }, 5s));
    const int cap = daemon.status()["autoscale"]["memory_cap"].get<int>();
    CAPTURE(cap);
    REQUIRE(cap < 8);
    WrkLoad load(dir, port, 6, "/demo/io?ms=200", 32, /*request_timeout=*/2s);
    // The budget moves a little with the workers' measured RSS; growth must stay within it.
    int most = 1, cap_seen = 0;
    bool saw_budget = false;
    const auto until = std::chrono::steady_clock::now() + 5500ms;
    while (std::chrono::steady_clock::now() < until) {
        const json s = daemon.status();
        most = std::max(most, s["desired"].get<int>());
        cap_seen = std::max(cap_seen, s["autoscale"]["memory_cap"].get<int>());
        saw_budget = saw_budget || s["autoscale"]["view"].get<std::string>().find("memory budget") != std::string::npos;
        std::this_thread::sleep_for(100ms);
    }
    load.report();  // errors or not: what counts here is how far the fleet grew
    CAPTURE(cap_seen);
    CHECK(most >= 2);           // it grew...
    CHECK(most <= cap_seen);    // ...up to the budget,
    CHECK(most < 8);            // not to max
    CHECK(saw_budget);          // and said why it stopped
}

TEST_CASE("a fixed worker count over the memory budget starts, with a warning") {
    TempDir dir;
    Daemon daemon(dir, SpecBuilder(free_tcp_port()).workers(4).builtin("").set("memory_per_worker", "100MiB")
                           .set("memory_limit", "250MiB"));
    CHECK(daemon.wait_for_log("workers: 4 x 100 MiB is over the memory budget (250 MiB less 10% fits 2 workers)", 5s));
    CHECK(daemon.wait_for_workers(4, 10s));
}
