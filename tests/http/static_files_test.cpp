#include "daemon/http/static_files.hpp"

#include <doctest/doctest.h>

#include "daemon/http/http_date.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::http;

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

TEST_CASE("Accept-Encoding: a coding named or through *, with q above 0") {
    CHECK(accepts_encoding("gzip, deflate, br", "gzip"));
    CHECK(accepts_encoding("gzip, deflate, br", "br"));
    CHECK(accepts_encoding("GZIP", "gzip"));
    CHECK(accepts_encoding("br;q=0.5, gzip;q=1.0", "gzip"));
    CHECK_FALSE(accepts_encoding("", "gzip"));
    CHECK_FALSE(accepts_encoding("deflate", "gzip"));
    CHECK_FALSE(accepts_encoding("gzip;q=0", "gzip"));
    CHECK_FALSE(accepts_encoding("gzip; q=0.000", "gzip"));
    CHECK(accepts_encoding("*", "br"));
    CHECK_FALSE(accepts_encoding("*;q=0", "br"));
    CHECK_FALSE(accepts_encoding("*, gzip;q=0", "gzip"));  // named beats *
    CHECK(accepts_encoding("gzip;q=0.001", "gzip"));
    CHECK_FALSE(accepts_encoding("gzipped", "gzip"));
}

TEST_CASE("http dates round-trip") {
    CHECK(format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
    CHECK_FALSE(parse_http_date("yesterday"));
    DateCache cache;
    CHECK(cache.now().size() == 29);
}
