#pragma once

// The guardian: the one process that outlives the daemon, so that nothing a worker started
// outlives the fleet.
//
// Workers die with the daemon (PR_SET_PDEATHSIG), but what they fork does not: a gunicorn
// master killed with the daemon leaves its forked workers holding the listen socket. Every
// worker leads its own process group, and what it forks stays in that group (unless it calls
// setsid). The daemon names each worker's group to the guardian over a pipe; when the pipe
// reaches end of stream (the daemon exited or was killed, even with SIGKILL), the guardian
// SIGKILLs the groups still named and exits.

#include <sys/types.h>

#include <string>

#include "daemon/os/unique_fd.hpp"

namespace workerd {

class Guardian {
public:
    /// Starts `self_exe guard` (its stdin the read end of a pipe; no parent-death signal,
    /// its own process group). Throws SpawnError or std::system_error.
    static Guardian start(const std::string& self_exe);
    /// The guardian a previous image of the daemon started (SIGUSR2 re-exec): its pid and the
    /// pipe's write end.
    static Guardian adopt(pid_t pid, UniqueFd pipe);

    Guardian() = default;
    bool running() const { return pipe_.valid(); }
    pid_t pid() const { return pid_; }
    /// The pipe's write end (handed over across a re-exec); -1 without a guardian.
    int fd() const { return pipe_.get(); }

    /// The worker `pgid` leads a group of the fleet: kill it if the daemon dies.
    void watch(pid_t pgid) { send('+', pgid); }
    /// The group is gone (or no longer the fleet's).
    void forget(pid_t pgid) { send('-', pgid); }
    /// The guardian ended (reaped by the daemon): nothing more is sent to it.
    void lost() { pipe_.reset(); }

private:
    Guardian(pid_t pid, UniqueFd pipe) : pid_(pid), pipe_(std::move(pipe)) {}
    void send(char op, pid_t pgid);

    pid_t pid_ = 0;
    UniqueFd pipe_;
};

/// `workerd guard`: the guardian's main. Reads "+PGID" and "-PGID" lines from `in` until end
/// of stream, then SIGKILLs every group still named. Terminal and stop signals are ignored:
/// only the daemon's end, or SIGKILL, ends it. Returns 0.
int run_guardian(int in);

}  // namespace workerd
