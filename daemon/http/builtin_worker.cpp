#include "daemon/http/builtin_worker.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "daemon/http/event_loop.hpp"
#include "daemon/http/server.hpp"

namespace workerd::http {
namespace {

long long parse_number(const std::string& flag, const std::string& value, long long min) {
    std::size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size() || v < min) {
        throw std::invalid_argument(flag + " needs a number >= " + std::to_string(min) + ", not '" + value + "'");
    }
    return v;
}

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
}

}  // namespace

BuiltinWorkerOptions parse_builtin_worker_args(const std::vector<std::string>& args) {
    BuiltinWorkerOptions o;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& flag = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw std::invalid_argument(flag + " needs a value");
            return args[++i];
        };
        if (flag == "--root") {
            o.root = value();
        } else if (flag == "--demo") {
            o.demo = true;
        } else if (flag == "--no-precompressed") {
            o.precompressed = false;
        } else if (flag == "--max-connections") {
            o.max_connections = static_cast<int>(parse_number(flag, value(), 1));
        } else if (flag == "--keepalive-timeout") {
            o.keepalive_timeout = std::chrono::milliseconds(parse_number(flag, value(), 0));
        } else if (flag == "--max-header-size") {
            o.max_header_size = static_cast<std::uint64_t>(parse_number(flag, value(), 1024));
        } else if (flag == "--max-body-size") {
            o.max_body_size = static_cast<std::uint64_t>(parse_number(flag, value(), 0));
        } else if (flag == "--listen-fd") {
            o.listen_fds.push_back(static_cast<int>(parse_number(flag, value(), 0)));
        } else {
            throw std::invalid_argument("unknown flag " + flag);
        }
    }
    // The systemd convention: LISTEN_FDS sockets start at fd 3 and are ours only when
    // LISTEN_PID names this process.
    const char* fds = env("LISTEN_FDS");
    const char* pid = env("LISTEN_PID");
    if (o.listen_fds.empty() && fds != nullptr && (pid == nullptr || std::atol(pid) == ::getpid())) {
        const long long n = parse_number("LISTEN_FDS", fds, 0);
        for (long long i = 0; i < n; ++i) o.listen_fds.push_back(3 + static_cast<int>(i));
    }
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDNAMES");
    if (o.listen_fds.empty()) throw std::invalid_argument("no listen sockets (LISTEN_FDS or --listen-fd)");
    if (const char* slot = env("WORKERD_SLOT")) o.slot = std::atoi(slot);
    if (const char* gen = env("WORKERD_GENERATION")) o.generation = std::atol(gen);
    if (const char* board = env("WORKERD_BOARD_FD")) {
        o.board_fd = static_cast<int>(parse_number("WORKERD_BOARD_FD", board, 3));
    }
    if (const char* peers = env("WORKERD_PEER_FDS")) {
        // "5:1,6:0": fd 5 is slot 1's socket, fd 6 slot 0's.
        std::string_view rest(peers);
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            const std::string item(rest.substr(0, comma));
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
            const auto colon = item.find(':');
            if (colon == std::string::npos) throw std::invalid_argument("WORKERD_PEER_FDS: '" + item + "' is not FD:SLOT");
            o.peer_fds.emplace_back(static_cast<int>(parse_number("WORKERD_PEER_FDS", item.substr(0, colon), 3)),
                                    static_cast<int>(parse_number("WORKERD_PEER_FDS", item.substr(colon + 1), 0)));
        }
    }
    if (const char* ms = env("WORKERD_QUEUE_TIMEOUT_MS")) {
        o.queue_timeout = std::chrono::milliseconds(parse_number("WORKERD_QUEUE_TIMEOUT_MS", ms, 0));
    }
    if (const char* n = env("WORKERD_MAX_CONCURRENCY")) o.max_concurrency = static_cast<long>(parse_number("WORKERD_MAX_CONCURRENCY", n, 0));
    return o;
}

int run_builtin_worker(const BuiltinWorkerOptions& options) {
    ::signal(SIGPIPE, SIG_IGN);
    // The daemon's signals (reload, reopen logs, upgrade) mean nothing to a worker; one that
    // reaches it by mistake (`systemctl kill` without --kill-whom=main) must not end it.
    for (int sig : {SIGHUP, SIGUSR1, SIGUSR2}) ::signal(sig, SIG_IGN);
    for (int fd : options.listen_fds) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    for (const auto& [fd, slot] : options.peer_fds) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    EventLoop loop;
    Server server(loop, options);
    // The server has mapped the load board; the mapping outlives the descriptor.
    if (options.board_fd >= 0) ::close(options.board_fd);

    // TERM/INT: drain (finish in-flight requests, close keep-alive connections without racing
    // the client), then exit 0. QUIT: exit at once.
    loop.on_signals({SIGTERM, SIGINT, SIGQUIT}, [&](int sig) {
        if (sig == SIGQUIT) return loop.stop();
        server.drain([&] { loop.stop(); });
    });
    server.start(options.listen_fds, options.peer_fds);
    loop.run();
    return 0;
}

}  // namespace workerd::http
