// Preloaded Python workers (app.preload, docs/python.md): the real daemon, workerd_uvicorn's
// zygote and FastAPI apps. Workers are forked from a zygote per generation, become the
// daemon's own children, survive their zygote, and a reload forks from a zygote that imported
// the new code.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <thread>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A FastAPI app whose answer says which code runs (VERSION) and where.
std::string app_source(const std::string& version) {
    return fmt::format(R"(import os
from fastapi import FastAPI

VERSION = "{}"
app = FastAPI()


@app.get("/")
async def root():
    return {{"version": VERSION, "pid": os.getpid(), "slot": os.environ.get("WORKERD_SLOT")}}
)",
                       version);
}

SpecBuilder preload_spec(const TempDir& dir, int port, int workers) {
    return SpecBuilder(port)
        .workers(workers)
        .command({"/usr/bin/python3", "-m", "workerd_uvicorn", "app:app", "--no-access-log"})
        .cwd(dir.path())
        .env("PYTHONPATH", source_path("packaging/python"))
        .preload()
        .set("boot_timeout", "60s");
}

pid_t parent_of(pid_t pid) {
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) return -1;
    char state = 0;
    int ppid = -1;
    std::sscanf(text.c_str() + close + 1, " %c %d", &state, &ppid);
    return ppid;
}

json zygotes(const Daemon& daemon) { return daemon.status()["zygotes"]; }

json answer(int port) {
    const auto r = http_get(port, "/", 10s);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
}

}  // namespace

TEST_CASE("preload: the workers are forked from the generation's zygote, and are the daemon's children") {
    TempDir dir;
    dir.write("app.py", app_source("v1"));
    const int port = free_tcp_port();
    Daemon daemon(dir, preload_spec(dir, port, 2));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 60s), daemon.log());
    const json z = zygotes(daemon);
    REQUIRE_MESSAGE(z.size() == 1, z.dump());
    CHECK(z[0]["generation"] == 1);
    CHECK(z[0]["state"] == "ready");
    const pid_t zygote = z[0]["pid"].get<pid_t>();
    std::set<pid_t> pids;
    for (const pid_t pid : daemon.workers()) {
        pids.insert(pid);
        CHECK(pid != zygote);
        CHECK(parent_of(pid) == daemon.pid());  // reparented: the daemon reaps and signals it
    }
    CHECK(parent_of(zygote) == daemon.pid());
    // Memory by sharing: most of a forked worker's pages are the zygote's (sampled each second).
    REQUIRE(daemon.wait_status(
        [](const json& st) {
            for (const json& w : st["workers"]) {
                if (w["private_bytes"].get<long>() <= 0) return false;
            }
            return true;
        },
        10s));
    const json s = daemon.status();
    for (const json& w : s["workers"]) {
        CAPTURE(w.dump());
        CHECK(w["pss_bytes"].get<long>() > 0);
        CHECK(w["private_bytes"].get<long>() > 0);
        CHECK(w["private_bytes"].get<long>() < w["rss_bytes"].get<long>() / 2);
    }
    CHECK(s["zygotes"][0]["pss_bytes"].get<long>() > 0);
    CHECK(s["memory"]["pss_bytes"].get<long>() > 0);
    const RunResult shown = daemon.ctl({"status"}, 10s);
    CHECK(shown.output.find("PRIVATE") != std::string::npos);
    CHECK(shown.output.find(fmt::format("zygote: generation 1, pid {}, ready", zygote)) != std::string::npos);
    const json a = answer(port);
    CHECK(a["version"] == "v1");
    CHECK(pids.count(a["pid"].get<pid_t>()) == 1);
    // A new worker is forked, not started: scale +1 waits for its READY only.
    const auto began = std::chrono::steady_clock::now();
    const RunResult scaled = daemon.ctl({"scale", "3", "--wait"}, 60s);
    const auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
    REQUIRE_MESSAGE(scaled.exit_code == 0, scaled.output);
    MESSAGE("scale 3 --wait took " << took << " ms");
    CHECK(daemon.workers().size() == 3);
    CHECK(daemon.count_in_log("zygote of generation 1") >= 2);  // started, ready
    // A stop ends the zygote too.
    daemon.process().signal(SIGTERM);
    const auto status = daemon.process().wait_exit(30s);
    REQUIRE_MESSAGE(status, daemon.log());
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(eventually([&] { return ::kill(zygote, 0) != 0; }, 5s));
}

