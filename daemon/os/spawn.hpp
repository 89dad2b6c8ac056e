#pragma once

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace workerd {

/// Why a spawn failed before the child's program could start. what() is one plain line,
/// e.g. "cannot execute /opt/app/run: No such file or directory".
struct SpawnError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Everything needed to start one worker process.
struct SpawnRequest {
    std::vector<std::string> argv;  ///< argv[0] is a path or a name looked up in the env's PATH
    std::string cwd;                ///< working directory; empty = the daemon's
    std::vector<std::string> env;   ///< "KEY=VALUE" entries, the child's whole environment
    /// Become fd 3, 4, ... in the child, in this order: the listeners first (LISTEN_FDS counts
    /// them, per the sd_listen_fds convention), then any descriptor given on purpose after them.
    std::vector<int> inherit_fds;
    int stdin_fd = -1;              ///< becomes the child's fd 0 (-1: /dev/null)
    int stdout_fd = -1;             ///< becomes the child's fd 1 (-1: /dev/null)
    int stderr_fd = -1;             ///< becomes the child's fd 2 (-1: /dev/null)
    /// The identity to switch to before exec (setgroups, setgid, setuid), when the daemon is
    /// root. `user` names the account whose supplementary groups the child gets (initgroups).
    std::optional<unsigned> uid;
    std::optional<unsigned> gid;
    std::string user;
    /// Killed with SIGKILL when the daemon dies (PR_SET_PDEATHSIG): every worker; not the
    /// guardian, which outlives the daemon on purpose.
    bool die_with_parent = true;
};

/// Starts a child and returns its pid once its program is running (execve succeeded).
///
/// The child gets exactly fds 0 (/dev/null), 1, 2 and `inherit_fds` as 3, 4, ...; every other
/// descriptor is closed at exec. LISTEN_FDS and LISTEN_FDNAMES are taken from `env`, and
/// LISTEN_PID is set to the child's own pid between fork and exec (add "LISTEN_FDS=..." to
/// `env` yourself; any LISTEN_PID entry in `env` is replaced). The child runs in its own
/// process group (a terminal's Ctrl-C reaches only the daemon, which stops the workers), with
/// default signal dispositions and an empty signal mask, and is killed with SIGKILL if the
/// daemon dies (PR_SET_PDEATHSIG, set after the switch of user, which would clear it; unless
/// `die_with_parent` is false).
///
/// Never reaps: a child whose exec failed has already exited and is left for the one reaper.
/// Throws SpawnError when the program cannot be found or executed, or the cwd is unusable.
pid_t spawn_process(const SpawnRequest& request);

/// Raises this process's soft limit on open files to its hard limit (the daemon holds three
/// pipes per worker, and up to 1024 workers), and has every child spawned from now on start
/// with the soft limit as it was: programs that use select() expect 1024, as systemd keeps it
/// for services. Returns the new soft limit.
unsigned long raise_open_file_limit();
/// Puts the soft limit back as it was before raise_open_file_limit (before a re-exec, whose
/// new image raises it again and so learns the original).
void restore_open_file_limit();

/// The NULL-terminated array of pointers exec takes, into `strings` (which must outlive it
/// unchanged).
std::vector<char*> exec_array(std::vector<std::string>& strings);

/// Resolves a command name the way execvp would, using `path_env` (a PATH value). Returns
/// the name unchanged when it contains a '/'. Empty when nothing executable is found.
std::string resolve_executable(const std::string& name, const std::string& path_env);

}  // namespace workerd
