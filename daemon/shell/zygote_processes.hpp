#pragma once

// Preload: the zygote processes, one per generation (what they are for and when they start and
// go is the core's: daemon/core/fleet_zygote.cpp). The shell holds the daemon's end of each
// one's socket, logs its output, and waits for its first message: the app is imported.

#include <sys/types.h>

#include <array>
#include <functional>
#include <map>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "daemon/os/output_pipe.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

class ZygoteProcesses {
public:
    using Ready = std::function<void(long generation)>;

    ZygoteProcesses(boost::asio::io_context& io, Ready on_ready);

    /// A zygote just started: `socket` is the daemon's end; `out` and `err` its output.
    void add(long generation, pid_t pid, UniqueFd socket, UniqueFd out, UniqueFd err);
    /// The daemon's end of the generation's socket once its zygote said it is ready; else -1.
    int socket_of(long generation) const;
    /// Closes its socket (the zygote ends when it sees that) and sends SIGTERM.
    void stop(long generation, pid_t pid);
    /// A child was reaped: forgets it if it was a zygote.
    void reaped(pid_t pid);

private:
    struct Zygote {
        long generation = 0;
        pid_t pid = 0;
        UniqueFd socket;
        std::unique_ptr<boost::asio::posix::stream_descriptor> waiter;  ///< a dup of socket, until ready
        bool ready = false;
        std::array<std::weak_ptr<OutputPipe>, 2> pipes;
    };
    void wait_ready(long generation);

    boost::asio::io_context& io_;
    Ready on_ready_;
    std::map<long, Zygote> zygotes_;
};

}  // namespace workerd
