#include "daemon/os/spec_host.hpp"

#include <doctest/doctest.h>

#include <csignal>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <vector>

#include "tests/support/test_support.hpp"

using namespace workerd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
const std::string kGood = std::string(WORKERD_TEST_DATA_DIR) + "/specs/good";
const std::string kBad = std::string(WORKERD_TEST_DATA_DIR) + "/specs/bad";
}  // namespace

TEST_CASE("a full spec loads into the struct, paths relative to the spec file") {
    auto r = load_spec_file(kGood + "/full.yaml", 8);
    for (const auto& e : r.errors) FAIL(e.to_string());
    REQUIRE(r.ok());
    const Spec& s = *r.spec;
    CHECK(s.file == kGood + "/full.yaml");
    REQUIRE(s.listen.size() == 3);
    CHECK(s.listen[0].host == "127.0.0.1");
    CHECK(s.listen[0].port == 8000);
    CHECK(s.listen[0].name == "listen0");
    CHECK(s.listen[1].host == "::1");
    CHECK(s.listen[1].name == "web6");
    CHECK(s.listen[1].to_string() == "[::1]:8001");
    CHECK(s.listen[2].kind == ListenAddress::Kind::unix_path);
    CHECK(s.listen[2].path == kGood + "/run/app.sock");
    CHECK(s.backlog == 512);
    CHECK(s.workers == 3);
    CHECK_FALSE(s.workers_auto);
    CHECK_FALSE(s.app.builtin);
    CHECK(s.app.command.size() == 7);
    CHECK(s.app.cwd == kGood + "/site");
    CHECK(s.app.env.at("B") == "true");
    CHECK(s.graceful_timeout == 90s);
    CHECK(s.backoff.initial == 250ms);
    CHECK(s.backoff.max == 5s);
    CHECK(s.backoff.reset_after == 60s);
    CHECK(s.health.timeout == 20s);
    CHECK(s.health.boot_timeout == 120s);
    CHECK(s.health.ready_after == 2s);
    CHECK(s.health.mode == HeartbeatMode::required);
    CHECK(s.health.timeout_signal == SIGABRT);
    CHECK(s.health.kill_timeout == 3s);
    CHECK(s.health.request_timeout == std::optional<Duration>(45s));
    CHECK(s.rollout.max_surge == WorkerAmount{2, false});
    CHECK(s.rollout.max_unavailable == WorkerAmount{25, true});
    CHECK(s.rollout.max_unavailable.resolve(10, false) == 2);
    CHECK(s.rollout.failure_threshold == 5);
    CHECK(s.recycle.max_requests == std::optional<std::uint64_t>(1000));
    CHECK(s.recycle.max_requests_jitter == 50);
    CHECK(s.recycle.max_rss == std::optional<std::uint64_t>(256ULL << 20));
    CHECK(s.recycle.max_lifetime == std::optional<Duration>(3600s));
    CHECK(s.recycle.max_lifetime_jitter == 300s);
    CHECK(s.recycle.min_lifetime == 30s);
    CHECK(s.control.socket == kGood + "/ctl.sock");
    REQUIRE(s.metrics.listen);
    CHECK(s.metrics.listen->port == 9100);
    CHECK(s.log.level == "debug");
}

TEST_CASE("defaults, a single listen string and workers: auto") {
    auto r = load_spec_file(kGood + "/minimal.yaml", 6);
    REQUIRE(r.ok());
    CHECK(r.spec->workers_auto);
    CHECK(r.spec->workers == 6);
    CHECK(r.spec->listen[0].host == "0.0.0.0");
    CHECK(r.spec->listen[0].port == 8080);
    REQUIRE(r.spec->app.builtin);
    CHECK(r.spec->app.builtin->root.empty());
    CHECK(r.spec->app.cwd == kGood);
    CHECK(r.spec->graceful_timeout == 30s);
    CHECK(r.spec->health.mode == HeartbeatMode::required);  // auto, and the bundled worker speaks the protocol
    CHECK(r.spec->health.timeout == 30s);
    CHECK(r.spec->health.boot_timeout == 60s);
    CHECK(r.spec->health.ready_after == 1s);
    CHECK(r.spec->health.kill_timeout == 5s);
    CHECK(r.spec->health.timeout_signal == 0);
    CHECK_FALSE(r.spec->health.request_timeout);
    CHECK(r.spec->backlog == 2048);
    CHECK(r.spec->log.level == "info");
}

