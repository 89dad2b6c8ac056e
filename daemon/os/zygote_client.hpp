#pragma once

// The daemon's side of the zygote protocol (preload; the zygote's side is
// packaging/python/workerd_uvicorn/zygote.py, the protocol in docs/worker-protocol.md): messages
// on a SOCK_SEQPACKET pair, JSON, descriptors by SCM_RIGHTS.

#include <sys/types.h>

#include <chrono>
#include <optional>

#include "daemon/os/spawn.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// The pair: the daemon's end, and the end the zygote gets as its fd 3 (WORKERD_ZYGOTE_FD).
struct ZygotePair {
    UniqueFd daemon_end;
    UniqueFd zygote_end;
};
ZygotePair make_zygote_pair();

/// The zygote's first message, if it has come: the pid it says it runs as once the app is
/// imported. nullopt: nothing yet; 0: the zygote closed its end (it is ending). Throws
/// SpawnError when it said something else.
std::optional<pid_t> read_zygote_ready(int daemon_end);

/// Asks the zygote for a worker as `request` describes it (its environment, stdout, stderr and
/// inherited descriptors as fds 3, 4, ...; argv, cwd and identity are the zygote's own) and
/// returns its pid. The worker becomes this process's child once the zygote's intermediate
/// exits (the daemon must be a child subreaper). Throws SpawnError when the zygote refuses,
/// is gone, or does not answer within `timeout`.
pid_t fork_from_zygote(int daemon_end, const SpawnRequest& request, std::chrono::milliseconds timeout);

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER): a
/// worker forked by a zygote is reparented here.
void become_child_subreaper();

}  // namespace workerd
