#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "daemon/backoff.hpp"
#include "daemon/control_server.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/sd_notify.hpp"
#include "daemon/slot_listeners.hpp"
#include "daemon/health.hpp"
#include "daemon/listener.hpp"
#include "daemon/listen_queue.hpp"
#include "daemon/guardian.hpp"
#include "daemon/handover.hpp"
#include "daemon/load_board.hpp"
#include "daemon/notify.hpp"
#include "daemon/orphans.hpp"
#include "daemon/unique_fd.hpp"
#include "daemon/spec.hpp"
#include "daemon/worker_state.hpp"

namespace workerd {

using Clock = std::chrono::steady_clock;

class OutputPipe;

/// How the daemon was started, besides its spec and listeners.
struct DaemonStart {
    std::string self_exe;              ///< the workerd binary: serve-builtin, and SIGUSR2's re-exec
    std::vector<std::string> argv;     ///< the daemon's own command line, for the re-exec
    bool allow_root = false;           ///< `--allow-root`: workers may run as root without `user: root`
    std::optional<Handover> handover;  ///< what the previous image left (SIGUSR2 re-exec)
};

/// The daemon's supervisor: one event loop, one thread. It keeps `workers` processes of the
/// current generation running on the listeners, replaces those that exit (with per-slot
/// backoff), and stops the fleet on TERM (graceful) or INT/QUIT (fast).
class Arbiter {
public:
    /// Listeners are open (or inherited); a handover's control and metrics sockets and workers
    /// are adopted here. Throws ListenError when the control or metrics socket cannot be made.
    Arbiter(Spec spec, std::vector<Listener> listeners, DaemonStart start);

    /// Runs until the fleet is stopped; returns the daemon's exit code.
    int run();

    /// One control command (docs/control-protocol.md); throws ControlError.
    nlohmann::json control(const std::string& command, const nlohmann::json& args);

private:
    enum class Mode { running, stopping_graceful, stopping_fast };

    struct Worker {
        int slot = 0;
        long generation = 0;
        pid_t pid = 0;
        WorkerState state = WorkerState::spawning;
        Clock::time_point started_at;
        std::optional<Clock::time_point> kill_at;  ///< SIGKILL if still alive then
        HealthState health;                        ///< fed by its protocol messages
        std::optional<Escalation> escalation;      ///< set once judged hung
        RequestStats stats;                        ///< its last STATS
        std::string status;                        ///< its last STATUS=
        bool in_overlong_line = false;             ///< discarding the rest of a long line
        std::uint64_t bad_lines = 0;               ///< malformed or over-long protocol lines
        std::uint64_t bad_lines_logged = 0;
        std::optional<Clock::time_point> bad_lines_logged_at;
        std::string replace_reason;                ///< set: replace it (recycle, restart)
        std::string replace_kind;                  ///< for metrics: max_requests, max_rss, max_lifetime, restart
        std::optional<std::uint64_t> request_limit;  ///< max_requests + this worker's jitter
        std::optional<Clock::time_point> retire_at;  ///< max_lifetime + this worker's jitter
        long rss_bytes = 0;                        ///< last sample, when max_rss is set
        /// The listeners it was started with: an old generation's sockets stay open until
        /// its last worker is gone, even when a reload changed `listen`.
        std::vector<std::shared_ptr<Listener>> listeners;
        /// Its stdout, stderr and protocol pipes, read by the loop; handed over on SIGUSR2.
        std::array<std::weak_ptr<OutputPipe>, 3> pipes;
    };

    struct Slot {
        std::vector<pid_t> pids;        ///< its live workers, oldest first (two while replacing)
        Backoff backoff;
        Clock::time_point not_before;   ///< earliest next start
        int exits_before_ready = 0;     ///< in a row; 3 or more: flapping
        std::string last_exit;          ///< why the last worker in this slot ended
        bool active = false;            ///< part of the fleet (scaling turns slots on and off)
        int restarts = 0;               ///< workers started in this slot after the first
        int recycles = 0;               ///< workers recycled (max_requests, max_rss, max_lifetime)
        // What the slot's gone workers did, so that counters never go backwards.
        std::uint64_t retired_requests = 0;
        double retired_cpu_seconds = 0;
        bool started_once = false;
    };