TEST_CASE("preload: a zygote killed under the workers: they serve on, a new one comes, and the next worker forks from it") {
    TempDir dir;
    dir.write("app.py", app_source("v1"));
    const int port = free_tcp_port();
    Daemon daemon(dir, preload_spec(dir, port, 2));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 60s), daemon.log());
    const pid_t first = zygotes(daemon)[0]["pid"].get<pid_t>();
    const auto workers = daemon.workers();
    WrkLoad load(dir, port, 4, "/", 64);
    std::this_thread::sleep_for(1s);
    REQUIRE(::kill(first, SIGKILL) == 0);
    load.finish();  // not one request failed
    for (int i = 0; i < 20; ++i) CHECK(answer(port)["version"] == "v1");
    REQUIRE_MESSAGE(daemon.wait_status(
                        [&](const json& s) {
                            const auto& z = s["zygotes"];
                            return z.size() == 1 && z[0]["pid"] != first && z[0]["state"] == "ready";
                        },
                        60s),
                    daemon.log());
    CHECK(daemon.workers() == workers);  // nobody was replaced
    const RunResult scaled = daemon.ctl({"scale", "3", "--wait"}, 60s);
    REQUIRE_MESSAGE(scaled.exit_code == 0, std::string(scaled.output + daemon.log()));
    CHECK(daemon.workers().size() == 3);
}

TEST_CASE("preload: a reload forks from a zygote of the new code; one that cannot import fails the rollout") {
    TempDir dir;
    dir.write("app.py", app_source("v1"));
    const int port = free_tcp_port();
    Daemon daemon(dir, preload_spec(dir, port, 2).set("rollout", "{failure_threshold: 2}"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 60s), daemon.log());
    CHECK(answer(port)["version"] == "v1");
    dir.write("app.py", app_source("v2"));
    {
        WrkLoad load(dir, port, 5, "/", 64);
        std::this_thread::sleep_for(1s);
        const RunResult reloaded = daemon.ctl({"reload", "--wait"}, 90s);
        REQUIRE_MESSAGE(reloaded.exit_code == 0, std::string(reloaded.output + daemon.log()));
        load.finish();  // the switch to the new code lost no request
    }
    for (int i = 0; i < 10; ++i) CHECK(answer(port)["version"] == "v2");
    // The old generation's zygote goes with its generation.
    CHECK(daemon.wait_status([](const json& s) { return s["zygotes"].size() == 1 && s["zygotes"][0]["generation"] == 2; }, 10s));

    dir.write("app.py", "raise RuntimeError('this module cannot be imported')\n");
    daemon.ctl({"reload"}, 30s);
    REQUIRE_MESSAGE(daemon.wait_status([](const json& s) { return s["rollout"].is_object() && s["rollout"]["state"] == "failed"; }, 60s),
                    daemon.log());
    // The traceback once per attempt (two: failure_threshold), with the backoff between.
    CHECK(daemon.count_in_log("RuntimeError: this module cannot be imported") == 2);
    CHECK(daemon.count_in_log("zygote of generation 3") >= 2);
    CHECK_MESSAGE(daemon.count_in_log("before it was ready; next try in") == 1, daemon.log());
    CHECK(daemon.status()["generation"] == 2);
    for (int i = 0; i < 10; ++i) CHECK(answer(port)["version"] == "v2");
}

TEST_CASE("preload: the daemon SIGKILLed: its forked workers and the zygote die with it") {
    TempDir dir;
    dir.write("app.py", app_source("v1"));
    const int port = free_tcp_port();
    Daemon daemon(dir, preload_spec(dir, port, 2));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 60s), daemon.log());
    const pid_t zygote = zygotes(daemon)[0]["pid"].get<pid_t>();
    const auto workers = daemon.workers();
    REQUIRE(workers.size() == 2);
    daemon.process().signal(SIGKILL);
    REQUIRE(daemon.process().wait_exit(10s));
    // Reparented to the daemon, each worker asked for PDEATHSIG once it was: none survives it.
    for (const pid_t pid : workers) CHECK(eventually([&] { return !process_alive(pid); }, 5s));
    CHECK(eventually([&] { return !process_alive(zygote); }, 5s));
}
