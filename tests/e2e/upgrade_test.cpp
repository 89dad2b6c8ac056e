// End-to-end: SIGUSR2 re-executes the workerd binary in place. The pid stays, the new binary
// runs, the listen/control/metrics sockets are kept, the workers are replaced through the
// rolling path, and wrk sees no failed request. A new binary that cannot run changes nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string spec(int port, int metrics_port, const std::string& dir) {
    return SpecBuilder(port).also_listen("unix:" + dir + "/app.sock").workers(4).builtin()
        .set("graceful_timeout", "5s").metrics(metrics_port);
}

ino_t inode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

// A new workerd installed the way package managers do it: a new file renamed over the old.
void install(const std::string& from, const std::string& to) {
    fs::copy_file(from, to + ".new", fs::copy_options::overwrite_existing);
    fs::permissions(to + ".new", fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    fs::rename(to + ".new", to);
}

std::set<pid_t> worker_pids(const json& status) {
    std::set<pid_t> out;
    for (const auto& w : status["workers"]) out.insert(w["pid"].get<pid_t>());
    return out;
}

std::string installed_copy(const TempDir& dir) {
    const std::string exe = dir.path() + "/workerd";
    install(bin_path("workerd"), exe);
    return exe;
}

// Four bundled workers, ready, under a daemon that runs DIR/workerd: a copy of the build's,
// which a test replaces (install) before SIGUSR2.
struct Upgradable {
    TempDir dir;
    int port = free_tcp_port();
    int metrics_port = free_tcp_port();
    std::string exe = installed_copy(dir);
    Daemon daemon{dir, spec(port, metrics_port, dir.path()), {}, exe};

    Upgradable() { REQUIRE_MESSAGE(daemon.wait_ready(4, 20s), daemon.log()); }
};

}  // namespace

TEST_CASE("SIGUSR2 under wrk: the same pid runs the new binary, keeps its sockets, and no request fails") {
    Upgradable upgradable;
    auto& [dir, port, metrics_port, exe, daemon] = upgradable;
    const pid_t pid = daemon.pid();
    const auto fds_before = open_fds(pid).size();
    const ino_t old_binary = inode_of("/proc/" + std::to_string(pid) + "/exe");
    const auto old_workers = worker_pids(daemon.status());

    const auto t0 = std::chrono::steady_clock::now();
    WrkLoad load(dir, port, 9);
    std::this_thread::sleep_until(t0 + 2s);
    install(bin_path("workerd"), exe);
    const ino_t new_binary = inode_of(exe);
    REQUIRE(new_binary != old_binary);
    // Polling status across the re-exec: a control connection open at the exec must not stay
    // in the new image (the descriptor check below counts them).
    daemon.process().signal(SIGUSR2);
    CHECK_MESSAGE(daemon.wait_rolled_out(2, 15s), daemon.log());
    std::this_thread::sleep_until(t0 + 5s);
    daemon.process().signal(SIGUSR2);  // and once more, from the new image
    CHECK_MESSAGE(daemon.wait_rolled_out(3, 15s), daemon.log());
    load.finish();

    CHECK_FALSE(daemon.process().exited());
    CHECK(inode_of("/proc/" + std::to_string(pid) + "/exe") == new_binary);
    CHECK(daemon.count_in_log(fmt::format("upgraded in place (pid {})", pid)) == 2);
    // The control socket kept answering, from the same daemon; the workers are all new (once
    // the last drained ones, which finish their connections, are gone: on a loaded machine
    // under ASan that has taken seconds).
    daemon.wait_status([](const json& now) {
        return std::all_of(now["workers"].begin(), now["workers"].end(), [](const json& w) { return w["generation"] == 3; });
    }, 10s);
    const json s = daemon.status();
    CHECK(s["pid"] == pid);
    CHECK(s["generation"] == 3);
    CHECK(s["ready"] == 4);
    for (const auto& w : s["workers"]) CHECK_MESSAGE(w["generation"] == 3, s.dump());
    for (pid_t w : worker_pids(s)) CHECK(old_workers.count(w) == 0);
    // The metrics port and the Unix listener are the same sockets, still served.
    CHECK(http_status(metrics_port, "/metrics") == 200);
    CHECK(fs::exists(dir.path() + "/app.sock"));
    // Nothing leaked across two execs: the old workers' pipes went with them.
    CHECK_MESSAGE(eventually([&] { return open_fds(pid).size() == fds_before; }, 10s),
                  fds_before << " descriptors before, " << open_fds(pid).size() << " after");

    daemon.process().signal(SIGTERM);
    REQUIRE(daemon.process().wait_exit(15s));
    CHECK_FALSE(fs::exists(dir.path() + "/app.sock"));  // still the daemon's to remove
}