TEST_CASE("reuse_port: true, false or cpu") {
    test::TempDir dir;
    for (const auto& [value, on, cpu] : std::vector<std::tuple<std::string, bool, bool>>{
             {"false", false, false}, {"true", true, false}, {"cpu", true, true}}) {
        CAPTURE(value);
        const std::string path = dir.path() + "/spec.yaml";
        std::ofstream(path) << "listen: \"127.0.0.1:8000\"\nreuse_port: " << value << "\napp: {builtin: {}}\n";
        auto r = load_spec_file(path, 2);
        REQUIRE(r.ok());
        CHECK(r.spec->reuse_port == on);
        CHECK(r.spec->reuse_port_cpu == cpu);
    }
}

TEST_CASE("builtin settings") {
    auto r = load_spec_file(kGood + "/builtin.yaml", 1);
    REQUIRE(r.ok());
    const auto& b = *r.spec->app.builtin;
    CHECK(b.root == kGood + "/site");
    CHECK(b.demo);
    CHECK(b.max_connections == 10);
    CHECK(b.keepalive_timeout == 2s);
    CHECK(b.max_header_size == 8192);
    CHECK(b.max_body_size == 2 * 1024 * 1024);
    CHECK_FALSE(b.precompressed);
}

TEST_CASE("the shipped example specs are valid") {
    for (const char* spec : {"config/workerd.yaml", "config/uvicorn.yaml"}) {
        auto r = load_spec_file(test::source_path(spec), 2);
        for (const auto& e : r.errors) FAIL(e.to_string());
        CHECK(r.ok());
    }
}

TEST_CASE("an unreadable file is one plain error") {
    auto r = load_spec_file("/nonexistent/workerd.yaml", 1);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() ==
          "/nonexistent/workerd.yaml: cannot read the spec: No such file or directory");
}

TEST_CASE("every bad spec in the corpus gives its expected message") {
    int files = 0;
    for (const auto& entry : fs::directory_iterator(kBad)) {
        if (entry.path().extension() != ".yaml") continue;
        ++files;
        const std::string path = entry.path().string();
        CAPTURE(path);
        std::ifstream in(path);
        std::vector<std::string> expected;
        std::size_t count = 1;
        for (std::string line; std::getline(in, line) && line.rfind("# ", 0) == 0;) {
            if (line.rfind("# expect: ", 0) == 0) expected.push_back(line.substr(10));
            if (line.rfind("# errors: ", 0) == 0) count = std::stoul(line.substr(10));
        }
        REQUIRE(!expected.empty());
        auto r = load_spec_file(path, 2);
        CHECK_FALSE(r.ok());
        std::string all;
        for (const auto& e : r.errors) all += e.to_string() + "\n";
        CAPTURE(all);
        CHECK(r.errors.size() == count);
        for (const auto& want : expected) {
            // Each message names the file first, then line:column, key and message.
            CHECK(all.find(path + want) != std::string::npos);
        }
    }
    CHECK(files >= 15);
}

TEST_CASE("user and group: names, numbers, and the user's primary group by default") {
    const auto load = [](const std::string& extra) {
        return load_spec_text("listen: [\"127.0.0.1:8000\"]\napp: {builtin: {}}\n" + extra, "t.yaml", 2);
    };
    auto r = load("user: nobody\n");
    REQUIRE(r.ok());
    CHECK(r.spec->run_as.uid == 65534u);
    CHECK(r.spec->run_as.gid == 65534u);  // nobody's primary group
    r = load("group: www-data\nuser: nobody\n");  // either order
    REQUIRE(r.ok());
    CHECK(r.spec->run_as.uid == 65534u);
    CHECK(r.spec->run_as.gid == 33u);
    r = load("user: 4242\ngroup: 4343\n");  // ids without database entries
    REQUIRE(r.ok());
    CHECK(r.spec->run_as.uid == 4242u);
    CHECK(r.spec->run_as.gid == 4343u);
    r = load("");
    REQUIRE(r.ok());
    CHECK_FALSE(r.spec->run_as.user);
}

TEST_CASE("check_run_as: root refuses root workers unless asked; others cannot switch") {
    const auto spec = [](const std::string& extra) {
        auto r = load_spec_text("listen: [\"127.0.0.1:8000\"]\napp: {builtin: {}}\n" + extra, "t.yaml", 2);
        REQUIRE(r.ok());
        return *r.spec;
    };
    // As root.
    CHECK(check_run_as(spec(""), 0, 0, false).find("set `user: NAME`") != std::string::npos);
    CHECK(check_run_as(spec(""), 0, 0, true).empty());          // --allow-root
    CHECK(check_run_as(spec("user: root\n"), 0, 0, false).empty());  // explicit
    CHECK(check_run_as(spec("user: nobody\n"), 0, 0, false).empty());
    CHECK(check_run_as(spec("group: www-data\n"), 0, 0, false).find("would run as root") != std::string::npos);
    // As uid 1000.
    CHECK(check_run_as(spec(""), 1000, 1000, false).empty());
    CHECK(check_run_as(spec("user: 1000\ngroup: 1000\n"), 1000, 1000, false).empty());  // itself
    CHECK(check_run_as(spec("user: nobody\n"), 1000, 1000, false).find("only a daemon started as root") != std::string::npos);
    CHECK_FALSE(check_run_as(spec("group: www-data\n"), 1000, 1000, false).empty());
}

