// Unit tests of http::Handoff: a connection and its bytes through a worker's inbox, and what
// an inbox refuses.
#include "daemon/http/handoff.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <string>

#include "daemon/os/listener.hpp"

using namespace workerd;
using namespace workerd::http;

namespace {

const std::string kToken = "00112233445566778899aabbccddeeff";

// A connected loopback TCP socket (the client's end; the accepted one is closed).
UniqueFd tcp_socket(Listener& l) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(l.address().port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return s;
}

ino_t inode(int fd) {
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    return st.st_ino;
}

}  // namespace

TEST_CASE("a connection and its bytes go through a worker's inbox; one inbox per process and token") {
    auto inbox = Handoff::open(kToken);
    REQUIRE(inbox);
    CHECK_FALSE(Handoff::open(kToken));  // the name is this process's already
    CHECK_FALSE(inbox->receive());       // empty

    ListenAddress a;
    a.host = "127.0.0.1";
    a.name = "listen0";
    Listener l = open_listener(a, 8);
    UniqueFd conn = tcp_socket(l);
    const std::string bytes = "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\n";
    REQUIRE(inbox->send(::getpid(), conn.get(), bytes));
    auto got = inbox->receive();
    REQUIRE(got);
    CHECK(got->bytes == bytes);
    CHECK(got->fd.get() != conn.get());
    CHECK(inode(got->fd.get()) == inode(conn.get()));  // the same socket
    CHECK(::fcntl(got->fd.get(), F_GETFD) == FD_CLOEXEC);
    CHECK_FALSE(inbox->receive());

    CHECK_FALSE(inbox->send(::getpid(), conn.get(), std::string(Handoff::kMaxBytes + 1, 'x')));  // too long
    CHECK_FALSE(inbox->send(999'999'999, conn.get(), bytes));  // no such inbox
    CHECK_FALSE(Handoff::open(kToken + "0") == std::nullopt);  // another token, another name
}

TEST_CASE("an inbox refuses what is not a TCP connection, and anything from another uid") {
    auto inbox = Handoff::open(kToken);
    REQUIRE(inbox);
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
    REQUIRE(inbox->send(::getpid(), r.get(), "GET / HTTP/1.1\r\n\r\n"));
    CHECK_FALSE(inbox->receive());  // a pipe: dropped

    ListenAddress a;
    a.host = "127.0.0.1";
    a.name = "listen0";
    Listener l = open_listener(a, 8);
    UniqueFd conn = tcp_socket(l);
    REQUIRE(inbox->send(::getpid(), conn.get(), "GET / HTTP/1.1\r\n\r\n"));
    CHECK(inbox->receive());  // a TCP connection: taken

    if (::geteuid() != 0) {
        MESSAGE("another uid needs root to switch to; not checked");
        return;
    }
    const pid_t self = ::getpid();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
        auto other = Handoff::open(kToken);  // (its own pid's inbox)
        ::_exit(other && other->send(self, conn.get(), "GET / HTTP/1.1\r\n\r\n") ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK_FALSE(inbox->receive());  // nobody's: dropped
}
