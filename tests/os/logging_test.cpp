#include "daemon/os/logging.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace workerd;
using json = nlohmann::json;

TEST_CASE("JSON log lines carry the worker's slot, pid, generation and the reason as fields") {
    auto line = json::parse(json_log_line("2026-11-24T10:00:00.000Z", "warning",
                                          "worker 2 (pid 4242, gen 3) sent no heartbeat for 1.0s (timeout 1s); sending SIGTERM"));
    CHECK(line["time"] == "2026-11-24T10:00:00.000Z");
    CHECK(line["level"] == "warning");
    CHECK(line["slot"] == 2);
    CHECK(line["pid"] == 4242);
    CHECK(line["generation"] == 3);
    CHECK_FALSE(line.contains("reason"));  // it says why in words; the exit line has the reason

    line = json::parse(json_log_line("t", "warning", "worker 2 (pid 4242, gen 3) was killed by SIGKILL after 2.2s (heartbeat timeout); restarting now"));
    CHECK(line["reason"] == "heartbeat timeout");
    line = json::parse(json_log_line("t", "info", "worker 0 (pid 7, gen 1) recycled: RSS 97 MiB (max_rss 96 MiB)"));
    CHECK(line["reason"] == "max_rss");
    line = json::parse(json_log_line("t", "info", "worker 1 (pid 8) stdout: \"quoted\" \x01 text"));
    CHECK(line["slot"] == 1);
    CHECK_FALSE(line.contains("generation"));
    CHECK(line["msg"] == "worker 1 (pid 8) stdout: \"quoted\" \x01 text");
    line = json::parse(json_log_line("t", "info", "all workers stopped; exiting"));
    CHECK_FALSE(line.contains("slot"));
    // Bytes that are not UTF-8 (a worker's output) never break the line.
    CHECK_NOTHROW(json::parse(json_log_line("t", "info", "worker 1 (pid 8) stdout: \xff\xfe")));
}
