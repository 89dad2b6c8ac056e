// Replacing workers without a gap: reloads (a new generation), recycling and restarts all go
// through roll(): a successor starts in the slot, and the outgoing worker drains only once the
// successor is READY, bounded by rollout.max_surge and rollout.max_unavailable.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/arbiter.hpp"
#include "daemon/logging.hpp"
#include "daemon/proc_stats.hpp"
#include "daemon/sizing.hpp"

namespace workerd {

using json = nlohmann::json;

namespace {

std::string listener_key(const ListenAddress& a) { return a.to_string() + "|" + a.name; }

// Percentages and defaults resolved for a fleet of `fleet`: at least one step of progress.
std::pair<int, int> budgets(const RolloutSpec& r, int fleet) {
    const int surge = r.max_surge.resolve(fleet, /*round_up=*/true);
    const int unavailable = r.max_unavailable.resolve(fleet, /*round_up=*/false);
    return {surge, surge + unavailable == 0 ? 1 : unavailable};
}

}  // namespace

bool Arbiter::is_outgoing(const Worker& w) const {
    return w.state != WorkerState::draining && slots_.at(w.slot).active &&
           (w.generation < generation_ || !w.replace_reason.empty());
}

Arbiter::Worker* Arbiter::successor_in_slot(int slot, pid_t outgoing) {
    for (Worker* w : workers_in(slot)) {
        if (w->pid != outgoing && w->state != WorkerState::draining && w->generation == generation_ &&
            w->replace_reason.empty()) {
            return w;
        }
    }
    return nullptr;
}

bool Arbiter::rolling() const {
    return std::any_of(workers_.begin(), workers_.end(), [&](const auto& e) { return is_outgoing(e.second); }) ||
           rollout_.state == Rollout::State::running;
}

void Arbiter::restart_slots(const std::vector<int>& slots, const std::string& why) {
    for (auto& [pid, w] : workers_) {
        if (std::find(slots.begin(), slots.end(), w.slot) != slots.end() && w.state != WorkerState::draining &&
            w.replace_reason.empty()) {
            w.replace_reason = why;
            w.replace_kind = "restart";
        }
    }
    spdlog::info("{}: restarting {} worker(s), one step at a time", why, slots.size());
}

json Arbiter::reload(const std::string& why) {
    auto loaded = load_spec_file(spec_.file, available_cpus());
    if (!loaded.ok()) {
        std::string all;
        for (const auto& e : loaded.errors) {
            spdlog::error("{}: {}", why, e.to_string());
            all += (all.empty() ? "" : "\n") + e.to_string();
        }
        spdlog::error("{}: the spec has errors; nothing changed, generation {} keeps serving", why, generation_);
        throw ControlError("bad_spec", all);
    }
    for (const auto& w : loaded.warnings) spdlog::warn("{}: {}", why, w.to_string());
    Spec next = std::move(*loaded.spec);
    if (const auto refused = check_run_as(next, ::geteuid(), ::getegid(), allow_root_); !refused.empty()) {
        spdlog::error("{}: {}; nothing changed, generation {} keeps serving", why, refused, generation_);
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
        spdlog::error("{}: {}; nothing changed, generation {} keeps serving", why, e.what(), generation_);
        throw ControlError("listen_failed", e.what());
    }
    if (next.control.socket != spec_.control.socket || next.control.mode != spec_.control.mode) {
        spdlog::warn("{}: control socket settings apply at the next start", why);
    }
    next.control = spec_.control;
    // In place: the log level, timeouts, backoff, recycling and rollout settings are read from
    // spec_ as they are needed; the worker count follows the spec only if the spec changed it,
    // so a `workerctl scale` survives a reload of an unchanged spec.
    if (next.log.json != spec_.log.json || next.log.file != spec_.log.file) {
        try {
            setup_logging(next.log);
        } catch (const std::exception& e) {
            spdlog::error("{}: cannot open the log {}: {}; keeping the current log", why, next.log.file, e.what());
            next.log = spec_.log;
        }
    }
    set_log_level(next.log.level);
    const bool rescale = next.workers != spec_.workers;
    // A superseded rollout's target becomes the state to return to.
    rollout_.previous_spec = spec_;
    rollout_.previous_generation = generation_;
    rollout_.previous_listeners = listeners_;
    spec_ = std::move(next);
    listeners_ = std::move(next_listeners);
    // reuse_port off now: the slots' own sockets close with the workers still using them.
    slot_listeners_.retain(spec_.reuse_port ? listeners_ : std::vector<std::shared_ptr<Listener>>{});
    if (spec_.app.builtin && !board_) board_ = LoadBoard::create();
    ++generation_;
    rollout_.state = Rollout::State::running;
    rollout_.generation = generation_;
    rollout_.started = Clock::now();
    rollout_.failures = 0;
    rollout_.reason.clear();
    if (rescale) scale_to(spec_.workers, why);
    // Booting workers of a superseded generation serve nobody yet: stop them now.
    for (auto& [pid, w] : workers_) {
        if (w.generation < generation_ && w.state == WorkerState::booting) drain(w, Clock::now());
    }
    spdlog::info("{}: spec re-read; rolling out generation {} ({} workers)", why, generation_, desired());
    timespec mono{};
    ::clock_gettime(CLOCK_MONOTONIC, &mono);
    systemd_.send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=rolling out generation {}",
                              static_cast<long long>(mono.tv_sec) * 1000000 + mono.tv_nsec / 1000, generation_));
    systemd_reloading_ = generation_;
    return {{"generation", generation_}};
}

