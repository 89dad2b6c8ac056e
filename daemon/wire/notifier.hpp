#pragma once

#include <chrono>
#include <string_view>

#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// The worker's end of the worker protocol (docs/worker-protocol.md): finds its pipe through
/// WORKERD_NOTIFY_FD and writes one message per line, never blocking. Outside workerd (no
/// WORKERD_NOTIFY_FD) every send is a no-op.
class Notifier {
public:
    /// Takes the pipe named in the environment (and removes the variable, so children the
    /// worker starts do not write into it).
    static Notifier from_environment();

    Notifier() = default;
    explicit Notifier(UniqueFd fd, std::chrono::milliseconds watchdog = {});

    bool active() const { return fd_.valid(); }
    /// How often to look at the worker's state and send what changed: a third of
    /// WORKERD_WATCHDOG_USEC, at most 1 s.
    std::chrono::milliseconds heartbeat_interval() const { return interval_; }
    /// The longest an idle worker may go without a message: a third of WORKERD_WATCHDOG_USEC
    /// (10 s without it). Idle workers are quiet, so that a large idle fleet costs the daemon
    /// little; the deadline the daemon holds them to is three of these.
    std::chrono::milliseconds quiet_interval() const { return quiet_; }

    /// Sends "KEY=VALUE\n". Dropped (not queued) when the pipe is full or gone: a worker never
    /// waits on the daemon.
    void send(std::string_view key, std::string_view value);

private:
    UniqueFd fd_;
    std::chrono::milliseconds interval_{1000};
    std::chrono::milliseconds quiet_{10000};
};

}  // namespace workerd
