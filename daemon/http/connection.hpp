#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/status.hpp>

#include "daemon/http/request.hpp"
#include "daemon/http/server.hpp"
#include "daemon/http/target.hpp"

namespace workerd::http {

/// One client connection of the bundled worker: reads requests (keep-alive, bounded head and
/// body), routes them (/healthz, /demo/*, static files) and writes responses, on the worker's
/// EventLoop. The socket is watched edge-triggered from accept to close, and the connection
/// remembers what the last edge said (readable, writable), as nginx does: a keep-alive request
/// costs one recvmsg and one sendmsg (plus, for a large file, one fstat and one sendfile; and two
/// setsockopt for TCP_CORK when it takes several sendfile calls).
class Connection final : public Watcher, public std::enable_shared_from_this<Connection> {
public:
    /// `tcp`: the socket is TCP (corked while a large file goes out in several sendfile calls).
    /// `handed`: a connection another worker handed over (Handoff), with the bytes it had read.
    Connection(Server& server, UniqueFd socket, bool tcp, std::string_view handed = {});
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start();
    void on_events(std::uint32_t events) override;

    /// Closes the connection if it is waiting for a request and has been idle past its
    /// allowance: keepalive_timeout normally, Server::kDrainIdleWindow once draining.
    void expire(Clock::time_point now);

    /// When the request being served arrived; empty between requests.
    std::optional<Clock::time_point> request_started_at() const { return request_started_; }

private:
    enum class Phase { reading, processing, writing, closed };

    void read_request();
    /// Feeds the buffered bytes to the parser; reads more (read_more) while it needs more.
    void parse_buffered();
    /// recvmsg with the kernel's receive timestamp, while the socket has something to read.
    void read_more();
    void on_request(const boost::beast::error_code& ec);
    /// How long the request now complete waited in the kernel, from the receive timestamp of
    /// the read that completed its head; nullopt when the kernel gave none (Unix sockets).
    std::optional<std::int64_t> queued_us() const;
    void route();
    void serve_demo();
    void serve_static();
    /// The validators, and the encoding's headers, of a file's answer.
    void representation(const CachedFile& file, std::string_view encoding, bool vary);
    /// The head of a 200 or 206 for `file` (`type`: the original file's, for a sibling).
    void head_for_file(const CachedFile& file, std::string_view type, std::string_view encoding, bool vary,
                       RangeKind kind, const ByteRange& range, std::uint64_t length);
    /// Sends `length` bytes of `chosen` from `range.first`, from memory or with sendfile.
    void body_for_file(std::shared_ptr<const CachedFile> chosen, const ByteRange& range, std::uint64_t length);
    void send_unavailable();
    /// A large file's answer: when the connection's packets come in on the CPU another worker
    /// runs on, hands the connection (and the request's bytes) to that worker. True when it went
    /// (this connection is then closed here, and the other worker answers).
    bool hand_off();

    // --- responses: a head built in place, a body from memory, and a file part ---
    /// Starts a response: status line, Server, Date.
    void begin(bhttp::status status);
    void header(std::string_view name, std::string_view value);
    /// Content-Length (unless `length` is empty: a 304), Connection when needed, the blank line.
    void end_head(std::optional<std::uint64_t> length);
    /// A whole small response: head, `body` (kept in `body_`), sent.
    void send_text(bhttp::status status, std::string_view body, std::string_view content_type);
    void send_error(bhttp::status status, bool close);
    /// Sends the head and, unless HEAD, `body_view_` then `file_length_` bytes of `file_`.
    void send();
    /// Writes what is left of the response as far as the socket takes it.
    void write_more();
    /// TCP_CORK on or off (a TCP socket only; a failure leaves it as it was).
    void cork(bool on);
    /// After a write that returned -1: true to try again at once (EINTR); otherwise the socket
    /// is full (writable_ cleared, the next edge goes on) or broken (closed).
    bool write_failed();
    /// The request is answered (its last byte is with the kernel), or the write `failed`:
    /// counted in the server's stats, by the response's class.
    void finish_request(bool failed = false);
    /// Closes, or reads the next request.
    void after_write();
    void close();

    Server& server_;
    UniqueFd socket_;
    bool readable_ = true;     ///< the last edge said readable, and no read has found it empty since
    bool writable_ = true;     ///< no write has found the socket's buffer full since the last edge
    bool peer_closed_ = false; ///< EPOLLRDHUP: a short read does not mean "nothing more to read"
    const bool tcp_;
    bool corked_ = false;      ///< TCP_CORK is on: a large file is going out in several calls
    Phase phase_ = Phase::reading;
    boost::beast::flat_buffer buffer_;
    /// Of buffer_, the bytes given to the parser for the request being read or answered: kept
    /// until the next request starts, so a handed-off connection can carry them (up to
    /// Handoff::kMaxBytes; a longer request lets them go as before, and is not handed).
    std::size_t parsed_ = 0;
    bool request_whole_ = true;  ///< buffer_ still starts at the current request
    bool handed_ = false;        ///< came from another worker: answered here, never handed on
    RequestHead head_;
    std::optional<RequestParser> parser_;
    Target target_;
    Clock::time_point last_activity_;
    std::optional<Clock::time_point> request_started_;
    std::int64_t received_ns_ = 0;  ///< CLOCK_REALTIME of the last read's data in the kernel; 0: none
    bool shed_ = false;             ///< the request being answered is shed (503 at once)
    int status_ = 0;                ///< the status of the response being written; 0 before one
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool head_only_ = false;        ///< HEAD: no body
    std::optional<EventLoop::TimerId> timer_;  ///< /demo/io

    // The response being written.
    std::string out_;                 ///< the head (capacity kept between responses)
    std::string body_;                ///< an owned body (capacity kept)
    std::string_view body_view_;      ///< the body in memory: body_ or a cached file's bytes
    std::shared_ptr<const CachedFile> file_;  ///< the file being served (keeps its fd and bytes)
    std::uint64_t file_offset_ = 0;   ///< sendfile: the next byte
    std::uint64_t file_left_ = 0;     ///< sendfile: bytes still to send
    std::size_t sent_ = 0;            ///< of out_ + body_view_
    std::string key_;                 ///< the file cache key of a precompressed sibling
};

}  // namespace workerd::http
