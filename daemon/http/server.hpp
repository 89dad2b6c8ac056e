#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "daemon/http/builtin_worker.hpp"
#include "daemon/http/http_date.hpp"
#include "daemon/os/load_board.hpp"
#include "daemon/wire/notifier.hpp"
#include "daemon/wire/notify.hpp"

namespace workerd::http {

using Clock = std::chrono::steady_clock;
using Socket = boost::asio::generic::stream_protocol::socket;
class Connection;

/// The bundled worker's server: accepts on the inherited listeners, owns the set of open
/// connections, closes idle ones, and drains gracefully. Single-threaded.
class Server {
public:
    /// How long an idle keep-alive connection is kept open once draining starts, so a request
    /// the client has already sent is answered (with Connection: close) instead of reset.
    static constexpr std::chrono::milliseconds kDrainIdleWindow{1000};
    /// How long a worker holding clearly more connections than a live peer waits before
    /// accepting again, so the peer takes the next one (see LoadBoard).
    static constexpr std::chrono::milliseconds kYieldToPeer{1};
    /// The most connections taken from the queue in one turn (while no peer has room).
    static constexpr int kAcceptBurst = 16;

    Server(boost::asio::io_context& io, const BuiltinWorkerOptions& options);

    /// Starts accepting on every listener fd (they stay owned by this process until drain).
    void start(const std::vector<int>& listen_fds);

    /// Stops accepting at once; busy connections finish their request and close, idle ones
    /// close after kDrainIdleWindow. `on_done` runs once no connection is left.
    void drain(std::function<void()> on_done);

    bool draining() const { return draining_; }
    Clock::time_point drain_started() const { return drain_started_; }
    const BuiltinWorkerOptions& options() const { return options_; }
    const std::string& canonical_root() const { return canonical_root_; }
    DateCache& date() { return date_; }

    /// Request accounting for the worker protocol's STATS: a few counter updates per request.
    /// `queued_us`: how long its bytes waited in the kernel, when the kernel said (TCP).
    /// Returns whether to shed it: it waited past queue_timeout, or it would be one too many
    /// in flight (max_concurrency).
    bool request_started(std::optional<std::int64_t> queued_us) {
        ++stats_.inflight;
        if (queued_us) {
            ++stats_.queue[queue_bucket(*queued_us)];
            stats_.queue_sum_us += static_cast<std::uint64_t>(*queued_us);
            if (options_.queue_timeout.count() > 0 && *queued_us > options_.queue_timeout.count() * 1000) return true;
        }
        return options_.max_concurrency > 0 && stats_.inflight > options_.max_concurrency;
    }
    /// `shed`: answered 503 without running the request; counted apart from the served ones.
    /// `status`: the response's (by class in STATS); 0 when none was written (failed).
    void request_finished(Clock::time_point started, bool shed, int status) {
        --stats_.inflight;
        if (shed) {
            ++stats_.shed;
            return;
        }
        ++stats_.served;
        ++stats_.responses[static_cast<std::size_t>(response_class(status))];
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
        ++stats_.buckets[latency_bucket(us.count())];
        stats_.sum_us += static_cast<std::uint64_t>(us.count());
    }

    // Connections register themselves for the idle sweep.
    void add(Connection* c);
    void remove(Connection* c);

private:
    struct Listener {
        boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor;
        bool tcp = false;
    };

    void accept(Listener& listener);
    void accept_next(Listener& listener);
    void on_accepted(Listener& listener, Socket socket);
    /// Takes in every connection the kernel has queued on `listener` (served while draining).
    void take_queued(Listener& listener);
    /// Accepts one connection the kernel has queued, without waiting; false when none is.
    bool accept_one_now(Listener& listener);
    void reject_busy(Socket socket);
    void sweep();
    void heartbeat();

    boost::asio::io_context& io_;
    BuiltinWorkerOptions options_;
    std::string canonical_root_;
    DateCache date_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::unordered_set<Connection*> connections_;
    std::optional<LoadBoard> board_;  ///< shared with the fleet's other bundled workers
    boost::asio::steady_timer sweep_timer_;
    Notifier notifier_;
    RequestStats stats_;
    std::string last_stats_;         ///< the last STATS sent
    Clock::time_point last_sent_{};  ///< when the last message went to the daemon
    boost::asio::steady_timer heartbeat_timer_;
    bool draining_ = false;
    Clock::time_point drain_started_;
    std::function<void()> on_drained_;
};

}  // namespace workerd::http
