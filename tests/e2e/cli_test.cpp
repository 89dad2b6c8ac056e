// End-to-end: `workerd check`, and `workerd start` refusing what it cannot do.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/os/listener.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {
RunResult run(const std::vector<std::string>& argv) { return run_program(argv); }

// `workerd check --explain SPEC` on the v2-limited cgroup fixture (1.5 CPUs, 1024 MiB): it
// accepts the spec, and its explanation has every one of `lines`.
void check_explains(const std::string& spec, std::initializer_list<const char*> lines) {
    const auto r = run({bin_path("workerd"), "check", "--explain", "--root",
                        source_path("tests/data/cgroup/v2-limited"), spec});
    CHECK(r.exit_code == 0);
    CAPTURE(r.output);
    for (const char* line : lines) CHECK_MESSAGE(r.output.find(line) != std::string::npos, line);
}
}  // namespace

TEST_CASE("workerd check accepts the example specs") {
    for (const char* spec : {"config/workerd.yaml", "config/uvicorn.yaml"}) {
        CAPTURE(spec);
        const auto r = run({bin_path("workerd"), "check", source_path(spec)});
        CHECK_MESSAGE(r.exit_code == 0, r.output);
        CHECK(r.output.find("ok") != std::string::npos);
    }
}

TEST_CASE("workerd check and start reject a bad spec with file:line:column and the key") {
    TempDir dir;
    const std::string spec = dir.write("bad.yaml", "listen: [\"127.0.0.1:8000\"]\nwokers: 2\napp:\n  builtin: {}\n");
    for (const char* command : {"check", "start"}) {
        CAPTURE(command);
        const auto r = run({bin_path("workerd"), command, spec});
        CHECK(r.exit_code == 1);
        CHECK_MESSAGE(r.output.find(spec + ":2:1: wokers: unknown key") != std::string::npos, r.output);
        CHECK(r.output.find("did you mean 'workers'?") != std::string::npos);
    }
}

TEST_CASE("workerd start exits 3 with a plain message when the port is taken") {
    workerd::ListenAddress a;
    a.host = "127.0.0.1";
    a.name = "listen0";
    workerd::Listener taken = workerd::open_listener(a, 8);
    TempDir dir;
    const std::string spec = dir.write(
        "workerd.yaml", fmt::format("listen: [\"127.0.0.1:{}\"]\napp:\n  builtin: {{}}\n", taken.address().port));
    const auto r = run(workerd_start(spec));
    CHECK(r.exit_code == 3);
    CHECK_MESSAGE(r.output.find(fmt::format("bind 127.0.0.1:{} failed: Address already in use",
                                            taken.address().port)) != std::string::npos,
                  r.output);
}

TEST_CASE("version and usage") {
    CHECK(run({bin_path("workerd"), "--version"}).output == "workerd 0.1.0\n");
    CHECK(run({bin_path("workerctl"), "--version"}).output == "workerctl 0.1.0\n");
    CHECK(run({bin_path("workerd"), "frobnicate"}).exit_code == 2);
}

TEST_CASE("log.format json to log.file; SIGUSR1 reopens the file after logrotate moved it") {
    TempDir dir;
    const int port = free_tcp_port();
    const std::string log = dir.path() + "/workerd.log";
    Daemon daemon(dir, SpecBuilder(port).builtin("").set("log", "{level: info, format: json, file: ./workerd.log}"));
    REQUIRE(eventually([&] { return read_file(log).find("said READY") != std::string::npos; }, 10s));
    bool found_worker_line = false;
    std::istringstream lines(read_file(log));
    for (std::string line; std::getline(lines, line);) {
        const auto j = nlohmann::json::parse(line);  // every line is one JSON object
        CHECK(j.contains("time"));
        CHECK(j.contains("level"));
        if (j["msg"].get<std::string>().find("said READY") != std::string::npos) {
            found_worker_line = true;
            CHECK(j["slot"] == 0);
            CHECK(j["pid"] == daemon.workers().front());
            CHECK(j["generation"] == 1);
        }
    }
    CHECK(found_worker_line);
    // logrotate: move the file away, then SIGUSR1.
    REQUIRE(::rename(log.c_str(), (log + ".1").c_str()) == 0);
    daemon.process().signal(SIGUSR1);
    CHECK(eventually([&] { return read_file(log).find("SIGUSR1: reopened") != std::string::npos; }, 5s));
    CHECK(read_file(log + ".1").find("SIGUSR1") == std::string::npos);
}

