#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "daemon/listen_address.hpp"
#include "daemon/unique_fd.hpp"

namespace workerd {

/// One answer of the metrics endpoint.
struct MetricsResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// The daemon's own small HTTP endpoint (`metrics.listen`): /metrics, /healthz, /readyz.
/// Served from the daemon's event loop with Beast; every read and write has a deadline and at
/// most kMaxClients connections are open, so a slow scraper cannot stall supervision.
class MetricsServer {
public:
    static constexpr int kMaxClients = 32;
    using Handler = std::function<MetricsResponse(const std::string& path)>;

    /// Binds (throws ListenError).
    /// Binds `address`, or uses `inherited` (a re-exec's socket) when it is bound there.
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

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    Handler handler_;
    std::shared_ptr<int> clients_ = std::make_shared<int>(0);
};

}  // namespace workerd
