#include "daemon/http/target.hpp"

#include <doctest/doctest.h>

using namespace workerd::http;

TEST_CASE("targets are split and decoded") {
    auto t = parse_target("/a%20b/c.txt?ms=10&x=%2F");
    REQUIRE(t);
    CHECK(t->path == "/a b/c.txt");
    CHECK(t->query == "ms=10&x=%2F");
    CHECK(query_param(t->query, "ms") == "10");
    CHECK(query_param(t->query, "x") == "/");
    CHECK_FALSE(query_param(t->query, "y"));
    CHECK(query_param("flag&ms=1", "flag") == "");
}

TEST_CASE("traversal is refused, encoded or not") {
    for (const char* bad : {"/../etc/passwd", "/a/../../etc/passwd", "/%2e%2e/etc/passwd",
                            "/%2E%2E%2Fetc%2Fpasswd", "/a/..%2f..%2fetc", "/..", "/a\\..\\b",
                            "/x%00.html", "/bad%zz", "/trailing%2", "relative", ""}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_target(bad));
    }
    CHECK(parse_target("/..hidden/file"));  // only a whole ".." segment is special
    CHECK(parse_target("/a/./b"));
}
