#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "daemon/http/builtin_worker.hpp"
#include "daemon/http/event_loop.hpp"
#include "daemon/http/file_cache.hpp"
#include "daemon/http/handoff.hpp"
#include "daemon/http/http_date.hpp"
#include "daemon/os/load_board.hpp"
#include "daemon/wire/notifier.hpp"
#include "daemon/wire/notify.hpp"

namespace workerd::http {

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
    /// `reuse_port: cpu`: the longest a worker leaves a connection on its own queue to a peer
    /// with room.
    static constexpr std::chrono::milliseconds kMaxYield{5};

    Server(EventLoop& loop, const BuiltinWorkerOptions& options);
    ~Server();

    /// Starts accepting on every listener fd, and on `peers` (fd, slot: other slots' sockets,
    /// `reuse_port: cpu`) while their own worker holds clearly more connections or is gone.
    /// They stay owned by this process until drain.
    void start(const std::vector<int>& listen_fds, const std::vector<std::pair<int, int>>& peers = {});

    /// Stops accepting at once; busy connections finish their request and close, idle ones
    /// close after kDrainIdleWindow. `on_done` runs once no connection is left.
    void drain(std::function<void()> on_done);

    bool draining() const { return draining_; }
    Clock::time_point drain_started() const { return drain_started_; }
    const BuiltinWorkerOptions& options() const { return options_; }
    EventLoop& loop() { return loop_; }
    /// The static root's open-file cache; null without a root.
    FileCache* files() { return files_ ? &*files_ : nullptr; }
    DateCache& date() { return date_; }
    /// The whole /healthz answer to a keep-alive HTTP/1.1 GET, remade when the Date changes.
    std::string_view healthz_response();

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

    /// A connection that has closed its socket: let go once the loop's current turn is over.
    void closed(Connection* c);

    /// Whether this worker hands connections to, and takes them from, the fleet's other
    /// bundled workers (Handoff): with the load board and a TCP listener.
    bool hands_off() const { return handoff_.has_value(); }
    /// Says on the board which CPU this worker runs on now.
    void note_cpu();
    /// Passes the connection `fd`, with `bytes` (its request onwards), to the worker that last
    /// ran on `cpu`, when there is one besides this, live and not clearly busier. False when it
    /// did not go: the caller serves the request.
    bool hand_off(int cpu, int fd, std::string_view bytes);
    /// The request of a connection handed off: no longer in flight here (counted where served).
    void request_handed_off() { --stats_.inflight; }

private:
    struct Listener final : Watcher {
        Listener(Server& s, int f, bool t, int peer) : server(s), fd(f), tcp(t), peer_slot(peer) {}
        void on_events(std::uint32_t) override { server.accept(*this); }
        Server& server;
        int fd;
        bool tcp;
        int peer_slot;  ///< -1: this worker's own; else the slot whose socket it is
        Clock::time_point yielding_since{};  ///< `reuse_port: cpu`: left to a peer since then
        bool waiting = false;  ///< a retry timer is set (yielding to a peer, or after an error)
    };

    /// Takes what the kernel has queued on `listener`, up to kAcceptBurst a turn, while no
    /// live peer holds clearly fewer connections (the load board); from a peer slot's socket,
    /// only while that slot's worker holds clearly more (or is gone).
    void accept(Listener& listener);
    /// A peer slot's socket the board does not let this worker take from now: false.
    bool may_take_from(Listener& listener);
    /// Once draining and no connection is left (still so when the posted call runs), on_drained_.
    void finish_drain_soon();
    /// Accepts one connection the kernel has queued; false when none is (or on an error,
    /// after which a retry is set).
    bool accept_one(Listener& listener);
    void retry_accept(Listener& listener, std::chrono::milliseconds after);
    void reject_busy(int fd);
    /// Takes in the connections other workers have handed to this one.
    void take_handed();
    struct Inbox final : Watcher {
        explicit Inbox(Server& s) : server(s) {}
        void on_events(std::uint32_t) override { server.take_handed(); }
        Server& server;
    };
    void sweep();
    void heartbeat();

    EventLoop& loop_;
    BuiltinWorkerOptions options_;
    std::optional<FileCache> files_;
    DateCache date_;
    std::string healthz_;         ///< healthz_response(), for the Date it has
    std::string healthz_date_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    /// The open connections. Deferred calls and timers of a connection hold it too.
    std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
    /// Closed during this turn: kept until its end, as an event of this turn may still name one.
    std::vector<std::shared_ptr<Connection>> closed_;
    EventLoop::TimerId sweep_timer_ = 0;
    std::optional<LoadBoard> board_;  ///< shared with the fleet's other bundled workers
    std::optional<Handoff> handoff_;  ///< with the board and a TCP listener
    Inbox inbox_{*this};
    bool steered_ = false;  ///< given other slots' sockets (`reuse_port: cpu`)
    /// The board's margin: wider when steered (LoadBoard::kStealMargin).
    int margin() const { return steered_ ? LoadBoard::kStealMargin : LoadBoard::kMargin; }
    Notifier notifier_;
    RequestStats stats_;
    std::string last_stats_;         ///< the last STATS sent
    Clock::time_point last_sent_{};  ///< when the last message went to the daemon
    bool draining_ = false;
    Clock::time_point drain_started_;
    std::function<void()> on_drained_;
};

}  // namespace workerd::http
