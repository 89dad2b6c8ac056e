#pragma once

// The fleet core: every decision of the supervisor, and nothing else. Given its state, an
// event and the time, it updates the state and queues the actions to carry out; the shell
// around it (daemon/arbiter.*) turns what happens into events and carries the actions out.
// No system call, no clock read, no global randomness: time comes with each call, and the
// random source is seeded by whoever makes the core (the simulator replays a seed exactly).

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <string>
#include <utility>
#include <vector>

#include "daemon/core/autoscale.hpp"
#include "daemon/core/backoff.hpp"
#include "daemon/core/events.hpp"
#include "daemon/core/lifecycle.hpp"
#include "daemon/core/rollout_plan.hpp"
#include "daemon/core/health.hpp"
#include "daemon/core/leak.hpp"
#include "daemon/wire/notify.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd::core {

/// One worker, from its spawn to its exit.
struct Worker {
    WorkerId id = 0;
    pid_t pid = 0;                          ///< 0 while spawning
    int slot = 0;
    long generation = 0;
    Phase phase = Phase::spawning;
    TimePoint started_at;
    HealthState health;                     ///< fed by its protocol messages
    std::optional<Escalation> escalation;   ///< once hung
    std::optional<TimePoint> kill_at;       ///< while draining: SIGKILL then
    std::optional<StopReason> stop_reason;  ///< retiring or draining: why
    std::string retire_detail;              ///< retiring: what for ("recycled: served 1000 requests ...")
    RequestStats stats;                     ///< its last STATS
    std::string status;                     ///< its last STATUS=
    std::optional<std::uint64_t> request_limit;  ///< max_requests + this worker's jitter
    std::optional<TimePoint> retire_at;     ///< max_lifetime + this worker's jitter
    /// The heartbeat timeout it was started with (WORKERD_WATCHDOG_USEC): it beats by that,
    /// whatever a later reload sets.
    Duration heartbeat_timeout{0};
    long rss_bytes = 0;                     ///< its last sample
    long pss_bytes = 0;                     ///< (0: not sampled)
    long private_bytes = 0;
    /// recycle.leak: its memory against its requests, and once judged leaking, since when and
    /// the numbers (it is replaced at an idle moment, or after leak.idle_wait).
    MemoryTrend memory_trend;
    std::optional<TimePoint> leak_found;
    bool leak_urgent = false;               ///< due to reach its limit within idle_wait
    std::string leak_detail;
    bool replaces_ended = false;            ///< spawning: it restarts a slot whose worker ended
    std::uint64_t bad_lines = 0;            ///< malformed protocol lines, and how many were logged
    std::uint64_t bad_lines_logged = 0;
    std::optional<TimePoint> bad_lines_logged_at;
};

/// Holds its slot: counts as the slot's worker. A worker hung after it was ready does not: its
/// replacement starts at once, beside it (the daemon holds the listen socket), while it may
/// take kill_timeout to die. One that never got ready (boot timeout) does: its slot waits for
/// the exit and the backoff, as after a crash.
bool holds_slot(const Worker& w);

/// One place in the fleet: slot N runs worker N (two while one replaces the other).
struct Slot {
    std::vector<WorkerId> workers;   ///< live, oldest first: an index, O(1) per slot
    bool active = false;             ///< part of the fleet (scaling turns slots on and off)
    Backoff backoff;
    TimePoint not_before{};          ///< earliest next start
    int exits_before_ready = 0;      ///< in a row; 3 or more: flapping
    std::optional<Ending> last_end;  ///< how its previous worker ended
    int restarts = 0;                ///< workers that replaced one (after an exit, or taking over)
    int recycles = 0;                ///< workers recycled (max_requests, max_rss, max_lifetime)
    bool started_once = false;
    // What its gone workers did, so that counters never go backwards.
    std::uint64_t retired_requests = 0;
    double retired_cpu_seconds = 0;
};

/// The latest rollout: a reload's new generation replacing the old one.
/// Canary analysis of a rollout (rollout.analysis): its first workers start, then are judged.
enum class CanaryPhase { none, starting, judging, passed };
const char* to_string(CanaryPhase phase);

struct Rollout {
    RolloutState state = RolloutState::none;
    long generation = 0;
    TimePoint started;
    int failures = 0;                   ///< new workers that failed before READY
    std::string reason;                 ///< why the last one failed
    std::optional<Spec> previous_spec;  ///< what a failure goes back to
    long previous_generation = 0;
    CanaryPhase canary = CanaryPhase::none;
    std::optional<TimePoint> judging_since;  ///< the canaries all took over their slots
    RequestStats canaries_at_start, old_at_start;  ///< each side's totals then
    std::string analysis;                    ///< the verdict's numbers, once judged
    bool waiting_logged = false;             ///< "not enough requests yet" said
    TimePoint judge_again{};                 ///< not enough yet: the next look
};

