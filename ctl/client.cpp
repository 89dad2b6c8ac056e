#include "ctl/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace workerctl {

using json = nlohmann::json;

Client::Client(const std::string& socket_path, std::chrono::milliseconds timeout)
    : path_(socket_path), timeout_(timeout) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) {
        throw Failure(kUsage, fmt::format("socket path too long: {}", socket_path));
    }
    std::strcpy(addr.sun_path, socket_path.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw Failure(kFailed, fmt::format("socket: {}", std::strerror(errno)));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        ::close(fd_);
        fd_ = -1;
        if (err == EACCES || err == EPERM) {
            throw Failure(kForbidden, fmt::format("permission denied on {}: this user may not control that daemon", socket_path));
        }
        if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
            throw Failure(kNotRunning, fmt::format("workerd is not running (no daemon at {})", socket_path));
        }
        throw Failure(kFailed, fmt::format("cannot connect to {}: {}", socket_path, std::strerror(err)));
    }
}

Client::~Client() {
    if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> Client::read_line() {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
        const auto nl = pending_.find('\n');
        if (nl != std::string::npos) {
            std::string line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            return line;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) throw Failure(kTimeout, fmt::format("no answer from the daemon at {} within {} ms", path_, timeout_.count()));
        pollfd p{fd_, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char buf[65536];
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;  // closed
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

namespace {
json reply_result(const json& reply) {
    if (reply.value("ok", false)) return reply.value("result", json::object());
    const json error = reply.value("error", json::object());
    const std::string code = error.value("code", "error");
    const std::string message = error.value("message", "the daemon refused the request");
    throw Failure(code == "forbidden" ? kForbidden : kFailed, message);
}
}  // namespace

json Client::call(const std::string& command, const json& args) {
    auto result = call_allowing_close(command, args);
    if (result.is_null()) throw Failure(kFailed, "the daemon closed the connection without an answer");
    return result;
}

json Client::call_allowing_close(const std::string& command, const json& args) {
    const std::string line = json{{"id", next_id_++}, {"command", command}, {"args", args}}.dump() + "\n";
    std::size_t sent = 0;
    while (sent < line.size()) {
        const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            // A refused client is answered and closed at once: read that answer if it is there.
            if (auto reply = read_line()) reply_result(json::parse(*reply, nullptr, false));
            throw Failure(kFailed, fmt::format("lost the connection to {}: {}", path_, std::strerror(errno)));
        }
        sent += static_cast<std::size_t>(n);
    }
    const auto reply_line = read_line();
    if (!reply_line) return nullptr;
    const json reply = json::parse(*reply_line, nullptr, false);
    if (reply.is_discarded()) throw Failure(kFailed, "the daemon's answer is not JSON");
    return reply_result(reply);
}

}  // namespace workerctl
