// The guardian and the orphan tracker, with real processes: groups are made, named and killed.
#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "daemon/os/guardian.hpp"
#include "daemon/os/orphans.hpp"
#include "daemon/os/unique_fd.hpp"
#include "tests/support/test_support.hpp"

using namespace workerd;
using namespace std::chrono_literals;

namespace {

// A process leading its own group, with a child in it: what a gunicorn master and its worker
// look like. Returns the leader's pid; the child's is in *child.
pid_t start_group(pid_t* child) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    const pid_t leader = ::fork();
    if (leader == 0) {
        ::setpgid(0, 0);
        const pid_t c = ::fork();
        if (c == 0) {
            ::pause();
            ::_exit(0);
        }
        [[maybe_unused]] auto n = ::write(p[1], &c, sizeof c);
        ::pause();
        ::_exit(0);
    }
    ::close(p[1]);
    REQUIRE(::read(p[0], child, sizeof *child) == sizeof *child);
    ::close(p[0]);
    return leader;
}

// Whether `pid` ignores `sig` (its SigIgn mask in /proc).
bool ignores(pid_t pid, int sig) {
    const std::string status = workerd::test::read_file("/proc/" + std::to_string(pid) + "/status");
    const auto at = status.find("SigIgn:");
    if (at == std::string::npos) return false;
    const unsigned long long mask = std::stoull(status.substr(at + 7), nullptr, 16);
    return (mask >> (sig - 1)) & 1;
}

}  // namespace

TEST_CASE("the guardian kills the groups still named when its pipe ends, and only those") {
    pid_t child_a = 0, child_b = 0;
    const pid_t a = start_group(&child_a);
    const pid_t b = start_group(&child_b);
    int p[2];
    REQUIRE(::pipe(p) == 0);
    const pid_t guardian = ::fork();
    if (guardian == 0) {
        ::close(p[1]);
        ::_exit(run_guardian(p[0]));
    }
    ::close(p[0]);
    const std::string lines = "+" + std::to_string(a) + "\n+" + std::to_string(b) + "\n-" + std::to_string(b) + "\n";
    REQUIRE(::write(p[1], lines.data(), lines.size()) == static_cast<ssize_t>(lines.size()));
    // SIGTERM is ignored (once the guardian has set that up): only the end of the pipe (the
    // daemon's death) makes it act.
    REQUIRE(workerd::test::eventually([&] { return ignores(guardian, SIGTERM); }, 5s));
    ::kill(guardian, SIGTERM);
    std::this_thread::sleep_for(100ms);
    CHECK(workerd::test::process_alive(guardian));
    ::close(p[1]);
    int status = 0;
    REQUIRE(workerd::test::eventually([&] { return ::waitpid(guardian, &status, WNOHANG) == guardian; }, 5s));
    CHECK(WIFEXITED(status));
    const bool a_gone = workerd::test::eventually([&] { return ::waitpid(a, &status, WNOHANG) == a; }, 5s);
    if (!a_gone) ::kill(-a, SIGKILL);
    REQUIRE(a_gone);
    CHECK(WIFSIGNALED(status));  // the leader of a named group
    CHECK(WTERMSIG(status) == SIGKILL);
    CHECK(workerd::test::eventually([&] { return !workerd::test::process_alive(child_a); }, 2s));  // and its child
    CHECK(workerd::test::process_alive(b));  // forgotten: left alone
    CHECK(workerd::test::process_alive(child_b));
    ::kill(-b, SIGKILL);
    ::waitpid(b, &status, 0);
}

TEST_CASE("orphans: SIGTERM at once, SIGKILL at the deadline, forgotten once gone") {
    // As the daemon is: a child subreaper, so the orphan comes here to be reaped.
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    pid_t child = 0;
    const pid_t leader = start_group(&child);
    int status = 0;
    // The leader goes first (a crashed gunicorn master); its child is what is left.
    ::kill(leader, SIGKILL);
    REQUIRE(::waitpid(leader, &status, 0) == leader);
    REQUIRE(group_alive(leader));
    Orphans orphans;
    const auto t0 = Orphans::Clock::now();
    // SIGCONT stands in for SIGTERM here: the child (in pause()) must outlive it.
    REQUIRE(orphans.terminate(-leader, t0 + 10s, SIGCONT));
    CHECK(orphans.tracks(-leader));
    CHECK(orphans.next_deadline() == t0 + 10s);
    CHECK(orphans.expire(t0 + 1s).empty());  // not due: nothing sent
    CHECK(workerd::test::process_alive(child));
    CHECK(orphans.expire(t0 + 10s).empty());  // SIGKILL sent; gone at the next look
    CHECK(orphans.next_deadline() == t0 + 10s + Orphans::kRecheck);  // looked at again soon
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WTERMSIG(status) == SIGKILL);
    orphans.reaped(child);
    CHECK_FALSE(group_alive(leader));
    CHECK(orphans.expire(t0 + 11s) == std::vector<pid_t>{leader});
    CHECK(orphans.empty());
    // Nothing there: nothing tracked.
    CHECK_FALSE(orphans.terminate(-leader, t0, SIGTERM));
    CHECK(orphans.empty());
}
