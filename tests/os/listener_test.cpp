#include "daemon/os/listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

#include "tests/support/test_support.hpp"

using namespace workerd;

namespace {
ListenAddress tcp(const std::string& host, std::uint16_t port) { return ListenAddress::tcp(host, port); }
ListenAddress unix_at(const std::string& path) { return ListenAddress::unix_socket(path); }
bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}
}  // namespace

TEST_CASE("backlog is clamped to somaxconn") {
    CHECK(clamp_backlog(2048, 4096) == 2048);
    CHECK(clamp_backlog(8192, 4096) == 4096);
    CHECK(clamp_backlog(128, 0) == 128);
    CHECK(read_somaxconn() > 0);
}

TEST_CASE("tcp port 0 gets a real port; a second bind on it names the address and the error") {
    Listener first = open_listener(tcp("127.0.0.1", 0), 16);
    const auto port = first.address().port;
    CHECK(port != 0);
    CHECK(first.fd() >= 0);
    try {
        open_listener(tcp("127.0.0.1", port), 16);
        FAIL("second bind succeeded");
    } catch (const ListenError& e) {
        CHECK(std::string(e.what()) ==
              "bind 127.0.0.1:" + std::to_string(port) + " failed: Address already in use");
    }
}

TEST_CASE("ipv6 loopback") {
    Listener l = open_listener(tcp("::1", 0), 16);
    CHECK(l.address().port != 0);
}

TEST_CASE("listener fds are close-on-exec") {
    Listener l = open_listener(tcp("127.0.0.1", 0), 16);
    CHECK((::fcntl(l.fd(), F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("connections accepted on a tcp listener have TCP_NODELAY without the worker asking") {
    for (const char* host : {"127.0.0.1", "::1"}) {
        CAPTURE(host);
        Listener l = open_listener(tcp(host, 0), 16);
        UniqueFd client(::socket(std::string(host) == "::1" ? AF_INET6 : AF_INET, SOCK_STREAM, 0));
        sockaddr_storage to{};
        socklen_t len = sizeof to;
        REQUIRE(::getsockname(l.fd(), reinterpret_cast<sockaddr*>(&to), &len) == 0);
        REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&to), len) == 0);
        UniqueFd accepted(::accept(l.fd(), nullptr, nullptr));
        REQUIRE(accepted);
        int nodelay = 0;
        socklen_t size = sizeof nodelay;
        REQUIRE(::getsockopt(accepted.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &size) == 0);
        CHECK(nodelay != 0);
    }
}

TEST_CASE("unix sockets: stale files are replaced, live ones and non-sockets refused") {
    test::TempDir dir;
    const std::string path = dir.path() + "/app.sock";
    {
        // A stale socket: bound, then its owner went away without unlinking.
        UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strcpy(sun.sun_path, path.c_str());
        REQUIRE(::bind(stale.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    }
    REQUIRE(exists(path));
    {
        Listener live = open_listener(unix_at(path), 16);
        CHECK(exists(path));
        CHECK_THROWS_WITH_AS(open_listener(unix_at(path), 16),
                             doctest::Contains("another process is accepting"), ListenError);
    }
    CHECK_FALSE(exists(path));  // removed by its owner

    const std::string file = dir.write("plain", "not a socket");
    CHECK_THROWS_WITH_AS(open_listener(unix_at(file), 16),
                         doctest::Contains("exists and is not a socket"), ListenError);
    CHECK(exists(file));  // never deleted
}
