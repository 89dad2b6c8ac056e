#include "tests/sim/simulator.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <functional>

#include <fmt/format.h>

namespace workerd::sim {
namespace {

using core::Phase;
using core::Worker;

int exited_with(int code) { return code << 8; }  // a wait status: WIFEXITED, WEXITSTATUS == code
int killed_by(int sig) { return sig; }           // a wait status: WIFSIGNALED, WTERMSIG == sig

/// How a simulated worker behaves.
enum class Model { good, crash_boot, never_ready, hang_after_ready, ignore_term, leak, exit_after_n, silent };

const char* to_string(Model m) {
    switch (m) {
        case Model::good: return "good";
        case Model::crash_boot: return "crashes booting";
        case Model::never_ready: return "never ready";
        case Model::hang_after_ready: return "hangs after READY";
        case Model::ignore_term: return "ignores SIGTERM";
        case Model::leak: return "leaks";
        case Model::exit_after_n: return "exits after N requests";
        case Model::silent: return "never speaks";
    }
    return "?";
}

struct Proc {
    pid_t pid = 0;
    int slot = 0;
    Model model = Model::good;
    TimePoint started;
    Duration boot{0};
    TimePoint next;                    ///< when it next does something
    bool ready = false;
    bool hung = false;
    std::optional<TimePoint> hang_at;
    std::optional<TimePoint> exit_at;  ///< it exits then, with exit_status
    int exit_status = 0;
    std::uint64_t served = 0;
    std::uint64_t exit_after = 0;
    long rss = 50L << 20;
    Duration beat{0};                  ///< its heartbeat interval, from the spec it was started with
    /// Canary analysis: its code answers 20% 5xx, or 3x slower (a generation that boots fine
    /// and serves badly); its cumulative latency buckets and answers by class.
    enum class Quality { good, errors, slow } quality = Quality::good;
    LatencyBuckets buckets{};
    ResponseCounts responses{};
    bool zygote = false;               ///< preload: a zygote, not a worker
    long generation = 0;               ///< a zygote's
};

Duration ms(long n) { return Duration(n); }

class Sim {
public:
    explicit Sim(const Scenario& s) : s_(s), rng_(s.seed * 7919 + 17) {}

    Outcome run();

private:
    // Randomness.
    double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
    long between(long lo, long hi) { return std::uniform_int_distribution<long>(lo, hi)(rng_); }
    bool chance(double p) { return uniform() < p; }

    Spec make_spec();
    TimePoint on_grid(TimePoint t) const {
        const auto g = s_.grid.count();
        const auto since = std::chrono::duration_cast<Duration>(t - t0_).count();
        return t0_ + Duration((since + g - 1) / g * g);
    }

    // Driving the core.
    void give(const core::Event& e);
    void apply(std::vector<core::Action> actions);
    void launch(const core::action::Spawn& spawn);
    void launch_zygote(long generation);
    void act_zygote(Proc& p);
    void deliver_signal(pid_t pid, int sig);
    void step_proc(Proc& p);
    void act(Proc& p);  ///< what a live worker does when its time comes
    void reap(Proc& p);
    void turn();
    void inject_fault();
    void reload(bool bad);

    // Invariants.
    void fail(const std::string& what);
    void check();
    void check_spawn(int slot, bool empty_slot);
    void note_quick_exit(int slot, bool quick);
    void check_drain(pid_t pid);
    bool converged() const;
    /// Slots scaled (back) into the fleet start with a fresh backoff.
    void observe_slots();
    std::string at() const { return fmt::format("t={:.3f}s", std::chrono::duration<double>(now_ - t0_).count()); }
    void trace(std::string line);

