#include "daemon/os/listener.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace workerd {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

[[noreturn]] void fail(const char* call, const ListenAddress& address, int err) {
    throw ListenError(fmt::format("{} {} failed: {}", call, address.to_string(), errno_text(err)));
}

void listen_or_fail(int fd, const ListenAddress& address, int backlog) {
    if (::listen(fd, backlog) != 0) fail("listen", address, errno);
}

// A Unix socket path that already exists: replace it if nobody accepts on it (a daemon that
// died without cleaning up), refuse it if a live server is there or if it is not a socket.
void clear_stale_unix_path(const ListenAddress& address, const sockaddr_un& sun) {
    struct stat st {};
    if (::lstat(address.path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        fail("stat", address, errno);
    }
    if (!S_ISSOCK(st.st_mode)) {
        throw ListenError(fmt::format("bind {} failed: {} exists and is not a socket",
                                      address.to_string(), address.path));
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) fail("socket", address, errno);
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&sun), sizeof sun) == 0) {
        throw ListenError(fmt::format(
            "bind {} failed: another process is accepting on {} (a live socket)",
            address.to_string(), address.path));
    }
    if (errno != ECONNREFUSED) fail("connect (probing existing socket)", address, errno);
    spdlog::info("removing stale unix socket {}", address.path);
    if (::unlink(address.path.c_str()) != 0 && errno != ENOENT) fail("unlink", address, errno);
}

Listener open_unix(const ListenAddress& address, int backlog) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (address.path.size() >= sizeof sun.sun_path) {
        throw ListenError(fmt::format("bind {} failed: path is longer than {} bytes",
                                      address.to_string(), sizeof sun.sun_path - 1));
    }
    std::memcpy(sun.sun_path, address.path.c_str(), address.path.size() + 1);
    clear_stale_unix_path(address, sun);

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) fail("socket", address, errno);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sun), sizeof sun) != 0) {
        fail("bind", address, errno);
    }
    listen_or_fail(fd.get(), address, backlog);
    return Listener(address, std::move(fd), backlog, /*owns_path=*/true);
}

Listener open_tcp(ListenAddress address, int backlog, bool reuse_port) {
    const ResolvedAddress ai = resolve_listen_address(address);
    UniqueFd fd(::socket(ai.family, ai.socktype | SOCK_CLOEXEC, ai.protocol));
    if (!fd) fail("socket", address, errno);
    int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        fail("setsockopt SO_REUSEADDR", address, errno);
    }
    if (reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        fail("setsockopt SO_REUSEPORT", address, errno);
    }
    if (ai.family == AF_INET6 &&
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
        fail("setsockopt IPV6_V6ONLY", address, errno);
    }
    // Linux copies TCP_NODELAY from a listener to the connections it accepts. Workers that
    // take a socket by number often do not know it is TCP (uvicorn --fd wraps it as AF_UNIX
    // and so never sets the option), and Nagle plus delayed ACKs then add ~40 ms to replies
    // written in pieces. Setting it here makes every worker's connections behave.
    if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        fail("setsockopt TCP_NODELAY", address, errno);
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ai.addr), ai.len) != 0) fail("bind", address, errno);
    listen_or_fail(fd.get(), address, backlog);

    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
        fail("getsockname", address, errno);
    }
    address.port = port_of(bound);
    return Listener(std::move(address), std::move(fd), backlog, /*owns_path=*/false);
}

}  // namespace

ResolvedAddress resolve_listen_address(const ListenAddress& address) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(address.port);
    const char* host = address.host.empty() ? nullptr : address.host.c_str();
    if (int rc = ::getaddrinfo(host, port.c_str(), &hints, &found); rc != 0) {
        throw ListenError(fmt::format("resolve {} failed: {}", address.to_string(), ::gai_strerror(rc)));
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, ::freeaddrinfo);
    ResolvedAddress out;
    out.family = found->ai_family;
    out.socktype = found->ai_socktype;
    out.protocol = found->ai_protocol;
    out.len = static_cast<socklen_t>(std::min<std::size_t>(found->ai_addrlen, sizeof out.addr));
    std::memcpy(&out.addr, found->ai_addr, out.len);
    return out;
}

std::uint16_t port_of(const sockaddr_storage& s) {
    return ntohs(s.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(s).sin6_port
                                         : reinterpret_cast<const sockaddr_in&>(s).sin_port);
}

void Listener::close() {
    if (owns_path_ && fd_.valid()) ::unlink(address_.path.c_str());
    owns_path_ = false;
    fd_.reset();
}

Listener::Listener(ListenAddress address, UniqueFd fd, int backlog, bool owns_path)
    : address_(std::move(address)), fd_(std::move(fd)), backlog_(backlog), owns_path_(owns_path) {}

Listener::~Listener() {
    // Only the owner of a live fd removes the path; a moved-from Listener has none.
    if (owns_path_ && fd_.valid()) ::unlink(address_.path.c_str());
}

int clamp_backlog(int requested, int somaxconn) {
    return somaxconn > 0 && requested > somaxconn ? somaxconn : requested;
}

int read_somaxconn() {
    std::ifstream in("/proc/sys/net/core/somaxconn");
    int value = 0;
    if (in >> value && value > 0) return value;
    return 4096;
}

Listener open_listener(const ListenAddress& address, int backlog, bool reuse_port) {
    return address.kind == ListenAddress::Kind::unix_path ? open_unix(address, backlog)
                                                           : open_tcp(address, backlog, reuse_port);
}

std::vector<Listener> open_listeners(const std::vector<ListenAddress>& addresses, int backlog, bool reuse_port) {
    const int somaxconn = read_somaxconn();
    const int effective = clamp_backlog(backlog, somaxconn);
    if (effective != backlog) {
        spdlog::warn("backlog {} is above net.core.somaxconn ({}); using {}", backlog, somaxconn,
                     effective);
    }
    std::vector<Listener> listeners;
    for (const auto& address : addresses) listeners.push_back(open_listener(address, effective, reuse_port));
    return listeners;
}

}  // namespace workerd
