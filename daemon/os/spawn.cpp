#include "daemon/os/spawn.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <system_error>

// Boost.Process 1.74 offers vfork only where _POSIX_C_SOURCE predates 2008 (vfork left POSIX
// then); glibc has it, and the executor's vfork path is complete: turn it on (see exec_child).
#ifndef BOOST_POSIX_HAS_VFORK
#define BOOST_POSIX_HAS_VFORK 1
#endif
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>
#include <fmt/format.h>

#include "daemon/os/unique_fd.hpp"

namespace workerd {
namespace {

namespace bp = boost::process;

constexpr const char kListenPidPrefix[] = "LISTEN_PID=";

// What the child reports through the error pipe when it cannot reach execve's success.
struct ChildFailure {
    int stage;  // one of the Stage values
    int err;    // errno
};
enum Stage : int { kStageChdir = 1, kStageExec = 2, kStageFds = 3, kStageUser = 4 };

// Everything the child needs, prepared in the parent: after fork the child may only make
// async-signal-safe calls (no allocation), so argv, envp and the fd plan are built here.
struct ChildPlan {
    std::vector<std::string> argv_storage;
    std::vector<char*> argv;
    std::vector<std::string> env_storage;
    std::vector<char*> envp;
    char* listen_pid_entry = nullptr;  // points into env_storage; digits written in the child
    std::string exe;
    std::string cwd;
    std::vector<int> inherit_fds;
    int stdin_fd = -1;
    int stdout_fd = -1;
    int stderr_fd = -1;
    int error_pipe = -1;
    pid_t parent = 0;
    bool die_with_parent = true;
    // The identity to take (only when the daemon is root): groups, then gid, then uid.
    bool switch_user = false;
    std::vector<gid_t> groups;
    gid_t gid = 0;
    uid_t uid = 0;
};

// Async-signal-safe: report a failure to the parent and exit.
[[noreturn]] void child_fail(const ChildPlan& plan, int stage, int err) {
    ChildFailure failure{stage, err};
    [[maybe_unused]] ssize_t n = ::write(plan.error_pipe, &failure, sizeof failure);
    ::_exit(127);
}

// Async-signal-safe: writes "<pid>" after "LISTEN_PID=" in the preallocated entry.
void write_listen_pid(char* entry) {
    char digits[16];
    int n = 0;
    for (pid_t pid = ::getpid(); pid > 0; pid /= 10) digits[n++] = static_cast<char>('0' + pid % 10);
    char* out = entry + sizeof kListenPidPrefix - 1;
    while (n > 0) *out++ = digits[--n];
    *out = '\0';
}

// Moves `fds` to 3, 4, ... and makes every other descriptor from 3 + fds.size() up close on
// exec. Sources are first duplicated above the target range so that no dup2 overwrites a
// source that is still needed. Async-signal-safe.
void arrange_fds(ChildPlan& plan) {
    const int n = static_cast<int>(plan.inherit_fds.size());
    const int first_free = 3 + n;
    int moved[256];
    if (n > 256) child_fail(plan, kStageFds, EMFILE);
    plan.error_pipe = ::fcntl(plan.error_pipe, F_DUPFD_CLOEXEC, first_free);
    if (plan.error_pipe < 0) ::_exit(127);
    for (int i = 0; i < n; ++i) {
        moved[i] = ::fcntl(plan.inherit_fds[i], F_DUPFD_CLOEXEC, first_free);
        if (moved[i] < 0) child_fail(plan, kStageFds, errno);
    }
    int std_fds[3] = {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd};
    for (int target = 0; target < 3; ++target) {
        int dup = ::fcntl(std_fds[target], F_DUPFD_CLOEXEC, first_free);
        if (dup < 0 || ::dup2(dup, target) < 0) child_fail(plan, kStageFds, errno);
    }
    for (int i = 0; i < n; ++i) {
        if (::dup2(moved[i], 3 + i) < 0) child_fail(plan, kStageFds, errno);  // clears CLOEXEC
    }
    // Everything else (whatever the daemon or a library opened without O_CLOEXEC) closes at
    // exec. Marking instead of closing keeps Boost.Process's own error pipe usable.
    if (::close_range(static_cast<unsigned>(first_free), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        const long max_fd = ::sysconf(_SC_OPEN_MAX);
        for (long fd = first_free; fd < (max_fd > 0 ? max_fd : 65536); ++fd) {
            ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
        }
    }
}

// Runs in the child between fork and exec. It execs the program itself rather than returning
// to Boost.Process: Boost's own error pipe may sit on a descriptor that the listener layout
// (3, 4, ...) overwrites, so failures are reported through our pipe, placed above that range.
// The soft limit on open files the daemon was started with, for its children
// (raise_open_file_limit); RLIM_INFINITY: unchanged, nothing to restore.
rlim_t g_child_nofile = RLIM_INFINITY;

// The child is made with vfork (the daemon's page tables are not copied: a fork of a daemon
// holding 1024 workers' pipes cost a millisecond, and spawning was half its CPU while a fleet
// grew). It borrows the daemon's memory until exec, so it only calls the kernel: the user
// switch uses the raw system calls, not glibc's setuid(), which would signal the daemon's
// other threads; and every signal stays blocked (the daemon blocks them around the vfork)
// until the handlers it shares no more are reset to their defaults.
[[noreturn]] void exec_child(ChildPlan& plan) {
    ::setpgid(0, 0);
    // Groups first, the uid last: after setuid the child could no longer change its groups.
    if (plan.switch_user &&
        (::syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0 ||
         ::syscall(SYS_setgid, plan.gid) != 0 || ::syscall(SYS_setuid, plan.uid) != 0)) {
        child_fail(plan, kStageUser, errno);
    }
    // Die with the daemon; if it already died before this line, do not outlive it. (After the
    // switch of user: changing credentials clears the parent-death signal.)
    if (plan.die_with_parent) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != plan.parent) ::_exit(127);
    }

