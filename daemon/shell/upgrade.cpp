// Upgrading the daemon itself (SIGUSR2): the workerd binary is re-executed in place, so the
// pid systemd (or anyone) tracks stays the same. The listen, control and metrics sockets and
// the workers' pipes survive the exec; the new image adopts the workers and replaces them
// through the rolling path (a successor READY before its predecessor drains), so no request
// is dropped. The new image runs the spec in effect, handed over as text, not the file as it
// may have been edited since: an upgrade changes the binary only (SIGHUP re-reads the spec).
// Before anything is handed over, the new binary must pass `workerd check --strict` on that
// text; if it does not, or exec fails, the running daemon carries on as it was.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/shell/arbiter.hpp"
#include "daemon/os/logging.hpp"
#include "daemon/os/output_pipe.hpp"
#include "daemon/os/spawn.hpp"

namespace workerd {
namespace {

constexpr std::chrono::seconds kPreflightTimeout{10};

// Runs `EXE check --strict --stdin SPEC` with the text of the spec in effect on its stdin: the
// new binary must start on this machine and accept that spec as `start` would (the root policy
// included), since the new image runs exactly that. Returns why not, or an empty string.
// Blocks the loop for as long as the check runs (tens of milliseconds; at most
// kPreflightTimeout).
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

void set_cloexec(const std::vector<int>& fds, bool on) {
    for (int fd : fds) ::fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

}  // namespace

void Arbiter::upgrade() {
    spdlog::info("SIGUSR2: upgrading workerd in place: checking {} on the spec in effect ({}, generation {})",
                 self_exe_, spec().file, fleet_.generation());
    if (const auto failure = preflight(self_exe_, spec(), allow_root_, base_env_); !failure.empty()) {
        spdlog::error("SIGUSR2: {}; the running daemon carries on (generation {})", failure, fleet_.generation());
        return;
    }
    const auto now = Clock::now();
    Handover h;
    // The listeners stay the owners of their descriptors, whatever happens here.
    struct Release {
        Handover& h;
        ~Release() {
            for (auto& s : h.listeners) s.fd.release();
        }
    } release{h};
    h.generation = fleet_.generation();
    h.desired = fleet_.desired();
    h.pinned = fleet_.autoscale_pinned();
    h.spec_text = spec().text;
    for (const auto& l : listeners_) {
        InheritedSocket s;
        s.fd = UniqueFd(l->fd());
        s.name = l->address().name;
        s.owns_path = l->owns_path();
        s.activated = l->activated();
        h.listeners.push_back(std::move(s));
    }
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        for (const auto& [slot, socket] : slot_listeners_.siblings_of(*listeners_[i])) {
            h.slot_sockets.push_back({slot, static_cast<int>(i), socket->fd()});
        }
    }
    h.control_fd = control_->fd();
    if (metrics_) h.metrics_fd = metrics_->fd();
    if (guardian_.running()) {
        h.guardian_pid = guardian_.pid();
        h.guardian_fd = guardian_.fd();
    }
    for (const auto& [id, w] : fleet_.workers()) {
        if (w.pid <= 0) continue;
        HandedWorker hw;
        hw.pid = w.pid;
        hw.slot = w.slot;
        hw.generation = w.generation;
        hw.ready = w.health.ready_at.has_value();
        hw.draining = w.phase == core::Phase::draining;
        hw.age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.started_at).count();
        int* fds[3] = {&hw.stdout_fd, &hw.stderr_fd, &hw.notify_fd};
        for (int i = 0; i < 3; ++i) {
            if (auto pipe = processes_[w.pid].pipes[i].lock()) *fds[i] = pipe->fd();
        }
        h.workers.push_back(hw);
    }
    const std::string state = handover_to_json(h).dump();
    const std::vector<int> fds = h.fds();

    std::vector<std::string> env_storage = base_env_;
    for (const auto& e : systemd_.environment()) env_storage.push_back(e);
    env_storage.push_back(std::string(Handover::kVariable) + "=" + state);
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_storage = argv_;
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);

    timespec mono{};
    ::clock_gettime(CLOCK_MONOTONIC, &mono);
    systemd_.send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=re-executing {}",
                              static_cast<long long>(mono.tv_sec) * 1000000 + mono.tv_nsec / 1000, self_exe_));
    spdlog::info("SIGUSR2: re-executing {} (pid {}) with {} worker(s), {} listener(s)", self_exe_, ::getpid(),
                 h.workers.size(), h.listeners.size());
    spdlog::default_logger()->flush();
    // Signals stay blocked across exec until the new image has its handlers (the constructor
    // unblocks them); the handed descriptors lose close-on-exec just for this call.
    sigset_t all, before;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &before);
    set_cloexec(fds, false);
    restore_open_file_limit();  // the new image raises it again, knowing the original
    ::execve(self_exe_.c_str(), argv.data(), envp.data());
    const int err = errno;
    raise_open_file_limit();
    set_cloexec(fds, true);
    ::sigprocmask(SIG_SETMASK, &before, nullptr);
    spdlog::error("SIGUSR2: exec {} failed: {}; the running daemon carries on (generation {})", self_exe_,
                  std::strerror(err), fleet_.generation());
    systemd_.send(fmt::format("READY=1\nSTATUS=upgrade failed (exec: {}); generation {} serves",
                              std::strerror(err), fleet_.generation()));
}

void Arbiter::adopt(Handover& h) {
    const auto now = Clock::now();
    // reuse_port: each slot's own sockets, so queues and the kernel's spreading carry on.
    for (const auto& ss : h.slot_sockets) {
        UniqueFd fd(ss.fd);
        if (static_cast<std::size_t>(ss.listener) >= listeners_.size()) continue;  // closed
        const auto& main = listeners_[static_cast<std::size_t>(ss.listener)];
        slot_listeners_.adopt(ss.slot, *main, std::make_shared<Listener>(main->address(), std::move(fd), main->backlog(), false));
    }
    std::vector<core::AdoptedWorker> adopted;
    for (auto& hw : h.workers) {
        adopted.push_back({hw.pid, hw.slot, hw.generation, hw.ready, hw.draining, std::chrono::milliseconds(hw.age_ms)});
        processes_[hw.pid].listeners = listeners_for(hw.slot);
        guardian_.watch(hw.pid);
        watch_pipes(hw.pid, hw.slot, UniqueFd(hw.stdout_fd), UniqueFd(hw.stderr_fd), UniqueFd(hw.notify_fd));
    }
    // Then the rolling path replaces them: a new generation, as after a reload of the same spec.
    previous_listeners_ = listeners_;
    fleet_.adopt(adopted, h.generation, h.desired, h.pinned, fmt::format("upgraded in place (pid {})", ::getpid()), now);
    carry_out(fleet_.take_actions());
}

}  // namespace workerd
