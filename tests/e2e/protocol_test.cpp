// End-to-end: the worker protocol with the real daemon: heartbeats, boot and request timeouts,
// workers that do not speak it, the Python integration, and garbage on the pipe.
#include <doctest/doctest.h>

#include <algorithm>
#include <future>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using SteadyClock = std::chrono::steady_clock;

namespace {

// Every "restarting in X" delay in the log, in ms, in order.
std::vector<double> restart_delays_ms(const std::string& log) {
    std::vector<double> out;
    static const std::regex re(R"(restarting in ([0-9.]+)(ms|s))");
    for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it) {
        const double v = std::stod((*it)[1]);
        out.push_back((*it)[2] == "s" ? v * 1000 : v);
    }
    return out;
}

long vm_field_kib(pid_t pid, const std::string& field) {
    const std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
    const auto at = status.find(field + ":");
    return at == std::string::npos ? -1 : std::stol(status.substr(at + field.size() + 1));
}

// Waits until one of `before` has gone and the fleet is back to `n` workers.
bool replaced_within(const Daemon& daemon, const std::vector<pid_t>& before, std::size_t n, Ms timeout) {
    return eventually(
        [&] {
            const auto now = daemon.workers();
            const bool one_gone = std::any_of(before.begin(), before.end(),
                                              [](pid_t p) { return !process_alive(p); });
            return one_gone && now.size() == n;
        },
        timeout);
}

// Debian's uvicorn on the daemon's socket: it does not speak the worker protocol.
const std::vector<std::string> plain_uvicorn{"/usr/bin/python3", "-m", "uvicorn", "app:app", "--fd", "{fd}", "--no-access-log"};

std::string python_spec(int port, const std::string& app, const std::string& settings) {
    return SpecBuilder(port).workers(2).uvicorn(app, /*unbuffered=*/true).set("graceful_timeout", "3s").extra(settings);
}

}  // namespace

TEST_CASE("bundled worker, timeout 1s: a blocked loop gets the worker replaced within 2.5 s") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(2).builtin().set("timeout", "1s").set("kill_timeout", "500ms")
                           .set("graceful_timeout", "2s"));
    REQUIRE(daemon.wait_ready(2, 10s));
    const auto before = daemon.workers();
    REQUIRE(before.size() == 2);

    // Pin a connection to one worker, then block that worker's loop through it.
    HttpConnection pinned(port);
    REQUIRE(pinned.request("/demo/whoami"));
    const auto who = pinned.read_response();
    REQUIRE(who);
    const pid_t stuck = std::stoi(who->body.substr(who->body.find("\"pid\":") + 6));
    const auto t0 = SteadyClock::now();
    REQUIRE(pinned.request("/demo/block?ms=10000"));
    // Once the worker sleeps inside the request (an idle worker waits in epoll instead) it is
    // stuck, and from then on every new request must be answered by the other worker.
    REQUIRE(eventually([&] { return in_sleep_syscall(stuck); }, 2s));
    int failures = 0;
    while (SteadyClock::now() - t0 < 2500ms && process_alive(stuck)) {
        if (!http_get(port, "/healthz", 2s)) ++failures;
        std::this_thread::sleep_for(50ms);
    }
    CHECK_MESSAGE(replaced_within(daemon, {stuck}, 2, std::chrono::duration_cast<Ms>(t0 + 2500ms - SteadyClock::now())),
                  daemon.log());
    CHECK(SteadyClock::now() - t0 <= 2600ms);
    CHECK(failures == 0);
    CHECK(answers_within(port, 2s));
    CHECK(daemon.count_in_log("sent no heartbeat for") == 1);
    CHECK(daemon.wait_for_log("(heartbeat timeout); already replaced", 3s));
    // The replacement started when the hang was found, not after the hung worker was gone.
    const std::string log = daemon.log();
    const auto found = log.find("sent no heartbeat for");
    const auto started = log.find(") started:", found);
    const auto gone = log.find("already replaced");
    CHECK(found < started);
    CHECK(started < gone);
}