    Scenario s_;
    std::mt19937_64 rng_;
    TimePoint t0_{std::chrono::hours(1)};
    TimePoint now_{std::chrono::hours(1)};
    std::optional<core::Fleet> fleet_;
    Outcome out_;
    std::map<pid_t, Proc> procs_;
    std::set<pid_t> reaped_;
    pid_t next_pid_ = 100;
    bool faults_on_ = true;
    std::optional<TimePoint> spawn_failures_until_;
    std::set<std::string> bad_specs_;  ///< spec texts whose workers cannot boot
    std::map<std::string, Proc::Quality> degraded_specs_;  ///< spec texts whose workers boot and serve badly
    std::string target_text_;          ///< the latest reload's spec
    bool old_degraded_ = false;        ///< some worker serving badly ran when it came
    int spec_serial_ = 0;
    std::deque<std::string> trace_;
    // What the invariants remember.
    std::set<pid_t> retiring_before_;  ///< pids retiring when the current turn began
    std::set<pid_t> leak_recycled_;     ///< pids recycled as leaking, counted
    bool in_turn_ = false;
    struct SlotRecord {
        int quick_exits = 0;
        TimePoint last_end{};
        double least_ms = 0;  ///< the shortest wait the backoff allows after last_end
        bool was_active = false;
    };
    std::vector<SlotRecord> slot_records_ = std::vector<SlotRecord>(kMaxWorkers);
    std::map<std::string, std::uint64_t> restarts_seen_;
    std::uint64_t retired_served_seen_ = 0;
    std::vector<std::pair<int, int>> slot_counters_seen_ = std::vector<std::pair<int, int>>(kMaxWorkers);
    std::optional<TimePoint> stop_began_;
    core::RolloutState rollout_seen_ = core::RolloutState::none;
    std::string restore_text_;        ///< the spec a failed rollout must go back to
    long restore_generation_ = 0;
};

Spec Sim::make_spec() {
    Spec spec;
    spec.text = fmt::format("spec {}", ++spec_serial_);
    spec.file = "sim.yaml";
    spec.workers = s_.workers;
    const bool big = s_.workers > 256;
    spec.graceful_timeout = ms(between(1, 30) * 1000);
    spec.health.mode = chance(0.8) ? HeartbeatMode::automatic : HeartbeatMode::required;
    spec.health.timeout = ms(big ? 30000 : between(1, 30) * 1000);
    spec.health.boot_timeout = ms(between(3, 60) * 1000);
    spec.health.ready_after = ms(between(1, 3) * 1000);
    spec.health.kill_timeout = ms(between(1, 5) * 1000);
    if (chance(0.3)) spec.health.timeout_signal = SIGABRT;
    spec.backoff.initial = ms(between(1, 10) * 100);
    spec.backoff.max = ms(between(5, 30) * 1000);
    spec.backoff.reset_after = ms(between(5, 20) * 1000);
    // One draw per statement: the order of two in one expression is the compiler's, and a seed
    // must be the same scenario in every build (the sanitizer build's CI run included).
    const long quarters = between(0, 4);
    const int halve = chance(0.5) ? 1 : 2;
    spec.rollout.max_surge = WorkerAmount{static_cast<int>(quarters * 25 / halve), true};
    spec.rollout.max_unavailable = WorkerAmount{static_cast<int>(between(0, 2) * 10), true};
    spec.rollout.failure_threshold = static_cast<int>(between(1, 3));
    if (chance(0.3)) {
        spec.recycle.max_requests = static_cast<std::uint64_t>(between(500, 5000));
        spec.recycle.max_requests_jitter = static_cast<std::uint64_t>(between(0, 200));
    }
    if (chance(0.3)) spec.recycle.max_rss = static_cast<std::uint64_t>(between(80, 200)) << 20;
    if (chance(0.2)) {
        spec.recycle.max_lifetime = ms(between(60, 1800) * 1000);
        spec.recycle.max_lifetime_jitter = ms(between(0, 60) * 1000);
    }
    spec.recycle.min_lifetime = ms(between(0, 10) * 1000);
    // Canary analysis on some specs, from a generator of its own (the other draws, and so the
    // other seeds' scenarios, stay as they were).
    std::mt19937_64 side(s_.seed * 1000003 + static_cast<std::uint64_t>(spec_serial_));
    auto side_between = [&](long lo, long hi) { return std::uniform_int_distribution<long>(lo, hi)(side); };
    if (side_between(0, 9) < 3) {
        AnalysisSpec a;
        a.canaries = static_cast<int>(side_between(1, 2));
        a.window = ms(side_between(5, 60) * 1000);
        a.min_requests = static_cast<std::uint64_t>(side_between(50, 500));
        spec.rollout.analysis = a;
    }
    // Leak recycling on some specs (the same side generator): the workers that leak are found,
    // and none of the others (whose memory wobbles, and steps up once) is taken for one.
    if (side_between(0, 9) < 3) {
        LeakSpec l;
        l.min_growth = static_cast<std::uint64_t>(side_between(4, 48)) << 20;
        l.per_request = static_cast<std::uint64_t>(side_between(256, 8192));
        l.horizon = ms(side_between(10, 1200) * 1000);
        l.warmup = static_cast<std::uint64_t>(side_between(0, 2000));
        l.idle_wait = ms(side_between(0, 30) * 1000);
        spec.recycle.leak = l;
    }
    if (s_.preload) {
        spec.app.command = {"/sim/app"};
        spec.app.preload = true;
        if (chance(0.5)) spec.recycle.max_private = static_cast<std::uint64_t>(between(20, 60)) << 20;
    }
    return spec;
}

void Sim::trace(std::string line) {
    if (!out_.ok) return;  // the report ends where the invariant broke
    trace_.push_back(at() + " " + std::move(line));
    if (trace_.size() > s_.trace_lines) trace_.pop_front();
}

void Sim::fail(const std::string& what) {
    if (!out_.ok) return;
    out_.ok = false;
    out_.failure = at() + ": " + what;
}

void Sim::give(const core::Event& e) {
    ++out_.events;
    apply(fleet_->handle(e, now_));
}

void Sim::apply(std::vector<core::Action> actions) {
    namespace a = core::action;
    for (auto& action : actions) {
        if (auto* spawn = std::get_if<a::Spawn>(&action)) {
            launch(*spawn);
        } else if (auto* sig = std::get_if<a::Signal>(&action)) {
            deliver_signal(sig->pid, sig->sig);
        } else if (auto* note = std::get_if<a::Note>(&action)) {
            trace(fmt::format("[{}] {}", core::to_string(note->kind), note->text));
        } else if (auto* start = std::get_if<a::StartZygote>(&action)) {
            launch_zygote(start->generation);
        } else if (auto* stop = std::get_if<a::StopZygote>(&action)) {
            deliver_signal(stop->pid, SIGTERM);  // its socket closes: it ends
        }
    }
}

void Sim::launch(const core::action::Spawn& spawn) {
    ++out_.spawns;
    const auto in_slot = fleet_->workers_in(spawn.slot);
    const bool empty = std::none_of(in_slot.begin(), in_slot.end(), [&](const Worker* w) {
        return w->phase != Phase::spawning && core::holds_slot(*w);
    });
    check_spawn(spawn.slot, empty);
    if (fleet_->spec().app.preload) {
        // Forked from the generation's zygote: the core asks only once it is ready. One the core
        // does not know is gone yet (killed a moment ago, not reaped) cannot answer.
        const auto zygote = std::find_if(procs_.begin(), procs_.end(), [&](const auto& e) {
            return e.second.zygote && e.second.generation == spawn.generation && e.second.ready;
        });
        if (zygote == procs_.end()) return fail(fmt::format("a worker of generation {} asked for with no ready zygote", spawn.generation));
        if (zygote->second.exit_at) {
            trace(fmt::format("launcher: the zygote of generation {} is gone", spawn.generation));
            ++out_.forks_lost;
            give(core::event::SpawnFailed{spawn.id, "the zygote is gone"});
            return;
        }
    }
    if (faults_on_ && spawn_failures_until_ && now_ < *spawn_failures_until_) {
        trace(fmt::format("launcher: slot {} cannot start", spawn.slot));
        note_quick_exit(spawn.slot, true);
        give(core::event::SpawnFailed{spawn.id, "cannot execute /sim/app: Resource temporarily unavailable"});
        return;
    }
    Proc p;
    p.pid = next_pid_++;
    p.slot = spawn.slot;
    p.started = now_;
    // A worker beats as the spec it was started with says (its environment), whatever the
    // fleet's spec is later (a reload, or a failed one's restore).
    p.beat = std::max(ms(100), Duration(fleet_->spec().health.timeout.count() / 3));
    if (auto d = degraded_specs_.find(fleet_->spec().text); d != degraded_specs_.end()) p.quality = d->second;
    const bool bad = bad_specs_.count(fleet_->spec().text) > 0;
    if (bad) {
        // A generation that cannot boot: its workers die booting, or (held to the protocol)
        // never say READY. Without `heartbeat: required` a silent worker counts as ready.
        const bool required = fleet_->spec().health.mode == HeartbeatMode::required;
        p.model = required && chance(0.5) ? Model::never_ready : Model::crash_boot;
    } else if (faults_on_) {
        const double r = uniform();
        p.model = r < 0.84   ? Model::good
                  : r < 0.87 ? Model::crash_boot
                  : r < 0.89 ? Model::hang_after_ready
                  : r < 0.91 ? Model::ignore_term
                  : r < 0.94 ? Model::leak
                  : r < 0.97 ? Model::exit_after_n
                             : Model::silent;
    }
    const bool big = s_.workers > 256;
    p.boot = ms(big ? between(100, 3000) : between(10, 2000));
    // A generation that cannot boot dies before a silent worker would count as ready.
    if (bad) p.boot = ms(between(10, std::max(20L, static_cast<long>(fleet_->spec().health.ready_after.count()) / 2)));
    p.next = now_ + p.boot;
    if (p.model == Model::hang_after_ready) p.hang_at = now_ + p.boot + ms(between(1000, 600000));
    if (p.model == Model::exit_after_n) p.exit_after = static_cast<std::uint64_t>(between(100, 20000));
    procs_[p.pid] = p;
    trace(fmt::format("launcher: slot {} gen {} is pid {} ({})", spawn.slot, spawn.generation, p.pid, to_string(p.model)));
    give(core::event::Spawned{spawn.id, p.pid, "/sim/app"});
}

void Sim::launch_zygote(long generation) {
    if (faults_on_ && spawn_failures_until_ && now_ < *spawn_failures_until_) {
        trace(fmt::format("launcher: the zygote of generation {} cannot start", generation));
        give(core::event::ZygoteFailed{generation, "cannot execute /sim/app: Resource temporarily unavailable"});
        return;
    }
    ++out_.zygotes;
    Proc p;
    p.pid = next_pid_++;
    p.slot = -1;
    p.zygote = true;
    p.generation = generation;
    p.started = now_;
    // A generation that cannot boot cannot import either.
    p.model = bad_specs_.count(fleet_->spec().text) > 0 ? Model::crash_boot : Model::good;
    p.boot = ms(between(100, 5000));
    p.next = now_ + p.boot;
    procs_[p.pid] = p;
    trace(fmt::format("launcher: the zygote of generation {} is pid {}{}", generation, p.pid,
                      p.model == Model::good ? "" : " (cannot import)"));
    give(core::event::ZygoteStarted{generation, p.pid});
}

void Sim::act_zygote(Proc& p) {
    p.next = now_ + std::chrono::hours(48);  // idle once ready: it only forks
    if (p.ready) return;
    if (p.hang_at && now_ >= *p.hang_at) return;  // stuck importing: boot_timeout kills it
    if (p.model == Model::crash_boot) {
        p.exit_at = now_;
        p.exit_status = exited_with(1);
        return reap(p);
    }
    p.ready = true;
    give(core::event::ZygoteReady{p.generation});
}

void Sim::deliver_signal(pid_t pid, int sig) {
    trace(fmt::format("signal {} to pid {}", signal_name(sig), pid));
    if (reaped_.count(pid)) return fail(fmt::format("{} sent to pid {}, which was already reaped", signal_name(sig), pid));
    auto it = procs_.find(pid);
    if (it == procs_.end()) return fail(fmt::format("{} sent to pid {}, which the fleet never started", signal_name(sig), pid));
    Proc& p = it->second;
    if (in_turn_ && sig == SIGTERM && !p.zygote) check_drain(pid);
    if (p.exit_at && *p.exit_at <= now_) return;  // already gone, not reaped yet
    if (p.zygote && sig == SIGTERM) {
        // Its socket closed: it ends at once (it runs no requests).
        p.exit_at = now_ + ms(between(0, 200));
        p.exit_status = killed_by(SIGTERM);
    } else if (sig == SIGKILL) {
        p.exit_at = now_;
        p.exit_status = killed_by(SIGKILL);
    } else if (sig == SIGTERM) {
        if (p.model == Model::ignore_term || p.hung) return;
        const auto when = now_ + ms(between(0, 3000));
        if (!p.exit_at || when < *p.exit_at) {
            p.exit_at = when;
            p.exit_status = chance(0.2) ? killed_by(SIGTERM) : exited_with(0);
        }
    } else if (sig == SIGABRT) {
        p.exit_at = now_ + ms(between(0, 200));  // dumps its stacks, then dies of it
        p.exit_status = killed_by(SIGABRT);
    }
    p.next = std::min(p.next, *p.exit_at);
}

void Sim::reap(Proc& p) {
    const pid_t pid = p.pid;
    if (!reaped_.insert(pid).second) return fail(fmt::format("pid {} reaped twice", pid));
    ++out_.exits;
    const Worker* w = fleet_->by_pid(pid);
    const Duration uptime = std::chrono::duration_cast<Duration>(now_ - p.started);
    std::optional<int> counted_slot;
    // The backoff's view, kept by the simulator from what it sees: a worker the fleet wanted
    // (not told to stop, in a slot of the fleet) that exits counts; one that ran long enough
    // resets the count. A worker hung after READY whose slot already has its replacement does
    // not count.
    if (w != nullptr && fleet_->mode() == core::Mode::running && fleet_->slots().at(w->slot).active &&
        w->phase != Phase::draining) {
        bool replaced = false;
        if (w->phase == Phase::hung && !core::holds_slot(*w)) {
            for (const Worker* o : fleet_->workers_in(w->slot)) replaced = replaced || (o != w && core::holds_slot(*o));
        }
        // A successor already in the slot takes it over: no restart, no backoff.
        for (const Worker* o : fleet_->workers_in(w->slot)) {
            if (o != w && o->phase != Phase::draining) {
                replaced = replaced || o->started_at > w->started_at;
                break;
            }
        }
        if (!replaced) counted_slot = w->slot;
    }
    trace(fmt::format("pid {} exits ({}) after {}", pid, core::describe_status(p.exit_status), format_duration(uptime)));
    if (p.zygote) {
        const auto z = std::find_if(fleet_->zygotes().begin(), fleet_->zygotes().end(),
                                    [&](const auto& e) { return e.second.pid == pid; });
        if (z != fleet_->zygotes().end() && !z->second.stopping) ++out_.zygote_deaths;
    }
    const int status = p.exit_status;
    procs_.erase(pid);
    give(core::event::Exited{pid, status, 0.01});
    // By the backoff settings in effect after the exit (a failed rollout restores the previous).
    if (counted_slot) note_quick_exit(*counted_slot, uptime < fleet_->spec().backoff.reset_after);
    if (fleet_->by_pid(pid) != nullptr) fail(fmt::format("pid {} is still in the fleet after it was reaped", pid));
}

void Sim::step_proc(Proc& p) {
    if (p.exit_at && *p.exit_at <= now_) return reap(p);
    const pid_t pid = p.pid;
    act(p);  // may reap it
    if (auto it = procs_.find(pid); it != procs_.end() && it->second.exit_at) {
        it->second.next = std::min(it->second.next, *it->second.exit_at);
    }
}

void Sim::act(Proc& p) {
    if (p.zygote) return act_zygote(p);
    const Duration beat = p.beat;
    if (!p.ready) {
        if (p.model == Model::crash_boot) {
            p.exit_at = now_;
            p.exit_status = chance(0.5) ? exited_with(1) : killed_by(SIGSEGV);
            return reap(p);
        }
        if (p.model == Model::never_ready) {
            p.next = now_ + std::chrono::hours(48);
            return;
        }
        p.ready = true;
        p.next = now_ + beat;
        if (p.model != Model::silent) give(core::event::Message{p.pid, *parse_notify_line("READY=1")});
        return;
    }
    if (p.hang_at && now_ >= *p.hang_at) p.hung = true;
    if (p.hung || p.model == Model::silent) {
        p.next = p.exit_at ? *p.exit_at : now_ + std::chrono::hours(48);
        return;
    }
    const auto more = static_cast<std::uint64_t>(between(0, 200));
    p.served += more;
    if (p.model == Model::leak) p.rss += between(1, 8) << 20;
    NotifyMessage m;
    m.kind = NotifyMessage::Kind::stats;
    m.stats.served = p.served;
    m.stats.inflight = between(0, 4);
    // The new requests spread evenly over buckets 6..12 (4 to 32 ms), three higher when slow
    // (2.8x); 20% of them 5xx when failing. No draw of its own: deterministic shares.
    const std::size_t shift = p.quality == Proc::Quality::slow ? 3 : 0;
    const auto rest = static_cast<std::size_t>(between(0, 12)) % 7;
    for (std::size_t k = 0; k < 7; ++k) p.buckets[6 + k + shift] += more / 7;
    p.buckets[6 + rest + shift] += more % 7;
    const std::uint64_t errors = p.quality == Proc::Quality::errors ? more / 5 : 0;
    p.responses[0] += more - errors;
    p.responses[3] += errors;
    m.stats.buckets = p.buckets;
    m.stats.responses = p.responses;
    p.next = now_ + beat;
    if (p.exit_at) p.next = std::min(p.next, *p.exit_at);
    give(core::event::Message{p.pid, m});
    if (p.model == Model::exit_after_n && p.served >= p.exit_after && !p.exit_at) {
        p.exit_at = now_ + ms(between(0, 100));
        p.exit_status = exited_with(0);
        p.next = *p.exit_at;
    }
}

void Sim::turn() {
    if (fleet_->sample_due(now_)) {
        core::event::Samples samples;
        for (const auto& [pid, p] : procs_) {
            // With leak recycling, what does not leak still moves: a wobble of up to 2 MiB with
            // its requests, and a step of 24 MiB once it has served 1,000 (a cache filled).
            long rss = p.rss;
            if (fleet_->spec().recycle.leak && p.model != Model::leak) {
                rss += static_cast<long>((p.served / 7) % 3) << 20;
                if (p.served >= 1000) rss += 24L << 20;
            }
            samples.memory.push_back({pid, rss, rss / 2, rss / 4});
        }
        samples.queue_depth = static_cast<int>(between(0, 3));
        give(samples);
    }
    retiring_before_.clear();
    for (const auto& [id, w] : fleet_->workers()) {
        if (w.phase == Phase::retiring) retiring_before_.insert(w.pid);
    }
    ++out_.turns;
    in_turn_ = true;
    give(core::event::Turn{});
    in_turn_ = false;
}

void Sim::reload(bool bad) {
    ++out_.reloads;
    Spec next = make_spec();
    next.workers = chance(0.7) ? fleet_->spec().workers : static_cast<int>(between(1, std::min(2 * s_.workers, kMaxWorkers)));
    if (bad) bad_specs_.insert(next.text);
    if (!bad && next.rollout.analysis) {
        std::mt19937_64 side(s_.seed * 7919 + static_cast<std::uint64_t>(spec_serial_) * 13);
        const long pick = std::uniform_int_distribution<long>(0, 9)(side);
        if (pick < 2) degraded_specs_[next.text] = Proc::Quality::errors;
        else if (pick < 4) degraded_specs_[next.text] = Proc::Quality::slow;
    }
    target_text_ = next.text;
    // The canaries are judged against what serves now: code that serves badly itself (one that
    // rolled out unjudged, in a fleet of one) makes a bad canary look as good.
    old_degraded_ = std::any_of(procs_.begin(), procs_.end(), [](const auto& e) {
        return !e.second.zygote && e.second.quality != Proc::Quality::good;
    });
    // A failure goes back to the last generation that rolled out (not to a superseded target).
    if (fleet_->rollout().state != core::RolloutState::running) {
        restore_text_ = fleet_->spec().text;
        restore_generation_ = fleet_->generation();
    }
    const auto degraded = degraded_specs_.find(next.text);
    trace(fmt::format("fault: reload to {}{}{}", next.text, bad ? " (cannot boot)" : "",
                      degraded == degraded_specs_.end()                     ? ""
                      : degraded->second == Proc::Quality::errors ? " (answers 20% 5xx)"
                                                                  : " (3x slower)"));
    fleet_->reload(std::move(next), "SIGHUP", now_);
    observe_slots();
    apply(fleet_->take_actions());
}

void Sim::inject_fault() {
    ++out_.faults;
    const double r = uniform();
    std::vector<pid_t> live;
    for (const auto& [pid, p] : procs_) {
        if (!p.exit_at) live.push_back(pid);
    }
    auto any_live = [&]() -> Proc* {
        if (live.empty()) return nullptr;
        return &procs_.at(live[static_cast<std::size_t>(between(0, static_cast<long>(live.size()) - 1))]);
    };
    const int most = std::min(std::max(2 * s_.workers, 4), kMaxWorkers);
    if (r < 0.25) {
        if (Proc* p = any_live()) {
            trace(fmt::format("fault: pid {} is killed (SIGKILL)", p->pid));
            p->exit_at = now_;
            p->exit_status = killed_by(SIGKILL);
            p->next = now_;
            if (p->zygote && chance(0.5)) {
                // The daemon reaps a little later; a worker that dies meanwhile is replaced at
                // once, by a fork request to the zygote that is no longer there.
                p->next = now_ + ms(between(5, 100));
                for (const pid_t pid : live) {
                    Proc& w = procs_.at(pid);
                    if (w.zygote || w.slot < 0) continue;
                    trace(fmt::format("fault: pid {} crashes as well", w.pid));
                    w.exit_at = now_;
                    w.exit_status = killed_by(SIGSEGV);
                    w.next = now_;
                    break;
                }
            }
        }
    } else if (r < 0.35) {
        if (Proc* p = any_live()) {
            trace(fmt::format("fault: pid {} hangs", p->pid));
            p->hang_at = now_;
        }
    } else if (r < 0.42) {
        spawn_failures_until_ = now_ + ms(between(1, 30) * 1000);
        trace("fault: spawns fail for a while");
    } else if (r < 0.55) {
        reload(false);
    } else if (r < 0.62) {
        reload(true);
    } else if (r < 0.72) {
        const int n = static_cast<int>(between(2, 8));
        trace(fmt::format("fault: a storm of {} scales", n));
        for (int i = 0; i < n; ++i) {
            const auto size = static_cast<int>(between(1, most));
            const bool pin = chance(0.5);
            fleet_->scale(size, "control", pin, now_);
            observe_slots();
            apply(fleet_->take_actions());
            if (chance(0.5)) turn();
        }
    } else if (r < 0.80) {
        const int sig = chance(0.5) ? SIGTTIN : SIGTTOU;
        if (sig == SIGTTOU || fleet_->desired() < most) {
            trace(fmt::format("fault: {}", signal_name(sig)));
            give(core::event::Signal{sig});
            observe_slots();
        }
    } else if (r < 0.88) {
        std::vector<int> slots;
        for (const auto& [index, s] : fleet_->slots()) {
            if (s.active && (slots.empty() || chance(0.5))) slots.push_back(index);
        }
        trace(fmt::format("fault: restart {} slot(s)", slots.size()));
        fleet_->restart(slots, "control");
        apply(fleet_->take_actions());
    } else if (r < 0.98 || !s_.may_stop) {
        if (Proc* p = any_live()) {
            trace(fmt::format("fault: pid {} crashes", p->pid));
            p->exit_at = now_;
            p->exit_status = chance(0.5) ? exited_with(1) : killed_by(SIGSEGV);
            p->next = now_;
        }
    } else {
        const bool fast = chance(0.3);
        trace(fmt::format("fault: stop ({})", fast ? "SIGINT" : "SIGTERM"));
        stop_began_ = now_;
        give(core::event::Signal{fast ? SIGINT : SIGTERM});
    }
}

void Sim::note_quick_exit(int slot, bool quick) {
    // After k quick exits in a row, the slot waits at least 0.8 x initial x 2^(k-2) (capped at
    // max) before its next start, by the backoff settings in effect at the exit.
    SlotRecord& r = slot_records_[static_cast<std::size_t>(slot)];
    r.quick_exits = quick ? r.quick_exits + 1 : 0;
    r.last_end = now_;
    r.least_ms = 0;
    if (r.quick_exits >= 2) {
        const BackoffSpec& b = fleet_->spec().backoff;
        double base = static_cast<double>(b.initial.count());
        for (int i = 2; i < r.quick_exits && base < static_cast<double>(b.max.count()); ++i) base *= 2;
        r.least_ms = 0.79 * std::min(base, static_cast<double>(b.max.count()));
    }
    trace(fmt::format("backoff view: slot {}: {} quick exit(s) in a row, next start in {:.0f} ms or more", slot,
                      r.quick_exits, r.least_ms));
}

void Sim::check_spawn(int slot, bool empty_slot) {
    if (fleet_->mode() != core::Mode::running) return fail(fmt::format("a spawn for slot {} while stopping", slot));
    if (!fleet_->slots().at(slot).active) return fail(fmt::format("a spawn for slot {}, which is not in the fleet", slot));
    if (empty_slot) {
        // Backoff: after k quick exits in a row, the slot waits at least 0.8 x initial x 2^(k-2)
        // (capped at max) before its next start.
        const SlotRecord& r = slot_records_[static_cast<std::size_t>(slot)];
        const double waited = std::chrono::duration<double, std::milli>(now_ - r.last_end).count();
        if (waited < r.least_ms) {
            fail(fmt::format("slot {} restarted {:.0f} ms after its quick exit number {} in a row (backoff: at least {:.0f} ms)",
                             slot, waited, r.quick_exits, r.least_ms));
        }
        return;
    }
    // A second worker in a slot is surge: within max_surge.
    const auto budget = core::rollout_budget(fleet_->spec().rollout, fleet_->desired());
    int doubled = 0;
    for (const auto& [index, s] : fleet_->slots()) {
        if (!s.active || s.workers.size() < 2) continue;
        int holders = 0;
        for (core::WorkerId id : s.workers) holders += core::holds_slot(fleet_->workers().at(id)) ? 1 : 0;
        if (holders >= 2) ++doubled;
    }
    if (doubled > budget.surge) {
        std::string in;
        for (const Worker* w : fleet_->workers_in(slot)) in += fmt::format(" pid {} gen {} {};", w->pid, w->generation, core::to_string(w->phase));
        fail(fmt::format("{} slots hold two workers, over max_surge {} (desired {}); slot {} holds:{}", doubled, budget.surge,
                         fleet_->desired(), slot, in));
    }
}

void Sim::check_drain(pid_t pid) {
    // An outgoing worker is drained only once its successor is READY, or in place while the
    // slots without a serving worker stay within max_unavailable.
    if (!retiring_before_.count(pid) || fleet_->mode() != core::Mode::running) return;
    const Worker* w = fleet_->by_pid(pid);
    // A hung worker's SIGTERM is its escalation, not a drain.
    if (w == nullptr || !fleet_->slots().at(w->slot).active || w->phase == Phase::hung) return;
    for (const Worker* o : fleet_->workers_in(w->slot)) {
        if (o != w && core::serving(o->phase)) return;  // its successor (or a newer worker) serves
    }
    const auto budget = core::rollout_budget(fleet_->spec().rollout, fleet_->desired());
    int missing = 0;
    for (const auto& [index, s] : fleet_->slots()) {
        if (!s.active) continue;
        bool serving = false;
        for (const Worker* o : fleet_->workers_in(index)) serving = serving || (o != w && core::serving(o->phase));
        if (!serving) ++missing;
    }
    if (missing > budget.unavailable) {
        fail(fmt::format("pid {} (slot {}) drained before its successor was READY: {} slots without a serving worker, "
                         "max_unavailable {}",
                         pid, w->slot, missing, budget.unavailable));
    }
}

void Sim::check() {
    ++out_.checks;
    const core::Fleet& f = *fleet_;
    // Workers of slots that left the fleet are draining (after a turn).
    for (const auto& [id, w] : f.workers()) {
        if (!f.slots().at(w.slot).active && core::holds_slot(w) && f.mode() == core::Mode::running) {
            fail(fmt::format("pid {} holds slot {}, which is not in the fleet", w.pid, w.slot));
        }
        // (A reaped pid leaving the fleet is checked at each reap; pids are never reused.)
        if (w.pid > 0 && !procs_.count(w.pid)) fail(fmt::format("the fleet has pid {}, which is not running", w.pid));
    }
    // Preload: the zygotes the core knows run; besides those stopping, the fleet's generation's
    // and, during a rollout, the one it may fall back to: two at most.
    int wanted_zygotes = 0;
    for (const auto& [generation, z] : f.zygotes()) {
        if (z.pid > 0 && !procs_.count(z.pid)) fail(fmt::format("the fleet has zygote pid {}, which is not running", z.pid));
        if (!z.stopping) ++wanted_zygotes;
    }
    if (wanted_zygotes > 2) fail(fmt::format("{} zygotes are kept (at most 2: the generation's and a rollout's fallback)", wanted_zygotes));
    if (!f.spec().app.preload && !f.zygotes().empty() && f.mode() == core::Mode::running && !f.zygotes().begin()->second.stopping) {
        fail("a zygote without preload");
    }
    // Counters never go backwards.
    for (const auto& [reason, n] : f.restarts_by_reason()) {
        if (n < restarts_seen_[reason]) fail("restarts{reason=" + reason + "} went backwards");
        restarts_seen_[reason] = n;
    }
    if (f.retired_stats().served < retired_served_seen_) fail("the retired requests went backwards");
    retired_served_seen_ = f.retired_stats().served;
    for (const auto& [index, s] : f.slots()) {
        auto& seen = slot_counters_seen_[static_cast<std::size_t>(index)];
        if (s.restarts < seen.first || s.recycles < seen.second) fail(fmt::format("slot {}'s counters went backwards", index));
        seen = {s.restarts, s.recycles};
    }
    observe_slots();
    // Leak recycling takes only workers that leak.
    for (const auto& [id, w] : f.workers()) {
        if (w.stop_reason != core::StopReason::leak || !leak_recycled_.insert(w.pid).second) continue;
        ++out_.leak_recycles;
        if (auto p = procs_.find(w.pid); p != procs_.end() && p->second.model != Model::leak) {
            fail(fmt::format("pid {} ({}) was recycled as leaking: {}", w.pid, to_string(p->second.model), w.retire_detail));
        }
    }
    // Canary analysis: a generation that serves badly never rolls out; a good one is never
    // rolled back on its numbers.
    if (f.rollout().state != rollout_seen_ && f.rollout().state == core::RolloutState::failed &&
        f.rollout().reason.find("rolled back") != std::string::npos && !degraded_specs_.count(target_text_)) {
        fail(fmt::format("a false rollback of {}: {}", target_text_, f.rollout().reason));
    }
    // (Judged: a fleet of one worker has no canary analysis, and says so.)
    if (f.rollout().state != rollout_seen_ && f.rollout().state == core::RolloutState::done && f.spec().rollout.analysis &&
        !f.rollout().analysis.empty() && degraded_specs_.count(f.spec().text) && !old_degraded_) {
        fail(fmt::format("{}, which serves badly, rolled out past its canary analysis: {}", f.spec().text, f.rollout().analysis));
    }
    if (f.rollout().state != rollout_seen_ && f.rollout().state == core::RolloutState::failed &&
        f.rollout().reason.find("rolled back") != std::string::npos) {
        ++out_.canary_rollbacks;
    }
    // A failed rollout restores the previous generation and spec.
    if (f.rollout().state != rollout_seen_ && f.rollout().state == core::RolloutState::failed) {
        if (f.generation() != restore_generation_ || f.spec().text != restore_text_) {
            fail(fmt::format("a failed rollout left generation {} ({}), not {} ({})", f.generation(), f.spec().text,
                             restore_generation_, restore_text_));
        }
    }
    rollout_seen_ = f.rollout().state;
    // A stop ends within graceful_timeout + kill_timeout.
    if (stop_began_ && !f.stopped()) {
        const auto limit = f.spec().graceful_timeout + f.spec().health.kill_timeout + std::chrono::seconds(1);
        if (now_ - *stop_began_ > limit) {
            std::string left;
            for (const auto& [id, w] : f.workers()) left += fmt::format(" pid {} slot {} {};", w.pid, w.slot, core::to_string(w.phase));
            fail(fmt::format("the stop has not ended after {}; left:{}", format_duration(limit), left));
        }
    }
}

void Sim::observe_slots() {
    for (const auto& [index, s] : fleet_->slots()) {
        SlotRecord& r = slot_records_[static_cast<std::size_t>(index)];
        if (s.active && !r.was_active) r.quick_exits = 0, r.least_ms = 0;
        r.was_active = s.active;
    }
}

bool Sim::converged() const {
    // Every slot of the fleet served by a worker of the current generation, no rollout under
    // way. (Recycling may be replacing some worker at any time: its slot still serves.)
    const core::Fleet& f = *fleet_;
    if (f.mode() != core::Mode::running || f.rollout().state == core::RolloutState::running) return false;
    for (const auto& [id, w] : f.workers()) {
        if (core::serving(w.phase) && w.generation != f.generation()) return false;
        if (core::holds_slot(w) && !f.slots().at(w.slot).active) return false;
    }
    if (f.spec().app.preload) {
        // The generation's zygote is back too (a later scale-up forks at once).
        auto z = f.zygotes().find(f.generation());
        if (z == f.zygotes().end() || !z->second.ready) return false;
    }
    return f.ready() == f.desired();
}

Outcome Sim::run() {
    core::Fleet::Options options;
    options.spec = make_spec();
    options.seed = s_.seed;
    fleet_.emplace(std::move(options), now_);
    const TimePoint faults_end = t0_ + s_.faults_for;
    const TimePoint settle_end = faults_end + s_.settle_within;
    auto next_fault = [&] {
        const double mean = std::chrono::duration<double, std::milli>(s_.fault_every).count();
        return now_ + ms(static_cast<long>(std::exponential_distribution<double>(1.0 / mean)(rng_)) + 1);
    };
    TimePoint fault_at = next_fault();
    turn();
    check();
    while (out_.ok) {
        // The next moment anything happens.
        TimePoint next = faults_on_ ? std::min(fault_at, faults_end) : settle_end;
        const auto deadline = fleet_->next_deadline(now_);
        if (deadline) next = std::min(next, *deadline);
        for (const auto& [pid, p] : procs_) next = std::min(next, p.next);
        now_ = std::max(on_grid(next), now_ + s_.grid);
        // Workers first (their lines and exits), then faults, then the core's turn.
        std::vector<pid_t> due;
        for (const auto& [pid, p] : procs_) {
            if (p.next <= now_) due.push_back(pid);
        }
        for (pid_t pid : due) {
            if (auto it = procs_.find(pid); it != procs_.end()) step_proc(it->second);
        }
        if (faults_on_ && now_ >= faults_end) {
            faults_on_ = false;
            trace("faults end: the fleet must converge");
        }
        if (faults_on_ && !stop_began_ && now_ >= fault_at) {
            inject_fault();
            fault_at = next_fault();
        }
        // Due by the deadline known at the top, or brought forward by what happened since.
        if ((deadline && *deadline <= now_) || fleet_->take_rearm()) turn();
        check();
        if (stop_began_) {
            if (fleet_->stopped()) {
                out_.stopped = true;
                break;
            }
            continue;
        }
        if (!faults_on_ && converged()) break;
        if (!faults_on_ && now_ >= settle_end) {
            fail(fmt::format("the fleet did not converge within {} after the faults ({} of {} ready, {} workers, rolling {})",
                             format_duration(s_.settle_within), fleet_->ready(), fleet_->desired(),
                             fleet_->workers().size(), fleet_->rolling()));
        }
    }
    out_.trace.assign(trace_.begin(), trace_.end());
    return out_;
}

}  // namespace

Scenario Scenario::from_seed(std::uint64_t seed) {
    Scenario s;
    s.seed = seed;
    std::mt19937_64 r(seed);
    auto between = [&](long lo, long hi) { return std::uniform_int_distribution<long>(lo, hi)(r); };
    if (seed == 1) {
        // The largest fleet for a simulated day.
        s.workers = kMaxWorkers;
        s.faults_for = std::chrono::hours(24);
        s.fault_every = std::chrono::seconds(30);
        s.grid = Duration(1000);
        s.settle_within = std::chrono::minutes(30);
        s.may_stop = false;
        return s;
    }
    const long sizes[] = {1, 2, 3, 4, 6, 8, 12, 16, 32, 64};
    s.workers = static_cast<int>(sizes[between(0, 9)]);
    s.faults_for = std::chrono::minutes(between(5, 120));
    s.fault_every = std::chrono::seconds(between(2, 60));
    s.grid = Duration(10);
    s.may_stop = between(0, 3) == 0;
    s.preload = seed % 4 == 3;  // (not from r: the other seeds keep their scenarios)
    return s;
}

std::string Scenario::describe() const {
    return fmt::format("seed {}: {} workers{}, faults for {} (one every {} on average){}", seed, workers,
                       preload ? " (preload)" : "", format_duration(faults_for), format_duration(fault_every),
                       may_stop ? ", may stop" : "");
}

Outcome run(const Scenario& scenario) { return Sim(scenario).run(); }

}  // namespace workerd::sim
