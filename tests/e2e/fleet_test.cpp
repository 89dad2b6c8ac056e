// End-to-end: the real workerd binary supervising the bundled worker on loopback.
#include <doctest/doctest.h>

#include <csignal>
#include <map>
#include <set>

#include <fmt/format.h>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {

struct Fleet {
    TempDir dir;
    int port = free_tcp_port();
    std::unique_ptr<Daemon> daemon;

    explicit Fleet(int workers) {
        dir.write("site/index.html", "<h1>home</h1>\n");
        dir.write("site/hello.txt", "hello, workerd\n");
        daemon = std::make_unique<Daemon>(dir, SpecBuilder(port).workers(workers).builtin("root: ./site, demo: true")
                                                   .set("graceful_timeout", "5s"));
        // Every worker accepting, not just started: each says READY once it is.
        REQUIRE_MESSAGE(daemon->wait_ready(workers, 10s), daemon->log());
        REQUIRE_MESSAGE(answers_within(port, 10s), daemon->log());
    }
};

}  // namespace

TEST_CASE("the bundled fleet serves /healthz, a static file, and answers from several workers") {
    Fleet fleet(3);
    CHECK(http_status(fleet.port, "/healthz") == 200);

    auto file = http_get(fleet.port, "/hello.txt");
    REQUIRE(file);
    CHECK(file->status == 200);
    CHECK(file->body == "hello, workerd\n");
    CHECK(file->headers["content-type"].find("text/plain") == 0);

    auto index = http_get(fleet.port, "/");
    REQUIRE(index);
    CHECK(index->body == "<h1>home</h1>\n");

    const auto workers = fleet.daemon->workers();
    // Many connections open at once (one after another, a single worker that is awake may
    // take them all, and that is fine).
    std::vector<std::unique_ptr<HttpConnection>> conns;
    for (int i = 0; i < 24; ++i) conns.push_back(std::make_unique<HttpConnection>(fleet.port));
    std::set<std::string> pids;
    for (auto& c : conns) {
        REQUIRE(c->request("/demo/whoami"));
        auto who = c->read_response();
        REQUIRE(who);
        REQUIRE(who->status == 200);
        const auto at = who->body.find("\"pid\":");
        REQUIRE(at != std::string::npos);
        pids.insert(who->body.substr(at + 6, who->body.find_first_of(",}", at) - at - 6));
    }
    CHECK(pids.size() >= 2);
    for (const auto& pid : pids) {
        CHECK(std::find(workers.begin(), workers.end(), std::stoi(pid)) != workers.end());
    }
}

TEST_CASE("a worker's open fds are only 0, 1, 2 and the listeners") {
    // A command that opens nothing itself shows exactly what the daemon handed over.
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).also_listen("unix:./app.sock", "admin").workers(2).command({"sleep", "600"}));
    REQUIRE(daemon.wait_for_workers(2, 10s));
    REQUIRE(eventually([&] {
        for (pid_t w : daemon.workers()) {
            if (!settled_in(w, "sleep")) return false;
        }
        return true;
    }, 5s));
    std::set<std::string> daemon_links;
    for (const auto& [fd, link] : open_fds(daemon.pid())) daemon_links.insert(link);
    for (pid_t worker : daemon.workers()) {
        const auto fds = open_fds(worker);
        CAPTURE(worker);
        CHECK(fds.size() == 6);
        CHECK(fds.at(0) == "/dev/null");
        CHECK(fds.at(1).rfind("pipe:", 0) == 0);
        CHECK(fds.at(2).rfind("pipe:", 0) == 0);
        // fd 3 and 4 are the daemon's own listening sockets, in spec order.
        CHECK(fds.at(3).rfind("socket:", 0) == 0);
        CHECK(fds.at(4).rfind("socket:", 0) == 0);
        CHECK(daemon_links.count(fds.at(3)) == 1);
        CHECK(daemon_links.count(fds.at(4)) == 1);
        // fd 5: the worker protocol pipe, given on purpose, its other end in the daemon.
        CHECK(fds.at(5).rfind("pipe:", 0) == 0);
        CHECK(daemon_links.count(fds.at(5)) == 1);
        const auto env = environment_of(worker);
        CHECK(env.at("WORKERD_NOTIFY_FD") == "5");
        CHECK(env.at("WORKERD_PROTOCOL") == "3");  // version 3: STATS answers by class (2: queue times, shed)
        CHECK(env.at("LISTEN_PID") == std::to_string(worker));
        CHECK(env.at("LISTEN_FDS") == "2");
        CHECK(env.at("LISTEN_FDNAMES") == "listen0:admin");
    }
}