TEST_CASE("heartbeat: auto holds the bundled worker to READY, and leaves commands to prove themselves") {
    const auto builtin = load_spec_text("listen: \":8080\"\napp: {builtin: {}}\n", "b.yaml", 2);
    REQUIRE(builtin.ok());
    CHECK(builtin.spec->health.mode == HeartbeatMode::required);
    const auto off = load_spec_text("listen: \":8080\"\napp: {builtin: {}}\nheartbeat: off\n", "b.yaml", 2);
    REQUIRE(off.ok());
    CHECK(off.spec->health.mode == HeartbeatMode::off);
    const auto command = load_spec_text("listen: \":8080\"\napp: {command: [\"/bin/true\"]}\n", "c.yaml", 2);
    REQUIRE(command.ok());
    CHECK(command.spec->health.mode == HeartbeatMode::automatic);
}

TEST_CASE("reading asks the host nothing: users, directories and the program are looked up after, at their place") {
    const std::string text =
        "listen: [\"127.0.0.1:8000\"]\n"
        "app:\n"
        "  command: [\"no-such-program-here\", \"{fd}\"]\n"
        "  cwd: /nonexistent/dir\n"
        "user: no-such-user-here\n"
        "control: {users: [root, nobody], groups: [no-such-group-here]}\n";
    const SpecReading read = read_spec(text, "/srv/t.yaml", 2);
    CHECK(read.errors.empty());  // nothing the text alone shows is wrong
    REQUIRE(read.lookups.size() == 6);
    const auto find = [&](const std::string& key) {
        for (const auto& l : read.lookups) {
            if (l.key == key) return l;
        }
        FAIL("no lookup for " << key);
        return HostLookup{};
    };
    const HostLookup program = find("app.command[0]");
    CHECK(program.what == HostLookup::What::program);
    CHECK(program.text == "no-such-program-here");
    CHECK(program.line == 3);
    CHECK(program.column == 13);
    CHECK(find("app.cwd").what == HostLookup::What::directory);
    CHECK(find("app.cwd").text == "/nonexistent/dir");
    CHECK(find("user").what == HostLookup::What::user);
    CHECK(find("user").line == 5);
    CHECK(find("control.users[1]").what == HostLookup::What::control_user);
    CHECK(find("control.users[1]").text == "nobody");
    CHECK(find("control.groups[0]").what == HostLookup::What::control_member);
    CHECK(read.spec.run_as.user == std::optional<std::string>("no-such-user-here"));
    CHECK_FALSE(read.spec.run_as.uid);  // not looked up

    // The host step resolves them and reports each at its line and column.
    const SpecLoadResult host = resolve_on_host(read, "t.yaml");
    CHECK_FALSE(host.ok());
    std::string all;
    for (const auto& e : host.errors) all += e.to_string() + "\n";
    CAPTURE(all);
    CHECK(host.errors.size() == 3);
    CHECK(all.find("t.yaml:4:8: app.cwd: /nonexistent/dir: No such file or directory") != std::string::npos);
    CHECK(all.find("t.yaml:5:7: user: no such user 'no-such-user-here'") != std::string::npos);
    CHECK(all.find("control.groups[0]: no such group 'no-such-group-here'") != std::string::npos);
    REQUIRE(host.warnings.size() == 1);
    CHECK(host.warnings[0].to_string().rfind("t.yaml:3:13: app.command[0]: 'no-such-program-here' is not found in PATH", 0) == 0);
}

TEST_CASE("a numeric user with a database entry takes its primary group") {
    auto r = load_spec_text("listen: [\"127.0.0.1:8000\"]\napp: {builtin: {}}\nuser: 65534\n", "t.yaml", 2);
    for (const auto& e : r.errors) FAIL(e.to_string());
    REQUIRE(r.ok());
    CHECK(r.spec->run_as.uid == 65534u);
    CHECK(r.spec->run_as.gid == 65534u);
    CHECK(r.spec->run_as.login == "nobody");
}
