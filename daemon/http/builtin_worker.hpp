#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace workerd::http {

/// Settings of one bundled-worker process. The daemon passes them as command-line flags of
/// `workerd serve-builtin`; the listeners arrive as inherited fds (LISTEN_FDS, from fd 3).
struct BuiltinWorkerOptions {
    std::vector<int> listen_fds;          ///< already-listening sockets to accept on
    std::string root;                     ///< static files; empty = no static files
    bool demo = false;                    ///< serve /demo/*
    bool precompressed = true;            ///< serve file.br / file.gz to clients that take them
    int max_connections = 1024;           ///< open connections past this get a 503 and close
    std::chrono::milliseconds keepalive_timeout{5000};
    std::uint64_t max_header_size = 16 * 1024;  ///< 431 past this
    std::uint64_t max_body_size = 1024 * 1024;  ///< 413 past this
    int slot = -1;                        ///< from WORKERD_SLOT, for /demo/whoami
    long generation = -1;                 ///< from WORKERD_GENERATION, for /demo/whoami
    int board_fd = -1;                    ///< from WORKERD_BOARD_FD: the fleet's LoadBoard
    /// From WORKERD_PEER_FDS ("FD:SLOT,..."; `reuse_port: cpu`): other slots' sockets, taken
    /// from only while their own worker holds clearly more connections (or is gone).
    std::vector<std::pair<int, int>> peer_fds;
    /// From WORKERD_QUEUE_TIMEOUT_MS (spec: queue_timeout): a request that waited longer in the
    /// kernel gets 503 at once. 0: never.
    std::chrono::milliseconds queue_timeout{0};
    /// From WORKERD_MAX_CONCURRENCY (spec: max_concurrency): a request past this many in
    /// flight gets 503 at once. 0: no cap.
    long max_concurrency = 0;
};

/// Parses `serve-builtin` flags (argv after the subcommand) and the environment
/// (LISTEN_FDS/LISTEN_PID, WORKERD_SLOT, WORKERD_GENERATION, WORKERD_BOARD_FD, WORKERD_PEER_FDS,
/// WORKERD_QUEUE_TIMEOUT_MS, WORKERD_MAX_CONCURRENCY). Throws std::invalid_argument
/// with a one-line message on bad input.
BuiltinWorkerOptions parse_builtin_worker_args(const std::vector<std::string>& args);

/// Runs the worker until SIGTERM/SIGINT (graceful drain) or SIGQUIT (immediate). Returns the
/// process exit code.
int run_builtin_worker(const BuiltinWorkerOptions& options);

}  // namespace workerd::http
