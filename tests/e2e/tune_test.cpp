// `workerd tune` end to end: it runs the spec's app on ports of its own (never the spec's), steps
// through worker counts, prints a stable JSON and an HTML report a browser renders, refuses a
// spec that does not start, and leaves no process behind, Ctrl-C included.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/wait.h>

#include <set>
#include <thread>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/os/unique_fd.hpp"
#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// The objective the tune runs use: the instrumented builds (ASan + UBSan) are several times
// slower per request, so they get a looser one.
#ifdef WORKERD_TEST_SANITIZED
constexpr int kObjectiveMs = 400;
#else
constexpr int kObjectiveMs = 100;
#endif

/// Whether something accepts TCP connections on 127.0.0.1:port.
bool listening(int port) {
    workerd::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

std::vector<std::string> tune_argv(const std::string& spec, const std::vector<std::string>& options) {
    std::vector<std::string> argv{bin_path("workerd"), "tune", spec};
    if (::geteuid() == 0) argv.push_back("--allow-root");
    argv.insert(argv.end(), options.begin(), options.end());
    return argv;
}

/// The JSON object printed on stdout (the log has the progress lines and the text table after
/// it, on stderr).
json json_in(const std::string& output) {
    const auto open = output.find("{\n");
    REQUIRE(open != std::string::npos);
    const auto close = output.find("\n}\n", open);
    REQUIRE(close != std::string::npos);
    return json::parse(output.substr(open, close + 2 - open));
}

}  // namespace

TEST_CASE("tune measures each worker count on a port of its own and prints the documented JSON") {
    TempDir dir;
    const int spec_port = free_tcp_port();
    const auto spec = dir.write("app.yaml", SpecBuilder(spec_port).workers(3).builtin());
    const std::string report = dir.path() + "/report.html";
    const std::string log = dir.path() + "/tune.log";
    ChildProcess tune(tune_argv(spec, {"--url", "/demo/cpu?ms=2", "--url", "/healthz:3", "--workers", "1,2", "--step",
                                       "1s", "--probe", "1s", "--max-steps", "3", "--slo", fmt::format("p99={}ms", kObjectiveMs), "--json",
                                       "--report", report}),
                      log);
    // While it runs, the spec's own address stays free: the fleet is on a loopback port of
    // tune's choosing.
    bool fleet_seen = false;
    for (int i = 0; i < 200 && !tune.exited(); ++i) {
        if (!descendants_of(tune.pid()).empty()) fleet_seen = true;
        CHECK_FALSE(listening(spec_port));
        if (tune.wait_exit(100ms)) break;
    }
    const auto status = tune.wait_exit(60s);
    REQUIRE(status.has_value());
    const std::string output = read_file(log);
    INFO(output);
    CHECK(fleet_seen);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);

    const json j = json_in(output);
    CHECK(j["version"] == 1);
    CHECK(j["complete"] == true);
    CHECK(j["spec"] == spec);
    CHECK(j["objective"]["percentile"] == 99);
    CHECK(j["objective"]["latency_ms"] == kObjectiveMs);
    REQUIRE(j["targets"].size() == 2);
    CHECK(j["targets"][1]["path"] == "/healthz");
    CHECK(j["targets"][1]["weight"] == 3);
    REQUIRE(j["runs"].size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        const json& run = j["runs"][i];
        CHECK(run["workers"] == static_cast<int>(i) + 1);
        // One or two bundled workers easily meet the objective at some rate.
        REQUIRE(run["rate"].is_number());
        CHECK(run["rate"].get<double>() > 50);
        CHECK(run["p50_ms"].get<double>() <= run["p99_ms"].get<double>());
        CHECK(run["p99_ms"].get<double>() <= kObjectiveMs);
        CHECK(run["errors"].is_number());
        CHECK(run["pss_per_worker_bytes"].get<long>() > 0);
        REQUIRE(run["trials"].size() >= 2);
        CHECK(run["trials"][0]["kind"] == "probe");
        CHECK(run["trials"].size() <= 4);  // the probe and at most --max-steps
    }
    const json& rec = j["recommendation"];
    REQUIRE(rec["workers"].is_number());
    CHECK((rec["workers"] == 1 || rec["workers"] == 2));
    CHECK(rec["reasons"].size() >= 1);
    CHECK(rec["spec_lines"][0] == fmt::format("workers: {}", rec["workers"].get<int>()));
    // The text report on stderr says the same.
    CHECK(output.find(fmt::format("Recommendation: {} worker", rec["workers"].get<int>())) != std::string::npos);

    // The HTML report renders in a real browser: three charts with their series drawn.
    const auto browser = run_program({"/usr/bin/python3", source_path("tests/support/check_report.py"), report,
                                      dir.path() + "/browser"},
                                     120s);
    INFO(browser.output);
    CHECK(browser.exit_code == 0);
}

TEST_CASE("Ctrl-C stops tune at once: every process it started is gone, and what it measured is printed") {
    TempDir dir;
    const auto spec = dir.write("app.yaml", SpecBuilder(free_tcp_port()).workers(1).builtin());
    const std::string log = dir.path() + "/tune.log";
    ChildProcess tune(tune_argv(spec, {"--url", "/demo/io?ms=5", "--workers", "1-3", "--step", "20s", "--probe", "1s",
                                       "--json"}),
                      log);
    // Wait until the fleet serves and the first open-loop step is under way (the probe is 1 s).
    std::set<pid_t> started;
    REQUIRE(eventually(
        [&] {
            for (const pid_t p : descendants_of(tune.pid())) started.insert(p);
            return started.size() >= 2 && read_file(log).find("probe (closed loop)") != std::string::npos;
        },
        30s));
    std::this_thread::sleep_for(1500ms);
    for (const pid_t p : descendants_of(tune.pid())) started.insert(p);
    tune.signal(SIGINT);
    const auto status = tune.wait_exit(30s);
    REQUIRE(status.has_value());
    const std::string output = read_file(log);
    INFO(output);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 130);
    const std::vector<pid_t> pids(started.begin(), started.end());
    CHECK(eventually([&] { return all_gone(pids); }, 5s));
    const json j = json_in(output);
    CHECK(j["complete"] == false);
    CHECK(j["stopped_because"] == "interrupted (Ctrl-C)");
    REQUIRE(j["runs"].size() == 1);
    CHECK(j["runs"][0]["trials"][0]["kind"] == "probe");
}

TEST_CASE("tune refuses a spec whose app does not start, and says why") {
    TempDir dir;
    const auto spec = dir.write("app.yaml", SpecBuilder(free_tcp_port()).command({"/bin/false"}).set("heartbeat", "off"));
    const auto r = run_program(tune_argv(spec, {"--workers", "1", "--step", "1s"}), 60s);
    INFO(r.output);
    CHECK(r.exit_code == 3);
    CHECK(r.output.find("the app does not start") != std::string::npos);
    CHECK(r.output.find("exit") != std::string::npos);

    const auto invalid = dir.write("bad.yaml", "listen: \"127.0.0.1:1\"\nwokers: 2\napp:\n  builtin: {}\n");
    const auto bad = run_program(tune_argv(invalid, {}), 20s);
    CHECK(bad.exit_code == 1);
    CHECK(bad.output.find("bad.yaml:2:1: wokers") != std::string::npos);

    const auto usage = run_program(tune_argv(spec, {"--slo", "p99"}), 20s);
    CHECK(usage.exit_code == 2);
    CHECK(usage.output.find("--slo") != std::string::npos);
}
