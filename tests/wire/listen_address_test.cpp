#include "daemon/wire/listen_address.hpp"

#include <doctest/doctest.h>

using namespace workerd;

namespace {
std::string error_of(const std::string& text) {
    std::string e;
    CHECK_FALSE(parse_listen_address(text, e));
    return e;
}
}  // namespace

TEST_CASE("addresses that parse") {
    std::string e;
    auto a = parse_listen_address("127.0.0.1:8000", e);
    REQUIRE(a);
    CHECK(a->kind == ListenAddress::Kind::tcp);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 8000);
    CHECK(a->to_string() == "127.0.0.1:8000");

    a = parse_listen_address("[::1]:0", e);
    REQUIRE(a);
    CHECK(a->host == "::1");
    CHECK(a->port == 0);
    CHECK(a->to_string() == "[::1]:0");

    a = parse_listen_address(":9000", e);
    REQUIRE(a);
    CHECK(a->host == "0.0.0.0");

    a = parse_listen_address("localhost:80", e);
    REQUIRE(a);
    CHECK(a->host == "localhost");

    a = parse_listen_address("unix:/run/app.sock", e);
    REQUIRE(a);
    CHECK(a->kind == ListenAddress::Kind::unix_path);
    CHECK(a->path == "/run/app.sock");
    CHECK(a->to_string() == "unix:/run/app.sock");
}

TEST_CASE("addresses that do not, with the reason") {
    CHECK(error_of("127.0.0.1") == "'127.0.0.1' has no port; use HOST:PORT, e.g. 127.0.0.1:8000");
    CHECK(error_of("127.0.0.1:70000") == "port 70000 is out of range 0-65535 in '127.0.0.1:70000'");
    CHECK(error_of("127.0.0.1:http") == "port 'http' is not a number in '127.0.0.1:http'");
    CHECK(error_of("::1:8000") == "IPv6 addresses need brackets: [::1]:8000");
    CHECK(error_of("[::1]8000").find("[IPV6]:PORT") != std::string::npos);
    CHECK(error_of("unix:") == "empty unix socket path; use unix:/run/app.sock");
    CHECK(error_of("127.0.0.1:").find("missing port") == 0);
}
