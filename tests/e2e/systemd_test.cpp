// End-to-end: systemd integration. sd_notify against a datagram socket the test owns, and the
// shipped units checked with systemd-analyze.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {
// NOTIFY_SOCKET as systemd has it: a datagram socket; every message is one datagram.
class NotifySocket {
public:
    explicit NotifySocket(const std::string& path) : path_(path) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    ~NotifySocket() { ::close(fd_); }
    // The next message, waiting up to `timeout`.
    std::optional<std::string> next(Ms timeout) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
        char buf[4096];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) return std::nullopt;
        return std::string(buf, static_cast<std::size_t>(n));
    }
    // Messages until one contains `needle` (returned), skipping watchdog pings.
    std::optional<std::string> until(const std::string& needle, Ms timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            auto m = next(std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now()));
            if (!m) return std::nullopt;
            if (m->find(needle) != std::string::npos) return m;
        }
        return std::nullopt;
    }
    const std::string& path() const { return path_; }

private:
    int fd_ = -1;
    std::string path_;
};
}  // namespace

TEST_CASE("sd_notify: READY after every worker is ready, RELOADING/READY around a reload and a SIGUSR2 upgrade, STOPPING, WATCHDOG") {
    TempDir dir;
    NotifySocket notify(dir.path() + "/notify.sock");
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(3).builtin(""),
                  {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=200000"});
    auto ready = notify.until("READY=1", 10s);
    REQUIRE(ready);
    CHECK(daemon.count_in_log("ready: said READY") == 3);  // not before the whole fleet
    CHECK(ready->find("STATUS=3 workers ready") != std::string::npos);
    // The workers do not get NOTIFY_SOCKET: only the daemon talks to systemd.
    for (pid_t w : daemon.workers()) CHECK(environment_of(w).count("NOTIFY_SOCKET") == 0);

    // Watchdog pings at half WATCHDOG_USEC (100 ms): at least 5 in a second.
    int pings = 0;
    const auto until = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < until) {
        if (auto m = notify.next(200ms); m && *m == "WATCHDOG=1") ++pings;
    }
    CHECK(pings >= 5);

    daemon.process().signal(SIGHUP);
    auto reloading = notify.until("RELOADING=1", 5s);
    REQUIRE(reloading);
    CHECK(reloading->find("MONOTONIC_USEC=") != std::string::npos);
    auto again = notify.until("READY=1", 10s);
    REQUIRE(again);
    CHECK(daemon.count_in_log("generation 2 rolled out") == 1);

    // SIGUSR2: the re-executed daemon keeps NOTIFY_SOCKET and the watchdog, and says READY
    // again once its new generation is out.
    daemon.process().signal(SIGUSR2);
    reloading = notify.until("RELOADING=1", 5s);
    REQUIRE(reloading);
    CHECK(reloading->find("STATUS=re-executing") != std::string::npos);
    again = notify.until("READY=1", 10s);
    REQUIRE(again);
    CHECK(daemon.count_in_log("generation 3 rolled out") == 1);
    CHECK(notify.until("WATCHDOG=1", 2s).has_value());
    for (pid_t w : daemon.workers()) CHECK(environment_of(w).count("NOTIFY_SOCKET") == 0);

    daemon.process().signal(SIGTERM);
    CHECK(notify.until("STOPPING=1", 5s).has_value());
}

TEST_CASE("the shipped systemd units pass systemd-analyze verify") {
    // All in one directory: the socket unit refers to its service. verify looks up the
    // ExecStart binaries: point them at the build's.
    TempDir dir;
    std::vector<std::string> paths;
    for (const char* unit : {"systemd/workerd.service", "systemd/workerd@.service", "systemd/workerd.socket"}) {
        std::string text = read_file(source_path(unit));
        for (std::string from : {"/usr/bin/workerd", "/usr/bin/workerctl"}) {
            const std::string to = bin_path(from.substr(9));
            for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
                text.replace(at, from.size(), to);
            }
        }
        paths.push_back(dir.write(std::string(unit).substr(8), text));
    }
    for (const auto& path : paths) {
        CAPTURE(path);
        const auto r = run_program({"/usr/bin/systemd-analyze", "verify", "--man=no", path});
        CHECK_MESSAGE(r.exit_code == 0, r.output);
    }
}
