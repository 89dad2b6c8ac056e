// The handover a SIGUSR2 re-exec passes to itself, and the matching of inherited sockets
// (SIGUSR2 and systemd socket activation) to the spec's listen addresses.
#include "daemon/wire/handover.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include "tests/support/test_support.hpp"

using namespace workerd;
using json = nlohmann::json;

namespace {

ListenAddress tcp(const std::string& host, std::uint16_t port, const std::string& name = "listen0") {
    ListenAddress a;
    a.host = host;
    a.port = port;
    a.name = name;
    return a;
}

ListenAddress unix_at(const std::string& path, const std::string& name = "listen0") {
    ListenAddress a;
    a.kind = ListenAddress::Kind::unix_path;
    a.path = path;
    a.name = name;
    return a;
}

InheritedSocket inherit(const Listener& l, const std::string& name) {
    return InheritedSocket{UniqueFd(::fcntl(l.fd(), F_DUPFD_CLOEXEC, 0)), name, false};
}

}  // namespace

TEST_CASE("a handover survives its JSON form; descriptors that are not open are refused") {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd r(p[0]), w(p[1]);
    Handover h;
    h.generation = 7;
    h.desired = 3;
    h.pinned = true;
    h.listeners.push_back({UniqueFd(::fcntl(r.get(), F_DUPFD_CLOEXEC, 0)), "web", true});
    h.control_fd = w.get();
    h.workers.push_back({1234, 2, 7, true, false, 5000, r.get(), -1, w.get()});
    const json j = handover_to_json(h);
    Handover back = handover_from_json(j);
    CHECK(back.generation == 7);
    CHECK(back.desired == 3);
    CHECK(back.pinned);
    REQUIRE(back.listeners.size() == 1);
    CHECK(back.listeners[0].name == "web");
    CHECK(back.listeners[0].owns_path);
    CHECK(back.control_fd == w.get());
    CHECK(back.metrics_fd == -1);
    REQUIRE(back.workers.size() == 1);
    CHECK(back.workers[0].pid == 1234);
    CHECK(back.workers[0].slot == 2);
    CHECK(back.workers[0].ready);
    CHECK(back.workers[0].stdout_fd == r.get());
    CHECK(back.workers[0].stderr_fd == -1);
    CHECK(back.fds().size() == 4);
    back.listeners[0].fd.release();  // the same descriptor as h's; closed once, by h

    json bad = j;
    bad["control_fd"] = 999;  // not open
    CHECK_THROWS_AS(handover_from_json(bad), std::invalid_argument);
    bad = j;
    bad["workers"][0].erase("pid");
    CHECK_THROWS_AS(handover_from_json(bad), std::invalid_argument);
    bad = j;
    bad["workers"][0]["pid"] = 1;
    CHECK_THROWS_AS(handover_from_json(bad), std::invalid_argument);
    CHECK_THROWS_AS(handover_from_json(json::array()), std::invalid_argument);
    h.listeners[0].fd.reset();
}

TEST_CASE("take_handover: absent, malformed") {
    ::unsetenv(Handover::kVariable);
    CHECK_FALSE(take_handover());
    ::setenv(Handover::kVariable, "{not json", 1);
    CHECK_THROWS_AS(take_handover(), std::invalid_argument);
    CHECK(std::getenv(Handover::kVariable) == nullptr);  // taken, even when malformed
}

TEST_CASE("take_listen_fds ignores sockets meant for another process") {
    ::setenv("LISTEN_PID", "1", 1);
    ::setenv("LISTEN_FDS", "2", 1);
    ::setenv("LISTEN_FDNAMES", "a:b", 1);
    CHECK(take_listen_fds().empty());
    CHECK(std::getenv("LISTEN_FDS") == nullptr);
    CHECK(std::getenv("LISTEN_PID") == nullptr);
}

TEST_CASE("inherited sockets match by name, else by exact address; the rest are bound") {
    workerd::test::TempDir dir;
    Listener web = open_listener(tcp("127.0.0.1", 0), 16);
    Listener api = open_listener(unix_at(dir.path() + "/api.sock"), 16);
    const std::uint16_t web_port = web.address().port;

    CHECK(socket_bound_to(web.fd(), tcp("127.0.0.1", web_port)));
    CHECK(socket_bound_to(web.fd(), tcp("127.0.0.1", 0)));        // port 0: any port
    CHECK_FALSE(socket_bound_to(web.fd(), tcp("127.0.0.1", web_port + 1)));
    CHECK_FALSE(socket_bound_to(web.fd(), tcp("::1", web_port)));
    CHECK_FALSE(socket_bound_to(web.fd(), unix_at(dir.path() + "/api.sock")));
    CHECK(socket_bound_to(api.fd(), unix_at(dir.path() + "/api.sock")));
    CHECK_FALSE(socket_bound_to(api.fd(), unix_at(dir.path() + "/other.sock")));

    // By address (systemd's default names are the unit's), in the spec's order, plus one to bind.
    std::vector<InheritedSocket> inherited;
    inherited.push_back(inherit(api, "workerd.socket"));
    inherited.push_back(inherit(web, "workerd.socket"));
    inherited.push_back(inherit(web, "spare"));  // a second socket nothing asks for
    const auto listeners = adopt_or_open_listeners(
        {tcp("127.0.0.1", web_port, "listen0"), unix_at(dir.path() + "/api.sock", "listen1"), tcp("127.0.0.1", 0, "listen2")},
        16, inherited);
    REQUIRE(listeners.size() == 3);
    CHECK(listeners[0].address().port == web_port);
    CHECK(socket_bound_to(listeners[1].fd(), unix_at(dir.path() + "/api.sock")));
    CHECK(listeners[2].address().port != 0);
    CHECK(listeners[2].address().port != web_port);  // bound anew
    REQUIRE(inherited.size() == 1);
    CHECK(inherited[0].name == "spare");

    // A port-0 address takes only a socket carrying its name (a handover's case).
    std::vector<InheritedSocket> named;
    named.push_back(inherit(web, "other"));
    named.push_back(inherit(web, "listen0"));
    const auto by_name = adopt_or_open_listeners({tcp("127.0.0.1", 0, "listen0")}, 16, named);
    CHECK(by_name[0].address().port == web_port);
    REQUIRE(named.size() == 1);
    CHECK(named[0].name == "other");
}
