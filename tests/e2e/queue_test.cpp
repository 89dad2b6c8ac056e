// Request queue time and load shedding (docs/metrics.md, docs/spec.md `queue_timeout`), with the
// real daemon, its bundled worker and workerd_uvicorn under the open-loop generator
// (`workerd load`): the queue time a worker reports agrees with what the client saw beyond the
// service time, and a fleet with `queue_timeout` answers late requests 503 at once.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <optional>
#include <thread>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {


// The one worker of the fleet, once it is ready and has reported `served` requests.
json worker_once_served(const Daemon& daemon, std::uint64_t served) {
    json worker;
    const bool served_all = daemon.wait_status(
        [&](const json& s) {
            const auto& ws = s["workers"];
            if (ws.size() != 1 || !ws[0]["requests"].is_number()) return false;
            worker = ws[0];
            return ws[0]["requests"].get<std::uint64_t>() >= served;
        },
        10s);
    REQUIRE_MESSAGE(served_all, "the worker reported " << worker.dump() << ", not yet " << served << " requests");
    return worker;
}

// A fresh worker (its STATS start from nothing): `workerctl restart`, then wait for it.
void fresh_worker(const Daemon& daemon) {
    const pid_t old = daemon.status()["workers"][0]["pid"].get<pid_t>();
    REQUIRE(daemon.ctl({"restart", "0"}).exit_code == 0);
    REQUIRE(daemon.wait_status(
        [&](const json& s) {
            const auto& ws = s["workers"];
            return ws.size() == 1 && ws[0]["pid"].get<pid_t>() != old && ws[0]["state"] == "ready" &&
                   ws[0]["requests"].is_number();
        },
        30s));
}

// ±2 ms or 10%, whichever is larger (the accuracy). The instrumented builds (ASan +
// UBSan) spend their own, uneven milliseconds around each request in the generator and the
// bundled worker, which the client sees and the worker does not count as waiting: the claim is
// the release build's, and there the check only catches gross errors (6 ms or 25%).
#ifdef WORKERD_TEST_SANITIZED
constexpr double kSlackMs = 6.0;
constexpr double kShare = 0.25;
#else
constexpr double kSlackMs = 2.0;
constexpr double kShare = 0.10;
#endif

// Where the truth lies for one percentile of the queue time. The client's latency here is from
// the moment the generator wrote the request (`sent_p99_ms`): its own lateness before that (a
// timer that fired late on a busy machine) is no part of what a server can see. Each request's
// latency as the client sees it is its queue time plus its service time (plus the network's share, part of
// what the probe measured), so the queue time's percentile is at most the client's less the
// least service time (the probe, one request at a time), and at least the client's less the
// worker's own service p99 (the time the worker spent after taking a request up: another
// process on the machine can stretch it, which the client cannot tell from waiting). On a
// quiet machine the two are one: the client's latency minus the service time.
struct Expected {
    double low;
    double high;
};
bool within(double reported, Expected e) {
    return reported >= e.low - std::max(kSlackMs, kShare * e.low) && reported <= e.high + std::max(kSlackMs, kShare * e.high);
}

