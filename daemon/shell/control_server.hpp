#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <nlohmann/json.hpp>

#include "daemon/wire/control_request.hpp"
#include "daemon/os/listener.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd {

/// Who may use the control socket: root, the daemon's own user, and the spec's users/groups.
struct ControlAccess {
    uid_t daemon_uid = 0;
    std::vector<unsigned> users;
    std::vector<unsigned> groups;

    /// Whether a peer with these credentials may talk to the daemon. Supplementary groups are
    /// looked up for the peer's user.
    bool allows(uid_t uid, gid_t gid) const;
};

/// The control socket (docs/control-protocol.md): JSON requests and replies, one per line,
/// served from the daemon's event loop. Every connection is checked with SO_PEERCRED. A client
/// cannot stall anything: requests are bounded in size (kMaxRequest) and time (kIdleTimeout
/// between requests, kRequestTimeout from a line's first byte), and at most kMaxClients are
/// served at once: past that, the client that has waited longest for a request of its own is
/// told "busy" and closed to make room, so idle or half-sent connections cannot lock workerctl
/// out.
class ControlServer {
public:
    static constexpr std::size_t kMaxRequest = 64 * 1024;
    static constexpr std::chrono::seconds kIdleTimeout{60};
    static constexpr std::chrono::seconds kRequestTimeout{5};
    static constexpr int kMaxClients = 128;
    static constexpr std::chrono::seconds kRefusedLogInterval{10};
    static constexpr int kProtocolVersion = 1;

    /// Runs one command; returns its result or throws ControlError.
    using Handler = std::function<nlohmann::json(const std::string& command, const nlohmann::json& args)>;

    /// Binds the socket (stale files replaced, a live daemon's socket refused; throws
    /// ListenError) with the spec's mode and group.
    /// `inherited`: the previous image's socket (SIGUSR2), used when still bound to the path.
    ControlServer(boost::asio::io_context& io, const ControlSpec& spec, Handler handler,
                  UniqueFd inherited = {});
    ~ControlServer();

    const std::string& path() const { return path_; }
    /// The listening socket (handed over across a SIGUSR2 re-exec).
    int fd() const { return listener_.fd(); }
    void start();
    /// Stops accepting and closes every client (at daemon exit).
    void stop();

    /// One request line to one reply line (without the newline); never throws. Public for tests.
    std::string handle_line(const std::string& line) const { return handle_line(line, handler_); }
    /// The same with any handler: the framing and error replies alone (tests, the fuzzer).
    static std::string handle_line(const std::string& line, const Handler& handler);

private:
    class Client;

    void accept();
    /// At the cap: the client waiting longest for a request of its own goes ("busy"). False
    /// when every client is being answered.
    bool evict_longest_waiting();
    /// Logs a refused peer, at most every kRefusedLogInterval.
    void refused(const ucred& cred);

    std::string path_;
    Listener listener_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    ControlAccess access_;
    Handler handler_;
    std::vector<std::weak_ptr<Client>> open_;  ///< clients being served
    std::uint64_t refused_unlogged_ = 0;
    std::optional<std::chrono::steady_clock::time_point> refused_logged_at_;
};

}  // namespace workerd
