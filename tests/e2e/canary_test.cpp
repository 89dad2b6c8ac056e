// Canary analysis (rollout.analysis) with the real daemon, workerd_uvicorn and FastAPI apps
// under wrk: a reload to code that answers 500 on 20% of requests, or 3x slower, stops at its
// canary and rolls back, with few failed requests; a reload to equally good code rolls out.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A FastAPI app that names its version, waits `delay_ms` (without blocking its loop) and
// answers 500 on a `fail` share of requests.
std::string app_source(const std::string& version, int delay_ms, double fail) {
    return fmt::format(R"(import asyncio
import random

from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.get("/")
async def root():
    await asyncio.sleep({} / 1000)
    if random.random() < {}:
        return JSONResponse({{"version": "{}"}}, status_code=500)
    return {{"version": "{}"}}
)",
                       delay_ms, fail, version, version);
}

// Each version in its own directory, as a deploy tool lays releases out: the spec's `cwd`
// names the release, so a rollback (the previous spec) starts the previous code again. (Code
// replaced in place would be what a restored worker imports.)
SpecBuilder canary_spec(const TempDir& dir, int port, const std::string& release) {
    return SpecBuilder(port)
        .workers(4)
        .command({"/usr/bin/python3", "-m", "workerd_uvicorn", "app:app", "--no-access-log"})
        .cwd(dir.path() + "/" + release)
        .env("PYTHONPATH", source_path("packaging/python"))
        .set("boot_timeout", "60s")
        .set("rollout", "{analysis: {canaries: 1, window: 3s, min_requests: 100, max_p99_ratio: 1.7}}");
}

long non_2xx(const std::string& report) {
    const auto at = report.find("Non-2xx or 3xx responses:");
    return at == std::string::npos ? 0 : std::stol(report.substr(at + 26));
}

std::string version_of(int port) {
    const auto r = http_get(port, "/", 10s);
    REQUIRE(r);
    return json::parse(r->body).value("version", "?");
}

// The lines of `text` that contain `needle`.
std::string lines_with(const std::string& text, const std::string& needle) {
    std::string out;
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t end = std::min(text.find('\n', at), text.size());
        if (text.substr(at, end - at).find(needle) != std::string::npos) {
            out += text.substr(at, end - at + 1);
        }
        at = end + 1;
    }
    return out;
}

}  // namespace

TEST_CASE("canary analysis: 20% 5xx and 3x slower deploys roll back at the canary; an equally good one rolls out") {
    TempDir dir;
    dir.write("v1/app.py", app_source("v1", 30, 0.0));
    const int port = free_tcp_port();
    Daemon daemon(dir, canary_spec(dir, port, "v1"));
    REQUIRE_MESSAGE(daemon.wait_ready(4, 60s), daemon.log());
    struct Deploy {
        std::string what;
        const char* release;
        std::string source;
        bool good;
        const char* reason;
    };
    const Deploy deploys[] = {
        {"20% 5xx", "v2", app_source("v2", 30, 0.2), false, "5xx"},
        {"3x slower", "v3", app_source("v3", 90, 0.0), false, "p99"},
        {"as good", "v4", app_source("v4", 30, 0.0), true, ""},
    };
    for (const Deploy& d : deploys) {
        CAPTURE(d.what);
        dir.write(std::string(d.release) + "/app.py", d.source);
        dir.write("workerd.yaml", canary_spec(dir, port, d.release)
                                      .set("control", fmt::format("{{socket: {}}}", daemon.control_socket())));
        TempDir load_dir;  // wrk's report of this deploy alone
        // A new connection per request, as many clients make: a canary takes its share of new
        // connections (wrk's kept-alive ones stay with the workers they opened on). The app's
        // own time (30 ms, 90 ms when slow) dwarfs what a saturated CPU adds to every request,
        // so the p99 ratio stays near 3 on a busy machine.
        WrkLoad load(load_dir, port, 20, "/", 8, 10s, {"-H", "Connection: close"});
        std::this_thread::sleep_for(1s);
        const RunResult reloaded = daemon.ctl({"--timeout", "60", "reload", "--wait"}, 90s);
        const std::string report = load.report();
        const long requests = wrk_requests(report);
        const long failed = non_2xx(report) + wrk_socket_errors(report);
        MESSAGE(fmt::format("{}: {} of {} requests failed; reload: {}", d.what, failed, requests, reloaded.output));
        CHECK(requests > 0);
        CHECK(failed * 50 < requests);  // under 2%
        if (d.good) {
            CHECK_MESSAGE(reloaded.exit_code == 0, reloaded.output << daemon.log());
            CHECK(daemon.status()["rollout"]["canary"] == "passed");
            CHECK(version_of(port) == "v4");
        } else {
            CHECK(reloaded.exit_code == 1);
            if (reloaded.output.find("rolled back") == std::string::npos) MESSAGE(lines_with(daemon.log(), "generation"));
            CHECK(reloaded.output.find("rolled back") != std::string::npos);
            CHECK(reloaded.output.find(d.reason) != std::string::npos);
            // Afterwards only the old generation serves.
            REQUIRE(daemon.wait_status([](const json& s) { return s["ready"] == 4; }, 30s));
            for (int i = 0; i < 10; ++i) CHECK(version_of(port) == "v1");
            const json status = daemon.status();  // (a temporary's member would die before the loop)
            for (const json& w : status["workers"]) CHECK(w["generation"] == 1);
        }
    }
}