TEST_CASE("the bundled worker holds the listeners at fd 3 and leaks no daemon descriptor") {
    Fleet fleet(1);
    const pid_t worker = fleet.daemon->workers().front();
    const auto fds = open_fds(worker);
    CHECK(fds.at(0) == "/dev/null");
    CHECK(fds.at(3).rfind("socket:", 0) == 0);
    // Everything past the listener is the worker's own event loop (epoll, eventfd, timerfd,
    // its signal pipe), never one of the daemon's descriptors.
    std::set<std::string> daemon_links;
    for (const auto& [fd, link] : open_fds(fleet.daemon->pid())) daemon_links.insert(link);
    // Given on purpose besides the listener: the fleet's load board (fd 4), which the worker
    // maps and then closes, and the worker protocol pipe (fd 5), which it keeps.
    const auto env = environment_of(worker);
    CHECK(env.at("WORKERD_BOARD_FD") == "4");
    CHECK(env.at("WORKERD_NOTIFY_FD") == "5");
    const bool board_fd_closed = fds.count(4) == 0 || fds.at(4).find("workerd-load-board") == std::string::npos;
    CHECK(board_fd_closed);
    CHECK(daemon_links.count(fds.at(5)) == 1);
    for (const auto& [fd, link] : fds) {
        // anon_inode links carry no inode number to compare; the spawn test covers them.
        if (fd > 3 && fd != 5 && link.rfind("anon_inode:", 0) != 0) {
            CHECK_MESSAGE(daemon_links.count(link) == 0, link);
        }
    }
    CHECK(read_file("/proc/" + std::to_string(worker) + "/maps").find("workerd-load-board") !=
          std::string::npos);
}

TEST_CASE("a burst of keep-alive connections is spread over the bundled workers") {
    // A shared accept queue hands a burst to whichever worker is awake; the load board makes
    // a worker holding clearly more connections leave the next one to its peer.
    Fleet fleet(2);
    constexpr int kConnections = 48;
    std::vector<std::unique_ptr<HttpConnection>> conns;
    for (int i = 0; i < kConnections; ++i) {
        conns.push_back(std::make_unique<HttpConnection>(fleet.port));
        REQUIRE(conns.back()->connected());
    }
    std::map<std::string, int> per_pid;
    for (auto& c : conns) {
        REQUIRE(c->request("/demo/whoami"));
        auto r = c->read_response();
        REQUIRE(r);
        const auto at = r->body.find("\"pid\":");
        REQUIRE(at != std::string::npos);
        ++per_pid[r->body.substr(at + 6, r->body.find_first_of(",}", at) - at - 6)];
    }
    std::string split;
    for (const auto& [pid, n] : per_pid) split += fmt::format("pid {}: {} ", pid, n);
    CAPTURE(split);
    REQUIRE(per_pid.size() == 2);
    for (const auto& [pid, n] : per_pid) CHECK(n >= kConnections / 3);
}

TEST_CASE("kill -9 of a worker: its slot is refilled within 2 s and requests keep succeeding") {
    Fleet fleet(3);
    const auto before = fleet.daemon->workers();
    REQUIRE(before.size() == 3);
    const pid_t victim = before[1];
    REQUIRE(::kill(victim, SIGKILL) == 0);
    const auto killed_at = std::chrono::steady_clock::now();
    // The daemon keeps the listen socket open: the remaining workers take every request.
    int ok = 0;
    for (int i = 0; i < 30; ++i) {
        auto r = http_get(fleet.port, "/healthz", 2s);
        ok += r && r->status == 200;
    }
    CHECK(ok == 30);
    const bool refilled = eventually(
        [&] {
            const auto now = fleet.daemon->workers();
            return now.size() == 3 && std::find(now.begin(), now.end(), victim) == now.end();
        },
        2s - std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - killed_at));
    CHECK_MESSAGE(refilled, fleet.daemon->log());
    CHECK(fleet.daemon->wait_for_log(fmt::format("(pid {}, gen 1) was killed by SIGKILL", victim), 2s));
}

TEST_CASE("the daemon's signals sent to a bundled worker by mistake (HUP, USR1, USR2) do not end it") {
    Fleet fleet(2);
    const auto before = fleet.daemon->workers();
    REQUIRE(before.size() == 2);
    for (pid_t w : before) {
        for (int sig : {SIGHUP, SIGUSR1, SIGUSR2}) REQUIRE(::kill(w, sig) == 0);
    }
    // The default action of each would have ended the worker at once; by the time a round of
    // requests (and the daemon's status) has gone through, it would show.
    for (int i = 0; i < 20; ++i) {
        CHECK(http_status(fleet.port, "/healthz", 2s) == 200);
    }
    (void)fleet.daemon->status();
    CHECK(fleet.daemon->workers() == before);
    CHECK(fleet.daemon->count_in_log("exited") == 0);
    CHECK(fleet.daemon->count_in_log("killed by") == 0);
}
