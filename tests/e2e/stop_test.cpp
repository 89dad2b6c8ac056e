// End-to-end: stopping the real daemon with signals.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "daemon/os/listener.hpp"
#include "daemon/os/unique_fd.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {

std::string builtin_spec(int port, int workers, const std::string& graceful) {
    return SpecBuilder(port).workers(workers).builtin().set("graceful_timeout", graceful);
}

// `n` bundled workers, ready and answering, with `graceful` as graceful_timeout; `workers`
// are their pids.
struct BundledFleet {
    TempDir dir;
    int port = free_tcp_port();
    Daemon daemon;
    std::vector<pid_t> workers;

    BundledFleet(int n, const std::string& graceful) : daemon(dir, builtin_spec(port, n, graceful)) {
        REQUIRE_MESSAGE(daemon.wait_ready(n, 10s), daemon.log());
        REQUIRE(answers_within(port, 10s));
        workers = daemon.workers();
    }
};

// Waits up to `timeout` for the daemon to end: it exits 0, and none of `workers` is left.
void check_exits_cleanly(Daemon& daemon, const std::vector<pid_t>& workers, Ms timeout) {
    const auto status = daemon.process().wait_exit(timeout);
    REQUIRE_MESSAGE(status, daemon.log());
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(all_gone(workers));
}

std::set<std::string> open_files(const std::vector<pid_t>& pids) {
    std::set<std::string> links;
    for (pid_t p : pids) {
        for (const auto& [fd, link] : open_fds(p)) links.insert(link);
    }
    return links;
}

// Starts a request in the background and returns once a worker has accepted it (a worker holds
// a socket it did not hold before), so the request is really in flight. Sockets are compared by
// inode, not counted: a connection from an earlier request may still be closing meanwhile.
std::future<std::optional<HttpResponse>> request_in_flight(const Daemon& daemon, int port,
                                                           const std::string& path) {
    const auto workers = daemon.workers();
    const auto before = open_files(workers);
    auto future = std::async(std::launch::async, [port, path] { return http_get(port, path, 30s); });
    REQUIRE(eventually(
        [&] {
            for (const auto& link : open_files(workers)) {
                if (link.starts_with("socket:") && !before.contains(link)) return true;
            }
            return false;
        },
        5s));
    return future;
}

}  // namespace

TEST_CASE("SIGTERM: the in-flight request completes, the daemon exits 0, no worker is left") {
    BundledFleet fleet(2, "10s");
    Daemon& daemon = fleet.daemon;
    auto pending = request_in_flight(daemon, fleet.port, "/demo/io?ms=1500");
    daemon.process().signal(SIGTERM);
    const auto response = pending.get();
    REQUIRE_MESSAGE(response, daemon.log());
    CHECK(response->status == 200);

    check_exits_cleanly(daemon, fleet.workers, 10s);
    CHECK(daemon.count_in_log("stopping gracefully") == 1);
}

TEST_CASE("a second SIGTERM during a graceful stop makes it fast") {
    BundledFleet fleet(1, "60s");
    Daemon& daemon = fleet.daemon;
    auto pending = request_in_flight(daemon, fleet.port, "/demo/io?ms=30000");
    daemon.process().signal(SIGTERM);
    REQUIRE(daemon.wait_for_log("stopping gracefully", 5s));
    daemon.process().signal(SIGTERM);
    check_exits_cleanly(daemon, fleet.workers, 5s);
    CHECK_FALSE(pending.get().has_value());  // cut short: that is what fast means
}

TEST_CASE("SIGINT and SIGQUIT stop at once") {
    for (int sig : {SIGINT, SIGQUIT}) {
        CAPTURE(sig);
        BundledFleet fleet(2, "60s");
        fleet.daemon.process().signal(sig);
        check_exits_cleanly(fleet.daemon, fleet.workers, 5s);
        CHECK(fleet.daemon.count_in_log("stopping now") == 1);
    }
}

TEST_CASE("a worker that ignores SIGTERM is killed after graceful_timeout") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).command({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"})
                           .set("graceful_timeout", "500ms"));
    REQUIRE(daemon.wait_for_log("stdout: ready", 10s));
    const auto workers = daemon.workers();
    daemon.process().signal(SIGTERM);
    check_exits_cleanly(daemon, workers, 5s);
    CHECK(daemon.count_in_log("still running 500ms after SIGTERM; sending SIGKILL") == 1);
}

TEST_CASE("SIGKILL of the daemon leaves no worker behind and frees the port") {
    BundledFleet fleet(3, "30s");
    fleet.daemon.process().signal(SIGKILL);
    REQUIRE(fleet.daemon.process().wait_exit(5s));
    CHECK(eventually([&] { return all_gone(fleet.workers); }, 1s));
    workerd::ListenAddress again;
    again.host = "127.0.0.1";
    again.port = static_cast<std::uint16_t>(fleet.port);
    again.name = "listen0";
    CHECK_NOTHROW(workerd::open_listener(again, 8));
}

