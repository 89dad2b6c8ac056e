#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace workerd {

/// One address from the spec's `listen` list.
struct ListenAddress {
    enum class Kind { tcp, unix_path };
    Kind kind = Kind::tcp;
    std::string host;    ///< tcp: "127.0.0.1", "::1", "0.0.0.0", "::", or a name like "localhost"
    std::uint16_t port = 0;  ///< tcp: 0 asks the kernel for a free port
    std::string path;    ///< unix_path: absolute after spec loading
    std::string text;    ///< as written in the spec, for messages
    /// Name passed to workers in LISTEN_FDNAMES and usable as {fd:NAME}. Defaults to
    /// "listen0", "listen1", ... by position.
    std::string name;

    /// "127.0.0.1:8000", "[::1]:8000" or "unix:/run/app.sock".
    std::string to_string() const;

    /// The address "HOST:PORT" gives, named `name`.
    static ListenAddress tcp(const std::string& host, std::uint16_t port, const std::string& name = "listen0");
    /// The address "unix:PATH" gives, named `name`.
    static ListenAddress unix_socket(const std::string& path, const std::string& name = "listen0");
};

/// Parses "HOST:PORT", "[IPV6]:PORT", ":PORT" (all IPv4 interfaces) or "unix:/PATH".
/// On failure returns nullopt and sets `error` to a one-line reason ("port 70000 is out of
/// range 0-65535", "IPv6 addresses need brackets: [::1]:8000", ...).
std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& error);

/// Listeners reach a worker as fds 3, 4, ... in the order of the spec's `listen`.
inline constexpr int kFirstListenFd = 3;

/// Replaces {fd} (the first listener, fd 3) and {fd:NAME} / {fd:INDEX} (that listener's fd,
/// 3 + its position) in one argument of `app.command`. Throws std::invalid_argument for an
/// unknown name or an unterminated "{fd:".
std::string substitute_fds(const std::string& arg, const std::vector<ListenAddress>& listeners);

}  // namespace workerd
