#pragma once

#include <string>
#include <vector>

#include "daemon/wire/spec.hpp"

namespace workerd {

/// The argv one worker runs: for `app.builtin`, `self_exe serve-builtin` with the builtin
/// settings as flags; for `app.command`, the command with fds substituted.
std::vector<std::string> worker_argv(const AppSpec& app, const std::vector<ListenAddress>& listeners,
                                     const std::string& self_exe);

/// The worker's whole environment: `base` ("KEY=VALUE", normally the daemon's own) without
/// any inherited LISTEN_* entries, then app.env, then LISTEN_FDS, LISTEN_FDNAMES,
/// WORKERD_SLOT and WORKERD_GENERATION. LISTEN_PID is added by spawn_process in the child.
/// Workers that run as `user` get its USER, LOGNAME and HOME (as systemd's User= does),
/// unless app.env sets them.
std::vector<std::string> worker_env(const std::vector<std::string>& base, const AppSpec& app,
                                    const std::vector<ListenAddress>& listeners, int slot,
                                    long generation, const RunAsSpec& run_as = {});

/// The calling process's environment as "KEY=VALUE" entries.
std::vector<std::string> current_environment();

}  // namespace workerd