    /// The latest rollout: a reload's new generation replacing the old one (recycles and
    /// restarts go through the same steps without a new generation).
    struct Rollout {
        enum class State { none, running, done, failed };
        State state = State::none;
        long generation = 0;
        Clock::time_point started;
        int failures = 0;               ///< new workers that failed before READY
        std::string reason;             ///< why it failed
        // What to go back to when it fails.
        std::optional<Spec> previous_spec;
        long previous_generation = 0;
        std::vector<std::shared_ptr<Listener>> previous_listeners;
    };

    // The loop: every event (signal, timer) ends in tick().
    void tick();
    /// A turn of the loop soon, after the events already waiting.
    void request_tick();
    void set_timer(Clock::time_point at);
    /// The timer fired: the loop's lateness, if any, is excused before the turn.
    void on_timer();
    /// The loop could not read the workers' pipes for `delay` (a long turn, a late timer):
    /// their heartbeat clocks move on by that much (excuse_delay), so the daemon never takes
    /// its own lateness for a worker's silence.
    void excuse_loop_delay(Clock::duration delay, Clock::time_point now, const char* why);
    /// Whether this turn may still spawn: spawning is synchronous (fork, then wait for the
    /// exec), so a turn spends at most kSpawnBudget on it and the next turn goes on.
    bool may_spawn();
    void handle_signals();
    void reap_children();
    void expire_deadlines(Clock::time_point now);
    void check_health(Clock::time_point now);
    void on_notify(pid_t pid, std::string_view line, bool truncated);
    void note_bad_line(Worker& worker, std::string_view what, Clock::time_point now);
    void mark_ready(Worker& worker, Clock::time_point now, const char* how);
    void send_signal(Worker& worker, int sig);
    void reconcile(Clock::time_point now);
    void arm_timer(Clock::time_point now);

    void wait_for_signal();
    void handle_exit(pid_t pid, int status, double cpu_seconds, Clock::time_point now);
    /// A worker ended: what it started and left behind (the rest of its process group, and
    /// orphans that left the group and came to the daemon, a child subreaper) gets SIGTERM,
    /// and SIGKILL after graceful_timeout (at once when stopping now).
    void release_leftovers(const Worker& worker, Clock::time_point now);
    /// Starts the guardian (daemon/guardian.hpp) and names every live worker's group to it.
    void start_guardian();
    MetricsResponse metrics_endpoint(const std::string& path);
    std::string metrics_text(Clock::time_point now);
    void spawn_worker(int slot, Clock::time_point now);
    /// Logs a failed start: a new reason at once, the same one at a bounded rate.
    void note_spawn_failure(int slot, const std::string& what, Duration delay, Clock::time_point now);
    /// Starts reading a worker's stdout, stderr and protocol pipe (read ends).
    void watch_pipes(Worker& worker, UniqueFd out, UniqueFd err, UniqueFd notify);
    /// SIGUSR2: re-executes the workerd binary in place (same pid), handing over the
    /// listeners, the control and metrics sockets and the workers. Returns (logged) when the
    /// new binary fails its check or exec fails: the running daemon carries on.
    void upgrade();
    /// In the new image: takes over the previous one's workers and rolls them.
    void adopt(Handover& handover, Clock::time_point now);
    void drain(Worker& worker, Clock::time_point now);
    void kill_now(Worker& worker);
    void begin_stop(Mode mode, Clock::time_point now);
    /// Stopping: the daemon's copies of the listening sockets close, so that new connections
    /// are refused (not queued for workers that no longer accept, and reset later) once the
    /// workers close theirs. In-flight requests finish. Sockets systemd holds (socket
    /// activation) keep listening for the next daemon.
    void stop_listening();
    void transition(Worker& worker, WorkerEvent event);
    std::vector<ListenAddress> listen_addresses() const;
    /// The sockets a worker in `slot` accepts on: the fleet's listeners, or with `reuse_port`
    /// the slot's own (SlotListeners).
    std::vector<std::shared_ptr<Listener>> listeners_for(int slot);
    /// Connections waiting on `l`, and on every slot's socket for it (reuse_port).
    std::optional<ListenQueue> queue_of(const Listener& l) const;
    /// Found hung after it was ready: its replacement starts at once (live_workers_in_slot).
    static bool replaced_when_hung(const Worker& w);
    int live_workers_in_slot(int slot) const;
    const Worker* live_worker_in_slot(int slot) const;
    /// The slot's live workers, oldest first: an index, so per-slot questions cost O(1) and
    /// not a walk over the whole fleet (which made every turn O(workers^2) at 1024 workers).
    std::vector<Worker*> workers_in(int slot);
    std::vector<const Worker*> workers_in(int slot) const;
    /// Adds a started (or adopted) worker to the fleet and the slot's index.
    Worker& add_worker(Worker worker);
    int desired() const;
    int ready_workers() const;
    /// Sets the fleet to `n` workers: new slots start, the least busy surplus workers drain.
    void scale_to(int n, const std::string& why);
    /// Queues slots for a rolling restart (each: new worker first, old one drained).
    /// Marks workers for replacement through the rollout path.
    void restart_slots(const std::vector<int>& slots, const std::string& why);
    /// Re-reads the spec; a valid one starts a new generation. Throws ControlError (and logs)
    /// when the spec is invalid or a new listener cannot be opened: nothing changes then.
    nlohmann::json reload(const std::string& why);
    /// One step of replacing workers: old generation, or flagged (recycle, restart).
    void roll(Clock::time_point now);
    void fail_rollout(Clock::time_point now);
    void check_recycling(Clock::time_point now);
    /// sd_notify: READY once the fleet is first ready, READY again after a reload's rollout,
    /// and WATCHDOG pings while the loop turns.
    void notify_systemd(Clock::time_point now);
    /// Once a second when `autoscale` is on and the size is not pinned: decide and scale.
    void autoscale(Clock::time_point now);
    /// The memory budget in workers, when a limit (cgroup or spec) is known.
    std::optional<int> memory_cap() const;
    bool is_outgoing(const Worker& w) const;
    Worker* successor_in_slot(int slot, pid_t outgoing);
    bool rolling() const;
    nlohmann::json status_json(Clock::time_point now);
    nlohmann::json config_json() const;

