#include "daemon/os/slot_listeners.hpp"

#include <sys/socket.h>

#include <doctest/doctest.h>

#include "tests/support/test_support.hpp"

using namespace workerd;

namespace {

ListenAddress loopback(std::uint16_t port) {
    ListenAddress a;
    a.host = "127.0.0.1";
    a.port = port;
    a.text = "127.0.0.1:" + std::to_string(port);
    a.name = "listen0";
    return a;
}

int socket_option(int fd, int option) {
    int value = 0;
    socklen_t len = sizeof value;
    REQUIRE(::getsockopt(fd, SOL_SOCKET, option, &value, &len) == 0);
    return value;
}

}  // namespace

TEST_CASE("slots get sockets of their own on the main listener's port; slot 0 uses the main one") {
    SlotListeners::Set main{std::make_shared<Listener>(open_listener(loopback(0), 16, true))};
    CHECK(socket_option(main[0]->fd(), SO_REUSEPORT) == 1);
    SlotListeners slots;
    CHECK(slots.for_slot(0, main) == main);
    const auto one = slots.for_slot(1, main);
    REQUIRE(one.size() == 1);
    CHECK(one[0] != main[0]);
    CHECK(one[0]->address().port == main[0]->address().port);
    CHECK(socket_option(one[0]->fd(), SO_ACCEPTCONN) == 1);
    CHECK(slots.for_slot(1, main) == one);  // kept while the slot lives
    const auto two = slots.for_slot(2, main);
    CHECK(two[0] != one[0]);
    CHECK(slots.siblings_of(*main[0]).size() == 2);
    slots.drop(1);
    CHECK(slots.siblings_of(*main[0]).size() == 1);
    CHECK(slots.for_slot(1, main) != one);  // a new one after a drop
    slots.retain({});
    CHECK(slots.siblings_of(*main[0]).empty());
}

TEST_CASE("a listener opened without SO_REUSEPORT cannot be joined: the slots share it") {
    SlotListeners::Set main{std::make_shared<Listener>(open_listener(loopback(0), 16, false))};
    SlotListeners slots;
    CHECK(slots.for_slot(1, main) == main);
    CHECK(slots.siblings_of(*main[0]).empty());
}

TEST_CASE("Unix listeners are shared by every slot") {
    test::TempDir dir;
    const ListenAddress a = ListenAddress::unix_socket(dir.path() + "/app.sock");
    SlotListeners::Set main{std::make_shared<Listener>(open_listener(a, 16, true))};
    SlotListeners slots;
    CHECK(slots.for_slot(3, main) == main);
}