void Arbiter::notify_systemd(Clock::time_point now) {
    if (!systemd_.active() && !systemd_.watchdog_interval()) return;
    if (mode_ == Mode::running && !systemd_ready_sent_ && ready_workers() >= desired()) {
        systemd_ready_sent_ = true;
        systemd_.send(fmt::format("READY=1\nSTATUS={} workers ready, generation {}", ready_workers(), generation_));
    }
    if (systemd_reloading_ != 0 && rollout_.state != Rollout::State::running) {
        // A failed rollout is still the end of the reload: the old generation serves.
        systemd_.send(fmt::format("READY=1\nSTATUS={}",
                                  rollout_.state == Rollout::State::failed
                                      ? fmt::format("reload failed ({}); generation {} serves", rollout_.reason, generation_)
                                      : fmt::format("{} workers ready, generation {}", ready_workers(), generation_)));
        systemd_reloading_ = 0;
    }
    if (auto interval = systemd_.watchdog_interval(); interval && now >= next_watchdog_) {
        systemd_.send("WATCHDOG=1");
        next_watchdog_ = now + *interval;
    }
}

void Arbiter::fail_rollout(Clock::time_point now) {
    const long failed = generation_;
    spdlog::error("rollout of generation {} failed: {} new workers failed before READY (last: {}); "
                  "generation {} keeps serving",
                  failed, rollout_.failures, rollout_.reason, rollout_.previous_generation);
    rollout_.state = Rollout::State::failed;
    if (rollout_.previous_spec) spec_ = std::move(*rollout_.previous_spec);
    rollout_.previous_spec.reset();
    listeners_ = std::move(rollout_.previous_listeners);
    slot_listeners_.retain(listeners_);
    generation_ = rollout_.previous_generation;
    // Successors still booting go; any that became ready keep serving their slots.
    for (auto& [pid, w] : workers_) {
        if (w.generation > generation_ && w.state == WorkerState::booting) drain(w, now);
    }
}

