#include "daemon/os/sd_notify.hpp"

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
        if (value > 0) {
            n.watchdog_ = std::chrono::milliseconds(std::max(1LL, value / 2000));
            n.watchdog_usec_ = value;
        }
    }
    if (socket_path != nullptr && (socket_path[0] == '/' || socket_path[0] == '@')) {
        n.path_ = socket_path;
        n.fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    }
    for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) ::unsetenv(name);
    return n;
}

std::vector<std::string> SystemdNotifier::environment() const {
    std::vector<std::string> env;
    if (!path_.empty()) env.push_back("NOTIFY_SOCKET=" + path_);
    if (watchdog_usec_ > 0) {
        env.push_back("WATCHDOG_USEC=" + std::to_string(watchdog_usec_));
        env.push_back("WATCHDOG_PID=" + std::to_string(::getpid()));
    }
    return env;
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
