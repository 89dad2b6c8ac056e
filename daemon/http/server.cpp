#include "daemon/http/server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "daemon/http/connection.hpp"

namespace workerd::http {

namespace asio = boost::asio;

Server::Server(asio::io_context& io, const BuiltinWorkerOptions& options)
    : io_(io),
      options_(options),
      board_(options.board_fd >= 0 ? LoadBoard::attach(options.board_fd, options.slot) : std::nullopt),
      sweep_timer_(io),
      notifier_(Notifier::from_environment()),
      heartbeat_timer_(io) {
    if (!options_.root.empty()) {
        char buf[PATH_MAX];
        if (::realpath(options_.root.c_str(), buf) == nullptr) {
            throw std::invalid_argument("--root " + options_.root + ": cannot resolve the directory");
        }
        canonical_root_ = buf;
    }
}

void Server::start(const std::vector<int>& listen_fds) {
    for (int fd : listen_fds) {
        sockaddr_storage addr{};
        socklen_t len = sizeof addr;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::invalid_argument("fd " + std::to_string(fd) + " is not a socket");
        }
        const bool tcp = addr.ss_family == AF_INET || addr.ss_family == AF_INET6;
        auto l = std::make_unique<Listener>(Listener{asio::basic_socket_acceptor<asio::generic::stream_protocol>(io_), tcp});
        l->acceptor.assign(asio::generic::stream_protocol(addr.ss_family, tcp ? IPPROTO_TCP : 0), fd);
        if (tcp) {
            // Receive timestamps (the kernel's clock when a segment arrived), inherited by every
            // connection accepted from here on: a request's queue time is measured from them.
            // (Unix stream sockets have none.) Harmless to the other workers sharing the socket.
            const int on = 1;
            ::setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        }
        listeners_.push_back(std::move(l));
    }
    for (auto& l : listeners_) accept(*l);
    sweep();
    notifier_.send("READY", "1");
    heartbeat();
}

void Server::heartbeat() {
    // From this loop's own timer: a blocked loop (/demo/block) stops the heartbeats, which is
    // exactly what the daemon's `timeout` is there to catch.
    if (!notifier_.active()) return;
    const auto now = Clock::now();
    Clock::time_point oldest = now;
    for (const Connection* c : connections_) {
        if (auto started = c->request_started_at()) oldest = std::min(oldest, *started);
    }
    stats_.oldest_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - oldest).count();
    // One message per beat. STATS (a heartbeat too) whenever they changed: once a second
    // while requests come or one is in flight. An idle worker only says WATCHDOG, every
    // quiet_interval: 1024 idle workers wake the daemon ~100 times a second, not 2048.
    std::string stats = stats_.format();
    if (stats != last_stats_) {
        notifier_.send("STATS", stats);
        last_stats_ = std::move(stats);
        last_sent_ = now;
    } else if (now - last_sent_ >= notifier_.quiet_interval()) {
        notifier_.send("WATCHDOG", "1");
        last_sent_ = now;
    }
    heartbeat_timer_.expires_after(notifier_.heartbeat_interval());
    heartbeat_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) heartbeat();
    });
}

void Server::accept(Listener& listener) {
    listener.acceptor.async_accept([this, &listener](const boost::system::error_code& ec, Socket socket) {
        if (draining_) {
            // Accepted just before the drain began: the connection left the shared queue for
            // this process, so serve it (its answer says Connection: close) rather than drop it.
            if (!ec && socket.is_open()) on_accepted(listener, std::move(socket));
            return;
        }
        if (ec) {
            if (ec == asio::error::operation_aborted) return;
            // The daemon stopped listening (it is stopping: new connections are refused); the
            // drain follows with SIGTERM.
            if (ec == asio::error::invalid_argument) return;
            // EMFILE and friends: say so, back off briefly, keep serving what is open.
            std::fprintf(stderr, "workerd-http[%d]: accept failed: %s\n", ::getpid(), ec.message().c_str());
            auto retry = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
            retry->async_wait([this, &listener, retry](const boost::system::error_code&) {
                if (!draining_) accept(listener);
            });
            return;
        }
        on_accepted(listener, std::move(socket));
        accept_next(listener);
    });
}

