// End-to-end: socket activation. Started with LISTEN_FDS, workerd serves on the sockets it was
// handed (made by the test, or by systemd's own systemd-socket-activate) and binds nothing.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>

#include <fmt/format.h>

#include "daemon/os/listener.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
namespace fs = std::filesystem;

namespace {

std::string socket_link(int fd) {
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    return fmt::format("socket:[{}]", st.st_ino);
}

bool holds(pid_t pid, const std::string& link) {
    for (const auto& [fd, target] : open_fds(pid)) {
        if (target == link) return true;
    }
    return false;
}

}  // namespace

TEST_CASE("started with LISTEN_FDS, workerd serves on the test's sockets and binds nothing") {
    TempDir dir;
    // The sockets, as systemd makes them: bound and listening before workerd starts.
    workerd::ListenAddress tcp;
    tcp.host = "127.0.0.1";
    tcp.name = "listen0";
    const workerd::Listener web = workerd::open_listener(tcp, 64);
    const int port = web.address().port;
    workerd::ListenAddress unix_address;
    unix_address.kind = workerd::ListenAddress::Kind::unix_path;
    unix_address.path = dir.path() + "/api.sock";
    unix_address.name = "listen1";
    const workerd::Listener api = workerd::open_listener(unix_address, 64);
    // The spec lists the same addresses: binding 127.0.0.1:PORT again would fail (in use).
    const std::string control_socket = dir.path() + "/control.sock";
    const std::string spec = dir.write("workerd.yaml", SpecBuilder(port).also_listen("unix:" + unix_address.path)
                                                           .workers(2).builtin()
                                                           .set("control", fmt::format("{{socket: {}}}", control_socket)));
    // LISTEN_PID must be workerd's own pid: a shell sets it, then becomes workerd.
    std::vector<std::string> argv{"/bin/sh", "-c", "export LISTEN_PID=$$; exec \"$0\" \"$@\""};
    for (const auto& a : workerd_start(spec)) argv.push_back(a);
    ChildProcess daemon(argv, dir.path() + "/daemon.log",
                        {"LISTEN_FDS=2", "LISTEN_FDNAMES=workerd.socket:workerd.socket"},
                        {web.fd(), api.fd()});
    const auto log = [&] { return read_file(dir.path() + "/daemon.log"); };
    REQUIRE_MESSAGE(wait_status(control_socket, [](const auto& s) { return fleet_ready(s, 2); }, 10s), log());
    CHECK(log().find(fmt::format("listen 127.0.0.1:{}: using the inherited socket", port)) != std::string::npos);
    CHECK(log().find(fmt::format("listen unix:{}: using the inherited socket", unix_address.path)) != std::string::npos);

    CHECK(http_status(port, "/healthz") == 200);
    // The daemon and its workers hold exactly the test's sockets.
    for (pid_t pid : std::vector<pid_t>{daemon.pid(), workers_of(daemon.pid()).at(0)}) {
        CHECK(holds(pid, socket_link(web.fd())));
        CHECK(holds(pid, socket_link(api.fd())));
    }
    // The workers see no trace of the daemon's activation variables but their own.
    const auto env = environment_of(workers_of(daemon.pid()).at(0));
    CHECK(env.at("LISTEN_FDS") == "2");
    CHECK(env.at("LISTEN_FDNAMES") == "listen0:listen1");

    daemon.signal(SIGTERM);
    REQUIRE(daemon.wait_exit(15s));
    // A stopping workerd closes the sockets it made, not systemd's: connections wait there
    // for the next daemon instead of being refused.
    HttpConnection waiting(port);
    CHECK(waiting.connected());
    // The Unix socket file is its creator's (systemd's) to remove, not workerd's.
    CHECK(fs::exists(unix_address.path));
}

TEST_CASE("under systemd-socket-activate, a request made before workerd started is served") {
    TempDir dir;
    const int port = free_tcp_port();
    const std::string spec = dir.write("workerd.yaml", SpecBuilder(port).builtin()
                                                           .set("control", fmt::format("{{socket: {}/control.sock}}", dir.path())));
    // systemd's tool binds, waits for the first connection, then execs workerd on the socket.
    std::vector<std::string> argv{"/usr/bin/systemd-socket-activate", "-l", fmt::format("127.0.0.1:{}", port),
                                  "--fdname=web"};
    for (const auto& a : workerd_start(spec)) argv.push_back(a);
    ChildProcess activator(argv, dir.path() + "/daemon.log");
    const auto log = [&] { return read_file(dir.path() + "/daemon.log"); };
    REQUIRE_MESSAGE(eventually([&] { return log().find("Listening on") != std::string::npos; }, 10s), log());
    const auto r = http_get(port, "/healthz", 15s);
    REQUIRE_MESSAGE(r, log());
    CHECK(r->status == 200);
    CHECK(log().find("using the inherited socket 'web'") != std::string::npos);
    activator.signal(SIGTERM);
    CHECK(activator.wait_exit(15s));
}