TEST_CASE("FastAPI under workerd_uvicorn, timeout 2s: a blocking async route is caught, a sleeping def route is not") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, python_spec(port, "hang_app:app", "timeout: 2s\nkill_timeout: 1s\n"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());

    // `def` + time.sleep(5): runs in the thread pool, the loop keeps beating.
    auto slow = http_get(port, "/sleep-in-thread", 15s);
    REQUIRE_MESSAGE(slow, daemon.log());
    CHECK(slow->status == 200);
    CHECK(daemon.count_in_log("sent no heartbeat") == 0);

    // `async def` + time.sleep(30): the loop is stuck; the worker is replaced within 4 s.
    const auto before = daemon.workers();
    const auto t0 = SteadyClock::now();
    auto blocked = std::async(std::launch::async, [port] { return http_get(port, "/block", 40s); });
    CHECK_MESSAGE(replaced_within(daemon, before, 2, 4s), daemon.log());
    CHECK(SteadyClock::now() - t0 < 4500ms);
    CHECK(daemon.count_in_log("sent no heartbeat for") == 1);
    CHECK_FALSE(blocked.get().has_value());  // that request died with its worker
    // The fleet serves on.
    CHECK(answers_within(port, 10s));
}

TEST_CASE("timeout_signal: SIGABRT first, and the blocked FastAPI worker's stack reaches the log") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, python_spec(port, "hang_app:app", "timeout: 1s\ntimeout_signal: SIGABRT\nkill_timeout: 1s\n"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    auto blocked = std::async(std::launch::async, [port] { return http_get(port, "/block", 40s); });
    CHECK_MESSAGE(daemon.wait_for_log("(timeout 1s); sending SIGABRT", 5s), daemon.log());
    // faulthandler prints where the loop is stuck: in the route, in time.sleep.
    CHECK_MESSAGE(daemon.wait_for_log("hang_app.py\", line", 5s), daemon.log());
    CHECK(daemon.wait_for_log("was killed by SIGABRT", 5s));
    CHECK(daemon.count_in_log("sending SIGTERM") == 0);  // it died of the first signal
    CHECK_FALSE(blocked.get().has_value());
}

TEST_CASE("a worker that never sends READY is killed at boot_timeout and retried with backoff") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).command({"sleep", "600"}).set("heartbeat", "required")
                           .set("boot_timeout", "300ms").set("kill_timeout", "200ms")
                           .set("backoff", "{initial: 200ms, max: 5s}"));
    REQUIRE_MESSAGE(daemon.wait_for_log("sent no READY within 300ms (boot_timeout)", 10s, 3), daemon.log());
    REQUIRE(daemon.wait_for_log("(boot timeout); restarting in", 5s, 3));
    const auto delays = restart_delays_ms(daemon.log());
    REQUIRE(delays.size() >= 3);
    CHECK(delays[1] > delays[0]);  // growing (jitter is +-20%, the doubling wins)
    CHECK(delays[2] > delays[1]);
    CHECK(daemon.count_in_log("is flapping") >= 1);
}

TEST_CASE("plain uvicorn --fd, which does not speak the protocol, counts as ready after ready_after") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).command(plain_uvicorn).cwd(source_path("examples/fastapi"))
                           .set("heartbeat", "auto").set("ready_after", "500ms").set("timeout", "1s"));
    REQUIRE_MESSAGE(daemon.wait_for_log("ready: no protocol messages, up after", 10s), daemon.log());
    REQUIRE(answers_within(port, 30s));
    CHECK(http_status(port, "/items/7") == 200);
    // Silent is fine under `auto`: no heartbeat is expected, nothing is killed.
    std::this_thread::sleep_for(1500ms);
    CHECK(daemon.count_in_log("heartbeat") == 0);
    CHECK(daemon.workers().size() == 1);
}

TEST_CASE("garbage on the protocol pipe is logged with a rate limit and hurts nothing") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).python(source_path("tests/data/apps/garbage_worker.py")).set("timeout", "5s"));
    REQUIRE_MESSAGE(daemon.wait_ready(1, 30s), daemon.log());
    const long baseline_kib = vm_field_kib(daemon.pid(), "VmRSS");
    REQUIRE(http_get(port, "/flood"));
    REQUIRE_MESSAGE(daemon.wait_for_log("stdout: flood done", 30s), daemon.log());
    const auto workers = daemon.workers();
    REQUIRE(workers.size() == 1);
    auto r = http_get(port, "/");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == fmt::format("pid {}\n", workers.front()));
    CHECK(daemon.count_in_log("malformed protocol line") >= 1);
    CHECK(daemon.count_in_log("malformed protocol line") <= 3);  // ~200k bad lines, a few log lines
    // A 32 MiB line went through; the daemon never held it.
    const long peak_kib = vm_field_kib(daemon.pid(), "VmHWM");
    CAPTURE(baseline_kib);
    CAPTURE(peak_kib);
    CHECK(baseline_kib > 0);
#if !defined(__SANITIZE_ADDRESS__)
    // (Under AddressSanitizer freed memory sits in its quarantine, so growth says nothing.)
    CHECK(peak_kib - baseline_kib < 8 * 1024);
