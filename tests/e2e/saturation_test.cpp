// The bundled worker at full load keeps talking to the daemon: 60 s of wrk on /healthz and on a
// static file at once, with `timeout: 2s`. Its loop serves ready connections a turn at a time,
// and the heartbeat timer must still fire between turns: no worker may be judged hung, none
// restarted, and the STATS (requests served) must keep arriving all along.
#include <doctest/doctest.h>

#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_CASE("60 s of saturation with timeout: 2s: heartbeats and STATS flow, no worker is judged hung") {
    TempDir dir;
    dir.write("site/small.html", std::string(1024, 'x'));
    dir.write("site/large.bin", std::string(256 * 1024, 'y'));  // sent with sendfile
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(2).builtin("root: " + dir.path() + "/site").set("timeout", "2s"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 30s), daemon.log());
    const auto pids = daemon.workers();

    constexpr int kSeconds = 60;
    TempDir a_dir, b_dir, c_dir;
    WrkLoad health(a_dir, port, kSeconds, "/healthz", 96);
    WrkLoad small(b_dir, port, kSeconds, "/small.html", 96);
    WrkLoad large(c_dir, port, kSeconds, "/large.bin", 32);

    // Every 5 s: both workers have beaten within the timeout and served more than before.
    long last_served = 0;
    for (int t = 5; t < kSeconds; t += 5) {
        std::this_thread::sleep_for(5s);
        const json s = daemon.status();
        long served = 0;
        for (const json& w : s["workers"]) {
            CAPTURE(w.dump());
            CHECK(w["state"] == "ready");
            REQUIRE(w["heartbeat_age_s"].is_number());
            CHECK(w["heartbeat_age_s"].get<double>() < 2.0);
            if (w["requests"].is_number()) served += w["requests"].get<long>();
        }
        CHECK_MESSAGE(served > last_served, "at " << t << " s: " << served << " served, " << last_served << " before");
        last_served = served;
    }
    const long requests = wrk_requests(health.report()) + wrk_requests(small.report()) + wrk_requests(large.report());
    MESSAGE(requests << " requests in " << kSeconds << " s; the workers reported " << last_served << " by the last look");
    CHECK(requests > 0);
    CHECK(daemon.count_in_log("hung") == 0);
    CHECK(daemon.count_in_log("no heartbeat") == 0);
    CHECK(daemon.workers() == pids);  // none replaced
}
