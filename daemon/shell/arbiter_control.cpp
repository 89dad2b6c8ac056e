// The Arbiter's control commands (docs/control-protocol.md), the reload it prepares for the
// core (the spec read and checked, its listeners opened), and status. Everything here runs on
// the daemon's one event loop.
#include <unistd.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/shell/arbiter.hpp"
#include "daemon/shell/render.hpp"
#include "daemon/wire/control_request.hpp"
#include "daemon/os/load_board.hpp"
#include "daemon/os/logging.hpp"
#include "daemon/os/proc_stats.hpp"
#include "daemon/os/sizing.hpp"
#include "daemon/os/spec_host.hpp"
#include "daemon/version.hpp"

namespace workerd {

using json = nlohmann::json;

namespace {

std::string listener_key(const ListenAddress& a) { return a.to_string() + "|" + a.name; }

}  // namespace

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
    std::map<std::string, std::shared_ptr<Listener>> current;
    for (const auto& l : listeners_) current[listener_key(l->address())] = l;
    std::vector<std::shared_ptr<Listener>> next_listeners;
    try {
        for (const auto& address : next.listen) {
            auto found = current.find(listener_key(address));
            next_listeners.push_back(found != current.end()
                                         ? found->second
                                         : std::make_shared<Listener>(open_listener(address, next.backlog, next.reuse_port)));
        }
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
    // A superseded rollout's target becomes the state to return to.
    previous_listeners_ = listeners_;
    listeners_ = std::move(next_listeners);
    // reuse_port off now: the slots' own sockets close with the workers still using them.
    slot_listeners_.retain(next.reuse_port ? listeners_ : std::vector<std::shared_ptr<Listener>>{});
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
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    std::map<pid_t, std::pair<Clock::time_point, long>> samples;
    for (const auto& [id, w] : fleet_.workers()) {
        if (w.pid <= 0) continue;
        const ProcSample sample = proc_sample(w.pid);
        const auto [then, then_ticks] = cpu_samples_.count(w.pid) ? cpu_samples_[w.pid] : std::make_pair(w.started_at, 0L);
        samples[w.pid] = {now, sample.cpu_ticks};
        const double wall = std::chrono::duration<double>(now - then).count();
        ProcessFacts& p = facts.processes[w.pid];
        p.rss_bytes = sample.rss_bytes;
        if (sample.cpu_ticks >= 0 && wall > 0) {
            p.cpu_percent = 100.0 * static_cast<double>(sample.cpu_ticks - then_ticks) / static_cast<double>(ticks_per_second) / wall;
        }
    }
    cpu_samples_ = std::move(samples);
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

}  // namespace workerd
