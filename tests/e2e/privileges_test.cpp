// End-to-end: `user` and `group`. The daemon (root) binds, then its workers run as the
// configured user with that user's groups; root workers only when the spec says so. The
// switching tests need root (CI runs as root); elsewhere they say so and pass.
#include <doctest/doctest.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "tests/support/spec_builder.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;
namespace fs = std::filesystem;

namespace {

// "Uid:", "Gid:" (real, effective, saved, fs) and "Groups:" from /proc/PID/status.
std::map<std::string, std::vector<unsigned>> credentials(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::map<std::string, std::vector<unsigned>> out;
    for (std::string line; std::getline(in, line);) {
        for (const char* key : {"Uid:", "Gid:", "Groups:"}) {
            if (line.rfind(key, 0) != 0) continue;
            std::istringstream values(line.substr(std::strlen(key)));
            for (unsigned v; values >> v;) out[key].push_back(v);
        }
    }
    return out;
}

std::string spec(int port, const std::string& dir, const std::string& extra) {
    return SpecBuilder(port).workers(2).builtin().set("control", fmt::format("{{socket: {}/control.sock}}", dir)).extra(extra);
}

}  // namespace

TEST_CASE("workers run as the spec's user and group, with the user's groups; the daemon stays root") {
    if (skipped_unless_root("switching users")) return;
    const passwd* pw = ::getpwnam("nobody");
    const group* gr = ::getgrnam("www-data");
    REQUIRE(pw != nullptr);
    REQUIRE(gr != nullptr);
    const unsigned uid = pw->pw_uid, gid = gr->gr_gid;
    // The groups initgroups("nobody", www-data) gives.
    int n = 64;
    std::vector<gid_t> groups(64);
    REQUIRE(::getgrouplist("nobody", gid, groups.data(), &n) >= 0);
    const std::set<unsigned> expected_groups(groups.begin(), groups.begin() + n);

    TempDir dir;
    // The workers' directory (the spec's) must be theirs to enter.
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    const int port = free_tcp_port();
    Daemon daemon(dir, spec(port, dir.path(), "user: nobody\ngroup: www-data\n"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 10s), daemon.log());
    const auto workers = daemon.workers();
    REQUIRE(workers.size() == 2);
    for (pid_t w : workers) {
        const auto c = credentials(w);
        CHECK(c.at("Uid:") == std::vector<unsigned>{uid, uid, uid, uid});
        CHECK(c.at("Gid:") == std::vector<unsigned>{gid, gid, gid, gid});
        const auto& g = c.count("Groups:") ? c.at("Groups:") : std::vector<unsigned>{};
        CHECK(std::set<unsigned>(g.begin(), g.end()) == expected_groups);
    }
    CHECK(credentials(daemon.pid()).at("Uid:").at(1) == 0u);
    // The user's name and home, as systemd's User= gives them.
    const std::string environ = read_file("/proc/" + std::to_string(workers[0]) + "/environ");
    CHECK(environ.find(std::string("\0USER=nobody\0", 13)) != std::string::npos);
    CHECK(environ.find(std::string("\0HOME=", 6) + pw->pw_dir + '\0') != std::string::npos);
    CHECK(http_status(port, "/healthz") == 200);
    // A worker that dies is replaced as the same user (and still dies with the daemon).
    ::kill(workers[0], SIGKILL);
    REQUIRE(eventually([&] {
        const auto now = daemon.workers();
        return now.size() == 2 && now[0] != workers[0] && now[1] != workers[0];
    }, 10s));
    // (A child just forked is root until it drops to the user, before its exec.)
    CHECK(eventually([&] {
        for (pid_t w : daemon.workers()) {
            if (credentials(w).at("Uid:").at(1) != uid) return false;
        }
        return true;
    }, 5s));
}

TEST_CASE("as root, a spec without `user` is refused; `user: root` or --allow-root runs root workers") {
    if (skipped_unless_root("the root policy")) return;
    TempDir dir;
    const int port = free_tcp_port();
    const std::string path = dir.write("plain.yaml", spec(port, dir.path(), ""));
    const auto refused = run_program({bin_path("workerd"), "start", path});
    CHECK(refused.exit_code == 1);
    CHECK_MESSAGE(refused.output.find("set `user: NAME`") != std::string::npos, refused.output);
    // `workerd check` validates the file and only warns.
    const auto checked = run_program({bin_path("workerd"), "check", path});
    CHECK(checked.exit_code == 0);
    CHECK(checked.output.find("warning:") != std::string::npos);

    Daemon daemon(dir, spec(port, dir.path(), "user: root\n"));
    REQUIRE_MESSAGE(daemon.wait_ready(2, 10s), daemon.log());
    for (pid_t w : daemon.workers()) CHECK(credentials(w).at("Uid:").at(1) == 0u);
    // A reload that drops `user` is refused like a bad spec; the fleet keeps serving.
    dir.write("workerd.yaml", spec(port, dir.path(), ""));
    const auto r = daemon.ctl({"reload"});
    CHECK(r.exit_code != 0);
    CHECK_MESSAGE(r.output.find("set `user: NAME`") != std::string::npos, r.output);
    CHECK(daemon.status()["generation"] == 1);
}

TEST_CASE("a daemon that is not root cannot switch users, and says so") {
    if (skipped_unless_root("starting a daemon as another user")) return;
    TempDir dir;
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    const std::string path = dir.write("spec.yaml", spec(free_tcp_port(), dir.path(), "user: www-data\n"));
    const auto r = run_as_nobody({bin_path("workerd"), "start", path});
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.output.find("only a daemon started as root can switch") != std::string::npos, r.output);
}
