#pragma once

// The shell around the fleet core (daemon/core/fleet.hpp): one event loop, one thread. It
// turns what happens (signals, reaped children, protocol lines, control requests, timers) into
// events for the core and carries out the actions the core returns (spawn, signal, notify
// systemd, log). It decides nothing about the fleet itself. What it holds for the kernel lives
// in parts of its own: the listening sockets (FleetSockets), the worker processes' pipes,
// leftovers and guardian (WorkerProcesses), process launching (Launcher), /metrics
// (metrics_endpoint.hpp) and SIGUSR2's re-exec (upgrade.hpp).

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "daemon/core/fleet.hpp"
#include "daemon/os/listener.hpp"
#include "daemon/os/sd_notify.hpp"
#include "daemon/os/unique_fd.hpp"
#include "daemon/shell/control_server.hpp"
#include "daemon/shell/fleet_sockets.hpp"
#include "daemon/shell/launcher.hpp"
#include "daemon/shell/metrics_server.hpp"
#include "daemon/shell/worker_processes.hpp"
#include "daemon/shell/zygote_processes.hpp"
#include "daemon/wire/handover.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd {

using Clock = std::chrono::steady_clock;

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
    // The loop (arbiter.cpp).
    void wait_for_signal();
    void on_signal(int sig);
    void reap_children();
    /// A turn of the core: what waits on overdue workers' pipes is read, samples are taken
    /// when due, then the Turn event; the timer is armed for the next deadline.
    void turn();
    /// Hands one event to the core and carries out what it returns.
    void deliver(const core::Event& event);
    void arm_timer();
    void set_timer(Clock::time_point at);
    void on_timer();
    /// The loop could not read the workers' pipes for `delay`: the core excuses it.
    void excuse_loop_delay(Clock::duration delay, const char* why);
    core::event::Samples take_samples();

    // Carrying out the core's actions (arbiter_actions.cpp).
    void carry_out(std::vector<core::Action> actions);
    void launch(const core::action::Spawn& spawn);
    /// Preload: starts a generation's zygote; answers the core with ZygoteStarted or ZygoteFailed.
    void start_zygote(long generation);
    void on_protocol_line(pid_t pid, std::string_view line, bool overlong);
    /// Stopping: the daemon's copies of the listening sockets close, so that new connections
    /// are refused once the workers close theirs. Sockets systemd holds stay open.
    void stop_listening();

    // Control, status, reload and SIGUSR2 (arbiter_control.cpp).
    /// Re-reads the spec; a valid one starts a new generation. Throws ControlError (and logs)
    /// when the spec is invalid or a new listener cannot be opened: nothing changes then.
    nlohmann::json reload(const std::string& why);
    nlohmann::json status_json(Clock::time_point now);
    /// Re-executes the workerd binary in place, handing over the listeners, sockets and
    /// workers (upgrade.hpp); returns (logged) when that fails and carries on.
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
    FleetSockets sockets_;
    WorkerProcesses processes_;
    ZygoteProcesses zygotes_;
    Clock::time_point last_turn_end_{};           ///< when the previous one ended
    std::optional<Clock::time_point> timer_due_;  ///< what the timer is armed for
    Clock::duration spawn_cost_{std::chrono::milliseconds(1)};  ///< a spawn's recent duration
    std::map<pid_t, std::pair<Clock::time_point, double>> cpu_samples_;  ///< for CPU% in status
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<MetricsServer> metrics_;
    UniqueFd board_;     ///< the bundled workers' LoadBoard; empty for external commands
};

}  // namespace workerd