namespace {

// One attempt at a new connection to 127.0.0.1:port during a stop: "refused" when connect
// fails (ECONNREFUSED, ECONNRESET), "served" when a whole response comes back, else what went wrong
// ("reset" after the request was sent, "timeout", ...).
std::string attempt(int port) {
    workerd::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        // A reset during the handshake is a refusal too: the listening socket closed between
        // the client's SYN and its ACK (a kernel race no server can close), and the client
        // knows that nothing was sent.
        return errno == ECONNREFUSED || errno == ECONNRESET ? "refused" : std::string("connect: ") + std::strerror(errno);
    }
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) return std::string("send: ") + std::strerror(errno);
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string got;
    char buf[4096];
    while (true) {
        const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n > 0) {
            got.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) return got.starts_with("HTTP/1.1 200") ? "served" : "closed without an answer";
        return errno == ECONNRESET ? "reset" : errno == EAGAIN ? "timeout" : std::strerror(errno);
    }
}

}  // namespace

TEST_CASE("a graceful stop refuses new connections at once, and the request in flight finishes") {
    for (const bool bundled : {true, false}) {
        CAPTURE(bundled);
        TempDir dir;
        const int port = free_tcp_port();
        Daemon daemon(dir, bundled ? builtin_spec(port, 2, "10s")
                                   : SpecBuilder(port).workers(2).set("graceful_timeout", "10s")
                                         .command({"/usr/bin/python3", "-m", "workerd_uvicorn", "app:app"})
                                         .cwd(source_path("examples/fastapi"))
                                         .env("PYTHONPATH", source_path("packaging/python")).str());
        REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
        const std::string slow = bundled ? "/demo/io?ms=1500" : "/io?ms=1500";
        auto pending = request_in_flight(daemon, port, slow);
        daemon.process().signal(SIGTERM);
        // Every connection made from now on is refused (or, in the moment before a worker has
        // taken in the signal, served): never left to nobody and reset later.
        std::vector<std::string> sequence;
        const auto t0 = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - t0 < 1s) {
            sequence.push_back(attempt(port));
            std::this_thread::sleep_for(20ms);
        }
        const std::string last = sequence.back();
        // One reset is the kernel's, not the server's, when it is the last attempt before the
        // refusals begin: on loopback the client's connect() returns before the server's side
        // has taken the handshake's final ACK, and if the last copy of the listening socket
        // closes in between, that ACK finds no listener. (What was in the listen queue when the
        // workers stopped is served: the next test case checks that, deterministically.)
        const auto first_refused = std::find(sequence.begin(), sequence.end(), "refused");
        if (first_refused != sequence.begin() && first_refused != sequence.end() && *(first_refused - 1) == "reset") {
            MESSAGE("a reset at the moment the socket closed (the handshake race), tolerated");
            *(first_refused - 1) = "refused";
        }
        std::map<std::string, int> outcomes;
        for (const auto& o : sequence) ++outcomes[o];
        std::string seen;
        for (const auto& [what, n] : outcomes) seen += fmt::format("{}: {}; ", what, n);
        MESSAGE(seen);
        CHECK_MESSAGE(outcomes["refused"] + outcomes["served"] == static_cast<int>(sequence.size()),
                      seen);  // no reset, no timeout
        CHECK_MESSAGE(outcomes["served"] <= 2, seen);
        CHECK(last == "refused");
        const auto response = pending.get();
        REQUIRE_MESSAGE(response, daemon.log());
        CHECK(response->status == 200);
        const auto status = daemon.process().wait_exit(15s);
        REQUIRE_MESSAGE(status, daemon.log());
        CHECK(WEXITSTATUS(*status) == 0);
    }
}

TEST_CASE("connections queued when a graceful stop begins are served, not reset") {
    // The worker is busy (its loop blocked for a second), connections queue behind it, and the
    // stop begins: the daemon closes its copy of the listening socket at once, so the worker's
    // is the last, and closing it would reset what waits in its queue. Once free, the worker
    // takes in what is queued first, and answers it. (The bundled worker accepts one connection
    // a turn and sees the signal first: without that step this fails. workerd_uvicorn's loop may
    // accept them all itself in the turn it sees the signal; the answers are checked the same.)
    for (const bool bundled : {true, false}) {
        CAPTURE(bundled);
        TempDir dir;
        const int port = free_tcp_port();
        Daemon daemon(dir, bundled ? builtin_spec(port, 1, "10s")
                                   : SpecBuilder(port).workers(1).uvicorn("tune_app:app").set("boot_timeout", "60s")
                                         .set("graceful_timeout", "10s").str());
        REQUIRE_MESSAGE(daemon.wait_ready(1, 60s), daemon.log());
        auto busy = request_in_flight(daemon, port, bundled ? "/demo/block?ms=1500" : "/spin?ms=1500");
        std::vector<std::future<std::optional<HttpResponse>>> queued;
        for (int i = 0; i < 5; ++i) {
            queued.push_back(std::async(std::launch::async, [port, bundled] {
                return http_get(port, bundled ? "/healthz" : "/spin?ms=1", 20s);
            }));
        }
        std::this_thread::sleep_for(300ms);  // connected (the kernel's queue), not yet accepted
        daemon.process().signal(SIGTERM);
        const auto answer = busy.get();
        REQUIRE_MESSAGE(answer, daemon.log());
        CHECK(answer->status == 200);
        for (auto& q : queued) {
            const auto r = q.get();
            CHECK_MESSAGE(r.has_value(), "a queued connection got no answer (reset?)\n" << daemon.log());
            if (r) CHECK(r->status == 200);
        }
        const auto status = daemon.process().wait_exit(15s);
        REQUIRE_MESSAGE(status, daemon.log());
        CHECK(WEXITSTATUS(*status) == 0);
    }
}
