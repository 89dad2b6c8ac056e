// End-to-end: `workerd check`, and `workerd start` refusing what it cannot do.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include "daemon/listener.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd::test;

namespace {
RunResult run(const std::vector<std::string>& argv) { return run_program(argv); }
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
    const auto r = run({bin_path("workerd"), "start", spec});
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
