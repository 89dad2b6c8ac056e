// The shell carrying out what the fleet core decided (signals, spawns, systemd, the log, what
// a gone worker left behind, the listening sockets) and reading what workers say.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "daemon/os/output_pipe.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/shell/arbiter.hpp"

namespace workerd {
namespace {

// A protocol line as it may appear in the log: printable ASCII, at most 80 characters.
std::string printable(std::string_view line) {
    std::string out;
    for (char c : line.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (line.size() > 80) out += "...";
    return out;
}

spdlog::level::level_enum level_of(core::Level level) {
    switch (level) {
        case core::Level::debug: return spdlog::level::debug;
        case core::Level::info: return spdlog::level::info;
        case core::Level::warn: return spdlog::level::warn;
        case core::Level::error: return spdlog::level::err;
    }
    return spdlog::level::info;
}

}  // namespace

void Arbiter::carry_out(std::vector<core::Action> actions) {
    namespace a = core::action;
    for (auto& action : actions) {
        if (auto* spawn = std::get_if<a::Spawn>(&action)) {
            launch(*spawn);
        } else if (auto* s = std::get_if<a::Signal>(&action)) {
            // timeout_signal goes to the worker's main thread, where an event loop usually runs
            // (and is stuck): a stack dump handler then prints the loop's stack first.
            if (s->main_thread && ::syscall(SYS_tgkill, s->pid, s->pid, s->sig) == 0) continue;
            if (::kill(s->pid, s->sig) != 0 && errno != ESRCH) {
                spdlog::error("kill {} pid {} failed: {}", signal_name(s->sig), s->pid, std::strerror(errno));
            }
        } else if (auto* note = std::get_if<a::Note>(&action)) {
            spdlog::log(level_of(note->level), "{}", note->text);
        } else if (auto* sd = std::get_if<a::Systemd>(&action)) {
            if (!sd->reloading) {
                systemd_.send(sd->message);
                continue;
            }
            timespec mono{};
            ::clock_gettime(CLOCK_MONOTONIC, &mono);
            systemd_.send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\n{}",
                                      static_cast<long long>(mono.tv_sec) * 1000000 + mono.tv_nsec / 1000,
                                      sd->message.substr(sd->message.find('\n') + 1)));
        } else if (auto* left = std::get_if<a::ReleaseLeftovers>(&action)) {
            release_leftovers(*left);
        } else if (auto* stop = std::get_if<a::Stopping>(&action)) {
            if (stop->first) stop_listening();
            if (stop->fast) orphans_.kill_all(Clock::now());
        } else if (std::get_if<a::Rollback>(&action)) {
            listeners_ = std::move(previous_listeners_);
            slot_listeners_.retain(spec().reuse_port ? listeners_ : std::vector<std::shared_ptr<Listener>>{});
        } else if (std::get_if<a::RolloutDone>(&action)) {
            previous_listeners_.clear();
        } else if (auto* removed = std::get_if<a::SlotRemoved>(&action)) {
            slot_listeners_.drop(removed->slot);  // its sockets close with its last worker
        } else if (auto* shut = std::get_if<a::StopSlotSockets>(&action)) {
            // Its slot's own sockets stop listening, so the kernel sends no more connections
            // there. Those already queued move to the other slots where net.ipv4.tcp_migrate_req
            // is 1 (else they are reset).
            if (auto it = processes_.find(shut->pid); it != processes_.end()) {
                for (const auto& l : it->second.listeners) {
                    const bool own = std::find(listeners_.begin(), listeners_.end(), l) == listeners_.end();
                    if (own && l->address().kind == ListenAddress::Kind::tcp) ::shutdown(l->fd(), SHUT_RD);
                }
            }
        }
    }
}

