// End-to-end: the drain recipes of docs/draining.md for servers that are not workerd's own.
// A Node server (examples/node/server.js) and gunicorn, reloaded twice under wrk: not one
// request may fail. And a graceful stop of the Node fleet: the request in flight finishes.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <csignal>
#include <thread>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {

std::string node_spec(int port) {
    return SpecBuilder(port).workers(2).command({"node", "server.js"}).cwd(source_path("examples/node"))
        .set("graceful_timeout", "10s");
}

std::string gunicorn_spec(int port) {
    return SpecBuilder(port).workers(2)
        .command({"/usr/bin/gunicorn", "--workers", "2", "--graceful-timeout", "8", "wsgi_hello:app"})
        .cwd(source_path("tests/data/apps")).set("graceful_timeout", "10s").set("ready_after", "1s");
}

// wrk for 8 s with a reload (SIGHUP) after 2 and 4 s; every request must succeed.
void reloads_under_load(Daemon& daemon, const TempDir& dir, int port) {
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    REQUIRE(answers_within(port, 10s, "/"));
    WrkLoad load(dir, port, 8, "/");
    for (int generation : {2, 3}) {
        std::this_thread::sleep_for(2s);  // the load runs meanwhile
        daemon.process().signal(SIGHUP);
        REQUIRE_MESSAGE(daemon.wait_status([&](const nlohmann::json& s) {
            return s["generation"] == generation && !s["rolling"].get<bool>();
        }, 20s), daemon.log());
    }
    const std::string report = load.finish();
    MESSAGE(report.substr(report.find("requests in")));
}

}  // namespace

TEST_CASE("Node (examples/node/server.js): two reloads under wrk fail no request") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, node_spec(port));
    reloads_under_load(daemon, dir, port);
}

TEST_CASE("gunicorn as the worker command: two reloads under wrk fail no request") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, gunicorn_spec(port));
    reloads_under_load(daemon, dir, port);
}

TEST_CASE("Node: a graceful stop finishes the request in flight, and the daemon exits 0") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, node_spec(port));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    // A keep-alive request in flight when the stop begins.
    HttpConnection conn(port);
    REQUIRE(conn.connected());
    REQUIRE(conn.request("/io?ms=1500"));
    std::this_thread::sleep_for(300ms);  // the request is in (the handler waits 1.5 s)
    daemon.process().signal(SIGTERM);
    const auto response = conn.read_response(10s);
    REQUIRE_MESSAGE(response, daemon.log());
    CHECK(response->status == 200);
    // Answered while draining: the connection closes with it (no client reuses it).
    REQUIRE(response->headers.count("connection"));
    CHECK(response->headers.at("connection") == "close");
    CHECK(conn.wait_closed(5s));
    const auto status = daemon.process().wait_exit(15s);
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(daemon.count_in_log("stopped (stop)") == 0);  // status words are not log words
    CHECK(daemon.count_in_log("was killed") == 0);      // every worker exited on its own
}