    // exec keeps ignored signals ignored: the daemon ignores SIGPIPE, the app must not, nor
    // any signal the daemon's own parent ignored. The raw system call also reaches the two
    // signals glibc reserves for itself (32, 33), which signal() refuses to touch.
    struct KernelSigaction {
        void* handler;
        unsigned long flags;
        void* restorer;
        unsigned long mask;
    } default_action{};  // handler SIG_DFL (0), empty mask
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            ::syscall(SYS_rt_sigaction, sig, &default_action, nullptr, sizeof(unsigned long));
        }
    }

    arrange_fds(plan);
    if (plan.listen_pid_entry != nullptr) write_listen_pid(plan.listen_pid_entry);
    if (!plan.cwd.empty() && ::chdir(plan.cwd.c_str()) != 0) child_fail(plan, kStageChdir, errno);
    // The daemon's own soft limit on open files is raised; the program gets the original. Last,
    // once its descriptors are in place: the daemon's may be numbered past that limit.
    if (g_child_nofile != RLIM_INFINITY) {
        rlimit limit{};
        if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
            limit.rlim_cur = g_child_nofile;
            ::setrlimit(RLIMIT_NOFILE, &limit);
        }
    }
    // The program starts with no signal blocked (the handlers are defaults by now).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(plan.exe.c_str(), plan.argv.data(), plan.envp.data());
    child_fail(plan, kStageExec, errno);
}

std::string env_value(const std::vector<std::string>& env, const std::string& key) {
    for (const auto& entry : env) {
        if (entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
            entry[key.size()] == '=') {
            return entry.substr(key.size() + 1);
        }
    }
    return {};
}

bool is_executable_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// What initgroups(3) would set, computed before fork (the child may not read /etc/group):
// the user's groups from the group database, or only `gid` for a user without an entry.
std::vector<gid_t> supplementary_groups(const std::string& user, gid_t gid) {
    if (user.empty() || ::getpwnam(user.c_str()) == nullptr) return {gid};
    int count = 32;
    std::vector<gid_t> groups(static_cast<std::size_t>(count));
    while (::getgrouplist(user.c_str(), gid, groups.data(), &count) < 0) {
        groups.resize(static_cast<std::size_t>(count) * 2);
        count = static_cast<int>(groups.size());
    }
    groups.resize(static_cast<std::size_t>(count));
    return groups;
}

}  // namespace

std::string resolve_executable(const std::string& name, const std::string& path_env) {
    if (name.find('/') != std::string::npos) return name;
    const std::string path = path_env.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_env;
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        if (is_executable_file(candidate)) return candidate;
        start = end + 1;
    }
    return {};
}

