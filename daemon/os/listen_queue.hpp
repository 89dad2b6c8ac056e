#pragma once

#include <cstdint>
#include <optional>

namespace workerd {

/// How full a listening socket's accept queue is: connections waiting for a worker to accept
/// them, and the most it can hold. The saturation signal that says "add workers".
struct ListenQueue {
    std::uint32_t depth = 0;
    std::uint32_t max = 0;
};

/// For a TCP listener (TCP_INFO: tcpi_unacked / tcpi_sacked) or a Unix one (sock_diag netlink:
/// UNIX_DIAG_RQLEN, which reads the queue of a listening socket correctly, unlike /proc).
/// nullopt when the kernel does not say.
std::optional<ListenQueue> listen_queue(int fd, bool unix_socket);

}  // namespace workerd
