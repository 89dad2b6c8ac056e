#pragma once

// Starting a worker's process, behind an interface the tests can replace (the way Ninja's
// CommandRunner has a fake): the fleet core asks for a spawn (slot, generation), the shell
// asks its Launcher, and the answer (a pid and the worker's pipes, or why not) goes back to
// the core as an event.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "daemon/os/listener.hpp"
#include "daemon/wire/spec.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// One worker to start.
struct LaunchRequest {
    int slot = 0;
    long generation = 0;
    const Spec* spec = nullptr;
    std::vector<std::shared_ptr<Listener>> listeners;  ///< the sockets it accepts on
    int board_fd = -1;                                 ///< the bundled workers' LoadBoard, or -1
    /// `reuse_port: cpu`: other slots' sockets (with their slot) a bundled worker may take from.
    std::vector<std::pair<int, std::shared_ptr<Listener>>> peers;
    /// Preload: the daemon's end of its generation's zygote socket; the worker is forked from
    /// it instead of started (-1: start the program).
    int zygote_fd = -1;
};

/// A started worker: its pid and the read ends of its stdout, stderr and protocol pipes.
struct Launched {
    pid_t pid = 0;
    std::string program;  ///< what runs, for the log
    UniqueFd out, err, notify;
};

class Launcher {
public:
    virtual ~Launcher() = default;
    /// Starts the worker and returns once its program runs. Throws (std::exception, with a
    /// plain one-line what()) when it cannot be started.
    virtual Launched launch(const LaunchRequest& request) = 0;
    /// Preload: starts the zygote of `request.generation` (the app's command, environment and
    /// identity; no listeners, no protocol pipe) with `zygote_end` as its fd 3
    /// (WORKERD_ZYGOTE_FD=3). Its stdout and stderr come back as `out` and `err`.
    virtual Launched launch_zygote(const LaunchRequest& request, int zygote_end) = 0;
};

/// The real one: pipes, the worker's command line and environment (docs/worker-protocol.md),
/// and spawn_process (fork or vfork, then exec).
class ProcessLauncher : public Launcher {
public:
    ProcessLauncher(std::string self_exe, std::vector<std::string> base_env)
        : self_exe_(std::move(self_exe)), base_env_(std::move(base_env)) {}
    Launched launch(const LaunchRequest& request) override;
    Launched launch_zygote(const LaunchRequest& request, int zygote_end) override;
    const std::vector<std::string>& base_env() const { return base_env_; }

private:
    std::string self_exe_;
    std::vector<std::string> base_env_;  ///< the daemon's environment, for workers
};

}  // namespace workerd