// One worker with a known service time, loaded at 50%, 90% and 120% of what it can serve. The
// service time is what one request at a time takes, as the client sees it (nothing waits then).
// A level whose numbers disagree is measured once more with a fresh worker; the second
// measurement must agree.
void check_queue_accuracy(const Daemon& daemon, int port, const std::string& path) {
    const auto url = fmt::format("http://127.0.0.1:{}{}", port, path);
    const json probe = workerd_load({url, "-c", "1", "--duration", "2s"}, 30s);
    const double service_ms = probe["p50_ms"].get<double>();
    const double capacity = 1000.0 / service_ms;
    MESSAGE(path << ": service " << service_ms << " ms, capacity " << capacity << " req/s");
    REQUIRE(service_ms > 5.0);
    for (const double load : {0.5, 0.9, 1.2}) {
        CAPTURE(load);
        for (int attempt = 1; attempt <= 2; ++attempt) {
            fresh_worker(daemon);
            // Its first requests are slower (a Python app's first call of a route): a few first,
            // one at a time. They wait for nothing, and the worker counts them with the load
            // (as no queue time) while the client's percentiles are the load's alone: 300 ms of
            // them (about 30, 4% of the requests at 120%) pulled the worker's median about 4%
            // below the client's, and with a machine's noise past the 10% allowed (CI). 50 ms
            // is about 5 (under 1%), still enough for the first call of a route.
            const json warm = workerd_load({url, "-c", "1", "--duration", "50ms"}, 30s);
            const json r = workerd_load({url, "--rate", fmt::format("{:.1f}", load * capacity), "--duration", "6s",
                                         "-c", "400", "--timeout", "30s"},
                                        60s);
            INFO(r.dump());
            REQUIRE(r["errors"] == 0);
            const json w =
                worker_once_served(daemon, warm["ok"].get<std::uint64_t>() + r["ok"].get<std::uint64_t>());
            INFO(w.dump());
            REQUIRE(w["queue_p50_ms"].is_number());
            REQUIRE(w["p99_ms"].is_number());
            const double q50 = w["queue_p50_ms"].get<double>(), q99 = w["queue_p99_ms"].get<double>();
            const double worker_p99 = std::max(service_ms, w["p99_ms"].get<double>());
            const auto expected = [&](const char* key) {
                const double client = r[std::string("sent_") + key].get<double>();
                return Expected{std::max(0.0, client - worker_p99), std::max(0.0, client - service_ms)};
            };
            const Expected e50 = expected("p50_ms"), e99 = expected("p99_ms");
            MESSAGE(path << " at " << load * 100 << "% (attempt " << attempt << "): client p50 " << r["sent_p50_ms"]
                         << " p99 " << r["sent_p99_ms"] << " ms (from its schedule " << r["p50_ms"] << ", "
                         << r["p99_ms"] << "); worker's service p99 " << worker_p99
                         << " ms; queue p50 " << q50 << " (expected " << e50.low << ".." << e50.high << ") p99 "
                         << q99 << " (expected " << e99.low << ".." << e99.high << ") ms");
            const bool agree = within(q50, e50) && within(q99, e99);
            if (attempt == 1 && !agree) continue;
            CHECK(within(q50, e50));
            CHECK(within(q99, e99));
            break;
        }
    }
}

}  // namespace

TEST_CASE("the bundled worker's queue time agrees with the client's latency minus the service time") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).builtin());
    REQUIRE(daemon.wait_ready(1, 15s));
    check_queue_accuracy(daemon, port, "/demo/cpu?ms=10");
}

TEST_CASE("workerd_uvicorn's queue time agrees with the client's latency minus the service time") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).uvicorn("tune_app:app").set("boot_timeout", "60s"));
    REQUIRE(daemon.wait_ready(1, 60s));
    check_queue_accuracy(daemon, port, "/spin?ms=10");
}

namespace {

// Overload (2x what one worker serves, open loop): with queue_timeout, what waited too long is
// answered 503 at once, and what is served is served in time.
void check_shedding(const Daemon& daemon, int port, const std::string& path, double queue_timeout_ms) {
    const auto url = fmt::format("http://127.0.0.1:{}{}", port, path);
    const json probe = workerd_load({url, "-c", "1", "--duration", "2s"}, 30s);
    const double service_ms = probe["p50_ms"].get<double>();
    const double capacity = 1000.0 / service_ms;
    const json r = workerd_load({url, "--rate", fmt::format("{:.1f}", 2 * capacity), "--duration", "6s", "-c", "400",
                              "--timeout", "30s", "--max-errors", "1"},
                             60s);
    INFO(r.dump());
    const json s = daemon.status();
    INFO(s["queue"].dump());
    // About half is shed, every one counted by the worker, and nothing else fails.
    CHECK(r["http_errors"].get<double>() > 0.3 * r["requests"].get<double>());
    CHECK(r["errors"] == r["http_errors"]);
    daemon.wait_status([&](const json& st) { return st["queue"]["shed"] == r["http_errors"]; }, 5s);
    CHECK(daemon.status()["queue"]["shed"] == r["http_errors"]);
    // Goodput near capacity, and the served requests within queue_timeout + service (a slack for
    // the machine's two cores, which the generator shares).
    CHECK(r["ok"].get<double>() / r["seconds"].get<double>() >= 0.8 * capacity);
    CHECK(r["ok_p99_ms"].get<double>() <= queue_timeout_ms + 2 * service_ms + 20);
    // (The 503s themselves may come late: a connection that waited seconds in the accept queue
    // is answered when the worker takes it up, and shed then.)
}

}  // namespace

