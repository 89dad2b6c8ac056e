// End-to-end: `reuse_port: true`. Each worker slot accepts on a SO_REUSEPORT socket of its
// own, which the daemon holds: the kernel spreads connections over the slots, and connections
// queued on a slot whose worker dies are served by its replacement.
#include <doctest/doctest.h>

#include <sched.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <vector>
#include <future>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/os/slot_listeners.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;

namespace {

std::string spec(int port, int workers, const std::string& reuse_port = "true") {
    return SpecBuilder(port).set("reuse_port", reuse_port).workers(workers).builtin().set("graceful_timeout", "5s");
}

// The socket a worker accepts on: its fd 3, as "socket:[INODE]".
std::string listener_of(pid_t pid) {
    const auto fds = open_fds(pid);
    const auto it = fds.find(3);
    return it == fds.end() ? "" : it->second;
}

// The sockets `workers` accept on.
std::set<std::string> listeners_of(const std::vector<pid_t>& workers) {
    std::set<std::string> out;
    for (pid_t w : workers) out.insert(listener_of(w));
    return out;
}

pid_t pid_in_slot(const json& status, int slot) {
    for (const auto& w : status["workers"]) {
        if (w["slot"] == slot) return w["pid"].get<pid_t>();
    }
    return 0;
}

}  // namespace

TEST_CASE("reuse_port: every slot accepts on a socket of its own, held by the daemon") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, 4));
    REQUIRE_MESSAGE(daemon.wait_ready(4, 20s), daemon.log());
    const auto sockets = listeners_of(daemon.workers());
    CHECK(sockets.size() == 4);
    std::set<std::string> held;
    for (const auto& [fd, target] : open_fds(daemon.pid())) held.insert(target);
    for (const auto& s : sockets) {
        CHECK(s.rfind("socket:", 0) == 0);
        CHECK_MESSAGE(held.count(s) == 1, s << " is not held by the daemon");
    }
    // The kernel spreads connections over the four sockets: 64 connections reach every worker.
    std::set<int> slots;
    std::vector<std::unique_ptr<HttpConnection>> open;
    for (int i = 0; i < 64; ++i) {
        auto c = std::make_unique<HttpConnection>(port);
        REQUIRE(c->connected());
        REQUIRE(c->request("/demo/whoami"));
        const auto r = c->read_response();
        REQUIRE(r);
        slots.insert(json::parse(r->body)["slot"].get<int>());
        open.push_back(std::move(c));
    }
    CHECK(slots.size() == 4);
}

TEST_CASE("reuse_port: connections queued for a worker that dies are served by its replacement") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, 2));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 20s), daemon.log());
    const pid_t stuck = pid_in_slot(daemon.status(), 1);
    REQUIRE(stuck > 0);
    // Stopped, the worker accepts nothing: connections the kernel sends to its socket queue there.
    REQUIRE(::kill(stuck, SIGSTOP) == 0);
    std::vector<std::future<std::optional<HttpResponse>>> requests;
    for (int i = 0; i < 24; ++i) {
        requests.push_back(std::async(std::launch::async, [port] { return http_get(port, "/healthz", 20s); }));
    }
    // Slot 0 answers its share at once; the rest wait on slot 1's queue.
    REQUIRE(eventually([&] {
        int done = 0;
        for (auto& r : requests) done += r.wait_for(0s) == std::future_status::ready;
        return done > 0;
    }, 10s));
    std::this_thread::sleep_for(300ms);  // let slot 0 finish what is its own
    int waiting = 0;
    for (auto& r : requests) waiting += r.wait_for(0s) != std::future_status::ready;
    REQUIRE_MESSAGE(waiting > 0, "no connection was sent to the stopped worker's socket");
    REQUIRE(::kill(stuck, SIGKILL) == 0);
    int ok = 0;
    for (auto& r : requests) {
        const auto response = r.get();
        ok += response && response->status == 200;
    }
    MESSAGE(waiting << " of 24 requests waited on the dead worker's socket");
    CHECK(ok == 24);
    CHECK(daemon.wait_for_log(fmt::format("(pid {}, gen 1) was killed by SIGKILL", stuck), 5s));
}

TEST_CASE("reuse_port: a reload and a scale-up under wrk fail no request; slot sockets survive the rollout") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, 2));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 20s), daemon.log());
    const std::string slot1_socket = listener_of(pid_in_slot(daemon.status(), 1));
    const auto t0 = std::chrono::steady_clock::now();
    WrkLoad load(dir, port, 7, "/healthz", 32);
    std::this_thread::sleep_until(t0 + 1s);
    daemon.process().signal(SIGHUP);
    REQUIRE_MESSAGE(daemon.wait_rolled_out(2, 20s), daemon.log());
    std::this_thread::sleep_until(t0 + 3s);
    const auto r = daemon.ctl({"scale", "4", "--wait"});
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    const std::string report = load.report();
    CHECK_MESSAGE(wrk_socket_errors(report) == 0, report);
    CHECK(report.find("Non-2xx") == std::string::npos);
    // The new generation's worker in slot 1 took over the slot's socket, queue and all.
    const json s = daemon.status();
    CHECK(listener_of(pid_in_slot(s, 1)) == slot1_socket);
    CHECK(s["ready"] == 4);
}

