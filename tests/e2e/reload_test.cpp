// End-to-end: reloads, rollouts and recycling under a bounded wrk load; not one request may fail.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <csignal>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

std::string builtin_spec(int port, int workers, const std::string& extra = "") {
    return SpecBuilder(port).workers(workers).builtin().set("graceful_timeout", "5s")
        .set("backoff", "{initial: 100ms, max: 1s}").extra(extra);
}

void sleep_until(SteadyClock::time_point t) { std::this_thread::sleep_until(t); }

}  // namespace

TEST_CASE("4 bundled workers, SIGHUP at 3, 7 and 11 s under wrk: no request fails, three new generations") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 4));
    REQUIRE(daemon.wait_ready(4, 10s));
    const auto t0 = SteadyClock::now();
    WrkLoad load(dir, port, 15);
    for (int at : {3, 7, 11}) {
        sleep_until(t0 + std::chrono::seconds(at));
        daemon.process().signal(SIGHUP);
    }
    load.finish();
    CHECK(daemon.wait_rolled_out(4, 10s));
    CHECK(daemon.count_in_log("rolled out in") == 3);
    const json s = daemon.status();
    CHECK(s["generation"] == 4);
    CHECK(s["ready"] == 4);
    for (const auto& w : s["workers"]) CHECK(w["generation"] == 4);
}

TEST_CASE("a single-worker fleet reloads without failing a request") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 1));
    REQUIRE(daemon.wait_ready(1, 10s));
    WrkLoad load(dir, port, 5);
    std::this_thread::sleep_for(1s);
    const auto r = daemon.ctl({"reload", "--wait"});
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    std::this_thread::sleep_for(1s);
    CHECK(daemon.ctl({"reload", "--wait"}).exit_code == 0);
    load.finish();
    CHECK(daemon.status()["generation"] == 3);
}

TEST_CASE("reload to an app that exits at boot: the rollout stops, the old workers serve throughout") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 4));
    REQUIRE(daemon.wait_ready(4, 10s));
    const auto before = daemon.workers();
    WrkLoad load(dir, port, 6);
    std::this_thread::sleep_for(500ms);
    // The new code is broken: its workers exit at once.
    dir.write("workerd.yaml", SpecBuilder(port).workers(4).command({"/bin/false"})
                                  .set("backoff", "{initial: 100ms, max: 1s}")
                                  .set("control", fmt::format("{{socket: {}}}", daemon.control_socket())));
    const auto r = daemon.ctl({"reload", "--wait"}, 30s);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.output.find("the rollout of generation 2 failed") != std::string::npos, r.output);
    CHECK(r.output.find("exited with status 1") != std::string::npos);
    load.finish();
    const json s = daemon.status();
    CHECK(s["generation"] == 1);
    CHECK(s["ready"] == 4);
    CHECK(s["rollout"]["state"] == "failed");
    CHECK(daemon.workers() == before);  // the old workers never stopped
    CHECK(daemon.count_in_log("rollout of generation 2 failed") == 1);
    // The failures are the rollout's: the generation-1 workers keep a clean record, and no
    // restart is promised that never comes.
    for (const auto& w : s["workers"]) {
        CAPTURE(w);
        CHECK(w["restarts"] == 0);
        CHECK(w["last_exit"].is_null());
    }
    CHECK(s["rollout"]["failures"] == 3);
    CHECK(daemon.count_in_log("restarting") == 0);
    CHECK(daemon.count_in_log("keeps serving the slot") == 3);
}

TEST_CASE("reload with a broken spec changes nothing and says where the spec is wrong") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2));
    REQUIRE(daemon.wait_ready(2, 10s));
    const auto before = daemon.workers();
    WrkLoad load(dir, port, 3);
    const std::string spec = dir.write("workerd.yaml", builtin_spec(port, 2, "wokers: 3\ntimeout: soon\n"));
    const auto r = daemon.ctl({"reload", "--wait"});
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.output.find(spec + ":8:1: wokers: unknown key") != std::string::npos, r.output);
    CHECK(r.output.find(spec + ":9:10: timeout:") != std::string::npos);
    daemon.process().signal(SIGHUP);  // the same through the signal: logged
    CHECK(daemon.wait_for_log("SIGHUP: the spec has errors; nothing changed", 5s));
    load.finish();
    CHECK(daemon.status()["generation"] == 1);
    CHECK(daemon.workers() == before);
}

