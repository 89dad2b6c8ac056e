// The Arbiter's control commands (docs/control-protocol.md), the reload it prepares for the
// core (the spec read and checked, its listeners opened), status, and SIGUSR2's handover.
// Everything here runs on the daemon's one event loop.
#include <unistd.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/shell/arbiter.hpp"
#include "daemon/shell/metrics_endpoint.hpp"
#include "daemon/shell/render.hpp"
#include "daemon/shell/upgrade.hpp"
#include "daemon/wire/control_request.hpp"
#include "daemon/os/load_board.hpp"
#include "daemon/os/logging.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/os/spec_host.hpp"
#include "daemon/version.hpp"

namespace workerd {

using json = nlohmann::json;

json Arbiter::reload(const std::string& why) {
    const long generation = fleet_.generation();
    auto loaded = load_spec_file(spec().file, available_cpus());
    if (!loaded.ok()) {
        std::string all;
        for (const auto& e : loaded.errors) {
            spdlog::error("{}: {}", why, e.to_string());
            all += (all.empty() ? "" : "\n") + e.to_string();
        }
        spdlog::error("{}: the spec has errors; nothing changed, generation {} keeps serving", why, generation);
        throw ControlError("bad_spec", all);
    }
    for (const auto& w : loaded.warnings) spdlog::warn("{}: {}", why, w.to_string());
    Spec next = std::move(*loaded.spec);
    if (const auto refused = check_run_as(next, ::geteuid(), ::getegid(), allow_root_); !refused.empty()) {
        spdlog::error("{}: {}; nothing changed, generation {} keeps serving", why, refused, generation);
        throw ControlError("bad_spec", refused);
    }
    resolve_workers(next);
    // Listeners: the same address keeps its socket (and accept queue); new ones are opened
    // now, before anything else changes; dropped ones close when their last worker is gone.
    FleetSockets::Set next_listeners;
    try {
        next_listeners = sockets_.open_for(next);
    } catch (const ListenError& e) {
        spdlog::error("{}: {}; nothing changed, generation {} keeps serving", why, e.what(), generation);
        throw ControlError("listen_failed", e.what());
    }
    if (next.control.socket != spec().control.socket || next.control.mode != spec().control.mode) {
        spdlog::warn("{}: control socket settings apply at the next start", why);
    }
    next.control = spec().control;
    if (next.log.json != spec().log.json || next.log.file != spec().log.file) {
        try {
            setup_logging(next.log);
        } catch (const std::exception& e) {
            spdlog::error("{}: cannot open the log {}: {}; keeping the current log", why, next.log.file, e.what());
            next.log = spec().log;
        }
    }
    set_log_level(next.log.level);
    sockets_.switch_to(std::move(next_listeners), next.reuse_port);
    if (next.app.builtin && !board_) board_ = LoadBoard::create();
    const long started = fleet_.reload(std::move(next), why, Clock::now());
    carry_out(fleet_.take_actions());
    return {{"generation", started}};
}

json Arbiter::status_json(Clock::time_point now) {
    StatusFacts facts;
    facts.now = now;
    facts.daemon_pid = ::getpid();
    facts.version = kVersion;
    // CPU% since the previous status request (or since the worker started).
    std::map<pid_t, std::pair<Clock::time_point, double>> samples;
    for (const auto& [id, w] : fleet_.workers()) {
        if (w.pid <= 0) continue;
        ProcessFacts& p = facts.processes[w.pid] = sample_process(w.pid);
        const auto [then, then_cpu] = cpu_samples_.count(w.pid) ? cpu_samples_[w.pid] : std::make_pair(w.started_at, 0.0);
        samples[w.pid] = {now, p.cpu_seconds};
        const double wall = std::chrono::duration<double>(now - then).count();
        if (p.cpu_seconds >= 0 && wall > 0) p.cpu_percent = 100.0 * (p.cpu_seconds - then_cpu) / wall;
    }
    cpu_samples_ = std::move(samples);
    for (const auto& [generation, z] : fleet_.zygotes()) {
        if (z.pid > 0) facts.processes[z.pid] = sample_process(z.pid, true);
    }
    return render_status(fleet_, facts);
}

json Arbiter::control(const std::string& command, const json& args) {
    using Command = ControlRequest::Command;
    const auto now = Clock::now();
    const ControlRequest request = parse_control_request(command, args);
    if (request.changes_fleet() && fleet_.mode() != core::Mode::running) throw ControlError("stopping", "the daemon is stopping");
    json result;
    switch (request.command) {
        case Command::status: return status_json(now);
        case Command::version: return {{"version", kVersion}, {"protocol", ControlServer::kProtocolVersion}};
        case Command::config: return render_config(fleet_, control_->path());
        case Command::scale:
            if (request.scale_auto) {
                if (!spec().autoscale) throw ControlError("bad_argument", "there is no autoscale section in the spec");
                fleet_.scale_auto(now);
                result = {{"desired", fleet_.desired()}, {"autoscale", true}};
            } else {
                fleet_.scale(scale_target(request, fleet_.desired()), "control", /*pin=*/true, now);
                result = {{"desired", fleet_.desired()}};
            }
            break;
        case Command::reload: result = reload("control: reload"); break;  // the SIGHUP path
        case Command::restart: {
            std::vector<int> slots;
            for (const auto& [index, s] : fleet_.slots()) {
                if (s.active && (request.all || index == *request.slot)) slots.push_back(index);
            }
            if (!request.all && slots.empty()) {
                throw ControlError("bad_argument", fmt::format("there is no worker slot {}", *request.slot));
            }
            fleet_.restart(slots, "control");
            result = {{"restarting", slots}};
            break;
        }
        case Command::rollout: {
            const bool done = request.action == "promote" ? fleet_.promote(now) : fleet_.abort_rollout(now);
            if (!done) {
                throw ControlError("no_rollout", request.action == "promote"
                                                     ? "no rollout is waiting on canary analysis (rollout.analysis)"
                                                     : "no rollout is running");
            }
            result = {{"rollout", request.action}, {"generation", fleet_.generation()}};
            break;
        }
        case Command::stop:
            fleet_.stop(request.now, now);
            result = {{"stopping", request.now ? "now" : "gracefully"}};
            break;
    }
    // Changes take effect in the supervision loop, right away.
    carry_out(fleet_.take_actions());
    arm_timer();
    return result;
}

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
    sockets_.hand_over(h);
    h.control_fd = control_->fd();
    if (metrics_) h.metrics_fd = metrics_->fd();
    processes_.hand_over(h);
    for (const auto& [id, w] : fleet_.workers()) {
        if (w.pid <= 0) continue;
        HandedWorker hw;
        hw.pid = w.pid;
        hw.slot = w.slot;
        hw.generation = w.generation;
        hw.ready = w.health.ready_at.has_value();
        hw.draining = w.phase == core::Phase::draining;
        hw.age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.started_at).count();
        processes_.hand_over(w.pid, hw);
        h.workers.push_back(hw);
    }
    const std::string err = reexec(self_exe_, argv_, base_env_, h, systemd_);
    spdlog::error("SIGUSR2: exec {} failed: {}; the running daemon carries on (generation {})", self_exe_, err,
                  fleet_.generation());
    systemd_.send(fmt::format("READY=1\nSTATUS=upgrade failed (exec: {}); generation {} serves", err, fleet_.generation()));
}

void Arbiter::adopt(Handover& h) {
    const auto now = Clock::now();
    // reuse_port: each slot's own sockets, so queues and the kernel's spreading carry on.
    sockets_.adopt(h.slot_sockets);
    std::vector<core::AdoptedWorker> adopted;
    for (auto& hw : h.workers) {
        adopted.push_back({hw.pid, hw.slot, hw.generation, hw.ready, hw.draining, std::chrono::milliseconds(hw.age_ms)});
        processes_.add(hw.pid, hw.slot, sockets_.for_slot(hw.slot, spec()), UniqueFd(hw.stdout_fd),
                       UniqueFd(hw.stderr_fd), UniqueFd(hw.notify_fd));
    }
    // Then the rolling path replaces them: a new generation, as after a reload of the same spec.
    sockets_.keep_for_rollback();
    fleet_.adopt(adopted, h.generation, h.desired, h.pinned, fmt::format("upgraded in place (pid {})", ::getpid()), now);
    carry_out(fleet_.take_actions());
}

}  // namespace workerd
