#include "daemon/http/server.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "daemon/http/connection.hpp"
#include "daemon/os/listen_queue.hpp"

namespace workerd::http {

Server::Server(EventLoop& loop, const BuiltinWorkerOptions& options)
    : loop_(loop),
      options_(options),
      board_(options.board_fd >= 0 ? LoadBoard::attach(options.board_fd, options.slot) : std::nullopt),
      notifier_(Notifier::from_environment()) {
    if (!options_.root.empty()) {
        char buf[PATH_MAX];
        if (::realpath(options_.root.c_str(), buf) == nullptr) {
            throw std::invalid_argument("--root " + options_.root + ": cannot resolve the directory");
        }
        files_.emplace(buf);
    }
}

Server::~Server() = default;

void Server::start(const std::vector<int>& listen_fds, const std::vector<std::pair<int, int>>& peers) {
    std::vector<std::pair<int, int>> all;
    for (int fd : listen_fds) all.emplace_back(fd, -1);
    all.insert(all.end(), peers.begin(), peers.end());
    steered_ = !peers.empty();
    for (const auto& [fd, peer_slot] : all) {
        sockaddr_storage addr{};
        socklen_t len = sizeof addr;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::invalid_argument("fd " + std::to_string(fd) + " is not a socket");
        }
        const bool tcp = addr.ss_family == AF_INET || addr.ss_family == AF_INET6;
        if (tcp) {
            // Receive timestamps (the kernel's clock when a segment arrived), inherited by every
            // connection accepted from here on: a request's queue time is measured from them.
            // (Unix stream sockets have none.) Harmless to the other workers sharing the socket.
            const int on = 1;
            ::setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        }
        // accept4 must not wait: the loop says when something is queued. (The flag is on the
        // socket the fleet shares, as it was under Asio's acceptors; every bundled worker sets it.)
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        listeners_.push_back(std::make_unique<Listener>(*this, fd, tcp, peer_slot));
    }
    const bool any_tcp = std::any_of(listeners_.begin(), listeners_.end(), [](const auto& l) { return l->tcp; });
    if (board_ && any_tcp) handoff_ = Handoff::open(board_->token());
    note_cpu();
    if (handoff_) loop_.add(handoff_->inbox(), EPOLLIN, &inbox_);
    for (auto& l : listeners_) {
        loop_.add(l->fd, EPOLLIN, l.get());
        accept(*l);  // what was queued before the edge this process will see
    }
    sweep();
    notifier_.send("READY", "1");
    heartbeat();
}

std::string_view Server::healthz_response() {
    const std::string& date = date_.now();
    if (date != healthz_date_) {
        healthz_date_ = date;
        healthz_ = "HTTP/1.1 200 OK\r\nServer: workerd\r\nDate: " + date +
                   "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n";
    }
    return healthz_;
}