    Spec spec_;
    std::vector<std::shared_ptr<Listener>> listeners_;
    SlotListeners slot_listeners_;  ///< reuse_port: each slot's own sockets
    std::string self_exe_;
    std::vector<std::string> argv_;
    bool allow_root_ = false;
    boost::asio::io_context io_;
    boost::asio::signal_set signals_;
    boost::asio::steady_timer timer_;
    std::deque<int> pending_signals_;
    std::map<pid_t, Worker> workers_;
    std::map<int, Slot> slots_;
    std::minstd_rand rng_;
    Mode mode_ = Mode::running;
    long generation_ = 1;
    Clock::time_point started_at_ = Clock::now();
    Clock::time_point turn_started_{};            ///< when the current turn of the loop began
    Clock::time_point last_turn_end_{};           ///< when the previous one ended
    std::optional<Clock::time_point> timer_due_;  ///< what the timer is armed for
    bool tick_requested_ = false;                 ///< a turn was asked for since the last one
    bool spawns_deferred_ = false;                ///< this turn left spawns for the next
    Rollout rollout_;
    Clock::time_point next_rss_sample_{};
    std::map<pid_t, std::pair<Clock::time_point, long>> cpu_samples_;  ///< for CPU% in status
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<MetricsServer> metrics_;
    // The autoscaler: its memory, whether workerctl pinned the size, and what it decided.
    AutoscaleState autoscale_state_;
    bool autoscale_pinned_ = false;
    Clock::time_point next_autoscale_{};
    std::string autoscale_view_;
    std::map<std::string, std::uint64_t> autoscale_decisions_;
    std::optional<std::uint64_t> cgroup_memory_limit_;
    SystemdNotifier systemd_ = SystemdNotifier::from_environment();
    bool systemd_ready_sent_ = false;
    long systemd_reloading_ = 0;  ///< the generation systemd was told RELOADING for
    Clock::time_point next_watchdog_{};
    // Fleet totals of gone workers (requests, latency) and restarts by reason, for /metrics.
    RequestStats retired_stats_;
    std::map<std::string, std::uint64_t> restarts_by_reason_;
    std::vector<std::string> base_env_;  ///< the daemon's environment, for workers
    UniqueFd board_;  ///< the bundled workers' LoadBoard; empty for external commands
    std::string spawn_failure_logged_;  ///< the last failed start logged, when, and how many since
    Clock::time_point spawn_failure_logged_at_{};
    std::uint64_t spawn_failures_unlogged_ = 0;
    Guardian guardian_;  ///< kills the workers' process groups if the daemon dies
    Orphans orphans_;    ///< what gone workers left behind, until it is gone too
};

}  // namespace workerd
