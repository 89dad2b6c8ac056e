#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// The daemon's side of systemd's sd_notify protocol (Type=notify): datagrams to the socket in
/// NOTIFY_SOCKET. Without NOTIFY_SOCKET every send is a no-op. The variables are removed from
/// the environment, so workers never talk to systemd on the daemon's behalf.
class SystemdNotifier {
public:
    static SystemdNotifier from_environment();

    bool active() const { return fd_.valid(); }
    /// "READY=1\nSTATUS=..." and the like; failures are ignored (systemd may be gone).
    void send(const std::string& state) const;
    /// Half of WATCHDOG_USEC when systemd asked for watchdog pings (WatchdogSec=).
    std::optional<std::chrono::milliseconds> watchdog_interval() const { return watchdog_; }
    /// NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID as they were, for the daemon's own
    /// re-exec (SIGUSR2): the same pid keeps talking to systemd.
    std::vector<std::string> environment() const;

private:
    UniqueFd fd_;
    std::string path_;
    std::optional<std::chrono::milliseconds> watchdog_;
    long long watchdog_usec_ = 0;
};

}  // namespace workerd