void Server::heartbeat() {
    // From this loop's own timer: a blocked loop (/demo/block) stops the heartbeats, which is
    // exactly what the daemon's `timeout` is there to catch.
    if (!notifier_.active()) return;
    const auto now = Clock::now();
    Clock::time_point oldest = now;
    for (const auto& [c, _] : connections_) {
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
    loop_.after(notifier_.heartbeat_interval(), [this] { heartbeat(); });
}

// One connection per turn of a busy loop kept a burst of new connections waiting in the kernel
// for as many turns (a second, for the last of 200 behind one worker): up to kAcceptBurst are
// taken at once, the rest on the next turn. When a live peer holds clearly fewer connections,
// this worker waits a moment so the peer takes the next one: a shared accept queue otherwise
// hands a burst of keep-alive connections to whichever process happens to be awake.
//
// `reuse_port: cpu` (peer slots' sockets given): each worker's own queue holds its CPU's
// connections, and the margin is wider (kStealMargin). A worker leaves a connection on its own
// queue to a peer for at most kMaxYield: a peer started before this slot's socket existed (a
// scale-up) cannot take from it, and the connection must not wait on that.
void Server::accept(Listener& listener) {
    if (draining_ || listener.waiting) return;
    for (int i = 0; i < kAcceptBurst; ++i) {
        if (listener.peer_slot >= 0 && !may_take_from(listener)) return;
        if (board_ && board_->peer_has_room(static_cast<int>(connections_.size()), LoadBoard::now_ms(), margin())) {
            if (!steered_) return retry_accept(listener, kYieldToPeer);
            const auto now = Clock::now();
            if (listener.yielding_since == Clock::time_point{}) listener.yielding_since = now;
            if (now - listener.yielding_since < kMaxYield) return retry_accept(listener, kYieldToPeer);
        }
        listener.yielding_since = {};  // (the next connection may be left to a peer again)
        if (!accept_one(listener)) return;  // nothing queued: the next edge says when
        if (draining_) return;
    }
    // More may be queued, and the edge that said so is spent: look again next turn.
    listener.waiting = true;
    loop_.post([this, &listener] {
        listener.waiting = false;
        accept(listener);
    });
}

// Another slot's socket (`reuse_port: cpu`): the kernel put the connection there because its
// handshake came in on that slot's CPU, and that slot's worker takes it, unless it holds clearly
// more connections than this one or is gone (then this one evens it out, as on a shared queue).
// While it may not, connections waiting there are looked at again in a moment: the edge that
// said so is spent.
bool Server::may_take_from(Listener& listener) {
    if (board_ && board_->busier(listener.peer_slot, static_cast<int>(connections_.size()), LoadBoard::now_ms(), margin())) return true;
    if (auto queue = listen_queue(listener.fd, false); queue && queue->depth > 0) retry_accept(listener, kYieldToPeer);
    return false;
}

void Server::retry_accept(Listener& listener, std::chrono::milliseconds after) {
    listener.waiting = true;
    loop_.after(after, [this, &listener] {
        listener.waiting = false;
        accept(listener);
    });
}

bool Server::accept_one(Listener& listener) {
    while (true) {
        const int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            if (listener.tcp) {
                const int one = 1;
                ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            }
            if (static_cast<int>(connections_.size()) >= options_.max_connections) {
                reject_busy(fd);
                return true;
            }
            auto c = std::make_shared<Connection>(*this, UniqueFd(fd), listener.tcp);
            connections_.emplace(c.get(), c);
            if (board_) board_->set_connections(static_cast<int>(connections_.size()));
            c->start();
            return true;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
        // The daemon stopped listening (it is stopping: new connections are refused); the drain
        // follows with SIGTERM.
        if (errno == EINVAL) return false;
        // EMFILE and friends: say so, back off briefly, keep serving what is open.
        std::fprintf(stderr, "workerd-http[%d]: accept failed: %s\n", ::getpid(), std::strerror(errno));
        retry_accept(listener, std::chrono::milliseconds(100));
        return false;
    }
}

void Server::note_cpu() {
    // (Not once draining: the slot's entry may be its successor's already.)
    if (board_ && !draining_) board_->set_cpu(::sched_getcpu());
}

bool Server::hand_off(int cpu, int fd, std::string_view bytes) {
    if (!handoff_ || draining_) return false;
    const auto pid = board_->worker_on_cpu(cpu, static_cast<int>(connections_.size()), LoadBoard::now_ms());
    return pid && handoff_->send(*pid, fd, bytes);
}

// Like an accept: counted on the board, bounded by max_connections. While draining too: the
// sender saw this worker on the board a moment before it left, and the request is answered
// (with Connection: close) rather than dropped.
void Server::take_handed() {
    while (auto handed = handoff_->receive()) {
        if (static_cast<int>(connections_.size()) >= options_.max_connections) {
            reject_busy(handed->fd.release());
            continue;
        }
        auto c = std::make_shared<Connection>(*this, std::move(handed->fd), true, handed->bytes);
        connections_.emplace(c.get(), c);
        if (board_) board_->set_connections(static_cast<int>(connections_.size()));
        c->start();
    }
}

void Server::reject_busy(int fd) {
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nServer: workerd\r\nContent-Type: text/plain\r\n"
        "Content-Length: 20\r\nConnection: close\r\nRetry-After: 1\r\n\r\nserver is too busy.\n";
    // A new connection's send buffer is empty: the answer fits at once, or the client is gone.
    [[maybe_unused]] const ssize_t n = ::send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
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
        while (l->peer_slot < 0 && accept_one(*l)) {  // (another slot's queue is its own worker's)
        }
        loop_.remove(l->fd);
        ::close(l->fd);  // this process's copy only; the daemon keeps the socket
    }
    if (handoff_) take_handed();  // handed just before this worker left the board
    if (connections_.empty()) return finish_drain_soon();
    sweep();
}

// Checked again when it runs: a connection may have been accepted meanwhile (drain() takes in
// the queue, and a connection whose request was already there is answered and closed at once,
// before the next one is accepted), and then its own end finishes the drain.
void Server::finish_drain_soon() {
    loop_.post([this] {
        if (connections_.empty() && on_drained_) std::exchange(on_drained_, nullptr)();
    });
}

void Server::closed(Connection* c) {
    const auto it = connections_.find(c);
    if (it == connections_.end()) return;
    if (closed_.empty()) loop_.post([this] { closed_.clear(); });
    closed_.push_back(std::move(it->second));
    connections_.erase(it);
    if (board_) board_->set_connections(static_cast<int>(connections_.size()));
    if (draining_ && connections_.empty()) finish_drain_soon();
}

void Server::sweep() {
    // One timer for all connections: idle keep-alive connections past their time are closed
    // here instead of arming a timer per request.
    const auto now = Clock::now();
    if (board_ && !draining_) board_->touch(LoadBoard::now_ms());
    note_cpu();
    std::vector<std::shared_ptr<Connection>> snapshot;
    snapshot.reserve(connections_.size());
    for (const auto& [_, c] : connections_) snapshot.push_back(c);
    for (const auto& c : snapshot) c->expire(now);
    loop_.cancel(sweep_timer_);
    sweep_timer_ = loop_.after(std::chrono::milliseconds(draining_ ? 50 : 250), [this] { sweep(); });
}

}  // namespace workerd::http