/// Preload (app.preload): the process a generation's workers are forked from, once it has
/// imported the app.
struct Zygote {
    long generation = 0;
    pid_t pid = 0;                         ///< 0 until the shell has started it
    bool ready = false;                    ///< it takes fork requests
    bool stopping = false;                 ///< told to go (StopZygote)
    TimePoint started_at;
    std::optional<TimePoint> ready_at;
    std::optional<TimePoint> kill_at;      ///< stopping: SIGKILL then
    bool boot_killed = false;              ///< not ready within boot_timeout: killed
    long pss_bytes = 0;                    ///< its last sample: the memory its workers share with it
};

/// A worker a previous image of the daemon left running (SIGUSR2 re-exec).
struct AdoptedWorker {
    pid_t pid = 0;
    int slot = 0;
    long generation = 0;
    bool ready = false;
    bool draining = false;
    Duration age{0};
};

class Fleet {
public:
    struct Options {
        Spec spec;                                  ///< workers resolved
        std::optional<std::uint64_t> memory_limit;  ///< the cgroup's, for the memory budget
        std::optional<Duration> watchdog_interval;  ///< systemd's watchdog, when it asks for pings
        bool systemd = false;                       ///< tell systemd READY, RELOADING, STATUS
        std::uint64_t seed = 0;                     ///< jitter (backoff, recycling)
    };

    Fleet(Options options, TimePoint now);
    // Moved, never copied: pids_ points into workers_' nodes, which a move keeps.
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;
    Fleet(Fleet&&) = default;
    Fleet& operator=(Fleet&&) = default;

    /// Takes one event at `now`; returns the actions to carry out, in order (those of the
    /// calls below since the last take_actions() first).
    std::vector<Action> handle(const Event& event, TimePoint now);
    /// The actions queued by the calls below.
    std::vector<Action> take_actions();

    /// A reload prepared by the shell: `next` is valid (workers resolved) and its listeners
    /// are open. Starts a new generation, rolled out by the next turns; returns its number.
    long reload(Spec next, const std::string& why, TimePoint now);
    /// `workerctl rollout promote`: a rollout under canary analysis goes on without waiting for
    /// the verdict. False when there is none.
    bool promote(TimePoint now);
    /// `workerctl rollout abort`: the running rollout fails now, as a bad canary would; the
    /// previous generation serves. False when none runs.
    bool abort_rollout(TimePoint now);
    /// Sets the fleet's size (1 .. kMaxWorkers); `pin`: the autoscaler leaves it alone until
    /// scale_auto().
    void scale(int target, const std::string& why, bool pin, TimePoint now);
    void scale_auto(TimePoint now);
    /// Rolls every serving worker of `slots` to a new one (each: successor first).
    void restart(const std::vector<int>& slots, const std::string& why);
    void stop(bool fast, TimePoint now);
    /// In a new image (SIGUSR2): the workers the previous one left, rolled to a new generation.
    void adopt(const std::vector<AdoptedWorker>& workers, long generation, int desired, bool pinned,
               const std::string& why, TimePoint now);

    /// Workers that would be judged hung now: the shell reads what waits on their pipes first.
    std::vector<pid_t> overdue(TimePoint now) const;
    /// Whether the shell should sample memory and queues (event::Samples) before the turn.
    bool sample_due(TimePoint now) const;
    /// Whether the samples need PSS and private memory (smaps_rollup), not just RSS: with
    /// preload (status, metrics and the budget show them) or max_private.
    bool memory_by_sharing() const {
        return spec_.app.preload || spec_.recycle.max_private.has_value() || spec_.recycle.leak.has_value();
    }
    /// When the next turn is due (now, when an event asked for one); nullopt: nothing pending.
    std::optional<TimePoint> next_deadline(TimePoint now) const;
    /// Whether the last events may have brought next_deadline() forward (a turn wanted at
    /// once, a worker's first message, a request in flight); reading it clears it.
    bool take_rearm() { return std::exchange(rearm_, false) || turn_due_; }
    /// Stopping, and no worker (nor zygote) is left.
    bool stopped() const { return mode_ != Mode::running && workers_.empty() && zygotes_.empty(); }

