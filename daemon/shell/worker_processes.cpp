#include "daemon/shell/worker_processes.hpp"

#include <unistd.h>

#include <csignal>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/core/health.hpp"
#include "daemon/os/output_pipe.hpp"
#include "daemon/wire/notify.hpp"

namespace workerd {

WorkerProcesses::WorkerProcesses(boost::asio::io_context& io, std::string self_exe, ProtocolLine on_line)
    : io_(io), self_exe_(std::move(self_exe)), on_line_(std::move(on_line)) {}

void WorkerProcesses::start_guardian() {
    try {
        guardian_ = Guardian::start(self_exe_);
    } catch (const std::exception& e) {
        spdlog::error("cannot start the guardian ({}): if the daemon is killed, what its workers started may outlive it",
                      e.what());
        return;
    }
    for (const auto& [pid, process] : processes_) guardian_.watch(pid);
    spdlog::debug("guardian started (pid {})", guardian_.pid());
}

void WorkerProcesses::add(pid_t pid, int slot, FleetSockets::Set sockets, UniqueFd out, UniqueFd err, UniqueFd notify) {
    guardian_.watch(pid);  // it leads its own process group
    Process& process = processes_[pid];
    process.sockets = std::move(sockets);
    int i = 0;
    for (auto [fd, stream] : {std::pair{&out, "stdout"}, std::pair{&err, "stderr"}}) {
        if (fd->valid()) {
            process.pipes[i] = OutputPipe::start(io_, std::move(*fd), [slot, pid, name = stream](std::string_view line, bool) {
                spdlog::info("worker {} (pid {}) {}: {}", slot, pid, name, line);
            });
        }
        ++i;
    }
    if (notify.valid()) {
        process.pipes[2] = OutputPipe::start(
            io_, std::move(notify),
            [this, pid, in_overlong_line = false](std::string_view line, bool truncated) mutable {
                // Pieces of a line past the limit: reported once, the rest (up to its '\n')
                // dropped.
                if (truncated || in_overlong_line) {
                    if (truncated && !in_overlong_line) on_line_(pid, {}, true);
                    in_overlong_line = truncated;
                    return;
                }
                on_line_(pid, line, false);
            },
            kMaxNotifyLine - 1);
    }
}

void WorkerProcesses::read_protocol_now(pid_t pid) {
    if (auto it = processes_.find(pid); it != processes_.end()) {
        if (auto pipe = it->second.pipes[2].lock()) pipe->read_now();
    }
}

const FleetSockets::Set& WorkerProcesses::sockets_of(pid_t pid) const {
    static const FleetSockets::Set none;
    auto it = processes_.find(pid);
    return it != processes_.end() ? it->second.sockets : none;
}

std::set<std::shared_ptr<Listener>> WorkerProcesses::all_sockets() const {
    std::set<std::shared_ptr<Listener>> out;
    for (const auto& [pid, process] : processes_) out.insert(process.sockets.begin(), process.sockets.end());
    return out;
}

void WorkerProcesses::guardian_lost(bool restart) {
    guardian_.lost();
    if (restart) start_guardian();
}

void WorkerProcesses::release_leftovers(const core::action::ReleaseLeftovers& gone, Duration grace,
                                        const std::set<pid_t>& spare) {
    const pid_t pid = gone.pid;
    const bool at_once = gone.at_once;
    const int sig = at_once ? SIGKILL : SIGTERM;
    const auto kill_at = Clock::now() + grace;
    const bool group_left = group_alive(pid) && orphans_.terminate(-pid, kill_at, sig);
    if (!group_left) guardian_.forget(pid);
    // Children of the daemon that are no worker of it: orphans that came to it. Those of a
    // group being stopped, or of a live worker's group, go with their group.
    int outside = 0;
    for (pid_t child : children_of_this_process()) {
        if (processes_.count(child) || spare.count(child) || (guardian_.running() && child == guardian_.pid())) continue;
        const pid_t group = ::getpgid(child);
        if (group < 0 || (group != pid && processes_.count(group)) || orphans_.tracks(-group) || orphans_.tracks(child)) {
            continue;
        }
        if (orphans_.terminate(child, kill_at, sig)) ++outside;
    }
    if (group_left || outside > 0) {
        spdlog::warn("worker {} (pid {}, gen {}) left processes behind ({}{}{}): sent {}{}", gone.slot, pid, gone.generation,
                     group_left ? "its process group" : "",
                     group_left && outside ? ", " : "", outside ? fmt::format("{} orphan(s) outside it", outside) : "",
                     signal_name(sig), at_once ? "" : ", SIGKILL in " + format_duration(grace));
    }
}

void WorkerProcesses::expire(Clock::time_point now) {
    for (pid_t pid : orphans_.expire(now)) guardian_.forget(pid);
}

void WorkerProcesses::hand_over(pid_t pid, HandedWorker& w) const {
    auto it = processes_.find(pid);
    if (it == processes_.end()) return;
    int* fds[3] = {&w.stdout_fd, &w.stderr_fd, &w.notify_fd};
    for (int i = 0; i < 3; ++i) {
        if (auto pipe = it->second.pipes[i].lock()) *fds[i] = pipe->fd();
    }
}

void WorkerProcesses::hand_over(Handover& h) const {
    if (!guardian_.running()) return;
    h.guardian_pid = guardian_.pid();
    h.guardian_fd = guardian_.fd();
}

}  // namespace workerd
