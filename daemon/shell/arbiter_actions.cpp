// The shell carrying out what the fleet core decided (signals, spawns, systemd, the log, what
// a gone worker left behind, the listening sockets) and reading what workers say.
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <spdlog/spdlog.h>

#include "daemon/os/zygote_client.hpp"
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
        } else if (auto* start = std::get_if<a::StartZygote>(&action)) {
            start_zygote(start->generation);
        } else if (auto* stop_zygote = std::get_if<a::StopZygote>(&action)) {
            zygotes_.stop(stop_zygote->generation, stop_zygote->pid);
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
            std::set<pid_t> zygotes;
            for (const auto& [generation, z] : fleet_.zygotes()) zygotes.insert(z.pid);
            processes_.release_leftovers(*left, spec().graceful_timeout, zygotes);
        } else if (auto* stop = std::get_if<a::Stopping>(&action)) {
            if (stop->first) stop_listening();
            if (stop->fast) processes_.kill_leftovers(Clock::now());
        } else if (std::get_if<a::Rollback>(&action)) {
            sockets_.rollback(spec().reuse_port);  // the core has gone back to the previous spec
        } else if (std::get_if<a::RolloutDone>(&action)) {
            sockets_.rolled_out();
        } else if (auto* removed = std::get_if<a::SlotRemoved>(&action)) {
            sockets_.slot_removed(removed->slot);
        } else if (auto* shut = std::get_if<a::StopSlotSockets>(&action)) {
            sockets_.stop_slot_sockets(processes_.sockets_of(shut->pid));
        }
    }
}

void Arbiter::launch(const core::action::Spawn& spawn) {
    LaunchRequest request;
    request.slot = spawn.slot;
    request.generation = spawn.generation;
    request.spec = &spec();
    request.listeners = sockets_.for_slot(spawn.slot, spec());
    // With a socket per slot hashed by the kernel, the board's holding back would only delay a
    // worker's own queue. By CPU, what arrives on one CPU goes to one slot: the bundled workers
    // also get the other slots' sockets, and the board says when to take from them.
    if (board_ && (!spec().reuse_port || spec().reuse_port_cpu)) request.board_fd = board_.get();
    if (board_ && spec().reuse_port_cpu && spec().app.builtin) {
        std::vector<int> active;
        for (const auto& [index, slot] : fleet_.slots()) {
            if (slot.active) active.push_back(index);
        }
        request.peers = sockets_.peers_of(spawn.slot, active, spec());
    }
    if (spec().app.preload) {
        request.zygote_fd = zygotes_.socket_of(spawn.generation);
        if (request.zygote_fd < 0) {
            deliver(core::event::SpawnFailed{spawn.id, fmt::format("the zygote of generation {} is not ready", spawn.generation)});
            return;
        }
    }
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
    // The core knows the pid before the first line is read (a pipe may be read at once).
    deliver(core::event::Spawned{spawn.id, launched.pid, launched.program});
    processes_.add(launched.pid, spawn.slot, std::move(request.listeners), std::move(launched.out),
                   std::move(launched.err), std::move(launched.notify));
}

void Arbiter::start_zygote(long generation) {
    LaunchRequest request;
    request.slot = -1;
    request.generation = generation;
    request.spec = &spec();
    request.listeners = sockets_.for_slot(0, spec());  // for {fd} in the command
    try {
        // Its workers are forked from it and reparented here: this process reaps them.
        become_child_subreaper();
        ZygotePair pair = make_zygote_pair();
        Launched launched = launcher_->launch_zygote(request, pair.zygote_end.get());
        pair.zygote_end.reset();
        deliver(core::event::ZygoteStarted{generation, launched.pid});
        zygotes_.add(generation, launched.pid, std::move(pair.daemon_end), std::move(launched.out), std::move(launched.err));
    } catch (const std::exception& e) {
        deliver(core::event::ZygoteFailed{generation, e.what()});
    }
}

void Arbiter::on_protocol_line(pid_t pid, std::string_view line, bool overlong) {
    if (overlong) {
        deliver(core::event::BadLine{pid, fmt::format("a line longer than {} bytes", kMaxNotifyLine)});
    } else if (auto message = parse_notify_line(line)) {
        deliver(core::event::Message{pid, std::move(*message)});
    } else {
        deliver(core::event::BadLine{pid, fmt::format("'{}'", printable(line))});
    }
    // A message may bring a deadline forward (a first word, a request now in flight) or
    // ask for a turn (READY during a rollout).
    if (fleet_.take_rearm()) arm_timer();
}

void Arbiter::stop_listening() {
    // Every socket a worker may accept on: the fleet's, each slot's own (reuse_port), and an
    // older generation's that a reload replaced. The daemon's copies close now; the workers
    // close theirs as they stop accepting (the bundled worker and workerd_uvicorn at SIGTERM),
    // and then the kernel refuses new connections.
    if (sockets_.close(processes_.all_sockets()) > 0) spdlog::info("stopped listening: new connections are refused once the workers stop accepting");
}

}  // namespace workerd