    // The state, for status, metrics, the handover and the simulator's invariants.
    const Spec& spec() const { return spec_; }
    long generation() const { return generation_; }
    Mode mode() const { return mode_; }
    const Rollout& rollout() const { return rollout_; }
    const std::map<WorkerId, Worker>& workers() const { return workers_; }
    /// Preload: the zygotes alive or starting, by generation.
    const std::map<long, Zygote>& zygotes() const { return zygotes_; }
    const Worker* by_pid(pid_t pid) const;
    const std::map<int, Slot>& slots() const { return slots_; }
    std::vector<const Worker*> workers_in(int slot) const;
    int desired() const { return desired_; }
    int ready() const;  ///< slots in the fleet with a serving worker
    bool rolling() const;
    /// The slot's worker as status shows it: the first that is not draining.
    const Worker* current_in(int slot) const;
    const RequestStats& retired_stats() const { return retired_stats_; }
    /// Answers by class per generation, gone workers' and live ones' (monotonic, for
    /// workerd_responses_total): the last kGenerationsKept generations that served.
    std::map<long, ResponseCounts> responses_by_generation() const;
    static constexpr long kGenerationsKept = 16;
    const std::map<std::string, std::uint64_t>& restarts_by_reason() const { return restarts_by_reason_; }
    /// Failed rollouts by cause: "boot", "canary", "aborted".
    const std::map<std::string, std::uint64_t>& rollbacks_by_cause() const { return rollbacks_by_cause_; }
    bool autoscale_pinned() const { return autoscale_pinned_; }
    const std::string& autoscale_view() const { return autoscale_view_; }
    const std::map<std::string, std::uint64_t>& autoscale_decisions() const { return autoscale_decisions_; }
    /// The memory budget in workers, when a limit (spec or cgroup) and a size per worker are known.
    std::optional<int> memory_cap() const;
    TimePoint started_at() const { return started_at_; }

private:
    void on(const event::Turn& e, TimePoint now);
    void on(const event::Signal& e, TimePoint now);
    void on(const event::Spawned& e, TimePoint now);
    void on(const event::SpawnFailed& e, TimePoint now);
    void on(const event::Exited& e, TimePoint now);
    void on(const event::Message& e, TimePoint now);
    void on(const event::BadLine& e, TimePoint now);
    void on(const event::Samples& e, TimePoint now);
    void on(const event::Late& e, TimePoint now);
    void on(const event::ZygoteStarted& e, TimePoint now);
    void on(const event::ZygoteFailed& e, TimePoint now);
    void on(const event::ZygoteReady& e, TimePoint now);

    // The turn's steps.
    void expire_deadlines(TimePoint now);
    void check_health(TimePoint now);
    void autoscale(TimePoint now);
    void reconcile(TimePoint now);
    void recycle(TimePoint now);
    void roll(TimePoint now);
    void finish_rollout(TimePoint now);
    void notify_systemd(TimePoint now);

