// Preload (app.preload): each generation's workers are forked from its zygote, a process that
// has imported the app once. The core decides when a zygote starts (a worker of its generation
// is wanted and none is there), when it goes (its generation is neither the fleet's nor the
// one a running rollout may fall back to, or the fleet stops), and what its failures mean: one
// that exits before it is ready counts against a rollout to its generation like a new worker
// failing before READY, and a zygote that ends unasked is started again after the backoff,
// while the workers forked from it serve on.
#include <algorithm>
#include <csignal>

#include <fmt/format.h>

#include "daemon/core/fleet.hpp"

namespace workerd::core {

namespace {

constexpr Duration kZygoteKillAfter{std::chrono::seconds(5)};  // closing its socket ends it at once

std::string which(const Zygote& z) {
    return z.pid != 0 ? fmt::format("zygote of generation {} (pid {})", z.generation, z.pid)
                      : fmt::format("zygote of generation {}", z.generation);
}

}  // namespace

bool Fleet::zygote_is_ready() const {
    if (!spec_.app.preload) return true;
    auto it = zygotes_.find(generation_);
    return it != zygotes_.end() && it->second.ready && !it->second.stopping;
}

bool Fleet::zygote_ready(TimePoint now) {
    if (!spec_.app.preload || zygote_is_ready()) return true;
    if (mode_ != Mode::running || zygotes_.count(generation_) > 0) return false;
    if (now < zygote_not_before_) {
        wake_at(zygote_not_before_);
        return false;
    }
    Zygote z;
    z.generation = generation_;
    z.started_at = now;
    zygotes_.emplace(generation_, z);
    actions_.push_back(action::StartZygote{generation_});
    return false;
}

void Fleet::on(const event::ZygoteStarted& e, TimePoint) {
    auto it = zygotes_.find(e.generation);
    if (it == zygotes_.end() || it->second.pid != 0) return;
    it->second.pid = e.pid;
    note(NoteKind::zygote, Level::info, fmt::format("{} started: importing the app", which(it->second)));
    turn_due_ = true;  // a stop (or a rollback) may have come since it was asked for: the turn decides
}

void Fleet::on(const event::ZygoteFailed& e, TimePoint now) {
    auto it = zygotes_.find(e.generation);
    if (it == zygotes_.end() || it->second.pid != 0) return;
    const Zygote z = it->second;
    zygotes_.erase(it);
    zygote_failed(z, "cannot start: " + e.error, now);
}

void Fleet::on(const event::ZygoteReady& e, TimePoint now) {
    auto it = zygotes_.find(e.generation);
    if (it == zygotes_.end() || it->second.ready || it->second.pid == 0) return;
    Zygote& z = it->second;
    z.ready = true;
    z.ready_at = now;
    note(NoteKind::zygote, Level::info,
         fmt::format("{} ready after {}: workers of generation {} are forked from it", which(z),
                     seconds_text(now - z.started_at), z.generation));
    turn_due_ = true;
}

bool Fleet::on_zygote_exit(const event::Exited& e, TimePoint now) {
    auto it = std::find_if(zygotes_.begin(), zygotes_.end(), [&](const auto& entry) { return entry.second.pid == e.pid; });
    if (it == zygotes_.end()) return false;
    const Zygote z = it->second;
    zygotes_.erase(it);
    if (z.stopping || mode_ != Mode::running) {
        note(NoteKind::zygote, Level::info,
             fmt::format("{} stopped: {} after {}", which(z), describe_status(e.status), seconds_text(now - z.started_at)));
        return true;
    }
    zygote_failed(z, describe_status(e.status), now);
    turn_due_ = true;
    return true;
}

void Fleet::zygote_failed(const Zygote& z, const std::string& what, TimePoint now) {
    const auto uptime = std::chrono::duration_cast<Duration>(now - z.started_at);
    const Duration delay = zygote_backoff_.on_exit(spec_.backoff, uptime, uniform());
    zygote_not_before_ = now + delay;
    wake_at(zygote_not_before_);
    // Before it was ready, a zygote is a new generation that cannot boot.
    bool rollout_failed = false;
    if (!z.ready && rollout_.state == RolloutState::running && z.generation == rollout_.generation) {
        ++rollout_.failures;
        rollout_.reason = fmt::format("its zygote {} after {}", what, seconds_text(uptime));
        if (rollout_.failures >= spec_.rollout.failure_threshold) {
            fail_rollout(now, "boot");
            rollout_failed = true;
        }
    }
    std::string then;
    if (rollout_failed) then = "the rollout stops here";
    else if (z.generation != generation_) then = "its generation is no longer wanted";
    else then = fmt::format("{}next try in {}", z.ready ? "the workers forked from it serve on; " : "", format_duration(delay));
    note(NoteKind::zygote, z.ready ? Level::warn : Level::error,
         fmt::format("{} {} after {}{}; {}", which(z), what, seconds_text(uptime), z.ready ? "" : ", before it was ready",
                     then));
}

void Fleet::tend_zygotes(TimePoint now) {
    for (auto& [generation, z] : zygotes_) {
        if (z.kill_at && *z.kill_at <= now) {
            note(NoteKind::killed_late, Level::warn, fmt::format("{} still running; sending SIGKILL", which(z)));
            actions_.push_back(action::Signal{z.pid, SIGKILL, false});
            z.kill_at.reset();
        }
        // One that does not get ready within boot_timeout (an import stuck on the network) is
        // killed; its exit counts as any failure before ready.
        if (!z.ready && !z.stopping && !z.boot_killed && z.pid != 0 && now - z.started_at >= spec_.health.boot_timeout) {
            note(NoteKind::hung, Level::warn,
                 fmt::format("{} not ready after boot_timeout {}; sending SIGKILL", which(z), format_duration(spec_.health.boot_timeout)));
            actions_.push_back(action::Signal{z.pid, SIGKILL, false});
            z.boot_killed = true;
        }
        const bool wanted = mode_ == Mode::running &&
                            (generation == generation_ ||
                             (rollout_.state == RolloutState::running && generation == rollout_.previous_generation));
        if (wanted || z.stopping || z.pid == 0) continue;
        z.stopping = true;
        if (mode_ == Mode::stopping_fast) {
            actions_.push_back(action::Signal{z.pid, SIGKILL, false});
        } else {
            actions_.push_back(action::StopZygote{generation, z.pid});
            z.kill_at = now + kZygoteKillAfter;
        }
        note(NoteKind::zygote, Level::info,
             fmt::format("{} stopping: {}", which(z), mode_ != Mode::running ? "the fleet stops" : "its generation was replaced"));
    }
    // The fleet's generation always has one (after its backoff): a scale-up or a replacement
    // then forks at once.
    if (spec_.app.preload && mode_ == Mode::running) zygote_ready(now);
}

}  // namespace workerd::core
