#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <vector>

namespace workerd {

/// What a worker left behind when it ended: the rest of its process group (what it forked: a
/// gunicorn master's workers), and processes that left the group but came to the daemon as
/// orphans (the daemon is a child subreaper). Each gets SIGTERM at once, to finish what it is
/// doing, and SIGKILL at its deadline, so that none keeps the listen socket.
class Orphans {
public:
    using Clock = std::chrono::steady_clock;

    /// Sends `signal` to `target` (-PGID for a group, a pid for one process) and SIGKILL at
    /// `kill_at` if it is still there. Returns false when there was nothing to signal.
    bool terminate(pid_t target, Clock::time_point kill_at, int signal);
    /// SIGKILLs what is due at `now`, and forgets what is gone. Returns the groups found gone
    /// (for the guardian). What was SIGKILLed is looked at again every kRecheck until it is
    /// gone: a group whose processes are not the daemon's children sends no SIGCHLD.
    std::vector<pid_t> expire(Clock::time_point now);
    /// Whether `target` is being stopped already.
    bool tracks(pid_t target) const { return due_.count(target) > 0; }
    /// SIGKILL to everything at `now` (a fast stop).
    void kill_all(Clock::time_point now);
    /// A child of the daemon was reaped: a pid target of that number is gone (and may be
    /// reused from now on).
    void reaped(pid_t pid) { due_.erase(pid); }
    /// When expire() next has something to do (a SIGKILL to send, a killed target to look at).
    std::optional<Clock::time_point> next_deadline() const;
    bool empty() const { return due_.empty(); }
    std::size_t size() const { return due_.size(); }

    static constexpr std::chrono::milliseconds kRecheck{100};

private:
    struct Due {
        Clock::time_point next;  ///< SIGKILL then, or (killed) look again then
        bool killed = false;
    };
    std::map<pid_t, Due> due_;  ///< by target
};

/// Whether the process group `pgid` still has a process (a zombie counts).
bool group_alive(pid_t pgid);

/// The daemon's own children (/proc/self/task/*/children); empty where the kernel lacks it.
std::vector<pid_t> children_of_this_process();

}  // namespace workerd
