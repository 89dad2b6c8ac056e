// The Arbiter's control commands (docs/control-protocol.md) and what they change: scaling,
// rolling restarts, status. Everything here runs on the daemon's one event loop.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/arbiter.hpp"
#include "daemon/control_request.hpp"
#include "daemon/logging.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/version.hpp"

namespace workerd {

using json = nlohmann::json;

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

int Arbiter::desired() const {
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s.second.active; }));
}

const Arbiter::Worker* Arbiter::live_worker_in_slot(int slot) const {
    for (const Worker* w : workers_in(slot)) {
        if (w->state != WorkerState::draining) return w;
    }
    return nullptr;
}

int Arbiter::ready_workers() const {
    // Slots in the fleet with a ready worker (during a replacement a slot briefly has two).
    std::set<int> ready;
    for (const auto& [pid, w] : workers_) {
        if (w.state == WorkerState::ready && slots_.at(w.slot).active) ready.insert(w.slot);
    }
    return static_cast<int>(ready.size());
}

void Arbiter::scale_to(int n, const std::string& why) {
    n = std::clamp(n, 1, kMaxWorkers);
    const int from = desired();
    if (n == from) return;
    if (n > from) {
        // New slots take the lowest free numbers, so slots stay compact.
        for (int slot = 0; desired() < n; ++slot) {
            Slot& s = slots_[slot];
            if (s.active) continue;
            s.active = true;
            s.not_before = Clock::time_point{};
            s.backoff = Backoff{};
            s.exits_before_ready = 0;
        }
    } else {
        // The least busy go first: slots without a worker (backing off), then booting workers,
        // then ready ones by requests in flight; ties: the highest slot.
        std::vector<std::tuple<int, std::int64_t, int>> order;  // (rank, inflight, -slot)
        for (const auto& [slot, s] : slots_) {
            // reuse_port: slot 0 accepts on the fleet's listeners, which stay open: it stays.
            if (!s.active || (spec_.reuse_port && slot == 0)) continue;
            const Worker* w = live_worker_in_slot(slot);
            const int rank = w == nullptr ? 0 : w->state == WorkerState::ready ? 2 : 1;
            order.emplace_back(rank, w != nullptr ? w->stats.inflight : 0, -slot);
        }
        std::sort(order.begin(), order.end());
        for (int i = 0; i < from - n; ++i) {
            const int slot = -std::get<2>(order[static_cast<std::size_t>(i)]);
            slots_[slot].active = false;
            slot_listeners_.drop(slot);  // its sockets close with its last worker
        }
    }
    spdlog::info("{}: scaling from {} to {} worker{}", why, from, n, n == 1 ? "" : "s");
}