void Server::accept_next(Listener& listener) {
    // What else waits in the queue is taken now, up to kAcceptBurst, while no live peer holds
    // clearly fewer connections (the load board): one connection per turn of a busy loop kept
    // a burst of new connections waiting in the kernel for as many turns (a second, for the
    // last of 200 behind one worker). When a peer has room, wait a moment so it takes the next
    // one: a shared accept queue otherwise hands a burst of keep-alive connections to
    // whichever process happens to be awake.
    for (int i = 0; i < kAcceptBurst && !draining_; ++i) {
        if (board_ && board_->peer_has_room(static_cast<int>(connections_.size()), LoadBoard::now_ms())) break;
        if (!accept_one_now(listener)) break;
    }
    if (board_ && board_->peer_has_room(static_cast<int>(connections_.size()), LoadBoard::now_ms())) {
        auto wait = std::make_shared<asio::steady_timer>(io_, kYieldToPeer);
        wait->async_wait([this, &listener, wait](const boost::system::error_code&) {
            if (!draining_) accept(listener);
        });
        return;
    }
    asio::post(io_, [this, &listener] {
        if (!draining_) accept(listener);
    });
}

void Server::on_accepted(Listener& listener, Socket socket) {
    if (listener.tcp) {
        int one = 1;
        ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (static_cast<int>(connections_.size()) >= options_.max_connections) {
        reject_busy(std::move(socket));
        return;
    }
    std::make_shared<Connection>(*this, std::move(socket))->start();
}

bool Server::accept_one_now(Listener& listener) {
    boost::system::error_code ec;
    const auto endpoint = listener.acceptor.local_endpoint(ec);
    if (ec) return false;
    listener.acceptor.native_non_blocking(true, ec);  // as Asio's own accepts have it already
    if (ec) return false;
    while (true) {
        const int fd = ::accept4(listener.acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return false;  // EAGAIN: nothing is queued (or nothing can be taken)
        Socket socket(io_);
        socket.assign(endpoint.protocol(), fd, ec);
        if (ec) {
            ::close(fd);
            continue;
        }
        on_accepted(listener, std::move(socket));
        return true;
    }
}

void Server::take_queued(Listener& listener) {
    while (accept_one_now(listener)) {
    }
}

void Server::reject_busy(Socket socket) {
    static const std::string kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nServer: workerd\r\nContent-Type: text/plain\r\n"
        "Content-Length: 20\r\nConnection: close\r\nRetry-After: 1\r\n\r\nserver is too busy.\n";
    auto s = std::make_shared<Socket>(std::move(socket));
    asio::async_write(*s, asio::buffer(kBusy), [s](const boost::system::error_code&, std::size_t) {
        boost::system::error_code ignored;
        s->shutdown(Socket::shutdown_send, ignored);
        s->close(ignored);
    });
}

void Server::drain(std::function<void()> on_done) {
    if (draining_) return;
    draining_ = true;
    drain_started_ = Clock::now();
    if (board_) board_->leave();
    notifier_.send("STOPPING", "1");
    on_drained_ = std::move(on_done);
    for (auto& l : listeners_) {
        // The last copy of a listening socket to close resets every connection still in its
        // queue: one made a moment before a stop would see a reset instead of an answer. What
        // is queued now is taken in first, and served (saying Connection: close).
        take_queued(*l);
        boost::system::error_code ignored;
        l->acceptor.close(ignored);  // this process's copy only; the daemon keeps the socket
    }
    if (connections_.empty()) {
        // Checked again when it runs: a connection accepted just before the drain may have
        // arrived meanwhile, and then its end finishes the drain (remove()).
        asio::post(io_, [this] {
            if (connections_.empty()) on_drained_();
        });
        return;
    }
    sweep();
}

void Server::add(Connection* c) {
    connections_.insert(c);
    if (board_) board_->set_connections(static_cast<int>(connections_.size()));
}

void Server::remove(Connection* c) {
    connections_.erase(c);
    if (board_) board_->set_connections(static_cast<int>(connections_.size()));
    if (draining_ && connections_.empty() && on_drained_) asio::post(io_, [this] { on_drained_(); });
}

void Server::sweep() {
    // One timer for all connections: idle keep-alive connections past their time are closed
    // here instead of arming a timer per request.
    const auto now = Clock::now();
    if (board_ && !draining_) board_->touch(LoadBoard::now_ms());
    std::vector<Connection*> snapshot(connections_.begin(), connections_.end());
    for (Connection* c : snapshot) c->expire(now);
    sweep_timer_.expires_after(std::chrono::milliseconds(draining_ ? 50 : 250));
    sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) sweep();
    });
}

}  // namespace workerd::http