void Arbiter::launch(const core::action::Spawn& spawn) {
    LaunchRequest request;
    request.slot = spawn.slot;
    request.generation = spawn.generation;
    request.spec = &spec();
    request.listeners = listeners_for(spawn.slot);
    // With a socket per slot the kernel spreads connections; the board's holding back would
    // only delay a worker's own queue.
    if (board_ && !spec().reuse_port) request.board_fd = board_.get();
    const auto began = Clock::now();
    Launched launched;
    try {
        launched = launcher_->launch(request);
    } catch (const std::exception& e) {
        // SpawnError (exec failed, bad cwd) or a resource failure (pipe2: EMFILE).
        deliver(core::event::SpawnFailed{spawn.id, e.what()});
        return;
    }
    spawn_cost_ = (spawn_cost_ * 3 + (Clock::now() - began)) / 4;
    guardian_.watch(launched.pid);  // it leads its own process group
    processes_[launched.pid].listeners = std::move(request.listeners);
    // The core knows the pid before the first line is read (a pipe may be read at once).
    deliver(core::event::Spawned{spawn.id, launched.pid, launched.program});
    watch_pipes(launched.pid, spawn.slot, std::move(launched.out), std::move(launched.err), std::move(launched.notify));
}

void Arbiter::watch_pipes(pid_t pid, int slot, UniqueFd out, UniqueFd err, UniqueFd notify) {
    Process& process = processes_[pid];
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
            [this, pid, overlong = false](std::string_view line, bool truncated) mutable {
                on_notify(pid, line, truncated, overlong);
            },
            kMaxNotifyLine - 1);
    }
}

void Arbiter::on_notify(pid_t pid, std::string_view line, bool truncated, bool& in_overlong_line) {
    if (truncated || in_overlong_line) {
        // Pieces of a line past the limit: counted once, the rest (up to its '\n') dropped.
        if (truncated && !in_overlong_line) {
            deliver(core::event::BadLine{pid, fmt::format("a line longer than {} bytes", kMaxNotifyLine)});
        }
        in_overlong_line = truncated;
        return;
    }
    if (auto message = parse_notify_line(line)) {
        deliver(core::event::Message{pid, std::move(*message)});
    } else {
        deliver(core::event::BadLine{pid, fmt::format("'{}'", printable(line))});
    }
    // A message may bring a deadline forward (a first word, a request now in flight) or
    // ask for a turn (READY during a rollout).
    if (fleet_.take_rearm()) arm_timer();
}

void Arbiter::release_leftovers(const core::action::ReleaseLeftovers& gone) {
    const pid_t pid = gone.pid;
    const bool at_once = gone.at_once;
    const int sig = at_once ? SIGKILL : SIGTERM;
    const auto grace = spec().graceful_timeout;
    const auto kill_at = Clock::now() + grace;
    const bool group_left = group_alive(pid) && orphans_.terminate(-pid, kill_at, sig);
    if (!group_left) guardian_.forget(pid);
    // Children of the daemon that are no worker of it: orphans that came to it. Those of a
    // group being stopped, or of a live worker's group, go with their group.
    int outside = 0;
    for (pid_t child : children_of_this_process()) {
        if (processes_.count(child) || (guardian_.running() && child == guardian_.pid())) continue;
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

void Arbiter::stop_listening() {
    // Every socket a worker may accept on: the fleet's, each slot's own (reuse_port), and an
    // older generation's that a reload replaced. The daemon's copies close now; the workers
    // close theirs as they stop accepting (the bundled worker and workerd_uvicorn at SIGTERM),
    // and then the kernel refuses new connections.
    std::set<std::shared_ptr<Listener>> sockets(listeners_.begin(), listeners_.end());
    for (const auto& [pid, process] : processes_) sockets.insert(process.listeners.begin(), process.listeners.end());
    int closed = 0;
    for (const auto& l : sockets) {
        if (l->activated()) continue;  // systemd keeps it: connections wait for the next daemon
        l->close();
        ++closed;
    }
    if (closed > 0) spdlog::info("stopped listening: new connections are refused once the workers stop accepting");
}

}  // namespace workerd
