#include "daemon/os/load_board.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <csignal>
#include <vector>

using namespace workerd;

TEST_CASE("a worker defers only to a live peer holding clearly fewer connections") {
    UniqueFd fd = LoadBoard::create();
    auto a = LoadBoard::attach(fd.get(), 0);
    auto b = LoadBoard::attach(fd.get(), 1);
    REQUIRE(a);
    REQUIRE(b);
    const std::int64_t now = LoadBoard::now_ms();
    a->touch(now);
    b->touch(now);

    b->set_connections(5);
    CHECK_FALSE(a->peer_has_room(5, now));
    CHECK_FALSE(a->peer_has_room(6, now));  // within the margin
    CHECK(a->peer_has_room(7, now));
    a->set_connections(3);
    CHECK(b->peer_has_room(5, now));        // a holds 2 fewer: b yields
    a->set_connections(4);
    CHECK_FALSE(b->peer_has_room(5, now));
    a->set_connections(0);
    CHECK_FALSE(b->peer_has_room(1, now));  // nobody yields below the margin

    SUBCASE("a peer that stopped looking in no longer counts") {
        CHECK_FALSE(a->peer_has_room(7, now + LoadBoard::kStaleAfterMs + 1));
        b->touch(now + LoadBoard::kStaleAfterMs);
        CHECK(a->peer_has_room(7, now + LoadBoard::kStaleAfterMs + 1));
    }
    SUBCASE("a draining peer leaves at once") {
        b->leave();
        CHECK_FALSE(a->peer_has_room(7, now));
    }
    SUBCASE("a gone peer leaves when its mapping goes") {
        b.reset();
        CHECK_FALSE(a->peer_has_room(7, now));
    }
    SUBCASE("a later slot is seen by earlier ones") {
        auto c = LoadBoard::attach(fd.get(), 7);
        REQUIRE(c);
        b->leave();
        c->touch(now);
        CHECK(a->peer_has_room(7, now));
    }
}

TEST_CASE("reuse_port: cpu: a worker takes from a peer's queue only when that peer holds clearly more, or is gone") {
    UniqueFd fd = LoadBoard::create();
    auto a = LoadBoard::attach(fd.get(), 0);
    auto b = LoadBoard::attach(fd.get(), 1);
    REQUIRE(a);
    REQUIRE(b);
    const std::int64_t now = LoadBoard::now_ms();
    const int m = LoadBoard::kStealMargin;
    a->touch(now);
    b->touch(now);
    b->set_connections(10);
    CHECK_FALSE(a->busier(1, 10 - m + 1, now, m));
    CHECK(a->busier(1, 10 - m, now, m));
    // The converse of peer_has_room with the same margin: b yields its queue exactly when a may
    // take from it, so a connection never waits on two workers that each leave it to the other.
    for (int mine = 0; mine <= 12; ++mine) {
        a->set_connections(mine);
        CHECK(b->peer_has_room(10, now, m) == a->busier(1, mine, now, m));
    }
    CHECK(a->busier(1, 100, now + LoadBoard::kStaleAfterMs + 1, m));  // silent: take
    b->leave();
    CHECK(a->busier(1, 100, now, m));  // draining: take
    CHECK(a->busier(5, 100, now, m));  // never there: take
}

TEST_CASE("attach refuses what is not a board slot") {
    UniqueFd fd = LoadBoard::create();
    CHECK_FALSE(LoadBoard::attach(fd.get(), -1));
    CHECK_FALSE(LoadBoard::attach(fd.get(), LoadBoard::kSlots));
    CHECK_FALSE(LoadBoard::attach(0, 0));  // stdin is not a board
}

TEST_CASE("the worker on a CPU: live, another slot, not clearly busier; and one token for the whole board") {
    UniqueFd fd = LoadBoard::create();
    auto a = LoadBoard::attach(fd.get(), 0);
    auto b = LoadBoard::attach(fd.get(), 1);
    REQUIRE(a);
    REQUIRE(b);
    const std::int64_t now = LoadBoard::now_ms();
    a->touch(now);
    b->touch(now);
    CHECK_FALSE(a->worker_on_cpu(3, 0, now));  // nobody has said where it runs
    a->set_cpu(2);
    b->set_cpu(3);
    CHECK_FALSE(a->worker_on_cpu(2, 0, now));  // its own CPU: no other worker there
    const auto on3 = a->worker_on_cpu(3, 0, now);
    REQUIRE(on3);
    CHECK(*on3 == ::getpid());  // (both attached from this process)
    const int m = LoadBoard::kStealMargin;
    b->set_connections(10);
    CHECK(a->worker_on_cpu(3, 10 - m + 1, now));
    CHECK_FALSE(a->worker_on_cpu(3, 10 - m, now));  // b holds clearly more
    CHECK_FALSE(a->worker_on_cpu(3, 100, now + LoadBoard::kStaleAfterMs + 1));  // silent
    b->leave();
    CHECK_FALSE(a->worker_on_cpu(3, 100, now));  // draining

    CHECK(a->token().size() == 32);
    CHECK(a->token() == b->token());
    UniqueFd other = LoadBoard::create();
    auto c = LoadBoard::attach(other.get(), 0);
    REQUIRE(c);
    CHECK(c->token() != a->token());
}

TEST_CASE("of several workers on a CPU, the one holding the fewest connections") {
    UniqueFd fd = LoadBoard::create();
    auto a = LoadBoard::attach(fd.get(), 0);
    REQUIRE(a);
    const std::int64_t now = LoadBoard::now_ms();
    // Peers attached from forked children, so each entry has a pid of its own.
    std::vector<pid_t> children;
    for (int slot = 1; slot <= 3; ++slot) {
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            auto b = LoadBoard::attach(fd.get(), slot);
            if (!b) ::_exit(1);
            b->set_cpu(1);
            b->set_connections(slot == 2 ? 1 : 5);
            b->touch(now);
            (void)!::write(ready[1], "x", 1);
            ::pause();
            ::_exit(0);
        }
        ::close(ready[1]);
        char c = 0;
        REQUIRE(::read(ready[0], &c, 1) == 1);
        ::close(ready[0]);
        children.push_back(child);
    }
    const auto on1 = a->worker_on_cpu(1, 10, now);
    for (pid_t child : children) {
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
    }
    REQUIRE(on1);
    CHECK(*on1 == children[1]);  // slot 2's, with 1 connection against the others' 5
}