TEST_CASE("reuse_port: SIGUSR2 hands every slot's socket to the new image; no request fails") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, 3));
    REQUIRE_MESSAGE(daemon.wait_ready(3, 20s), daemon.log());
    const auto before = listeners_of(daemon.workers());
    REQUIRE(before.size() == 3);
    WrkLoad load(dir, port, 5, "/healthz", 32);
    std::this_thread::sleep_for(1s);  // under load before the upgrade
    daemon.process().signal(SIGUSR2);
    REQUIRE_MESSAGE(daemon.wait_rolled_out(2, 20s), daemon.log());
    const std::string report = load.report();
    CHECK_MESSAGE(wrk_socket_errors(report) == 0, report);
    CHECK(listeners_of(daemon.workers()) == before);
}

namespace {

// The CPUs to steer between: the daemon's list (it is started from here, with this affinity).
// Fewer than two: nothing to steer, and the test says so.
std::vector<int> steerable_cpus() {
    auto cpus = workerd::SlotListeners::allowed_cpus();
    if (cpus.size() < 2) MESSAGE("needs 2 CPUs to steer between; this process may use " << cpus.size());
    return cpus;
}

// Moves the calling thread onto `cpu`: on loopback the kernel takes in a connection's handshake
// on the CPU that called connect().
void run_on(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    REQUIRE(::sched_setaffinity(0, sizeof set, &set) == 0);
}

// A connection made from `cpu`, kept open, and the pid of the worker that answered on it.
struct Placed {
    std::unique_ptr<HttpConnection> conn;
    int cpu = -1;
    pid_t pid = 0;
};

Placed connect_from(int cpu, int port) {
    run_on(cpu);
    Placed p{std::make_unique<HttpConnection>(port), cpu, 0};
    REQUIRE(p.conn->connected());
    REQUIRE(p.conn->request("/demo/whoami"));
    auto r = p.conn->read_response(5s);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    p.pid = json::parse(r->body)["pid"].get<pid_t>();
    return p;
}

}  // namespace

TEST_CASE("reuse_port: cpu: each worker takes its CPU's connections; what all arrives on one CPU is still shared") {
    const auto cpus = steerable_cpus();
    if (cpus.size() < 2) return;
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, 2, "cpu"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 20s), daemon.log());
    const json status = daemon.status();
    const auto config = daemon.ctl({"config"});
    REQUIRE(config.exit_code == 0);
    CHECK(json::parse(config.output)["reuse_port"] == "cpu");
    const pid_t slot0 = pid_in_slot(status, 0);
    const pid_t slot1 = pid_in_slot(status, 1);
    REQUIRE(slot0 > 0);
    REQUIRE(slot1 > 0);
    // Each load runs in a thread of its own: a thread's CPU affinity is its own to change.
    auto in_thread = [&](auto body) { return std::async(std::launch::async, body).get(); };

    // Alternating CPUs, so the two workers' counts never drift apart: slot i's socket takes the
    // connections that come in on the i-th allowed CPU, and its worker keeps them.
    const auto paired = in_thread([&] {
        std::vector<Placed> out;
        for (int i = 0; i < 16; ++i) out.push_back(connect_from(cpus[static_cast<std::size_t>(i % 2)], port));
        return out;
    });
    for (const auto& p : paired) {
        CAPTURE(p.cpu);
        CHECK(p.pid == (p.cpu == cpus[0] ? slot0 : slot1));
    }

    // All from the first CPU: slot 0's queue, and once its worker holds clearly more
    // (LoadBoard::kStealMargin), slot 1's worker takes from it too.
    const auto lopsided = in_thread([&] {
        std::vector<Placed> out;
        for (int i = 0; i < 24; ++i) out.push_back(connect_from(cpus[0], port));
        return out;
    });
    int taken_by_1 = 0;
    for (const auto& p : lopsided) {
        CHECK((p.pid == slot0 || p.pid == slot1));
        if (p.pid == slot1) ++taken_by_1;
    }
    MESSAGE(fmt::format("of 24 connections from CPU {}: {} to slot 0's worker, {} to slot 1's", cpus[0], 24 - taken_by_1, taken_by_1));
    CHECK(taken_by_1 >= 4);
}

TEST_CASE("reuse_port: cpu: after a scale-up the new slot's connections are served at once") {
    const auto cpus = steerable_cpus();
    if (cpus.size() < 2) return;
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, 2, "cpu"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 20s), daemon.log());
    // The first two workers were started before slot 2's socket existed: they cannot take from
    // it. Its own worker, yielding to them while they hold fewer, waits at most a few ms.
    const auto r = daemon.ctl({"scale", "3", "--wait"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    const auto placed = std::async(std::launch::async, [&] {
        std::vector<Placed> out;
        for (int i = 0; i < 30; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            out.push_back(connect_from(cpus[static_cast<std::size_t>(i % 2)], port));
            CHECK(std::chrono::steady_clock::now() - t0 < 1s);
        }
        return out;
    }).get();
    std::set<pid_t> answered;
    for (const auto& p : placed) answered.insert(p.pid);
    CHECK(answered.size() >= 2);
}
