#include "daemon/wire/units.hpp"

#include <doctest/doctest.h>

using namespace workerd;
using namespace std::chrono_literals;

namespace {
std::optional<Duration> dur(const std::string& s) {
    std::string e;
    return parse_duration(s, e);
}
std::string dur_error(const std::string& s) {
    std::string e;
    parse_duration(s, e);
    return e;
}
std::optional<std::uint64_t> size(const std::string& s) {
    std::string e;
    return parse_size(s, e);
}
}  // namespace

TEST_CASE("durations") {
    CHECK(dur("30s") == 30s);
    CHECK(dur("500ms") == 500ms);
    CHECK(dur("2m") == 120s);
    CHECK(dur("1h") == 3600s);
    CHECK(dur("1.5s") == 1500ms);
    CHECK(dur("1m30s") == 90s);
    CHECK(dur("30") == 30s);  // bare number: seconds, as in systemd
    CHECK(dur("0") == 0ms);
    CHECK_FALSE(dur(""));
    CHECK_FALSE(dur("-1s"));
    CHECK_FALSE(dur("5x"));
    CHECK_FALSE(dur("s"));
    CHECK_FALSE(dur("30 s"));
    CHECK_FALSE(dur("1.2.3s"));
    CHECK(dur_error("30sec") == "unknown unit 'sec' in '30sec'; use ms, s, m or h");
}

TEST_CASE("sizes") {
    CHECK(size("4096") == 4096u);
    CHECK(size("64KiB") == 65536u);
    CHECK(size("512MiB") == 512ull * 1024 * 1024);
    CHECK(size("1GiB") == 1024ull * 1024 * 1024);
    CHECK(size("10MB") == 10'000'000u);
    CHECK(size("1.5KiB") == 1536u);
    CHECK_FALSE(size("lots"));
    CHECK_FALSE(size("5XB"));
    CHECK_FALSE(size(""));
}

TEST_CASE("format_duration for logs") {
    CHECK(format_duration(250ms) == "250ms");
    CHECK(format_duration(1500ms) == "1.5s");
    CHECK(format_duration(30s) == "30s");
    CHECK(format_duration(150s) == "2m30s");
    CHECK(format_duration(3600s) == "1h0m");
}
