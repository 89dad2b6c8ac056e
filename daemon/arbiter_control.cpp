// The Arbiter's control commands (docs/control-protocol.md), the reload it prepares for the
// core (the spec read and checked, its listeners opened), and status. Everything here runs on
// the daemon's one event loop.
#include <unistd.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/arbiter.hpp"
#include "daemon/control_request.hpp"
#include "daemon/load_board.hpp"
#include "daemon/logging.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/sizing.hpp"
#include "daemon/version.hpp"

namespace workerd {

using json = nlohmann::json;

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string listener_key(const ListenAddress& a) { return a.to_string() + "|" + a.name; }

// Status keeps the words it always had: a retiring worker still serves ("ready"), a hung one
// is shown as what it was when it stopped answering.
const char* state_word(const core::Worker& w) {
    switch (w.phase) {
        case core::Phase::spawning:
        case core::Phase::booting: return "booting";
        case core::Phase::ready:
        case core::Phase::retiring: return "ready";
        case core::Phase::hung: return w.health.ready_at ? "ready" : "booting";
        case core::Phase::draining: return "draining";
        case core::Phase::exited: return "exited";
    }
    return "?";
}

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
    json workers = json::array();
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    std::map<pid_t, std::pair<Clock::time_point, long>> samples;
    for (const auto& [id, w] : fleet_.workers()) {
        if (w.pid <= 0) continue;
        const core::Slot& slot = fleet_.slots().at(w.slot);
        // CPU% since the previous status call (or since the worker started).
        const ProcSample sample = proc_sample(w.pid);
        const long ticks = sample.cpu_ticks;
        const auto [then, then_ticks] =
            cpu_samples_.count(w.pid) ? cpu_samples_[w.pid] : std::make_pair(w.started_at, 0L);
        samples[w.pid] = {now, ticks};
        const double wall = seconds(now - then);
        json row = {
            {"slot", w.slot},
            {"pid", w.pid},
            {"generation", w.generation},
            {"state", state_word(w)},
            {"uptime_s", seconds(now - w.started_at)},
            {"restarts", slot.restarts},
            {"recycles", slot.recycles},
            {"replacing", w.phase == core::Phase::retiring && !w.retire_detail.empty() ? json(w.retire_detail) : json(nullptr)},
            {"last_exit", slot.last_end ? json(slot.last_end->to_string()) : json(nullptr)},
            {"rss_bytes", sample.rss_bytes},
            {"cpu_percent", ticks >= 0 && wall > 0 ? 100.0 * static_cast<double>(ticks - then_ticks) / static_cast<double>(ticks_per_second) / wall : 0.0},
            {"status", w.status.empty() ? json(nullptr) : json(w.status)},
        };
        row["heartbeat_age_s"] = w.health.last_beat ? json(seconds(now - *w.health.last_beat)) : json(nullptr);
        if (w.health.stats_at) {
            row["requests"] = w.stats.served;
            row["inflight"] = w.stats.inflight;
            const auto p50 = w.stats.percentile_ms(0.5);
            const auto p99 = w.stats.percentile_ms(0.99);
            row["p50_ms"] = p50 ? json(*p50) : json(nullptr);
            row["p99_ms"] = p99 ? json(*p99) : json(nullptr);
        } else {
            row["requests"] = row["inflight"] = row["p50_ms"] = row["p99_ms"] = nullptr;
        }
        workers.push_back(std::move(row));
    }
    cpu_samples_ = std::move(samples);
    json waiting = json::array();
    for (const auto& [index, s] : fleet_.slots()) {
        if (s.active && fleet_.current_in(index) == nullptr) {
            waiting.push_back({{"slot", index},
                               {"restart_in_s", std::max(0.0, seconds(s.not_before - now))},
                               {"last_exit", s.last_end ? json(s.last_end->to_string()) : json(nullptr)},
                               {"flapping", s.exits_before_ready >= 3}});
        }
    }
    const auto& rollout = fleet_.rollout();
    const auto& autoscale = spec().autoscale;
    const auto cap = fleet_.memory_cap();
    return {
        {"pid", ::getpid()},
        {"version", kVersion},
        {"uptime_s", seconds(now - fleet_.started_at())},
        {"spec", spec().file},
        {"generation", fleet_.generation()},
        {"state", core::to_string(fleet_.mode())},
        {"desired", fleet_.desired()},
        {"ready", fleet_.ready()},
        {"rolling", fleet_.rolling()},
        {"autoscale", autoscale ? json{{"pinned", fleet_.autoscale_pinned()},
                                       {"min", autoscale->min},
                                       {"max", autoscale->max},
                                       {"memory_cap", cap ? json(*cap) : json(nullptr)},
                                       {"view", fleet_.autoscale_view()}}
                                : json(nullptr)},
        {"rollout", rollout.state == core::RolloutState::none
                        ? json(nullptr)
                        : json{{"generation", rollout.generation},
                               {"state", core::to_string(rollout.state)},
                               {"failures", rollout.failures},
                               {"reason", rollout.reason.empty() ? json(nullptr) : json(rollout.reason)}}},
        {"workers", std::move(workers)},
        {"waiting", std::move(waiting)},
    };
}

json Arbiter::config_json() const {
    const auto ms = [](Duration d) { return d.count(); };
    json listen = json::array();
    for (const auto& a : spec().listen) listen.push_back({{"address", a.to_string()}, {"name", a.name}});
    json app;
    if (spec().app.builtin) {
        const auto& b = *spec().app.builtin;
        app["builtin"] = {{"root", b.root}, {"demo", b.demo}, {"max_connections", b.max_connections},
                          {"keepalive_timeout_ms", ms(b.keepalive_timeout)},
                          {"max_header_size", b.max_header_size}, {"max_body_size", b.max_body_size}};
    } else {
        app["command"] = spec().app.command;
    }
    app["cwd"] = spec().app.cwd;
    app["env"] = spec().app.env;
    const auto& h = spec().health;
    return {
        {"file", spec().file},
        {"listen", listen},
        {"backlog", spec().backlog},
        {"reuse_port", spec().reuse_port},
        {"workers", fleet_.desired()},
        {"workers_in_spec", spec().workers_auto ? json("auto") : json(spec().workers)},
        {"app", app},
        {"graceful_timeout_ms", ms(spec().graceful_timeout)},
        {"timeout_ms", ms(h.timeout)},
        {"boot_timeout_ms", ms(h.boot_timeout)},
        {"ready_after_ms", ms(h.ready_after)},
        {"heartbeat", h.mode == HeartbeatMode::automatic ? "auto" : h.mode == HeartbeatMode::required ? "required" : "off"},
        {"timeout_signal", h.timeout_signal ? json(signal_name(h.timeout_signal)) : json(nullptr)},
        {"kill_timeout_ms", ms(h.kill_timeout)},
        {"request_timeout_ms", h.request_timeout ? json(ms(*h.request_timeout)) : json(nullptr)},
        {"backoff", {{"initial_ms", ms(spec().backoff.initial)}, {"max_ms", ms(spec().backoff.max)},
                     {"reset_after_ms", ms(spec().backoff.reset_after)}}},
        {"control", {{"socket", control_->path()}, {"mode", fmt::format("{:04o}", spec().control.mode)}}},
        {"metrics", {{"listen", spec().metrics.listen ? json(spec().metrics.listen->to_string()) : json(nullptr)}}},
        {"log", {{"level", spec().log.level}}},
    };
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
        case Command::config: return config_json();
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
