#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "daemon/wire/listen_address.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd {

/// One answer of the metrics endpoint.
struct MetricsResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// The daemon's own small HTTP endpoint (`metrics.listen`): /metrics, /healthz, /readyz.
/// Served from the daemon's event loop with Beast. Every read and write has a deadline (a
/// request, idle time before it included, kRequestTimeout; a response kWriteTimeout), and at
/// most kMaxClients connections are open: at the cap, the connection that has waited longest
/// for a request goes, never the new one, so idle or slow clients cannot keep a probe or a
/// scrape out.
class MetricsServer {
public:
    static constexpr int kMaxClients = 64;
    /// The listen queue (clamped to net.core.somaxconn): room for many more connections than
    /// kMaxClients, so a crowd of idle or slow clients, evicted and reconnecting, cannot fill it
    /// and have a probe's handshake dropped (its SYN is then resent only after 1 s).
    static constexpr int kBacklog = 1024;
    static constexpr std::chrono::seconds kRequestTimeout{10};
    static constexpr std::chrono::seconds kWriteTimeout{10};
    using Handler = std::function<MetricsResponse(const std::string& path)>;

    /// Binds `address`, or uses `inherited` (a re-exec's socket) when it is bound there.
    /// Throws ListenError.
    MetricsServer(boost::asio::io_context& io, const ListenAddress& address, Handler handler,
                  UniqueFd inherited = {});
    ~MetricsServer();
    void start();
    std::uint16_t port() const;
    /// The listening socket (handed over across a SIGUSR2 re-exec).
    int fd() { return acceptor_.native_handle(); }

private:
    class Session;
    void accept();
    /// Makes room for one more connection: closes the one waiting longest for a request.
    /// False when every open connection is busy answering.
    bool evict_idlest();

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    Handler handler_;
    std::vector<std::weak_ptr<Session>> sessions_;
};

}  // namespace workerd