unsigned long raise_open_file_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
    if (limit.rlim_cur < limit.rlim_max) {
        const rlim_t original = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) {
            if (g_child_nofile == RLIM_INFINITY) g_child_nofile = original;
        } else {
            ::getrlimit(RLIMIT_NOFILE, &limit);
        }
    }
    return static_cast<unsigned long>(limit.rlim_cur);
}

void restore_open_file_limit() {
    rlimit limit{};
    if (g_child_nofile == RLIM_INFINITY || ::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    limit.rlim_cur = g_child_nofile;
    ::setrlimit(RLIMIT_NOFILE, &limit);
}

std::vector<char*> exec_array(std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (auto& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

pid_t spawn_process(const SpawnRequest& request) {
    if (request.argv.empty()) throw SpawnError("cannot execute an empty command");
    ChildPlan plan;
    plan.exe = resolve_executable(request.argv[0], env_value(request.env, "PATH"));
    if (plan.exe.empty()) {
        throw SpawnError(fmt::format("cannot execute {}: command not found in PATH",
                                     request.argv[0]));
    }
    plan.argv_storage = request.argv;
    plan.argv = exec_array(plan.argv_storage);

    for (const auto& entry : request.env) {
        if (entry.rfind(kListenPidPrefix, 0) != 0) plan.env_storage.push_back(entry);
    }
    const bool inherits_fds = !request.inherit_fds.empty();
    if (inherits_fds) plan.env_storage.push_back(std::string(kListenPidPrefix) + "0000000000000");
    plan.envp = exec_array(plan.env_storage);
    if (inherits_fds) plan.listen_pid_entry = plan.env_storage.back().data();

    if ((request.uid || request.gid) && ::geteuid() == 0) {
        plan.switch_user = true;
        plan.uid = request.uid.value_or(0);
        plan.gid = request.gid.value_or(0);
        plan.groups = supplementary_groups(request.user, plan.gid);
    }
    plan.cwd = request.cwd;
    plan.inherit_fds = request.inherit_fds;
    UniqueFd dev_null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!dev_null) throw SpawnError(fmt::format("open /dev/null failed: {}", std::strerror(errno)));
    plan.stdin_fd = request.stdin_fd >= 0 ? request.stdin_fd : dev_null.get();
    plan.stdout_fd = request.stdout_fd >= 0 ? request.stdout_fd : dev_null.get();
    plan.stderr_fd = request.stderr_fd >= 0 ? request.stderr_fd : dev_null.get();

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        throw SpawnError(fmt::format("pipe2 for spawn failed: {}", std::strerror(errno)));
    }
    UniqueFd error_read(pipe_fds[0]);
    UniqueFd error_write(pipe_fds[1]);
    plan.error_pipe = error_write.get();
    plan.parent = ::getpid();
    plan.die_with_parent = request.die_with_parent;

    // Every signal blocked around the vfork: the child shares the daemon's memory, and a
    // handler of the daemon's must not run in it (exec_child unblocks after resetting them).
    sigset_t all, before;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &before);
    std::error_code ec;
    bp::child child(bp::exe = plan.exe, bp::args = std::vector<std::string>(request.argv.begin() + 1, request.argv.end()),
                    bp::posix::use_vfork, bp::extend::on_exec_setup = [&plan](auto&) { exec_child(plan); }, ec);
    ::sigprocmask(SIG_SETMASK, &before, nullptr);
    if (ec) throw SpawnError(fmt::format("fork for {} failed: {}", request.argv[0], ec.message()));
    const pid_t pid = child.id();
    child.detach();  // launch only: the arbiter's waitpid loop is the one reaper
    error_write.reset();

    // The pipe closes at a successful exec; otherwise the child wrote why it failed.
    ChildFailure failure{};
    ssize_t n;
    do {
        n = ::read(error_read.get(), &failure, sizeof failure);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof failure)) {
        if (failure.stage == kStageUser) {
            throw SpawnError(fmt::format("cannot switch to uid {} gid {}: {}", plan.uid, plan.gid,
                                         std::strerror(failure.err)));
        }
        const char* what = failure.stage == kStageChdir ? "cannot change directory to"
                                                        : "cannot execute";
        const std::string& subject = failure.stage == kStageChdir ? plan.cwd : plan.exe;
        throw SpawnError(fmt::format("{} {}: {}", what, subject, std::strerror(failure.err)));
    }
    return pid;
}

}  // namespace workerd
