#include "daemon/os/worker_command.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <stdexcept>

using namespace workerd;

namespace {
std::vector<ListenAddress> two_listeners() {
    ListenAddress web;
    web.host = "127.0.0.1";
    web.port = 8000;
    web.name = "web";
    ListenAddress admin;
    admin.kind = ListenAddress::Kind::unix_path;
    admin.path = "/tmp/admin.sock";
    admin.name = "admin";
    return {web, admin};
}
bool has(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}
}  // namespace

TEST_CASE("{fd} and {fd:NAME} become the inherited descriptor numbers") {
    const auto l = two_listeners();
    CHECK(substitute_fds("--fd", l) == "--fd");
    CHECK(substitute_fds("{fd}", l) == "3");
    CHECK(substitute_fds("--fd={fd}", l) == "--fd=3");
    CHECK(substitute_fds("{fd:web},{fd:admin}", l) == "3,4");
    CHECK(substitute_fds("{fd:1}", l) == "4");
    CHECK(substitute_fds("{fdx}", l) == "{fdx}");
    CHECK_THROWS_AS(substitute_fds("{fd:nope}", l), std::invalid_argument);
    CHECK_THROWS_AS(substitute_fds("{fd:web", l), std::invalid_argument);
}

TEST_CASE("an external command keeps its argv, substituted") {
    AppSpec app;
    app.command = {"/usr/bin/python3", "-m", "uvicorn", "app:app", "--fd", "{fd}"};
    CHECK(worker_argv(app, two_listeners(), "/x/workerd") ==
          std::vector<std::string>{"/usr/bin/python3", "-m", "uvicorn", "app:app", "--fd", "3"});
}

TEST_CASE("the bundled worker runs as `workerd serve-builtin` with its settings") {
    AppSpec app;
    app.builtin = BuiltinAppSpec{};
    app.builtin->root = "/srv/site";
    app.builtin->demo = true;
    const auto argv = worker_argv(app, two_listeners(), "/x/workerd");
    CHECK(argv[0] == "/x/workerd");
    CHECK(argv[1] == "serve-builtin");
    CHECK(has(argv, "--root"));
    CHECK(has(argv, "/srv/site"));
    CHECK(has(argv, "--demo"));
    CHECK_FALSE(has(argv, "--no-precompressed"));  // on by default
    app.builtin->precompressed = false;
    CHECK(has(worker_argv(app, two_listeners(), "/x/workerd"), "--no-precompressed"));
}

TEST_CASE("the environment follows the LISTEN_FDS convention and drops inherited LISTEN_*") {
    AppSpec app;
    app.env = {{"MODE", "prod"}, {"PATH", "/opt/bin"}};
    const auto env = worker_env({"PATH=/usr/bin", "HOME=/root", "LISTEN_FDS=7", "LISTEN_PID=1"},
                                app, two_listeners(), 2, 5);
    CHECK(has(env, "HOME=/root"));
    CHECK(has(env, "PATH=/opt/bin"));
    CHECK_FALSE(has(env, "PATH=/usr/bin"));
    CHECK(has(env, "MODE=prod"));
    CHECK(has(env, "LISTEN_FDS=2"));
    CHECK(has(env, "LISTEN_FDNAMES=web:admin"));
    CHECK(has(env, "WORKERD_SLOT=2"));
    CHECK(has(env, "WORKERD_GENERATION=5"));
    CHECK_FALSE(has(env, "LISTEN_FDS=7"));
    CHECK(std::none_of(env.begin(), env.end(),
                       [](const std::string& e) { return e.rfind("LISTEN_PID=", 0) == 0; }));
}

TEST_CASE("workers that run as another user get its USER, LOGNAME and HOME, unless app.env sets them") {
    AppSpec app;
    RunAsSpec run_as;
    run_as.user = "www-data";
    run_as.uid = 33;
    run_as.login = "www-data";
    run_as.home = "/var/www";
    const std::vector<std::string> base{"HOME=/root", "USER=root", "LOGNAME=root", "PATH=/usr/bin"};
    auto env = worker_env(base, app, two_listeners(), 0, 1, run_as);
    CHECK(has(env, "HOME=/var/www"));
    CHECK(has(env, "USER=www-data"));
    CHECK(has(env, "LOGNAME=www-data"));
    CHECK_FALSE(has(env, "HOME=/root"));
    CHECK_FALSE(has(env, "USER=root"));
    CHECK(has(env, "PATH=/usr/bin"));
    app.env = {{"HOME", "/srv/app"}};
    env = worker_env(base, app, two_listeners(), 0, 1, run_as);
    CHECK(has(env, "HOME=/srv/app"));
    CHECK(std::count_if(env.begin(), env.end(), [](const std::string& e) { return e.rfind("HOME=", 0) == 0; }) == 1);
    // No `user`: the daemon's own.
    env = worker_env(base, AppSpec{}, two_listeners(), 0, 1, RunAsSpec{});
    CHECK(has(env, "HOME=/root"));
    CHECK(has(env, "USER=root"));
}