TEST_CASE("workerd check --explain shows how workers: auto was computed on a fixture cgroup") {
    TempDir dir;
    const auto spec = SpecBuilder(8000).workers("auto").builtin("").set("workload", "gunicorn")
                          .set("memory_per_worker", "300MiB");
    check_explains(dir.write("auto.yaml", spec),
                   {"quota: 150000 100000 = 1.50 CPUs (/sys/fs/cgroup/app.slice/web.service/cpu.max)",
                    "usable CPUs: 1.50", "workload gunicorn: 2 x CPUs + 1 = 4 workers",
                    "memory budget: 1024 MiB x (1 - 10% margin) / 300 MiB per worker = 3 workers",
                    "capped by the memory budget: 4 -> 3", "workers: 3", "ok (3 workers, 1 listener)"});
}

TEST_CASE("memory_limit in the spec stands in for the cgroup's limit in workers: auto") {
    TempDir dir;
    const auto spec = SpecBuilder(8000).workers("auto").builtin("").set("workload", "gunicorn")
                          .set("memory_per_worker", "100MiB").set("memory_limit", "250MiB");
    // The v2-limited fixture gives 1.5 CPUs (gunicorn: 4 workers) and 1024 MiB; the spec's
    // 250 MiB less 10% fits 2 workers of 100 MiB.
    check_explains(dir.write("auto.yaml", spec),
                   {"memory: 262144000 bytes (memory_limit in the spec)",
                    "memory budget: 250 MiB x (1 - 10% margin) / 100 MiB per worker = 2 workers",
                    "capped by the memory budget: 4 -> 2", "ok (2 workers, 1 listener)"});
}

TEST_CASE("check --strict fails where start would refuse; --stdin reads the text, named by SPEC") {
    TempDir dir;
    const std::string text = SpecBuilder(8000).builtin("root: ./site");
    ::mkdir((dir.path() + "/site").c_str(), 0755);
    const std::string named = dir.path() + "/named.yaml";  // does not exist: the text comes on stdin
    const std::string input = dir.write("input.txt", text);
    const auto stdin_check = [&](const std::string& flags) {
        return run({"/bin/sh", "-c", bin_path("workerd") + " check " + flags + " --stdin " + named + " < " + input});
    };
    // ./site resolves against the name's directory.
    auto r = stdin_check("");
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    CHECK(r.output.find(named + ": ok (1 worker") != std::string::npos);
    if (::geteuid() == 0) {
        // No `user:` as root: a warning for check, an error for check --strict and for start.
        CHECK(r.output.find("warning: `workerd start` as this user would refuse") != std::string::npos);
        r = stdin_check("--strict");
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("the workers would run as root") != std::string::npos);
        r = stdin_check("--strict --allow-root");
        CHECK_MESSAGE(r.exit_code == 0, r.output);
    } else {
        r = stdin_check("--strict");
        CHECK_MESSAGE(r.exit_code == 0, r.output);
    }
    r = run({"/bin/sh", "-c", bin_path("workerd") + " check --stdin " + named + " < /dev/null"});
    CHECK(r.exit_code == 1);
}

TEST_CASE("check reports a program that cannot be found: a warning with where it is, an error with --strict") {
    TempDir dir;
    const std::string missing = dir.write("missing.yaml", R"(listen: ["127.0.0.1:8000"]
user: nobody
app:
  command: ["no-such-program-anywhere", "--fd", "{fd}"]
)");
    auto r = run({bin_path("workerd"), "check", missing});
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    CHECK(r.output.find(missing + ":4:13: app.command[0]: warning: 'no-such-program-anywhere' is not found in PATH") !=
          std::string::npos);
    r = run({bin_path("workerd"), "check", "--strict", missing});
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("app.command[0]: 'no-such-program-anywhere' is not found in PATH") != std::string::npos);
    // A path relative to app.cwd, and one that is not executable.
    const std::string relative = dir.write("relative.yaml", R"(listen: ["127.0.0.1:8000"]
user: nobody
app:
  command: ["./bin/serve"]
)");
    r = run({bin_path("workerd"), "check", relative});
    CHECK(r.output.find(dir.path() + "/bin/serve does not exist") != std::string::npos);
    ::mkdir((dir.path() + "/bin").c_str(), 0755);
    dir.write("bin/serve", "#!/bin/sh\n");
    r = run({bin_path("workerd"), "check", relative});
    CHECK(r.output.find("bin/serve is not an executable file") != std::string::npos);
    ::chmod((dir.path() + "/bin/serve").c_str(), 0755);
    r = run({bin_path("workerd"), "check", "--strict", relative});
    CHECK_MESSAGE(r.exit_code == 0, r.output);
    CHECK(r.output.find("warning") == std::string::npos);
}
