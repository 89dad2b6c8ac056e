#include "daemon/shell/upgrade.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/os/logging.hpp"
#include "daemon/os/output_pipe.hpp"
#include "daemon/os/spawn.hpp"

namespace workerd {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kPreflightTimeout{10};

void set_cloexec(const std::vector<int>& fds, bool on) {
    for (int fd : fds) ::fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

}  // namespace

std::string preflight(const std::string& exe, const Spec& spec, bool allow_root, const std::vector<std::string>& env) {
    PipePair out = make_pipe();
    PipePair in = make_pipe();
    SpawnRequest request;
    request.argv = {exe, "check", "--strict", "--stdin"};
    if (allow_root) request.argv.push_back("--allow-root");
    request.argv.push_back(spec.file);
    request.env = env;
    request.stdin_fd = in.read_end.get();
    request.stdout_fd = out.write_end.get();
    request.stderr_fd = out.write_end.get();
    pid_t pid = 0;
    try {
        pid = spawn_process(request);
    } catch (const SpawnError& e) {
        return e.what();
    }
    out.write_end.reset();
    in.read_end.reset();
    // A spec is a few KiB, well under a pipe's 64 KiB: written at once. A larger one is
    // written as far as the pipe takes it; the check then sees it cut and says so.
    ::fcntl(in.write_end.get(), F_SETFL, O_NONBLOCK);
    for (std::string_view rest = spec.text; !rest.empty();) {
        const ssize_t n = ::write(in.write_end.get(), rest.data(), rest.size());
        if (n <= 0) break;
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    in.write_end.reset();
    std::string text;
    const auto deadline = Clock::now() + kPreflightTimeout;
    bool timed_out = false;
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            ::kill(pid, SIGKILL);
            break;
        }
        pollfd p{out.read_end.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
        char buf[4096];
        const ssize_t n = ::read(out.read_end.get(), buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            break;
        }
        if (text.size() < 16 * 1024) text.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    while (!text.empty() && text.back() == '\n') text.pop_back();
    if (timed_out) return fmt::format("`{} check {}` did not finish within {}s", exe, spec.file, kPreflightTimeout.count());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    return fmt::format("`{} check {}` failed ({}): {}", exe, spec.file,
                       WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status))
                                         : signal_name(WTERMSIG(status)),
                       text);
}

std::string reexec(const std::string& exe, const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const Handover& h, const SystemdNotifier& systemd) {
    const std::string state = handover_to_json(h).dump();
    const std::vector<int> fds = h.fds();
    std::vector<std::string> env_storage = env;
    for (const auto& e : systemd.environment()) env_storage.push_back(e);
    env_storage.push_back(std::string(Handover::kVariable) + "=" + state);
    const std::vector<char*> envp = exec_array(env_storage);
    std::vector<std::string> argv_storage = argv;
    const std::vector<char*> args = exec_array(argv_storage);

    timespec mono{};
    ::clock_gettime(CLOCK_MONOTONIC, &mono);
    systemd.send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=re-executing {}",
                             static_cast<long long>(mono.tv_sec) * 1000000 + mono.tv_nsec / 1000, exe));
    spdlog::info("SIGUSR2: re-executing {} (pid {}) with {} worker(s), {} listener(s)", exe, ::getpid(),
                 h.workers.size(), h.listeners.size());
    spdlog::default_logger()->flush();
    // Signals stay blocked across exec until the new image has its handlers (the Arbiter's
    // constructor unblocks them); the handed descriptors lose close-on-exec just for this call.
    sigset_t all, before;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &before);
    set_cloexec(fds, false);
    restore_open_file_limit();  // the new image raises it again, knowing the original
    ::execve(exe.c_str(), args.data(), envp.data());
    const int err = errno;
    raise_open_file_limit();
    set_cloexec(fds, true);
    ::sigprocmask(SIG_SETMASK, &before, nullptr);
    return std::strerror(err);
}

}  // namespace workerd
