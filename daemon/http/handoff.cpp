#include "daemon/http/handoff.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

namespace workerd::http {
namespace {

// "\0workerd-handoff-TOKEN-PID": an abstract name (gone with the socket), and its length.
socklen_t inbox_address(const std::string& token, pid_t pid, sockaddr_un& addr) {
    const std::string name = "workerd-handoff-" + token + "-" + std::to_string(pid);
    addr = {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path + 1, name.data(), name.size());  // (well under sun_path's 108)
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

bool is_tcp_stream(int fd) {
    int type = 0;
    int domain = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
    len = sizeof domain;
    return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && (domain == AF_INET || domain == AF_INET6);
}

}  // namespace

std::optional<Handoff> Handoff::open(const std::string& token) {
    UniqueFd inbox(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    UniqueFd out(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!inbox || !out) return std::nullopt;
    sockaddr_un addr{};
    const socklen_t len = inbox_address(token, ::getpid(), addr);
    const int on = 1;
    if (::bind(inbox.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::setsockopt(inbox.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
        return std::nullopt;
    }
    Handoff h(std::move(inbox), std::move(out), token);
    h.buffer_.resize(kMaxBytes);
    return h;
}

bool Handoff::send(pid_t pid, int fd, std::string_view bytes) {
    if (bytes.size() > kMaxBytes) return false;
    sockaddr_un addr{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_name = &addr;
    msg.msg_namelen = inbox_address(token_, pid, addr);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n = 0;
    do {
        n = ::sendmsg(out_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(bytes.size());
}

std::optional<Handoff::Received> Handoff::receive() {
    while (true) {
        // Room for more than one descriptor and the sender's credentials: a datagram with more
        // is refused whole rather than leaving descriptors behind.
        alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int)) + CMSG_SPACE(sizeof(ucred))];
        iovec iov{buffer_.data(), buffer_.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t n = ::recvmsg(inbox_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::nullopt;  // empty (or broken: the same to the caller)
        }
        std::vector<UniqueFd> fds;
        std::optional<ucred> from;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET) continue;
            if (c->cmsg_type == SCM_RIGHTS) {
                const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < count; ++i) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    fds.emplace_back(fd);
                }
            } else if (c->cmsg_type == SCM_CREDENTIALS) {
                ucred cred{};
                std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
                from = cred;
            }
        }
        const bool whole = (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) == 0;
        if (whole && fds.size() == 1 && from && from->uid == ::getuid() && is_tcp_stream(fds.front().get())) {
            return Received{std::move(fds.front()), std::string_view(buffer_.data(), static_cast<std::size_t>(n))};
        }
        // Anything else is dropped, descriptors closed (fds' destructors).
    }
}

}  // namespace workerd::http
