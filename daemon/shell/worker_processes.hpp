#pragma once

// The worker processes as the shell holds them: each one's sockets and pipes while it lives,
// what gone workers left behind (their process groups, orphans that came to the daemon), and
// the guardian that kills the workers' groups if the daemon dies. The core decides when a
// worker starts and stops; this class keeps what the kernel needs kept meanwhile.

#include <sys/types.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "daemon/core/events.hpp"
#include "daemon/os/guardian.hpp"
#include "daemon/os/orphans.hpp"
#include "daemon/os/unique_fd.hpp"
#include "daemon/shell/fleet_sockets.hpp"
#include "daemon/wire/handover.hpp"

namespace workerd {

class OutputPipe;

class WorkerProcesses {
public:
    using Clock = std::chrono::steady_clock;
    /// A line from a worker's protocol pipe; `overlong`: a line past kMaxNotifyLine, dropped
    /// (reported once, `line` empty).
    using ProtocolLine = std::function<void(pid_t pid, std::string_view line, bool overlong)>;

    WorkerProcesses(boost::asio::io_context& io, std::string self_exe, ProtocolLine on_line);

    /// Starts the guardian (logged when it cannot be), watching every worker there is.
    void start_guardian();
    /// The guardian a previous image started (SIGUSR2).
    void adopt_guardian(pid_t pid, UniqueFd pipe) { guardian_ = Guardian::adopt(pid, std::move(pipe)); }

    /// A worker started or was adopted: its sockets stay open while it lives, its stdout and
    /// stderr go to the log and its protocol lines to `on_line`, and the guardian watches its
    /// process group.
    void add(pid_t pid, int slot, FleetSockets::Set sockets, UniqueFd out, UniqueFd err, UniqueFd notify);
    /// Reads what waits on the worker's protocol pipe now, before it is judged late.
    void read_protocol_now(pid_t pid);
    /// The sockets a worker was started with (empty for a pid that is no worker).
    const FleetSockets::Set& sockets_of(pid_t pid) const;
    /// Every socket a live worker holds (older generations' included).
    std::set<std::shared_ptr<Listener>> all_sockets() const;

    bool is_guardian(pid_t pid) const { return guardian_.running() && pid == guardian_.pid(); }
    /// A child of the daemon was reaped: a leftover of that number is gone.
    void reaped(pid_t pid) { orphans_.reaped(pid); }
    /// The guardian was reaped; with `restart`, another is started.
    void guardian_lost(bool restart);
    /// A reaped worker's sockets and pipes go (after the core has heard of its exit).
    void forget(pid_t pid) { processes_.erase(pid); }

    /// What a gone worker left behind gets SIGTERM (SIGKILL `at_once`), and SIGKILL after
    /// `grace`; logged.
    /// `spare`: children of the daemon that are no orphans though no worker (preload's zygotes).
    void release_leftovers(const core::action::ReleaseLeftovers& gone, Duration grace, const std::set<pid_t>& spare);
    /// A fast stop: SIGKILL to all of it now.
    void kill_leftovers(Clock::time_point now) { orphans_.kill_all(now); }
    /// SIGKILLs what is due; the guardian forgets groups that are gone.
    void expire(Clock::time_point now);
    std::optional<Clock::time_point> next_deadline() const { return orphans_.next_deadline(); }
    bool leftovers() const { return !orphans_.empty(); }

    /// SIGUSR2: the worker's pipes (stdout, stderr, protocol) and the guardian.
    void hand_over(pid_t pid, HandedWorker& w) const;
    void hand_over(Handover& h) const;

private:
    struct Process {
        /// The sockets it was started with: an old generation's stay open until its last
        /// worker is gone, even when a reload changed `listen`.
        FleetSockets::Set sockets;
        /// Its stdout, stderr and protocol pipes, read by the loop; handed over on SIGUSR2.
        std::array<std::weak_ptr<OutputPipe>, 3> pipes;
    };

    boost::asio::io_context& io_;
    std::string self_exe_;
    ProtocolLine on_line_;
    std::map<pid_t, Process> processes_;
    Guardian guardian_;  ///< kills the workers' process groups if the daemon dies
    Orphans orphans_;    ///< what gone workers left behind, until it is gone too
};

}  // namespace workerd
