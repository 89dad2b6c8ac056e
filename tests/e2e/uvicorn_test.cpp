// End-to-end: an external command, the FastAPI example under Debian's uvicorn, serving through
// the daemon's socket ({fd} substitution).
#include <doctest/doctest.h>

#include <set>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

TEST_CASE("the uvicorn example serves a FastAPI route through the daemon's socket") {
    TempDir dir;
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port).workers(2)
                           .command({"/usr/bin/python3", "-m", "uvicorn", "app:app", "--fd", "{fd}", "--no-access-log"})
                           .cwd(source_path("examples/fastapi")).env("PYTHONUNBUFFERED", "1")
                           .set("graceful_timeout", "5s"));
    REQUIRE(daemon.wait_for_workers(2, 10s));
    REQUIRE_MESSAGE(answers_within(port, 30s), daemon.log());
    auto item = http_get(port, "/items/42?q=workerd");
    REQUIRE(item);
    CHECK(item->status == 200);
    CHECK(item->body == R"({"item_id":42,"q":"workerd"})");

    // Served by the daemon's workers, not by some other process on the port.
    const auto workers = daemon.workers();
    auto root = http_get(port, "/");
    REQUIRE(root);
    const auto at = root->body.find("\"pid\":");
    REQUIRE(at != std::string::npos);
    const pid_t pid = std::stoi(root->body.substr(at + 6));
    CHECK(std::find(workers.begin(), workers.end(), pid) != workers.end());
    // uvicorn's own log lines reach the daemon's log, tagged with the worker.
    CHECK(daemon.wait_for_log("Uvicorn running on socket", 5s));
}
