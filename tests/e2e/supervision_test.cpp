// End-to-end: crash recovery with backoff, and commands that cannot run.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <csignal>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;

namespace {

// The delays in "restarting in 400ms" / "restarting now" log lines, in order, in ms.
std::vector<long> restart_delays(const std::string& log) {
    std::vector<long> out;
    const std::regex re(R"(restarting (now|in ([0-9.]+)(ms|s)))");
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (!std::regex_search(line, m, re)) continue;
        if (m[1] == "now") {
            out.push_back(0);
        } else {
            const double v = std::stod(m[2]);
            out.push_back(static_cast<long>(m[3] == "s" ? v * 1000 : v));
        }
    }
    return out;
}

}  // namespace

TEST_CASE("an app that exits at once is restarted with growing delays, not in a loop") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).command({"/bin/sh", "-c", "echo booting; exit 3"})
                           .set("backoff", "{initial: 100ms, max: 800ms, reset_after: 10s}"));
    REQUIRE_MESSAGE(daemon.wait_for_log("restarting", 10s, 6), daemon.log());
    const auto log = daemon.log();
    const auto delays = restart_delays(log);
    REQUIRE(delays.size() >= 6);
    CHECK(delays[0] == 0);            // one crash costs nothing
    CHECK(delays[1] >= 80);           // then 100ms +-20%
    CHECK(delays[2] > delays[1]);     // ... doubling
    CHECK(delays[3] > delays[2]);
    CHECK(delays[5] >= 640);          // at the cap (800ms, -20% jitter at most)
    CHECK(delays[5] <= 800);
    // The daemon says why, with the exit status, and shows the app's own output.
    CHECK(log.find("exited with status 3 after") != std::string::npos);
    CHECK(log.find("worker 0 (pid ") != std::string::npos);
    CHECK(log.find("stdout: booting") != std::string::npos);
    // Not a fork storm: over the next second at most 2 more starts (800ms cap).
    const int started = daemon.count_in_log(") started:");
    std::this_thread::sleep_for(1s);  // measuring a rate over a window, not synchronising
    CHECK(daemon.count_in_log(") started:") - started <= 2);
    CHECK(process_alive(daemon.pid()));
}

TEST_CASE("a command that cannot be executed: said plainly and again at a bounded rate; status and /readyz say why") {
    TempDir dir;
    const int port = free_tcp_port();
    const int metrics_port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(2).command({"/nonexistent/app", "--fd", "{fd}"})
                           .set("backoff", "{initial: 50ms, max: 1s}")
                           .metrics(metrics_port)
                           .set("log", "{level: debug}"));
    // At start, the spec's warning names the key and where it is.
    REQUIRE_MESSAGE(daemon.wait_for_log("app.command[0]: /nonexistent/app does not exist", 10s), daemon.log());
    // Debug lines show every retry; the error is said again at most once per backoff.max.
    REQUIRE_MESSAGE(daemon.wait_for_log("cannot execute /nonexistent/app: No such file or directory", 10s, 8),
                    daemon.log());
    const auto t0 = std::chrono::steady_clock::now();
    const auto errors = [&] {
        std::istringstream in(daemon.log());
        int n = 0;
        for (std::string line; std::getline(in, line);) {
            if (line.find("cannot execute") != std::string::npos && line.find(" error ") != std::string::npos) ++n;
        }
        return n;
    };
    REQUIRE(eventually([&] { return errors() >= 3; }, 5s));  // repeated...
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(errors() <= 3 + static_cast<int>(seconds) + 1);  // ...about once a second, not per attempt
    CHECK(daemon.log().find("failed start(s) since") != std::string::npos);

    // Why nothing serves, where an operator looks.
    const auto status = daemon.status();
    REQUIRE(status["waiting"].size() == 2);
    for (const auto& w : status["waiting"]) {
        CHECK(w["last_exit"].get<std::string>().find("cannot start: cannot execute /nonexistent/app") == 0);
    }
    const auto table = daemon.ctl({"status"});
    CHECK(table.output.find("last exit: cannot start: cannot execute /nonexistent/app") != std::string::npos);
    const auto ready = http_get(metrics_port, "/readyz");
    REQUIRE(ready);
    CHECK(ready->status == 503);
    CHECK(ready->body.find("cannot start: cannot execute /nonexistent/app") != std::string::npos);
    CHECK(process_alive(daemon.pid()));
}

