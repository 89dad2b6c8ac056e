#include "daemon/shell/launcher.hpp"

#include <fmt/format.h>

#include "daemon/wire/notify.hpp"
#include "daemon/os/output_pipe.hpp"
#include "daemon/os/spawn.hpp"
#include "daemon/os/worker_command.hpp"
#include "daemon/os/zygote_client.hpp"

namespace workerd {

Launched ProcessLauncher::launch(const LaunchRequest& r) {
    const Spec& spec = *r.spec;
    std::vector<ListenAddress> addresses;
    for (const auto& l : r.listeners) addresses.push_back(l->address());
    PipePair out = make_pipe();
    PipePair err = make_pipe();
    PipePair notify = make_pipe();
    SpawnRequest request;
    request.argv = worker_argv(spec.app, addresses, self_exe_);
    request.cwd = spec.app.cwd;
    request.env = worker_env(base_env_, spec.app, addresses, r.slot, r.generation, spec.run_as);
    for (const auto& l : r.listeners) request.inherit_fds.push_back(l->fd());
    if (!r.peers.empty()) {
        std::string peers;
        for (const auto& [slot, l] : r.peers) {
            peers += fmt::format("{}{}:{}", peers.empty() ? "" : ",", 3 + request.inherit_fds.size(), slot);
            request.inherit_fds.push_back(l->fd());
        }
        request.env.push_back("WORKERD_PEER_FDS=" + peers);
    }
    if (r.board_fd >= 0) {
        request.env.push_back(fmt::format("WORKERD_BOARD_FD={}", 3 + request.inherit_fds.size()));
        request.inherit_fds.push_back(r.board_fd);
    }
    // The worker protocol (docs/worker-protocol.md).
    request.env.push_back(fmt::format("WORKERD_NOTIFY_FD={}", 3 + request.inherit_fds.size()));
    request.env.push_back(fmt::format("WORKERD_PROTOCOL={}", kProtocolVersion));
    if (spec.health.mode != HeartbeatMode::off) {
        request.env.push_back(fmt::format(
            "WORKERD_WATCHDOG_USEC={}", std::chrono::duration_cast<std::chrono::microseconds>(spec.health.timeout).count()));
    }
    // Load shedding, for the workers that do it (the bundled one, workerd_uvicorn).
    if (spec.shed.queue_timeout) {
        request.env.push_back(fmt::format(
            "WORKERD_QUEUE_TIMEOUT_MS={}", std::chrono::duration_cast<std::chrono::milliseconds>(*spec.shed.queue_timeout).count()));
    }
    if (spec.shed.max_concurrency) request.env.push_back(fmt::format("WORKERD_MAX_CONCURRENCY={}", *spec.shed.max_concurrency));
    request.inherit_fds.push_back(notify.write_end.get());
    request.stdout_fd = out.write_end.get();
    request.stderr_fd = err.write_end.get();
    request.uid = spec.run_as.uid;
    request.gid = spec.run_as.gid;
    request.user = spec.run_as.user.value_or("");
    Launched launched;
    // Preload: forked from the zygote, which answers in milliseconds.
    launched.pid = r.zygote_fd >= 0 ? fork_from_zygote(r.zygote_fd, request, std::chrono::seconds(2)) : spawn_process(request);
    launched.program = request.argv.front();
    launched.out = std::move(out.read_end);
    launched.err = std::move(err.read_end);
    launched.notify = std::move(notify.read_end);
    return launched;
}

Launched ProcessLauncher::launch_zygote(const LaunchRequest& r, int zygote_end) {
    const Spec& spec = *r.spec;
    PipePair out = make_pipe();
    PipePair err = make_pipe();
    // {fd} in the command means what it will in the workers forked from it (their listeners
    // are fds 3, 4, ...; the zygote's own fd 3 is its socket, and it opens no listener).
    std::vector<ListenAddress> addresses;
    for (const auto& l : r.listeners) addresses.push_back(l->address());
    SpawnRequest request;
    request.argv = worker_argv(spec.app, addresses, self_exe_);
    request.cwd = spec.app.cwd;
    // A worker's environment without a slot or listeners: each forked worker gets its own.
    request.env = worker_env(base_env_, spec.app, {}, -1, r.generation, spec.run_as);
    request.inherit_fds.push_back(zygote_end);
    request.env.push_back("WORKERD_ZYGOTE_FD=3");
    request.stdout_fd = out.write_end.get();
    request.stderr_fd = err.write_end.get();
    request.uid = spec.run_as.uid;
    request.gid = spec.run_as.gid;
    request.user = spec.run_as.user.value_or("");
    Launched launched;
    launched.pid = spawn_process(request);
    launched.program = request.argv.front();
    launched.out = std::move(out.read_end);
    launched.err = std::move(err.read_end);
    return launched;
}

}  // namespace workerd
