// Process tests: real children started by spawn_process.
#include "daemon/os/spawn.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <csignal>
#include <sstream>

#include "daemon/os/listener.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd;
using namespace std::chrono_literals;

namespace {

// Stops and reaps a child the test spawned, whatever happens in the test.
struct Reaped {
    pid_t pid;
    ~Reaped() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
};

std::string socket_link(int fd) {
    struct stat st {};
    ::fstat(fd, &st);
    return "socket:[" + std::to_string(st.st_ino) + "]";
}

std::string status_field(pid_t pid, const std::string& field) {
    std::istringstream in(test::read_file("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(field + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", field.size() + 1));
    }
    return {};
}

ListenAddress loopback() {
    ListenAddress a;
    a.host = "127.0.0.1";
    a.text = "127.0.0.1:0";
    a.name = "web";
    return a;
}

}  // namespace

TEST_CASE("a child gets exactly fds 0, 1, 2 and the listeners, and its own LISTEN_PID") {
    ::signal(SIGPIPE, SIG_IGN);  // as the daemon does; the child must not inherit it
    Listener a = open_listener(loopback(), 8);
    Listener b = open_listener(loopback(), 8);
    // Noise a careless spawner would leak: a descriptor without close-on-exec.
    UniqueFd leak(::dup(a.fd()));
    SpawnRequest req;
    req.argv = {"sleep", "30"};
    req.env = {"PATH=/usr/bin:/bin", "LISTEN_FDS=2", "LISTEN_FDNAMES=a:b", "LISTEN_PID=999"};
    req.inherit_fds = {b.fd(), a.fd()};  // order given, not fd order
    const pid_t pid = spawn_process(req);
    Reaped guard{pid};

    // exec renames the process slightly before it closes the close-on-exec descriptors:
    // wait for the program to be running with its final table.
    REQUIRE(test::eventually([&] { return test::settled_in(pid, "sleep"); }, 5s));
    const auto fds = test::open_fds(pid);
    CHECK(fds.size() == 5);
    CHECK(fds.at(0) == "/dev/null");
    CHECK(fds.count(1) == 1);
    CHECK(fds.count(2) == 1);
    CHECK(fds.at(3) == socket_link(b.fd()));
    CHECK(fds.at(4) == socket_link(a.fd()));

    const auto env = test::environment_of(pid);
    CHECK(env.at("LISTEN_PID") == std::to_string(pid));
    CHECK(env.at("LISTEN_FDS") == "2");
    CHECK(env.at("LISTEN_FDNAMES") == "a:b");
    CHECK(status_field(pid, "SigIgn") == "0000000000000000");
    CHECK(::getpgid(pid) == pid);  // its own process group
}

TEST_CASE("stdout and stderr go where asked") {
    test::TempDir dir;
    const std::string out_path = dir.path() + "/out";
    UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    SpawnRequest req;
    req.argv = {"/bin/sh", "-c", "echo to-out; echo to-err >&2; pwd"};
    req.env = {"PATH=/usr/bin:/bin"};
    req.cwd = dir.path();
    req.stdout_fd = out.get();
    req.stderr_fd = out.get();
    const pid_t pid = spawn_process(req);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(test::read_file(out_path) == "to-out\nto-err\n" + dir.path() + "\n");
}

TEST_CASE("exec failures are reported plainly, and the failed child is left to the reaper") {
    SpawnRequest req;
    req.env = {"PATH=/usr/bin:/bin"};
    req.argv = {"/nonexistent/app"};
    CHECK_THROWS_WITH_AS(spawn_process(req),
                         "cannot execute /nonexistent/app: No such file or directory", SpawnError);
    int status = 0;
    const pid_t reaped = ::waitpid(-1, &status, 0);  // the child that could not exec
    CHECK(reaped > 0);
    CHECK(WEXITSTATUS(status) == 127);

    req.argv = {"no-such-command-xyz"};
    CHECK_THROWS_WITH_AS(spawn_process(req),
                         "cannot execute no-such-command-xyz: command not found in PATH",
                         SpawnError);

    test::TempDir dir;
    const std::string script = dir.write("not-executable", "#!/bin/sh\n");
    req.argv = {script};
    CHECK_THROWS_WITH_AS(spawn_process(req), doctest::Contains("Permission denied"), SpawnError);
    ::waitpid(-1, &status, 0);

    req.argv = {"/bin/true"};
    req.cwd = "/nonexistent-dir";
    CHECK_THROWS_WITH_AS(spawn_process(req),
                         "cannot change directory to /nonexistent-dir: No such file or directory",
                         SpawnError);
    ::waitpid(-1, &status, 0);
}

TEST_CASE("resolve_executable searches PATH like execvp") {
    CHECK(resolve_executable("sh", "/nonexistent:/bin") == "/bin/sh");
    CHECK(resolve_executable("./relative", "/bin") == "./relative");
    CHECK(resolve_executable("no-such-command-xyz", "/bin:/usr/bin").empty());
}