TEST_CASE("SIGTTIN and SIGTTOU add and remove a worker") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(2).builtin(""));
    REQUIRE(daemon.wait_for_workers(2, 10s));
    daemon.process().signal(SIGTTIN);
    CHECK_MESSAGE(daemon.wait_for_workers(3, 5s), daemon.log());
    // Signals of one kind do not queue: send the second after the first was handled.
    daemon.process().signal(SIGTTOU);
    REQUIRE(daemon.wait_for_log("SIGTTOU: scaling from 3 to 2 workers", 5s));
    daemon.process().signal(SIGTTOU);
    REQUIRE(daemon.wait_for_log("SIGTTOU: scaling from 2 to 1 worker", 5s));
    CHECK_MESSAGE(daemon.wait_for_workers(1, 10s), daemon.log());
    CHECK(answers_within(port, 5s));
}

TEST_CASE("the daemon raises its open-file limit for a large fleet; workers keep the one it started with") {
    TempDir dir;
    const int port = free_tcp_port();
    // Started with a soft limit of 100 descriptors: 40 workers need about 130 in the daemon.
    const std::string wrapper = dir.write("workerd-limited", "#!/bin/sh\nulimit -Sn 100\nexec " + bin_path("workerd") + " \"$@\"\n");
    ::chmod(wrapper.c_str(), 0755);
    Daemon daemon(dir, SpecBuilder(port).workers(40).builtin(""), {}, wrapper);
    REQUIRE_MESSAGE(daemon.wait_ready(40, 60s), daemon.log());
    CHECK(daemon.count_in_log("Too many open files") == 0);
    const auto soft_limit = [](pid_t pid) {
        std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/limits"));
        for (std::string line; std::getline(in, line);) {
            if (line.rfind("Max open files", 0) == 0) {
                std::istringstream fields(line.substr(14));
                std::string soft;
                fields >> soft;
                return soft;
            }
        }
        return std::string();
    };
    CHECK(soft_limit(daemon.pid()) != "100");
    for (pid_t w : daemon.workers()) CHECK(soft_limit(w) == "100");
}

TEST_CASE("a worker that dies of the SIGTERM it was sent to drain ended as asked, not in a crash") {
    TempDir dir;
    const int port = free_tcp_port();
    // sleep(1) has no handler: SIGTERM kills it, as it kills a Node server without one, and
    // as uvicorn 0.29+ re-raises it after its graceful shutdown.
    Daemon daemon(dir, SpecBuilder(port).workers(2).command({"/bin/sleep", "1000"}).set("heartbeat", "off")
                           .set("ready_after", "200ms"));
    REQUIRE(daemon.wait_ready(2, 10s));
    REQUIRE(daemon.ctl({"reload", "--wait"}).exit_code == 0);
    REQUIRE(eventually([&] { return daemon.status()["workers"].size() == 2; }, 10s));  // the old ones are gone
    const json reloaded = daemon.status();
    for (const auto& w : reloaded["workers"]) {
        CAPTURE(w);
        CHECK(w["last_exit"] == "stopped (reload)");
        CHECK(w["restarts"] == 1);  // replaced once
    }
    const auto slot = [&](int n) {
        const json status = daemon.status();
        for (const auto& w : status["workers"]) {
            if (w["slot"] == n && w["state"] != "draining") return w;
        }
        return json();
    };
    REQUIRE(daemon.ctl({"restart", "0", "--wait"}).exit_code == 0);
    REQUIRE(eventually([&] { return daemon.status()["workers"].size() == 2; }, 10s));
    CHECK(slot(0)["last_exit"] == "stopped (restart)");
    // Killed by someone else, it crashed.
    ::kill(slot(1)["pid"].get<pid_t>(), SIGTERM);
    REQUIRE(eventually([&] {
        const auto w = slot(1);
        return w.is_object() && w["state"] == "ready" && w["last_exit"] == "crash by signal";
    }, 10s));
    CHECK(daemon.count_in_log("crash by signal") == 0);  // the log says how, never "crash" for asked stops
}
