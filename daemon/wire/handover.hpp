#pragma once

// Sockets and workers a starting daemon receives instead of making them:
// - from systemd (socket activation): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, sd_listen_fds(3);
// - from itself across a SIGUSR2 re-exec: WORKERD_HANDOVER, a JSON description of its listen,
//   control and metrics sockets and of its live workers (pid, slot, generation, pipes).

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/os/listener.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// A listening socket handed to the daemon at start.
struct InheritedSocket {
    UniqueFd fd;
    std::string name;        ///< LISTEN_FDNAMES entry, or the listener's name in a handover
    bool owns_path = false;  ///< a Unix socket file the daemon created (removed at exit)
    bool activated = false;  ///< systemd's (socket activation), directly or through a handover
};

/// A worker the previous daemon image left running, to be adopted and then rolled.
struct HandedWorker {
    pid_t pid = 0;
    int slot = 0;
    long generation = 0;
    bool ready = false;
    bool draining = false;
    long age_ms = 0;
    /// Read ends of its stdout, stderr and protocol pipes (-1 when already closed).
    int stdout_fd = -1, stderr_fd = -1, notify_fd = -1;
};

/// A worker slot's own socket (`reuse_port: true`) for the listener at `listener` in the
/// handover's list.
struct SlotSocket {
    int slot = 0;
    int listener = 0;
    int fd = -1;
};

/// What a daemon passes to its re-executed self.
struct Handover {
    static constexpr const char* kVariable = "WORKERD_HANDOVER";
    long generation = 0;
    int desired = 0;
    bool pinned = false;                    ///< `workerctl scale N` pinned the size
    std::vector<InheritedSocket> listeners;
    int control_fd = -1;
    int metrics_fd = -1;
    pid_t guardian_pid = 0;   ///< the guardian (daemon/os/guardian.hpp) and its pipe's write end
    int guardian_fd = -1;
    std::vector<HandedWorker> workers;
    std::vector<SlotSocket> slot_sockets;   ///< reuse_port: every slot's own sockets
    /// The spec in effect (its text): the new image runs the same spec, so an upgrade changes
    /// the binary only and cannot fail on a spec edited since the last reload. Empty from an
    /// image that did not send it: the spec file is read then.
    std::string spec_text;

    /// Every descriptor it names, for clearing and restoring close-on-exec.
    std::vector<int> fds() const;
};

/// The handover as JSON (descriptors by number; they survive exec without close-on-exec).
nlohmann::json handover_to_json(const Handover& h);
/// Parses what handover_to_json wrote. Throws std::invalid_argument on anything malformed
/// (a missing field, a negative pid, a descriptor that is not open).
Handover handover_from_json(const nlohmann::json& j);

/// WORKERD_HANDOVER taken from the environment (and removed from it), with every descriptor
/// made close-on-exec again. nullopt when absent. Throws std::invalid_argument when malformed.
std::optional<Handover> take_handover();

/// systemd's sockets (LISTEN_FDS from fd 3, when LISTEN_PID is this process), made
/// close-on-exec; the variables are removed from the environment. Empty without them.
std::vector<InheritedSocket> take_listen_fds();

/// Whether `fd` is a listening stream socket bound where `address` says: the same Unix path,
/// or the same IP and port (a port 0 in the spec matches any port).
bool socket_bound_to(int fd, const ListenAddress& address);

/// The listeners for `addresses`, in order: an inherited socket is used where one matches
/// (first one with the address's name, then any bound to exactly that address), the others
/// are bound. Used sockets are taken out of `inherited`; what is left matched nothing.
/// Throws ListenError like open_listeners.
std::vector<Listener> adopt_or_open_listeners(const std::vector<ListenAddress>& addresses, int backlog,
                                              std::vector<InheritedSocket>& inherited, bool reuse_port = false);

}  // namespace workerd