void Arbiter::check_recycling(Clock::time_point now) {
    const RecycleSpec& r = spec_.recycle;
    const bool sample_rss = r.max_rss && now >= next_rss_sample_;
    if (sample_rss) next_rss_sample_ = now + std::chrono::seconds(1);
    for (auto& [pid, w] : workers_) {
        if (w.state != WorkerState::ready || !w.replace_reason.empty() || !slots_[w.slot].active) continue;
        if (sample_rss) w.rss_bytes = proc_rss_bytes(pid);
        if (now - w.started_at < r.min_lifetime) continue;
        std::string reason;
        if (w.request_limit && w.stats.served >= *w.request_limit) {
            reason = fmt::format("served {} requests (max_requests {})", w.stats.served, *w.request_limit);
            w.replace_kind = "max_requests";
        } else if (r.max_rss && w.rss_bytes > static_cast<long>(*r.max_rss)) {
            reason = fmt::format("RSS {} MiB (max_rss {} MiB)", w.rss_bytes >> 20, *r.max_rss >> 20);
            w.replace_kind = "max_rss";
        } else if (w.retire_at && now >= *w.retire_at) {
            reason = fmt::format("lived {} (max_lifetime)", format_duration(std::chrono::duration_cast<Duration>(now - w.started_at)));
            w.replace_kind = "max_lifetime";
        }
        if (reason.empty()) continue;
        w.replace_reason = "recycled: " + reason;
        ++slots_[w.slot].recycles;
        spdlog::info("worker {} (pid {}, gen {}) {}", w.slot, pid, w.generation, w.replace_reason);
    }
}

void Arbiter::roll(Clock::time_point now) {
    if (mode_ != Mode::running) return;
    const auto [surge, unavailable] = budgets(spec_.rollout, desired());
    // 1. Successors that are ready take over: their outgoing worker drains.
    int surge_used = 0;
    int missing = 0;  // slots in the fleet without a ready, non-draining worker
    std::vector<std::pair<int, pid_t>> waiting;  // outgoing workers without a successor yet
    for (auto& [slot, s] : slots_) {
        if (!s.active) continue;
        Worker* outgoing = nullptr;
        for (Worker* w : workers_in(slot)) {
            if (is_outgoing(*w)) outgoing = w;
        }
        Worker* next = successor_in_slot(slot, outgoing != nullptr ? outgoing->pid : 0);
        if (outgoing != nullptr && next != nullptr && next->state == WorkerState::ready) {
            spdlog::info("worker {} (pid {}, gen {}) replaced by pid {} (gen {}){}", slot, outgoing->pid,
                         outgoing->generation, next->pid, next->generation,
                         outgoing->replace_reason.empty() ? "" : "; " + outgoing->replace_reason);
            drain(*outgoing, now);
            ++s.restarts;  // the successor took over
            outgoing = nullptr;
        }
        const bool serving = (outgoing != nullptr && outgoing->state == WorkerState::ready) ||
                             (next != nullptr && next->state == WorkerState::ready);
        if (!serving) ++missing;
        if (outgoing != nullptr && next != nullptr) ++surge_used;
        if (outgoing != nullptr && next == nullptr && now >= s.not_before) waiting.emplace_back(slot, outgoing->pid);
    }
    // 2. Start successors within the budgets: surge first (capacity never drops), then, if
    //    allowed, replace in place (drain first) up to max_unavailable.
    for (const auto& [slot, pid] : waiting) {
        if (!may_spawn()) break;
        if (surge_used < surge) {
            ++surge_used;
            spawn_worker(slot, now);
        } else if (missing < unavailable) {
            ++missing;
            drain(workers_.at(pid), now);
            spawn_worker(slot, now);
        } else {
            break;
        }
    }
    // 3. Done when nothing is outgoing and every slot has a ready worker of this generation.
    if (rollout_.state == Rollout::State::running) {
        bool done = true;
        for (const auto& [slot, s] : slots_) {
            if (!s.active) continue;
            const Worker* w = successor_in_slot(slot, 0);
            if (w == nullptr || w->state != WorkerState::ready) done = false;
        }
        for (const auto& [pid, w] : workers_) {
            if (is_outgoing(w)) done = false;
        }
        if (done) {
            rollout_.state = Rollout::State::done;
            rollout_.previous_spec.reset();
            rollout_.previous_listeners.clear();
            spdlog::info("generation {} rolled out in {}", generation_,
                         format_duration(std::chrono::duration_cast<Duration>(now - rollout_.started)));
        }
    }
}

}  // namespace workerd
