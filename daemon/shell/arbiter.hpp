#pragma once

// The shell around the fleet core (daemon/core/fleet.hpp): one event loop, one thread. It
// turns what happens (signals, reaped children, protocol lines, control requests, timers) into
// events for the core and carries out the actions the core returns (spawn, signal, notify
// systemd, log). It decides nothing about the fleet itself.

#include <sys/types.h>

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "daemon/shell/control_server.hpp"
#include "daemon/core/fleet.hpp"
#include "daemon/os/guardian.hpp"
#include "daemon/wire/handover.hpp"
#include "daemon/shell/launcher.hpp"
#include "daemon/os/listen_queue.hpp"
#include "daemon/os/listener.hpp"
#include "daemon/shell/metrics_server.hpp"
#include "daemon/os/orphans.hpp"
#include "daemon/os/sd_notify.hpp"
#include "daemon/os/slot_listeners.hpp"
#include "daemon/wire/spec.hpp"
#include "daemon/os/unique_fd.hpp"

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
    /// What the shell keeps of a running worker process: its sockets and pipes.
    struct Process {
        /// The listeners it was started with: an old generation's sockets stay open until its
        /// last worker is gone, even when a reload changed `listen`.
        std::vector<std::shared_ptr<Listener>> listeners;
        /// Its stdout, stderr and protocol pipes, read by the loop; handed over on SIGUSR2.
        std::array<std::weak_ptr<OutputPipe>, 3> pipes;
    };

    // The loop (arbiter.cpp).
    void wait_for_signal();
    void on_signal(int sig);
    void reap_children();
    /// A turn of the core: what waits on overdue workers' pipes is read, samples are taken
    /// when due, then the Turn event; the timer is armed for the next deadline.
    void turn();
    /// Hands one event to the core and carries out what it returns.
    void deliver(const core::Event& event);
    void carry_out(std::vector<core::Action> actions);
    void launch(const core::action::Spawn& spawn);
    void arm_timer();
    void set_timer(Clock::time_point at);
    void on_timer();
    /// The loop could not read the workers' pipes for `delay`: the core excuses it.
    void excuse_loop_delay(Clock::duration delay, const char* why);
    void watch_pipes(pid_t pid, int slot, UniqueFd out, UniqueFd err, UniqueFd notify);
    void on_notify(pid_t pid, std::string_view line, bool truncated, bool& in_overlong_line);
    /// A worker ended: what it started and left behind (the rest of its process group, and
    /// orphans that left the group and came to the daemon, a child subreaper) gets SIGTERM,
    /// and SIGKILL after graceful_timeout (at once when stopping now).
    void release_leftovers(const core::action::ReleaseLeftovers& gone);
    /// Stopping: the daemon's copies of the listening sockets close, so that new connections
    /// are refused once the workers close theirs. Sockets systemd holds stay open.
    void stop_listening();
    void start_guardian();
    core::event::Samples take_samples();
    std::vector<std::shared_ptr<Listener>> listeners_for(int slot);
    /// Connections waiting on `l`, and on every slot's socket for it (reuse_port).
    std::optional<ListenQueue> queue_of(const Listener& l) const;

    // Control, status and reload (arbiter_control.cpp).
    /// Re-reads the spec; a valid one starts a new generation. Throws ControlError (and logs)
    /// when the spec is invalid or a new listener cannot be opened: nothing changes then.
    nlohmann::json reload(const std::string& why);
    nlohmann::json status_json(Clock::time_point now);
    nlohmann::json config_json() const;

    // Metrics (arbiter_metrics.cpp).
    MetricsResponse metrics_endpoint(const std::string& path);
    std::string metrics_text(Clock::time_point now);

    // SIGUSR2 (upgrade.cpp): re-executes the workerd binary in place, handing over the
    // listeners, sockets and workers; returns (logged) when that fails and carries on.
    void upgrade();
    void adopt(Handover& handover);

    const Spec& spec() const { return fleet_.spec(); }

    std::string self_exe_;
    std::vector<std::string> argv_;
    bool allow_root_ = false;
    boost::asio::io_context io_;
    boost::asio::signal_set signals_;
    boost::asio::steady_timer timer_;
    SystemdNotifier systemd_ = SystemdNotifier::from_environment();
    core::Fleet fleet_;
    std::unique_ptr<Launcher> launcher_;
    std::vector<std::string> base_env_;
    std::vector<std::shared_ptr<Listener>> listeners_;
    std::vector<std::shared_ptr<Listener>> previous_listeners_;  ///< what a failed rollout goes back to
    SlotListeners slot_listeners_;  ///< reuse_port: each slot's own sockets
    std::map<pid_t, Process> processes_;
    Clock::time_point last_turn_end_{};           ///< when the previous one ended
    std::optional<Clock::time_point> timer_due_;  ///< what the timer is armed for
    Clock::duration spawn_cost_{std::chrono::milliseconds(1)};  ///< a spawn's recent duration
    std::map<pid_t, std::pair<Clock::time_point, long>> cpu_samples_;  ///< for CPU% in status
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<MetricsServer> metrics_;
    UniqueFd board_;     ///< the bundled workers' LoadBoard; empty for external commands
    Guardian guardian_;  ///< kills the workers' process groups if the daemon dies
    Orphans orphans_;    ///< what gone workers left behind, until it is gone too
};

}  // namespace workerd
