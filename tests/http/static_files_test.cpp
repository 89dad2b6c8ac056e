#include "daemon/http/static_files.hpp"

#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>

#include "daemon/http/http_date.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::http;
namespace fs = std::filesystem;

TEST_CASE("lookup: files, index.html, redirects, and nothing outside the root") {
    workerd::test::TempDir dir;
    dir.write("root/index.html", "home");
    dir.write("root/docs/index.html", "docs");
    dir.write("root/a.txt", "aaa");
    dir.write("root/empty/.keep", "");
    dir.write("secret.txt", "outside");
    const std::string root = fs::canonical(dir.path() + "/root").string();
    fs::create_symlink(dir.path() + "/secret.txt", root + "/leak.txt");
    fs::create_symlink(dir.path(), root + "/up");
    fs::create_symlink(root + "/a.txt", root + "/alias.txt");

    auto a = lookup_static(root, "/a.txt");
    CHECK(a.kind == StaticLookup::Kind::file);
    CHECK(a.file.size == 3);
    CHECK(lookup_static(root, "/").file.path == root + "/index.html");
    CHECK(lookup_static(root, "/docs/").file.path == root + "/docs/index.html");
    auto redirect = lookup_static(root, "/docs");
    CHECK(redirect.kind == StaticLookup::Kind::redirect);
    CHECK(redirect.location == "/docs/");
    CHECK(lookup_static(root, "/missing").kind == StaticLookup::Kind::not_found);
    CHECK(lookup_static(root, "/empty/").kind == StaticLookup::Kind::not_found);  // no index
    // Symlinks out of the root are refused; those inside it are fine.
    CHECK(lookup_static(root, "/leak.txt").kind == StaticLookup::Kind::not_found);
    CHECK(lookup_static(root, "/up/secret.txt").kind == StaticLookup::Kind::not_found);
    CHECK(lookup_static(root, "/alias.txt").kind == StaticLookup::Kind::file);
}

TEST_CASE("content types by extension") {
    CHECK(content_type_for("/x/index.html") == "text/html; charset=utf-8");
    CHECK(content_type_for("/STYLE.CSS") == "text/css; charset=utf-8");
    CHECK(content_type_for("/app.js") == "text/javascript; charset=utf-8");
    CHECK(content_type_for("/a.json") == "application/json");
    CHECK(content_type_for("/logo.svg") == "image/svg+xml");
    CHECK(content_type_for("/f.woff2") == "font/woff2");
    CHECK(content_type_for("/noext") == "application/octet-stream");
    CHECK(content_type_for("/dir.d/noext") == "application/octet-stream");
}

TEST_CASE("etags and If-None-Match") {
    StaticFile f;
    f.size = 255;
    f.mtime = 1;
    f.mtime_nsec = 5;
    const std::string etag = make_etag(f);
    CHECK(etag == "W/\"ff-3b9aca05\"");
    CHECK(etag_matches(etag, etag));
    CHECK(etag_matches("\"ff-3b9aca05\"", etag));  // weak comparison
    CHECK(etag_matches("\"x\", " + etag, etag));
    CHECK(etag_matches("*", etag));
    CHECK_FALSE(etag_matches("\"other\"", etag));
    f.size = 256;
    CHECK(make_etag(f) != etag);
}

TEST_CASE("ranges") {
    ByteRange r;
    CHECK(parse_range("bytes=0-9", 100, r) == RangeKind::partial);
    CHECK((r.first == 0 && r.last == 9));
    CHECK(parse_range("bytes=90-", 100, r) == RangeKind::partial);
    CHECK((r.first == 90 && r.last == 99));
    CHECK(parse_range("bytes=-10", 100, r) == RangeKind::partial);
    CHECK((r.first == 90 && r.last == 99));
    CHECK(parse_range("bytes=-500", 100, r) == RangeKind::partial);
    CHECK((r.first == 0 && r.last == 99));
    CHECK(parse_range("bytes=50-500", 100, r) == RangeKind::partial);
    CHECK(r.last == 99);
    CHECK(parse_range("bytes=100-", 100, r) == RangeKind::unsatisfiable);
    CHECK(parse_range("bytes=-0", 100, r) == RangeKind::unsatisfiable);
    CHECK(parse_range("bytes=5-1", 100, r) == RangeKind::full);
    CHECK(parse_range("bytes=0-1,5-6", 100, r) == RangeKind::full);
    CHECK(parse_range("items=0-1", 100, r) == RangeKind::full);
    CHECK(parse_range("bytes=x-1", 100, r) == RangeKind::full);
}

TEST_CASE("http dates round-trip") {
    CHECK(format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
    CHECK_FALSE(parse_http_date("yesterday"));
    DateCache cache;
    CHECK(cache.now().size() == 29);
}
