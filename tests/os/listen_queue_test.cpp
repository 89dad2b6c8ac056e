#include "daemon/os/listen_queue.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "daemon/os/listener.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd;

namespace {
// Connects `n` clients that nobody accepts; they wait in the listener's queue.
std::vector<UniqueFd> queue_up(const Listener& l, int n) {
    sockaddr_storage to{};
    socklen_t len = sizeof to;
    REQUIRE(::getsockname(l.fd(), reinterpret_cast<sockaddr*>(&to), &len) == 0);
    std::vector<UniqueFd> clients;
    for (int i = 0; i < n; ++i) {
        UniqueFd c(::socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&to), len) == 0);
        clients.push_back(std::move(c));
    }
    return clients;
}
}  // namespace

TEST_CASE("the accept queue of a TCP and of a Unix listener: depth and maximum") {
    test::TempDir dir;
    for (const bool unix_socket : {false, true}) {
        CAPTURE(unix_socket);
        const ListenAddress a = unix_socket ? ListenAddress::unix_socket(dir.path() + "/q.sock", "q")
                                            : ListenAddress::tcp("127.0.0.1", 0, "q");
        Listener l = open_listener(a, 16);
        auto empty = listen_queue(l.fd(), unix_socket);
        REQUIRE(empty);
        CHECK(empty->depth == 0);
        CHECK(empty->max == 16);
        const auto clients = queue_up(l, 3);
        auto waiting = listen_queue(l.fd(), unix_socket);
        REQUIRE(waiting);
        CHECK(waiting->depth == 3);
        CHECK(waiting->max == 16);
    }
}
