// End-to-end: nothing a worker starts outlives its worker or the daemon, so that no orphan
// keeps the listen port (daemon/os/guardian.hpp, daemon/os/orphans.hpp). gunicorn forks its own
// workers: they are the daemon's grandchildren.
#include <doctest/doctest.h>

#include <unistd.h>

#include <csignal>

#include <fmt/format.h>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {

std::string gunicorn_spec(int port, int workers) {
    return SpecBuilder(port).workers(workers)
        .command({"/usr/bin/gunicorn", "--workers", "2", "--graceful-timeout", "5", "wsgi_hello:app"})
        .cwd(source_path("tests/data/apps")).set("graceful_timeout", "10s");
}

bool serves(int port) {
    const auto r = http_get(port, "/", 2s);
    return r && r->status == 200;
}

}  // namespace

TEST_CASE("kill -9 of the daemon: within 1 s nothing of the fleet is left, and a new daemon binds the port") {
    TempDir dir;
    const int port = free_tcp_port();
    const std::string spec = gunicorn_spec(port, 2);
    std::vector<pid_t> fleet;
    {
        Daemon daemon(dir, spec);
        // Two gunicorn masters, each with two forked workers: 4 grandchildren of the daemon.
        const auto fleet_up = [&] {
            std::size_t forked = 0;
            for (pid_t master : daemon.workers()) forked += children_of(master).size();
            return daemon.workers().size() == 2 && forked == 4;
        };
        REQUIRE_MESSAGE(eventually(fleet_up, 20s), daemon.log());
        REQUIRE(eventually([&] { return serves(port); }, 20s));
        fleet = descendants_of(daemon.pid());  // and the guardian
        daemon.process().signal(SIGKILL);
        REQUIRE(daemon.process().wait_exit(5s));
        const auto t0 = std::chrono::steady_clock::now();
        CHECK_MESSAGE(eventually([&] { return all_gone(fleet); }, 1s), daemon.log());
        MESSAGE(fmt::format("the fleet had {} processes; looked {} ms after the daemon's death", fleet.size(),
                            std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0).count()));
        CHECK(!serves(port));
    }
    // The same spec again, at once: the port is free.
    TempDir again;
    Daemon daemon(again, spec);
    CHECK_MESSAGE(eventually([&] { return serves(port); }, 20s), daemon.log());
    CHECK_FALSE(daemon.process().exited());
}

TEST_CASE("a gunicorn master that dies alone takes its forked workers with it, and its slot serves again") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, gunicorn_spec(port, 1));
    REQUIRE(eventually([&] { return daemon.workers().size() == 1 && children_of(daemon.workers().at(0)).size() == 2; }, 20s));
    REQUIRE(eventually([&] { return serves(port); }, 20s));
    const pid_t master = daemon.workers().at(0);
    const auto forked = children_of(master);
    ::kill(master, SIGKILL);
    // SIGTERM to what is left of its group: gunicorn's workers finish and exit.
    CHECK_MESSAGE(eventually([&] { return all_gone(forked); }, 5s), daemon.log());
    REQUIRE(eventually([&] { return daemon.workers().size() == 1 && daemon.workers().at(0) != master; }, 10s));
    CHECK(eventually([&] { return serves(port); }, 20s));
    const auto status = daemon.status();
    CHECK(status["workers"][0]["last_exit"] == "crash by signal");
}

TEST_CASE("a child that left its worker's process group is stopped when its worker ends") {
    TempDir dir;
    const int port = free_tcp_port();
    const std::string pid_file = dir.path() + "/escapee.pid";
    Daemon daemon(dir, SpecBuilder(port).python(source_path("tests/data/apps/escapee.py"), {pid_file})
                           .set("graceful_timeout", "10s"));
    // Every escapee (the replacement worker starts another) left every group the test knows
    // of: each is killed here, by pid, however the test ends.
    std::vector<pid_t> escapees;
    struct KillAtEnd {
        std::vector<pid_t>& pids;
        ~KillAtEnd() {
            for (pid_t p : pids) ::kill(p, SIGKILL);
        }
    } kill_at_end{escapees};
    const auto next_escapee = [&] {
        REQUIRE(eventually([&] { return !read_file(pid_file).empty(); }, 20s));
        escapees.push_back(std::stoi(read_file(pid_file)));
        ::unlink(pid_file.c_str());
        return escapees.back();
    };
    const pid_t escapee = next_escapee();
    REQUIRE(process_alive(escapee));
    REQUIRE(daemon.workers().size() == 1);
    ::kill(daemon.workers().at(0), SIGKILL);
    // Orphaned, it came to the daemon (a child subreaper), which stops it with its worker.
    CHECK_MESSAGE(eventually([&] { return !process_alive(escapee); }, 5s), daemon.log());
    // The replacement's escapee goes with a graceful stop of the daemon, which waits for it.
    const pid_t second = next_escapee();
    daemon.process().signal(SIGTERM);
    CHECK(daemon.process().wait_exit(15s));
    CHECK(!process_alive(second));
}