#endif
    // The worker kept its heartbeats between the garbage, so it is still the same process.
    std::this_thread::sleep_for(1s);
    CHECK(daemon.workers() == workers);
    CHECK(daemon.count_in_log("sent no heartbeat") == 0);
}

TEST_CASE("request_timeout replaces a worker whose oldest in-flight request is too old") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(1).builtin().set("timeout", "10s").set("request_timeout", "1s")
                           .set("kill_timeout", "500ms"));
    REQUIRE(daemon.wait_ready(1, 10s));
    const auto before = daemon.workers();
    auto slow = std::async(std::launch::async, [port] { return http_get(port, "/demo/io?ms=8000", 15s); });
    CHECK_MESSAGE(replaced_within(daemon, before, 1, 4s), daemon.log());
    CHECK(daemon.count_in_log("has had a request in flight for") == 1);
    CHECK(daemon.wait_for_log("(request timeout); already replaced", 3s));
    slow.get();
}

TEST_CASE("auto: a worker whose first word comes after ready_after is still watched, and its hang is caught") {
    TempDir dir;
    const int port = free_tcp_port();
    // Silent past ready_after (so counted ready by uptime), then READY and one heartbeat,
    // then silence: hung. Nothing else happens in the daemon meanwhile.
    const std::string script = dir.write("late.py", R"(import os, time
time.sleep(0.5)
fd = int(os.environ["WORKERD_NOTIFY_FD"])
os.write(fd, b"READY=1\nWATCHDOG=1\n")
time.sleep(600)
)");
    Daemon daemon(dir, SpecBuilder(port).python(script).set("ready_after", "100ms").set("timeout", "1s")
                           .set("kill_timeout", "1s"));
    REQUIRE_MESSAGE(daemon.wait_for_log("ready: no protocol messages", 10s), daemon.log());
    CHECK_MESSAGE(daemon.wait_for_log("sent no heartbeat for", 5s), daemon.log());
}

TEST_CASE("a hang dump puts the event loop first and sums up the idle thread pool") {
    TempDir dir;
    const int port = free_tcp_port();
    // One worker: the one whose pool the naps grow is the one /block hangs (with two, one of
    // them could take nearly every nap, and the other hang with a pool of 1).
    Daemon daemon(dir, SpecBuilder(port).workers(1).uvicorn("hang_app:app", /*unbuffered=*/true)
                           .set("graceful_timeout", "3s").extra("timeout: 1s\ntimeout_signal: SIGABRT\nkill_timeout: 1s\n"));
    REQUIRE_MESSAGE(daemon.wait_ready(1, 30s), daemon.log());
    // 80 `def` requests at once: anyio's pool grows to dozens of threads, idle after.
    std::vector<std::future<std::optional<HttpResponse>>> naps;
    for (int i = 0; i < 80; ++i) naps.push_back(std::async(std::launch::async, [port] { return http_get(port, "/nap", 20s); }));
    for (auto& n : naps) REQUIRE(n.get());
    auto blocked = std::async(std::launch::async, [port] { return http_get(port, "/block", 40s); });
    REQUIRE_MESSAGE(daemon.wait_for_log("was killed by SIGABRT", 10s), daemon.log());
    CHECK_FALSE(blocked.get().has_value());
    const std::string log = daemon.log();
    const auto sent = log.find("sending SIGABRT");
    REQUIRE(sent != std::string::npos);
    const std::string dump = log.substr(sent);
    // The loop's stack is the first printed, with the route that blocks it.
    const auto current = dump.find("Stack (most recent call first):");
    const auto route = dump.find("hang_app.py\", line");
    const auto others = dump.find("Other threads:");
    REQUIRE_MESSAGE(current != std::string::npos, dump);
    REQUIRE_MESSAGE(route != std::string::npos, dump);
    CHECK(current < route);
    CHECK(route < others);
    CHECK(dump.find("Thread 0x") > others);  // no other thread's stack before the loop's
    // 40 idle pool threads in one line, and the whole dump in a screenful.
    std::smatch idle;
    REQUIRE_MESSAGE(std::regex_search(dump, idle, std::regex("([0-9]+) idle pool thread\\(s\\) waiting for work")), dump);
    CHECK(std::stoi(idle[1]) >= 10);
    const auto lines = std::count(dump.begin(), dump.end(), '\n');
    CHECK_MESSAGE(lines < 60, dump);
    CHECK(daemon.count_in_log("sending SIGTERM") == 0);  // it still died of the first signal
}
