#pragma once

#include <memory>
#include <optional>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "daemon/http/server.hpp"
#include "daemon/http/target.hpp"

namespace workerd::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

/// One client connection of the bundled worker: reads requests (keep-alive, bounded head and
/// body), routes them (/healthz, /demo/*, static files) and writes responses. Lives as long as
/// an asynchronous operation holds it.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(Server& server, Socket socket);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start();

    /// Closes the connection if it is waiting for a request and has been idle past its
    /// allowance: keepalive_timeout normally, Server::kDrainIdleWindow once draining.
    void expire(Clock::time_point now);

    /// When the request being served arrived; empty between requests.
    std::optional<Clock::time_point> request_started_at() const { return request_started_; }

private:
    using Request = bhttp::request<bhttp::string_body>;
    enum class Phase { reading, processing, writing };

    void read_request();
    /// Feeds the buffered bytes to the parser; reads more (read_more) while it needs more.
    void parse_buffered();
    /// recvmsg with the kernel's receive timestamp; waits for the socket when nothing is there.
    void read_more();
    void on_read(const beast::error_code& ec);
    /// How long the request now complete waited in the kernel, from the receive timestamp of
    /// the read that completed its head; nullopt when the kernel gave none (Unix sockets).
    std::optional<std::int64_t> queued_us() const;
    void shed();
    void route(const Request& req);
    void serve_demo(const Request& req, const Target& target);
    void serve_static(const Request& req, const Target& target);
    void send_error(bhttp::status status, bool close);
    void send_text(bhttp::status status, std::string body, const char* content_type);

    template <class Body>
    void send(bhttp::response<Body>&& res);
    template <class Body>
    void finish_headers(bhttp::response<Body>& res);
    /// The request is answered (its last byte is with the kernel), or the write `failed`:
    /// counted in the server's stats, by the response's class.
    void finish_request(bool failed = false);
    void on_write(const beast::error_code& ec, bool close);
    /// Closes, or reads the next request.
    void after_write(const beast::error_code& ec, bool close);
    void close();

    Server& server_;
    Socket socket_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    std::shared_ptr<void> response_;  // the message being written, kept alive until done
    std::optional<boost::asio::steady_timer> timer_;  // /demo/io
    Phase phase_ = Phase::reading;
    Clock::time_point last_activity_;
    std::optional<Clock::time_point> request_started_;
    std::int64_t received_ns_ = 0;  ///< CLOCK_REALTIME of the last read's data in the kernel; 0: none
    bool shed_ = false;             ///< the request being answered is shed (503 at once)
    int status_ = 0;                ///< the status of the response being written; 0 before one
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool head_ = false;
};

}  // namespace workerd::http
