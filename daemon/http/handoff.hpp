#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "daemon/os/unique_fd.hpp"

namespace workerd::http {

/// Hands an open client connection, with the bytes already read from it, to another bundled
/// worker of the fleet, and takes in those handed to this one.
///
/// Why: the load board spreads connections evenly, so each worker serves half of every
/// client thread's connections, whatever CPU that thread runs on. For a large file that costs
/// a few percent of the transfer rate against the same answer served from the client's own CPU
/// (docs/benchmarks.md); a small answer gains from the spread. So a worker asked for a large
/// file on a connection whose packets come in on another worker's CPU (SO_INCOMING_CPU, and the
/// board's record of where each worker last ran) passes the connection there, once, and that
/// worker answers it and the ones after it.
///
/// Each worker's inbox is a Unix datagram socket in the abstract namespace named by the fleet's
/// board token (random, readable only by holders of the board) and the worker's pid, so no
/// other fleet's or process's name can collide with it; a sender with another uid is refused.
/// A datagram carries one descriptor (SCM_RIGHTS) and the bytes. A send that cannot go at once
/// (no such inbox, a full one) fails, and the sender serves the request itself.
class Handoff {
public:
    /// The most bytes a handed connection carries: its request head (the request's, and any
    /// pipelined after it).
    static constexpr std::size_t kMaxBytes = 64 * 1024;

    /// Binds this process's inbox for the fleet with `token` (LoadBoard::token()); nullopt when
    /// it cannot be (then this worker neither hands nor takes connections).
    static std::optional<Handoff> open(const std::string& token);

    /// The inbox: readable when a connection waits in it.
    int inbox() const { return inbox_.get(); }

    /// Sends `fd` and `bytes` (at most kMaxBytes) to the inbox of worker `pid`. False when they
    /// did not go: the connection is still this process's alone.
    bool send(pid_t pid, int fd, std::string_view bytes);

    /// A connection taken from the inbox, with its bytes (valid until the next receive()).
    struct Received {
        UniqueFd fd;
        std::string_view bytes;
    };
    /// The next connection in the inbox; nullopt when it is empty. What is not a TCP connection
    /// from a process of this uid is closed and skipped.
    std::optional<Received> receive();

private:
    Handoff(UniqueFd inbox, UniqueFd out, std::string token)
        : inbox_(std::move(inbox)), out_(std::move(out)), token_(std::move(token)) {}

    UniqueFd inbox_;
    UniqueFd out_;  ///< unbound: sends to any inbox
    std::string token_;
    std::string buffer_;
};

}  // namespace workerd::http