TEST_CASE("SIGUSR2 with a new binary that cannot run: the daemon and its workers carry on") {
    Upgradable upgradable;
    auto& [dir, port, metrics_port, exe, daemon] = upgradable;
    const auto workers = worker_pids(daemon.status());

    // A broken build: it starts, then fails.
    const std::string broken = dir.write("broken", "#!/bin/sh\necho 'broken build' >&2\nexit 1\n");
    fs::permissions(broken, fs::perms::owner_all);
    install(broken, exe);
    daemon.process().signal(SIGUSR2);
    REQUIRE_MESSAGE(daemon.wait_for_log("the running daemon carries on", 10s), daemon.log());
    CHECK(daemon.count_in_log("broken build") == 1);
    // Not a program at all.
    install(dir.write("garbage", "not an executable"), exe);
    daemon.process().signal(SIGUSR2);
    REQUIRE(daemon.wait_for_log("the running daemon carries on", 10s, 2));

    const json s = daemon.status();
    CHECK(s["generation"] == 1);
    CHECK(worker_pids(s) == workers);
    CHECK(http_status(port, "/healthz") == 200);

    // Fixed: the next SIGUSR2 goes through.
    install(bin_path("workerd"), exe);
    daemon.process().signal(SIGUSR2);
    CHECK_MESSAGE(daemon.wait_rolled_out(2, 15s), daemon.log());
}

TEST_CASE("SIGUSR2 after the spec file was edited: the new image runs the spec in effect; SIGHUP reads the file") {
    Upgradable upgradable;
    auto& [dir, port, metrics_port, exe, daemon] = upgradable;
    const pid_t pid = daemon.pid();

    // Edited since the last reload into a valid spec that cannot start: its new listener is the
    // daemon's own metrics port. A new image that read the file would fail to bind, exit, and
    // take the fleet with it.
    const std::string path = dir.path() + "/workerd.yaml";
    std::string text = read_file(path);
    const std::string listen_line = fmt::format("listen: [\"127.0.0.1:{}\"", port);
    REQUIRE(text.find(listen_line) != std::string::npos);
    text.replace(text.find(listen_line), listen_line.size(),
                 fmt::format("listen: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"", port, metrics_port));
    dir.write("workerd.yaml", text);

    WrkLoad load(dir, port, 4);
    install(bin_path("workerd"), exe);
    daemon.process().signal(SIGUSR2);
    CHECK_MESSAGE(daemon.wait_rolled_out(2, 15s), daemon.log());
    load.finish();
    CHECK(daemon.count_in_log("the new image runs the spec in effect") == 1);
    json s = daemon.status();
    CHECK(s["pid"] == pid);
    CHECK(s["ready"] == 4);

    // The file is SIGHUP's to read: the bind fails, and the fleet stays as it is.
    daemon.process().signal(SIGHUP);
    CHECK_MESSAGE(daemon.wait_for_log(fmt::format("bind 127.0.0.1:{} failed", metrics_port), 10s), daemon.log());
    s = daemon.status();
    CHECK(s["generation"] == 2);
    CHECK(s["ready"] == 4);
    CHECK(http_status(port, "/healthz") == 200);
}