TEST_CASE("max_requests with jitter recycles workers under load without failing a request") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2, "max_requests: 1000\nmax_requests_jitter: 200\nmin_lifetime: 0s\n"));
    REQUIRE(daemon.wait_ready(2, 10s));
    WrkLoad load(dir, port, 5, "/healthz", 16);
    load.finish();
    CHECK(daemon.count_in_log("recycled: served") >= 2);
    const json s = daemon.status();
    int recycles = 0;
    for (const auto& w : s["workers"]) recycles += w["recycles"].get<int>();
    CHECK(recycles >= 1);
    CHECK(eventually([&] { return daemon.status()["ready"] == 2; }, 5s));
}

namespace {
std::string python_spec(int port, int workers, const std::string& app, const std::string& extra = "") {
    return SpecBuilder(port).workers(workers).uvicorn(app).set("graceful_timeout", "10s").extra(extra);
}
}  // namespace

TEST_CASE("FastAPI under workerd_uvicorn: SIGHUP under wrk fails no request") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, python_spec(port, 2, "hang_app:app"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    const auto t0 = SteadyClock::now();
    WrkLoad load(dir, port, 10, "/whoami", 32);
    for (int at : {2, 6}) {
        sleep_until(t0 + std::chrono::seconds(at));
        daemon.process().signal(SIGHUP);
    }
    load.finish();
    CHECK(daemon.wait_rolled_out(3, 20s));
    CHECK(daemon.status()["generation"] == 3);
}

TEST_CASE("an app that leaks memory is recycled at max_rss, and no request fails") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, python_spec(port, 2, "leak_app:app", "max_rss: 96MiB\nmin_lifetime: 1s\n"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    WrkLoad load(dir, port, 8, "/leak", 16);
    load.finish();
    CHECK_MESSAGE(daemon.count_in_log("recycled: RSS") >= 1, daemon.log());
    const json s = daemon.status();
    int recycles = 0;
    for (const auto& w : s["workers"]) recycles += w["recycles"].get<int>();
    CHECK(recycles >= 1);
}

TEST_CASE("a reload that moves the listener opens the new socket first and closes the old one after its workers") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, builtin_spec(port, 2));
    REQUIRE(daemon.wait_ready(2, 10s));
    const int moved = free_tcp_port();
    dir.write("workerd.yaml", builtin_spec(moved, 2, fmt::format("control: {{socket: {}}}", daemon.control_socket())));
    const auto r = daemon.ctl({"reload", "--wait"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    CHECK(http_get(moved, "/healthz").has_value());
    // The old generation is gone, and with it the last user of the old socket.
    CHECK(eventually([&] { return !http_get(port, "/healthz", 500ms).has_value(); }, 10s));
    CHECK(json::parse(daemon.ctl({"config"}).output)["listen"][0]["address"] == fmt::format("127.0.0.1:{}", moved));

    // A reload to an address that cannot be bound changes nothing.
    const int taken = free_tcp_port();
    ChildProcess squatter({"/usr/bin/python3", "-c",
                           fmt::format("import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{})); s.listen(); time.sleep(60)", taken)},
                          dir.path() + "/squatter.log");
    REQUIRE(eventually([&] { return HttpConnection(taken).connected(); }, 5s));
    dir.write("workerd.yaml", SpecBuilder(moved).also_listen(fmt::format("127.0.0.1:{}", taken)).workers(2).builtin("")
                                  .set("control", fmt::format("{{socket: {}}}", daemon.control_socket())));
    const auto refused = daemon.ctl({"reload"});
    CHECK(refused.exit_code == 1);
    CHECK_MESSAGE(refused.output.find("Address already in use") != std::string::npos, refused.output);
    CHECK(json::parse(daemon.ctl({"status", "--json"}).output)["generation"] == 2);
    CHECK(http_get(moved, "/healthz").has_value());
}

TEST_CASE("a reload during a rollout supersedes it, and no request fails") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, python_spec(port, 2, "hang_app:app"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    WrkLoad load(dir, port, 6, "/whoami", 16);
    std::this_thread::sleep_for(1s);
    daemon.process().signal(SIGHUP);
    REQUIRE(daemon.wait_status([](const json& s) { return s["rollout"].is_object() && s["rollout"]["generation"] == 2; }, 5s));
    daemon.process().signal(SIGHUP);  // generation 2's workers are still booting (~200 ms)
    load.finish();
    CHECK(daemon.wait_rolled_out(3, 20s));
    CHECK(daemon.count_in_log("generation 2 rolled out") == 0);
    const json s = daemon.status();
    CHECK(s["generation"] == 3);
    // The rollout is done once the old workers are told to drain; they are listed until they
    // have finished and exited, and then only generation 3 is left.
    CHECK_MESSAGE(daemon.wait_status(
                      [](const json& now) {
                          for (const auto& w : now["workers"]) {
                              if (w["generation"] != 3) return false;
                          }
                          return true;
                      },
                      10s),
                  daemon.status().dump());
}
