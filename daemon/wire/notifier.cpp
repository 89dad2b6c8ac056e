#include "daemon/wire/notifier.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace workerd {

Notifier Notifier::from_environment() {
    const char* fd_text = std::getenv("WORKERD_NOTIFY_FD");
    const char* usec_text = std::getenv("WORKERD_WATCHDOG_USEC");
    const int fd = fd_text != nullptr ? std::atoi(fd_text) : -1;
    const long long usec = usec_text != nullptr ? std::atoll(usec_text) : 0;
    ::unsetenv("WORKERD_NOTIFY_FD");
    if (fd < 3 || ::fcntl(fd, F_GETFD) < 0) return {};
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    return Notifier(UniqueFd(fd), std::chrono::milliseconds(usec / 1000));
}

Notifier::Notifier(UniqueFd fd, std::chrono::milliseconds watchdog) : fd_(std::move(fd)) {
    ::fcntl(fd_.get(), F_SETFL, ::fcntl(fd_.get(), F_GETFL) | O_NONBLOCK);
    if (watchdog.count() > 0) {
        quiet_ = std::max(watchdog / 3, std::chrono::milliseconds(10));
        interval_ = std::min(quiet_, interval_);
    }
}

void Notifier::send(std::string_view key, std::string_view value) {
    if (!fd_) return;
    // One write of the whole line: pipe writes up to PIPE_BUF are atomic, so the daemon never
    // sees half a message unless it is longer than that.
    std::string line;
    line.reserve(key.size() + value.size() + 2);
    line.append(key).append("=").append(value).append("\n");
    if (::write(fd_.get(), line.data(), line.size()) < 0 && errno == EPIPE) fd_.reset();
}

}  // namespace workerd
