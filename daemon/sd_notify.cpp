#include "daemon/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace workerd {

SystemdNotifier SystemdNotifier::from_environment() {
    SystemdNotifier n;
    const char* socket_path = std::getenv("NOTIFY_SOCKET");
    const char* usec = std::getenv("WATCHDOG_USEC");
    const char* pid = std::getenv("WATCHDOG_PID");
    if (usec != nullptr && (pid == nullptr || std::atol(pid) == ::getpid())) {
        const long long value = std::atoll(usec);
        if (value > 0) n.watchdog_ = std::chrono::milliseconds(std::max(1LL, value / 2000));
    }
    if (socket_path != nullptr && (socket_path[0] == '/' || socket_path[0] == '@')) {
        n.path_ = socket_path;
        n.fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    }
    for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) ::unsetenv(name);
    return n;
}

void SystemdNotifier::send(const std::string& state) const {
    if (!fd_ || path_.size() >= sizeof(sockaddr_un::sun_path)) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
    [[maybe_unused]] const auto sent = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL,
                                                reinterpret_cast<const sockaddr*>(&addr), len);
}

}  // namespace workerd