TEST_CASE("queue_timeout: the bundled worker sheds what waited too long, with 503 and Retry-After") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).builtin().set("queue_timeout", "100ms"));
    REQUIRE(daemon.wait_ready(1, 15s));
    check_shedding(daemon, port, "/demo/cpu?ms=10", 100);
}

TEST_CASE("queue_timeout: workerd_uvicorn sheds what waited too long, before the app") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).uvicorn("tune_app:app").set("boot_timeout", "60s")
                           .set("queue_timeout", "100ms"));
    REQUIRE(daemon.wait_ready(1, 60s));
    check_shedding(daemon, port, "/cpu?ms=10", 100);
}

TEST_CASE("max_concurrency: past it, requests get 503 with Retry-After at once") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).builtin().set("max_concurrency", "2"));
    REQUIRE(daemon.wait_ready(1, 15s));
    // 10 connections each asking for 300 ms of waiting: 2 run, the other 8 are shed at once.
    const json r = workerd_load({fmt::format("http://127.0.0.1:{}/demo/io?ms=300", port), "-c", "10", "--duration",
                              "1s", "--max-errors", "1"},
                             30s);
    INFO(r.dump());
    CHECK(r["http_errors"].get<long>() > 4 * r["ok"].get<long>());
    CHECK(r["ok"].get<long>() >= 4);  // 2 at a time for 1 s of 300 ms requests
    CHECK(http_status(port, "/demo/io?ms=1") == 200);  // one at a time is served
    CHECK(daemon.wait_status([&](const json& s) { return s["queue"]["shed"] == r["http_errors"]; }, 5s));
}

namespace {

// workerd_listen_queue_wait_estimate_seconds in one scrape; nullopt when it is not there.
std::optional<double> wait_estimate(int metrics_port) {
    const auto r = http_get(metrics_port, "/metrics");
    if (!r || r->status != 200) return std::nullopt;
    const std::string name = "\nworkerd_listen_queue_wait_estimate_seconds ";
    const auto at = r->body.find(name);
    if (at == std::string::npos) return std::nullopt;
    return std::stod(r->body.substr(at + name.size()));
}

}  // namespace

// For workers that do not report queue time, Little's law over the listen queue: connections
// waiting there, over the rate they arrive. A worker whose loop blocks 20 ms per request, asked
// for twice what it serves by new connections: they pile up in the listen queue, and the
// estimate says they wait; once they are served, it says nothing waits.
TEST_CASE("the listen queue's wait estimate rises while connections pile up, and is 0 once they are served") {
    TempDir dir;
    const int port = free_tcp_port(), metrics_port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).builtin().metrics(metrics_port));
    REQUIRE(daemon.wait_ready(1, 15s));
    REQUIRE(answers_within(metrics_port, 5s));
    CHECK(wait_estimate(metrics_port) == 0.0);
    auto load = std::async(std::launch::async, [port] {
        return workerd_load({fmt::format("http://127.0.0.1:{}/demo/block?ms=20", port), "--rate", "100", "--duration",
                             "4s", "-c", "400", "--timeout", "60s"},
                            120s);
    });
    double highest = 0;
    for (int i = 0; i < 12; ++i) {
        std::this_thread::sleep_for(300ms);
        if (const auto e = wait_estimate(metrics_port)) {
            MESSAGE("estimate " << *e << " s");
            CHECK(std::isfinite(*e));
            highest = std::max(highest, *e);
        }
    }
    CHECK(highest > 0.05);  // more than two requests' worth of waiting
    const json r = load.get();
    INFO(r.dump());
    CHECK(r["errors"] == 0);
    CHECK(eventually([&] { return wait_estimate(metrics_port) == 0.0; }, 10s));
}
