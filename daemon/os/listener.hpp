#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "daemon/wire/listen_address.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// A failure to open a listener; what() reads like
/// "bind 127.0.0.1:8000 failed: Address already in use".
struct ListenError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A bound, listening socket the daemon keeps open for its whole life, so the accept queue
/// survives any worker's death. A Unix socket's file is removed when the Listener is destroyed.
class Listener {
public:
    Listener(ListenAddress address, UniqueFd fd, int backlog, bool owns_path);
    Listener(Listener&&) noexcept = default;
    Listener& operator=(Listener&&) noexcept = default;
    ~Listener();

    /// The address actually bound (a requested port 0 is replaced by the kernel's choice).
    const ListenAddress& address() const { return address_; }
    int fd() const { return fd_.get(); }
    int backlog() const { return backlog_; }
    /// Whether this daemon created the Unix socket file (and removes it); not for a socket
    /// systemd made.
    bool owns_path() const { return owns_path_; }
    /// Whether systemd holds this socket too (socket activation): it listens on for the next
    /// daemon however this one stops.
    bool activated() const { return activated_; }
    void mark_activated() { activated_ = true; }
    /// Closes this process's copy now (a Unix socket's file is removed, so new connections fail
    /// at once). The socket itself ends, and new connections are refused, once the workers have
    /// closed theirs too: they do when they stop accepting.
    void close();

private:
    ListenAddress address_;
    UniqueFd fd_;
    int backlog_ = 0;
    bool owns_path_ = false;
    bool activated_ = false;
};

/// The backlog to pass to listen(2): `requested`, clamped to `somaxconn` (the kernel would
/// clamp silently; we say so). Pure.
int clamp_backlog(int requested, int somaxconn);

/// net.core.somaxconn from /proc, or 4096 (the Linux default since 5.4) if unreadable.
int read_somaxconn();

/// Binds and listens on `address` (SO_REUSEADDR, close-on-exec, IPV6_V6ONLY for IPv6).
/// A Unix socket path that exists is replaced when stale (nothing accepts on it) and refused
/// when live or when it is not a socket. `reuse_port`: a TCP socket gets SO_REUSEPORT before
/// bind, so more sockets can join it on the same address (`reuse_port: true`). Throws
/// ListenError.
Listener open_listener(const ListenAddress& address, int backlog, bool reuse_port = false);

/// Where a TCP listen address binds: the first address the resolver gives (a name that
/// resolves to several would need several sockets; the spec can list them one by one), with
/// the family, type and protocol of its socket. Throws ListenError when it does not resolve.
struct ResolvedAddress {
    int family = 0;
    int socktype = 0;
    int protocol = 0;
    sockaddr_storage addr{};
    socklen_t len = 0;
};
ResolvedAddress resolve_listen_address(const ListenAddress& address);

/// The port of an IPv4 or IPv6 socket address, in host order.
std::uint16_t port_of(const sockaddr_storage& s);

/// Opens every listener in order; on any failure closes those already opened and rethrows.
std::vector<Listener> open_listeners(const std::vector<ListenAddress>& addresses, int backlog,
                                     bool reuse_port = false);

}  // namespace workerd