json Arbiter::status_json(Clock::time_point now) {
    json workers = json::array();
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    std::map<pid_t, std::pair<Clock::time_point, long>> samples;
    for (const auto& [pid, w] : workers_) {
        const Slot& slot = slots_[w.slot];
        // CPU% since the previous status call (or since the worker started).
        const ProcSample sample = proc_sample(pid);
        const long ticks = sample.cpu_ticks;
        const auto [then, then_ticks] = cpu_samples_.count(pid) ? cpu_samples_[pid] : std::make_pair(w.started_at, 0L);
        samples[pid] = {now, ticks};
        const double wall = seconds(now - then);
        json row = {
            {"slot", w.slot},
            {"pid", pid},
            {"generation", w.generation},
            {"state", to_string(w.state)},
            {"uptime_s", seconds(now - w.started_at)},
            {"restarts", slot.restarts},
            {"recycles", slot.recycles},
            {"replacing", w.replace_reason.empty() ? json(nullptr) : json(w.replace_reason)},
            {"last_exit", slot.last_exit.empty() ? json(nullptr) : json(slot.last_exit)},
            {"rss_bytes", sample.rss_bytes},
            {"cpu_percent", ticks >= 0 && wall > 0 ? 100.0 * static_cast<double>(ticks - then_ticks) / static_cast<double>(ticks_per_second) / wall : 0.0},
            {"status", w.status.empty() ? json(nullptr) : json(w.status)},
        };
        if (w.health.last_beat) row["heartbeat_age_s"] = seconds(now - *w.health.last_beat);
        else row["heartbeat_age_s"] = nullptr;
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
    json slots_waiting = json::array();
    for (const auto& [slot, s] : slots_) {
        if (s.active && live_worker_in_slot(slot) == nullptr) {
            slots_waiting.push_back({{"slot", slot},
                                     {"restart_in_s", std::max(0.0, seconds(s.not_before - now))},
                                     {"last_exit", s.last_exit.empty() ? json(nullptr) : json(s.last_exit)},
                                     {"flapping", s.exits_before_ready >= 3}});
        }
    }
    return {
        {"pid", ::getpid()},
        {"version", kVersion},
        {"uptime_s", seconds(now - started_at_)},
        {"spec", spec_.file},
        {"generation", generation_},
        {"state", mode_ == Mode::running ? "running" : mode_ == Mode::stopping_graceful ? "stopping" : "stopping now"},
        {"desired", desired()},
        {"ready", ready_workers()},
        {"rolling", rolling()},
        {"autoscale", spec_.autoscale ? json{{"pinned", autoscale_pinned_},
                                             {"min", spec_.autoscale->min},
                                             {"max", spec_.autoscale->max},
                                             {"memory_cap", memory_cap() ? json(*memory_cap()) : json(nullptr)},
                                             {"view", autoscale_view_}}
                                      : json(nullptr)},
        {"rollout", rollout_.state == Rollout::State::none
                        ? json(nullptr)
                        : json{{"generation", rollout_.generation},
                               {"state", rollout_.state == Rollout::State::running ? "running"
                                         : rollout_.state == Rollout::State::done  ? "done"
                                                                                   : "failed"},
                               {"failures", rollout_.failures},
                               {"reason", rollout_.reason.empty() ? json(nullptr) : json(rollout_.reason)}}},
        {"workers", std::move(workers)},
        {"waiting", std::move(slots_waiting)},
    };
}

json Arbiter::config_json() const {
    const auto ms = [](Duration d) { return d.count(); };
    json listen = json::array();
    for (const auto& a : spec_.listen) listen.push_back({{"address", a.to_string()}, {"name", a.name}});
    json app;
    if (spec_.app.builtin) {
        const auto& b = *spec_.app.builtin;
        app["builtin"] = {{"root", b.root}, {"demo", b.demo}, {"max_connections", b.max_connections},
                          {"keepalive_timeout_ms", ms(b.keepalive_timeout)},
                          {"max_header_size", b.max_header_size}, {"max_body_size", b.max_body_size}};
    } else {
        app["command"] = spec_.app.command;
    }
    app["cwd"] = spec_.app.cwd;
    app["env"] = spec_.app.env;
    const auto& h = spec_.health;
    return {
        {"file", spec_.file},
        {"listen", listen},
        {"backlog", spec_.backlog},
        {"reuse_port", spec_.reuse_port},
        {"workers", desired()},
        {"workers_in_spec", spec_.workers_auto ? json("auto") : json(spec_.workers)},
        {"app", app},
        {"graceful_timeout_ms", ms(spec_.graceful_timeout)},
        {"timeout_ms", ms(h.timeout)},
        {"boot_timeout_ms", ms(h.boot_timeout)},
        {"ready_after_ms", ms(h.ready_after)},
        {"heartbeat", h.mode == HeartbeatMode::automatic ? "auto" : h.mode == HeartbeatMode::required ? "required" : "off"},
        {"timeout_signal", h.timeout_signal ? json(signal_name(h.timeout_signal)) : json(nullptr)},
        {"kill_timeout_ms", ms(h.kill_timeout)},
        {"request_timeout_ms", h.request_timeout ? json(ms(*h.request_timeout)) : json(nullptr)},
        {"backoff", {{"initial_ms", ms(spec_.backoff.initial)}, {"max_ms", ms(spec_.backoff.max)},
                     {"reset_after_ms", ms(spec_.backoff.reset_after)}}},
        {"control", {{"socket", control_->path()}, {"mode", fmt::format("{:04o}", spec_.control.mode)}}},
        {"metrics", {{"listen", spec_.metrics.listen ? json(spec_.metrics.listen->to_string()) : json(nullptr)}}},
        {"log", {{"level", spec_.log.level}}},
    };
}

json Arbiter::control(const std::string& command, const json& args) {
    using Command = ControlRequest::Command;
    const auto now = Clock::now();
    const ControlRequest request = parse_control_request(command, args);
    if (request.changes_fleet() && mode_ != Mode::running) throw ControlError("stopping", "the daemon is stopping");
    json result;
    switch (request.command) {
        case Command::status: result = status_json(now); break;
        case Command::version: result = {{"version", kVersion}, {"protocol", ControlServer::kProtocolVersion}}; break;
        case Command::config: result = config_json(); break;
        case Command::scale: {
            if (request.scale_auto) {
                if (!spec_.autoscale) throw ControlError("bad_argument", "there is no autoscale section in the spec");
                autoscale_pinned_ = false;
                next_autoscale_ = now;
                spdlog::info("control: the autoscaler decides the size again");
                request_tick();
                return {{"desired", desired()}, {"autoscale", true}};
            }
            const int target = scale_target(request, desired());
            scale_to(target, "control");
            if (spec_.autoscale && !autoscale_pinned_) {
                autoscale_pinned_ = true;
                spdlog::info("control: size pinned at {}; `workerctl scale auto` hands it back to the autoscaler", target);
            }
            result = {{"desired", desired()}};
            break;
        }
        case Command::reload: result = reload("control: reload"); break;  // the SIGHUP path
        case Command::restart: {
            std::vector<int> slots;
            if (request.all) {
                for (const auto& [slot, s] : slots_) {
                    if (s.active) slots.push_back(slot);
                }
            } else {
                const int slot = *request.slot;
                if (!slots_.count(slot) || !slots_[slot].active) {
                    throw ControlError("bad_argument", fmt::format("there is no worker slot {}", slot));
                }
                slots.push_back(slot);
            }
            restart_slots(slots, "control");
            result = {{"restarting", slots}};
            break;
        }
        case Command::stop:
            begin_stop(request.now ? Mode::stopping_fast : Mode::stopping_graceful, now);
            result = {{"stopping", request.now ? "now" : "gracefully"}};
            break;
    }
    // Changes take effect in the supervision loop, right away.
    request_tick();
    return result;
}

}  // namespace workerd
