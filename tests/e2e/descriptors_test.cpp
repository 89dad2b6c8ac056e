// The daemon's own descriptors: every socket it holds is close-on-exec, the connections of
// its control and metrics clients included. Workers get only what spawn hands them (it closes
// the rest), but SIGUSR2 re-executes the daemon itself: a connection without the flag would
// stay in the new image, owned by nobody, its client waiting for an answer that never comes.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <string>

#include <fmt/format.h>

#include "daemon/os/unique_fd.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;

namespace {

// The open flags of a descriptor of `pid` (/proc/PID/fdinfo/FD, octal).
long fd_flags(pid_t pid, int fd) {
    std::ifstream in(fmt::format("/proc/{}/fdinfo/{}", pid, fd));
    for (std::string key; in >> key;) {
        if (key == "flags:") {
            std::string octal;
            in >> octal;
            return std::stol(octal, nullptr, 8);
        }
    }
    return -1;
}

}  // namespace

TEST_CASE("every socket of the daemon is close-on-exec, with a control and a metrics client connected") {
    TempDir dir;
    const int port = free_tcp_port();
    const int metrics_port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).builtin().set("metrics", fmt::format("{{listen: \"127.0.0.1:{}\"}}", metrics_port)));
    REQUIRE_MESSAGE(daemon.wait_ready(1, 30s), daemon.log());
    // Connected and left idle: the daemon has accepted them and waits for a request.
    ControlClient control(daemon.control_socket());
    REQUIRE(control.connected());
    ControlClient answered(daemon.control_socket());
    REQUIRE(answered.call("version"));  // accepted, answered, and still open
    workerd::UniqueFd metrics(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(metrics_port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(metrics.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    // Accepted once the daemon's loop has turned: a status answered after the connect says so.
    REQUIRE(answered.call("status"));
    int sockets = 0;
    for (const auto& [fd, target] : open_fds(daemon.pid())) {
        if (target.rfind("socket:", 0) != 0) continue;
        ++sockets;
        CAPTURE(fd);
        CAPTURE(target);
        const long flags = fd_flags(daemon.pid(), fd);
        REQUIRE(flags >= 0);
        CHECK((flags & O_CLOEXEC) != 0);
    }
    // The listener, the control and metrics listeners, the two control clients and the
    // metrics one.
    CHECK(sockets >= 6);
}
