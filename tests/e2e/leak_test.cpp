// Leak-aware recycling (`leak`) with the real daemon, workerd_uvicorn and a FastAPI app under
// the project's load generator: the workers of an app that keeps 64 KiB per request are
// replaced, at their trend, well before max_private, with no failed request; the same number
// of requests to a route that keeps nothing replaces none.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// /leak keeps 64 KiB per request (written, so the pages are the worker's own); / keeps nothing.
constexpr const char* kApp = R"(from fastapi import FastAPI

app = FastAPI()
kept = []


@app.get("/leak")
async def leak():
    kept.append(b"x" * 65536)
    return {"kept": len(kept)}


@app.get("/")
async def root():
    return {"kept": len(kept)}
)";

struct Run {
    json load;
    int leak_recycles = 0;
    int limit_recycles = 0;
    std::string log;
};

// 2 workers, 100 requests a second to `path` for `seconds`.
Run serve(const std::string& path, int seconds) {
    TempDir dir;
    dir.write("app.py", kApp);
    const int port = free_tcp_port();
    Daemon daemon(dir, SpecBuilder(port)
                           .workers(2)
                           .command({"/usr/bin/python3", "-m", "workerd_uvicorn", "app:app", "--no-access-log"})
                           .cwd(dir.path())
                           .env("PYTHONPATH", source_path("packaging/python"))
                           .set("boot_timeout", "60s")
                           .set("max_private", "400MiB")
                           .set("min_lifetime", "1s")
                           .set("leak", "{min_growth: 16MiB, warmup: 50, idle_wait: 2s}"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 60s), daemon.log());
    Run r;
    r.load = workerd_load({fmt::format("http://127.0.0.1:{}{}", port, path), "--rate", "100", "--duration",
                           fmt::format("{}s", seconds), "-c", "32", "--timeout", "10s"},
                          Ms(seconds * 1000 + 60000));
    r.log = daemon.log();
    r.leak_recycles = daemon.count_in_log("(leaking)");
    r.limit_recycles = daemon.count_in_log("(max_private");
    return r;
}

}  // namespace

TEST_CASE("leak recycling: leaking workers are replaced by their trend before max_private; healthy ones are spared") {
    const Run leaking = serve("/leak", 25);
    INFO(leaking.load.dump());
    MESSAGE(fmt::format("leaking app: {} requests, {} errors, {} replaced as leaking, {} at max_private",
                        leaking.load["requests"].get<long>(), leaking.load["errors"].get<long>(), leaking.leak_recycles,
                        leaking.limit_recycles));
    CHECK(leaking.load["requests"].get<long>() > 1500);
    CHECK(leaking.load["errors"] == 0);
    CHECK(leaking.leak_recycles >= 2);  // both workers at least once
    CHECK(leaking.limit_recycles == 0);
    // Logged with its numbers: "grew 17 MiB over 270 requests (64 KiB/request)".
    CHECK(leaking.log.find(" KiB/request)") != std::string::npos);

    const Run healthy = serve("/", 25);
    INFO(healthy.load.dump());
    CHECK(healthy.load["requests"].get<long>() > 1500);
    CHECK(healthy.load["errors"] == 0);
    CHECK(healthy.leak_recycles == 0);
    CHECK(healthy.log.find("replacing it") == std::string::npos);
}
