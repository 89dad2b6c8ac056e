#include "daemon/shell/metrics_server.hpp"

#include <fcntl.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/wire/handover.hpp"
#include "daemon/os/listener.hpp"
#include "daemon/version.hpp"

namespace workerd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class MetricsServer::Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, const Handler& handler) : stream_(std::move(socket)), handler_(handler) {}

    void start() { read(); }
    /// Waiting for (the rest of) a request since then; nullopt while answering.
    std::optional<std::chrono::steady_clock::time_point> reading_since() const { return reading_since_; }
    void evict() { close(); }

private:
    void read() {
        parser_.emplace();
        parser_->header_limit(8 * 1024);
        parser_->body_limit(0);
        reading_since_ = std::chrono::steady_clock::now();
        stream_.expires_after(kRequestTimeout);  // idle keep-alive, and slow requests
        http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->close();
            self->reading_since_.reset();
            self->respond(self->parser_->release());
        });
    }

    void respond(http::request<http::empty_body> request) {
        MetricsResponse answer;
        if (request.method() != http::verb::get && request.method() != http::verb::head) {
            answer = {405, "text/plain; charset=utf-8", "only GET\n"};
        } else {
            std::string path(request.target());
            path = path.substr(0, path.find('?'));
            answer = handler_(path);
        }
        auto response = std::make_shared<http::response<http::string_body>>(
            static_cast<http::status>(answer.status), request.version());
        response->set(http::field::server, std::string("workerd/") + kVersion);
        response->set(http::field::content_type, answer.content_type);
        response->set(http::field::cache_control, "no-store");
        response->keep_alive(request.keep_alive());
        if (request.method() != http::verb::head) response->body() = std::move(answer.body);
        response->prepare_payload();
        stream_.expires_after(kWriteTimeout);  // a scraper that does not read is dropped
        http::async_write(stream_, *response, [self = shared_from_this(), response](beast::error_code ec, std::size_t) {
            if (ec || !response->keep_alive()) return self->close();
            self->read();
        });
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.close();
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::empty_body>> parser_;
    const Handler& handler_;
    std::optional<std::chrono::steady_clock::time_point> reading_since_;
};

namespace {
tcp::acceptor bind_metrics(asio::io_context& io, const ListenAddress& address, UniqueFd inherited) {
    // The same binding rules and messages as the fleet's listeners; a socket handed over by
    // the previous image (SIGUSR2) is kept when it is still bound to the spec's address.
    Listener l = inherited && socket_bound_to(inherited.get(), address)
                     ? Listener(address, std::move(inherited), MetricsServer::kBacklog, false)
                     : open_listener(address, MetricsServer::kBacklog);
    tcp::acceptor acceptor(io);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(l.fd(), reinterpret_cast<sockaddr*>(&ss), &len);
    acceptor.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), ::fcntl(l.fd(), F_DUPFD_CLOEXEC, 0));
    return acceptor;
}
}  // namespace

MetricsServer::MetricsServer(asio::io_context& io, const ListenAddress& address, Handler handler,
                             UniqueFd inherited)
    : io_(io), acceptor_(bind_metrics(io, address, std::move(inherited))), handler_(std::move(handler)) {}

MetricsServer::~MetricsServer() {
    beast::error_code ignored;
    acceptor_.close(ignored);
}

std::uint16_t MetricsServer::port() const { return acceptor_.local_endpoint().port(); }

void MetricsServer::start() { accept(); }

void MetricsServer::accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
            ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);  // as the control server's
            std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
            if (static_cast<int>(sessions_.size()) < kMaxClients || evict_idlest()) {
                auto session = std::make_shared<Session>(std::move(socket), handler_);
                sessions_.push_back(session);
                session->start();
            } else {
                beast::error_code ignored;
                socket.close(ignored);
            }
        }
        accept();
    });
}

bool MetricsServer::evict_idlest() {
    std::shared_ptr<Session> idlest;
    for (const auto& weak : sessions_) {
        auto s = weak.lock();
        if (!s || !s->reading_since()) continue;
        if (!idlest || *s->reading_since() < *idlest->reading_since()) idlest = s;
    }
    if (!idlest) return false;
    idlest->evict();
    std::erase_if(sessions_, [&](const auto& w) { return w.lock() == idlest; });
    return true;
}

}  // namespace workerd