    // What the steps do to workers and slots.
    /// Whether a worker may start now: this turn's spawns, and with preload a ready zygote of
    /// the fleet's generation (asked for here when there is none).
    bool may_spawn(TimePoint now);
    // Preload (fleet_zygote.cpp).
    bool zygote_ready(TimePoint now);
    bool memory_sampled() const;  ///< sample_due's settings: what needs the memory samples
    /// recycle.leak: a point on `w`'s memory trend, and the verdict when it is new.
    void watch_for_leak(Worker& w, TimePoint now);
    /// What a leaking `w` would run into, in the measure its trend follows (private memory,
    /// else RSS): max_private, max_rss, or its share of the memory limit; nullopt: none.
    std::optional<std::pair<long, std::string>> leak_limit(const Worker& w) const;
    /// The health policy `w` is held to: the spec's, with the longer of the spec's heartbeat
    /// timeout and the one `w` was started with (a reload to a shorter timeout must not find
    /// the workers that still beat by the longer one hung).
    HealthPolicy policy_for(const Worker& w) const;
    void fit_auto_to_memory();    ///< `workers: auto` down to the measured memory budget
    bool zygote_is_ready() const;
    bool on_zygote_exit(const event::Exited& e, TimePoint now);
    void zygote_failed(const Zygote& z, const std::string& what, TimePoint now);
    void tend_zygotes(TimePoint now);
    void wake_at(TimePoint t) { wake_at_ = wake_at_ ? std::min(*wake_at_, t) : t; }
    void spawn(int slot, TimePoint now);
    void drain(Worker& w, StopReason why, TimePoint now);
    void retire(Worker& w, StopReason why, std::string detail);
    void change(Worker& w, Change c);
    void mark_ready(Worker& w, TimePoint now, const char* how);
    void signal(const Worker& w, int sig, bool main_thread = false);
    void note(NoteKind kind, Level level, std::string text);
    void scale_to(int n, const std::string& why);
    void begin_stop(bool fast, TimePoint now);
    /// `why`: the reason logged and shown; empty: new workers failed before READY.
    /// `cause`: "boot" (new workers or their zygote failed before READY), "canary" (judged
    /// worse), "aborted" (workerctl rollout abort): the label of workerd_rollbacks_total.
    void fail_rollout(TimePoint now, const char* cause, const std::string& why = "");
    // Canary analysis (fleet_canary.cpp).
    bool canary_holds(int slot) const;  ///< the rollout must not touch this slot yet
    void analyse(TimePoint now);
    /// What `generation`'s workers served, gone ones included; with `older_too`, every older
    /// generation's as well.
    RequestStats generation_totals(long generation, bool older_too = false) const;
    /// rollout.analysis: the canaries a rollout starts with (fewer than the fleet: 0 for one
    /// worker, which has nothing to be compared with).
    int canaries_wanted() const;
    void note_spawn_failure(int slot, const std::string& what, Duration delay, TimePoint now);
    /// A worker the fleet wanted running ended: its slot restarts after the backoff, or not.
    void after_exit(const Worker& w, const std::string& ended, int status, TimePoint now);
    void forget(WorkerId id);
    Worker* find(pid_t pid);
    Worker* outgoing_in(const Slot& slot);   ///< its retiring worker (the newest, if two)
    Worker* successor_in(const Slot& slot);  ///< its worker of the current generation, if any
    int holders_in(const Slot& slot) const;
    int holders_in(int slot) const;
    std::string who(const Worker& w) const;
    double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

    Spec spec_;
    std::optional<std::uint64_t> memory_limit_;
    std::optional<Duration> watchdog_interval_;
    bool systemd_ = false;
    std::minstd_rand rng_;
    TimePoint started_at_;

    Mode mode_ = Mode::running;
    long generation_ = 1;
    long last_generation_ = 1;  ///< the highest generation started
    int desired_ = 0;
    Rollout rollout_;
    std::map<WorkerId, Worker> workers_;
    std::unordered_map<pid_t, Worker*> pids_;  ///< into workers_ (a map's nodes stay put)
    std::map<int, Slot> slots_;
    std::map<long, Zygote> zygotes_;
    Backoff zygote_backoff_;              ///< a zygote that keeps failing starts again after it
    TimePoint zygote_not_before_{};
    WorkerId next_id_ = 1;
    bool turn_due_ = true;   ///< a turn is wanted at once
    std::optional<TimePoint> wake_at_;  ///< a turn is wanted then (a successor to try again)
    bool rearm_ = false;
    int spawn_limit_ = kSpawnsPerTurn;
    int spawns_this_turn_ = 0;
    std::vector<Action> actions_;

    // The autoscaler, and samples for it and for recycling by memory.
    AutoscaleState autoscale_state_;
    bool autoscale_pinned_ = false;
    TimePoint next_autoscale_{};
    TimePoint next_sample_{};
    std::string autoscale_view_;
    std::map<std::string, std::uint64_t> autoscale_decisions_;
    int queue_depth_ = 0;
    // systemd.
    bool systemd_ready_sent_ = false;
    long systemd_reloading_ = 0;  ///< the generation systemd was told RELOADING for
    TimePoint next_watchdog_{};
    // The totals of gone workers, and why they went.
    RequestStats retired_stats_;
    std::map<long, RequestStats> retired_by_generation_;  ///< gone workers' counts (the last kGenerationsKept)
    QueueBuckets queue_seen_{};  ///< the fleet's queue-time counts at the last autoscale tick

    std::map<std::string, std::uint64_t> restarts_by_reason_;
    std::map<std::string, std::uint64_t> rollbacks_by_cause_;
    // Failed starts, logged at a bounded rate.
    std::string spawn_failure_logged_;
    TimePoint spawn_failure_logged_at_{};
    std::uint64_t spawn_failures_unlogged_ = 0;
};

/// "exited with status 3", "was killed by SIGKILL".
std::string describe_status(int wait_status);
/// "1.5s", "2m3s": a duration as the log shows it.
std::string seconds_text(Clock::duration d);

}  // namespace workerd::core
