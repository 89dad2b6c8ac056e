#include "daemon/http/connection.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <thread>

#include <boost/beast/http/file_body.hpp>
#include <fmt/format.h>

#include "daemon/http/http_date.hpp"
#include "daemon/http/static_files.hpp"

namespace workerd::http {

namespace asio = boost::asio;

namespace {

constexpr long kMaxDemoMs = 60'000;
constexpr std::uint64_t kMaxRangeBytes = 16 * 1024 * 1024;

// ms=N for the demo endpoints; nullopt when absent or not a number.
// A whole number query parameter (at most 9 digits); nullopt when absent or not one.
std::optional<long> whole_param(const Target& target, const char* name) {
    auto text = query_param(target.query, name);
    if (!text || text->empty() || text->size() > 9 ||
        text->find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    return std::stol(*text);
}

std::optional<long> demo_ms(const Target& target) {
    const auto ms = whole_param(target, "ms");
    return ms ? std::optional<long>(std::min(*ms, kMaxDemoMs)) : std::nullopt;
}

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

Connection::Connection(Server& server, Socket socket)
    : server_(server), socket_(std::move(socket)), last_activity_(Clock::now()) {
    server_.add(this);
}

Connection::~Connection() {
    // A request cut short (the client went away mid-request) still counts as finished: failed.
    if (request_started_) server_.request_finished(*request_started_, shed_, 0);
    server_.remove(this);
}

void Connection::start() {
    // Reads (recvmsg, MSG_DONTWAIT) and the first try of every write (send) never wait here:
    // when the kernel has no room or no data, the loop waits for the socket.
    beast::error_code ignored;
    socket_.non_blocking(true, ignored);
    read_request();
}

void Connection::read_request() {
    phase_ = Phase::reading;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options().max_header_size));
    parser_->body_limit(server_.options().max_body_size);
    parse_buffered();
}

// The loop Beast's async_read runs, with our own reads: recv does not return the kernel's
// receive timestamp, recvmsg does.
void Connection::parse_buffered() {
    while (buffer_.size() > 0) {
        beast::error_code ec;
        const std::size_t used = parser_->put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec == bhttp::error::need_more) break;
        if (ec) return on_read(ec);
        if (parser_->is_done()) return on_read({});
        if (used == 0) break;
    }
    read_more();
}

void Connection::read_more() {
    constexpr std::size_t kReadSize = 64 * 1024;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    auto space = buffer_.prepare(kReadSize);
    iovec iov{space.data(), space.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        socket_.async_wait(Socket::wait_read, [self = shared_from_this()](const beast::error_code& ec) {
            if (ec) return self->on_read(ec);
            self->read_more();
        });
        return;
    }
    if (n < 0) return close();
    if (n == 0) {
        // The client closed its side: the end of a request sent without a length, or of the
        // connection between requests.
        if (!parser_->got_some()) return on_read(bhttp::error::end_of_stream);
        beast::error_code ec;
        parser_->put_eof(ec);
        return on_read(ec);
    }
    received_ns_ = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts{};
            std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
            received_ns_ = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
        }
    }
    // (last_activity_ stays: a request must arrive whole within keepalive_timeout of the last
    // one, as with Beast's async_read; a byte at a time does not keep a connection open.)
    buffer_.commit(static_cast<std::size_t>(n));
    parse_buffered();
}

std::optional<std::int64_t> Connection::queued_us() const {
    if (received_ns_ == 0) return std::nullopt;
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const std::int64_t now_ns = static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
    return std::max<std::int64_t>(0, (now_ns - received_ns_) / 1000);  // a clock step back: 0
}

void Connection::on_read(const beast::error_code& ec) {
    if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || ec == asio::error::eof || ec == asio::error::bad_descriptor) {
        return close();
    }
    phase_ = Phase::processing;
    last_activity_ = Clock::now();
    request_started_ = last_activity_;
    shed_ = server_.request_started(ec ? std::nullopt : queued_us());
    if (ec == bhttp::error::header_limit) return send_error(bhttp::status::request_header_fields_too_large, true);
    if (ec == bhttp::error::body_limit) return send_error(bhttp::status::payload_too_large, true);
    if (ec) return send_error(bhttp::status::bad_request, true);
    const Request& req = parser_->get();
    version_ = req.version();
    head_ = req.method() == bhttp::verb::head;
    // While draining, every response says Connection: close: the client reconnects to a
    // worker that is not going away, and nothing is reset under it.
    keep_alive_ = req.keep_alive() && !server_.draining();
    if (shed_) return shed();
    route(req);
}

// Too late to be useful (queue_timeout), or too many at once (max_concurrency): 503 now, with
// a hint to retry, and the connection stays open for the next request.
void Connection::shed() {
    bhttp::response<bhttp::string_body> res{bhttp::status::service_unavailable, version_};
    res.set(bhttp::field::retry_after, "1");
    res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    res.body() = "Service Unavailable\n";
    send(std::move(res));
}

void Connection::route(const Request& req) {
    auto target = parse_target(sv(req.target()));
    if (!target) return send_error(bhttp::status::bad_request, false);
    const bool get_or_head = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
    if (target->path == "/healthz") {
        if (!get_or_head) return send_error(bhttp::status::method_not_allowed, false);
        return send_text(bhttp::status::ok, "ok\n", "text/plain; charset=utf-8");
    }
    if (server_.options().demo && target->path.rfind("/demo/", 0) == 0) return serve_demo(req, *target);
    if (!server_.canonical_root().empty()) {
        if (!get_or_head) return send_error(bhttp::status::method_not_allowed, false);
        return serve_static(req, *target);
    }
    send_error(bhttp::status::not_found, false);
}

void Connection::serve_demo(const Request& req, const Target& target) {
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
        return send_error(bhttp::status::method_not_allowed, false);
    }
    const auto& o = server_.options();
    if (target.path == "/demo/whoami") {
        return send_text(bhttp::status::ok,
                         fmt::format("{{\"pid\":{},\"slot\":{},\"generation\":{}}}\n", ::getpid(),
                                     o.slot, o.generation),
                         "application/json");
    }
    if (target.path == "/demo/status") {
        // Answers with the status asked for (200..599): a failing route, for the response
        // classes in STATS and what watches them.
        const auto code = whole_param(target, "code");
        if (!code || *code < 200 || *code > 599 || *code == 204 || *code == 304) {  // (those have no body)
            return send_text(bhttp::status::bad_request,
                             "code must be an HTTP status from 200 to 599 (not 204 or 304), e.g. ?code=500\n",
                             "text/plain; charset=utf-8");
        }
        return send_text(static_cast<bhttp::status>(*code), fmt::format("{{\"status\":{}}}\n", *code), "application/json");
    }
    const bool io = target.path == "/demo/io";
    const bool block = target.path == "/demo/block";
    const bool cpu = target.path == "/demo/cpu";
    if (!io && !block && !cpu) return send_error(bhttp::status::not_found, false);
    const auto ms = demo_ms(target);
    if (!ms) {
        return send_text(bhttp::status::bad_request,
                         "ms must be a whole number of milliseconds, e.g. ?ms=100\n",
                         "text/plain; charset=utf-8");
    }
    const std::string body = fmt::format("{{\"{}_ms\":{},\"pid\":{}}}\n",
                                         io ? "waited" : block ? "blocked" : "burned", *ms, ::getpid());
    if (io) {
        // Waits on a timer: the loop keeps serving other connections meanwhile.
        timer_.emplace(socket_.get_executor(), std::chrono::milliseconds(*ms));
        timer_->async_wait([self = shared_from_this(), body](const beast::error_code& ec) {
            if (ec) return self->close();
            self->send_text(bhttp::status::ok, body, "application/json");
        });
        return;
    }
    if (block) {
        std::this_thread::sleep_for(std::chrono::milliseconds(*ms));  // on purpose: blocks the loop
    } else {
        const auto until = Clock::now() + std::chrono::milliseconds(*ms);
        volatile std::uint64_t spin = 0;
        while (Clock::now() < until) {
            for (int i = 0; i < 1000; ++i) spin = spin + static_cast<std::uint64_t>(i);
        }
    }
    send_text(bhttp::status::ok, body, "application/json");
}

void Connection::serve_static(const Request& req, const Target& target) {
    const StaticLookup found = lookup_static(server_.canonical_root(), target.path);
    if (found.kind == StaticLookup::Kind::redirect) {
        bhttp::response<bhttp::string_body> res{bhttp::status::moved_permanently, version_};
        res.set(bhttp::field::location, found.location + (target.query.empty() ? "" : "?" + target.query));
        res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
        res.body() = "moved to " + found.location + "\n";
        return send(std::move(res));
    }
    if (found.kind != StaticLookup::Kind::file) return send_error(bhttp::status::not_found, false);
    const StaticFile& file = found.file;
    const std::string etag = make_etag(file);
    const std::string last_modified = format_http_date(file.mtime);
    auto validators = [&](auto& res) {
        res.set(bhttp::field::etag, etag);
        res.set(bhttp::field::last_modified, last_modified);
    };

    // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    bool not_modified = false;
    if (auto inm = req.find(bhttp::field::if_none_match); inm != req.end()) {
        not_modified = etag_matches(sv(inm->value()), etag);
    } else if (auto ims = req.find(bhttp::field::if_modified_since); ims != req.end()) {
        const auto since = parse_http_date(sv(ims->value()));
        not_modified = since && file.mtime <= *since;
    }
    if (not_modified) {
        bhttp::response<bhttp::empty_body> res{bhttp::status::not_modified, version_};
        validators(res);
        return send(std::move(res));
    }

    const std::string_view type = content_type_for(file.path);
    ByteRange range;
    RangeKind kind = RangeKind::full;
    if (auto r = req.find(bhttp::field::range); r != req.end()) kind = parse_range(sv(r->value()), file.size, range);
    if (kind == RangeKind::unsatisfiable) {
        bhttp::response<bhttp::string_body> res{bhttp::status::range_not_satisfiable, version_};
        res.set(bhttp::field::content_range, fmt::format("bytes */{}", file.size));
        res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
        res.body() = "range not satisfiable\n";
        return send(std::move(res));
    }

    beast::error_code ec;
    bhttp::file_body::value_type body;
    body.open(file.path.c_str(), beast::file_mode::scan, ec);
    if (ec) return send_error(bhttp::status::not_found, false);

    if (kind == RangeKind::partial) {
        // Ranges are read into memory, at most 16 MiB at a time: the Content-Range says what
        // was sent and clients ask for the rest.
        range.last = std::min(range.last, range.first + kMaxRangeBytes - 1);
        std::string bytes(range.last - range.first + 1, '\0');
        body.file().seek(range.first, ec);
        std::size_t got = 0;
        while (!ec && got < bytes.size()) {
            const std::size_t n = body.file().read(bytes.data() + got, bytes.size() - got, ec);
            if (n == 0) break;
            got += n;
        }
        if (ec || got != bytes.size()) return send_error(bhttp::status::internal_server_error, true);
        bhttp::response<bhttp::string_body> res{bhttp::status::partial_content, version_};
        validators(res);
        res.set(bhttp::field::content_type, beast::string_view(type.data(), type.size()));
        res.set(bhttp::field::accept_ranges, "bytes");
        res.set(bhttp::field::content_range, fmt::format("bytes {}-{}/{}", range.first, range.last, file.size));
        res.body() = std::move(bytes);
        return send(std::move(res));
    }

    if (head_) {
        bhttp::response<bhttp::empty_body> res{bhttp::status::ok, version_};
        validators(res);
        res.set(bhttp::field::content_type, beast::string_view(type.data(), type.size()));
        res.set(bhttp::field::accept_ranges, "bytes");
        res.content_length(file.size);
        return send(std::move(res));
    }
    bhttp::response<bhttp::file_body> res{bhttp::status::ok, version_};
    validators(res);
    res.set(bhttp::field::content_type, beast::string_view(type.data(), type.size()));
    res.set(bhttp::field::accept_ranges, "bytes");
    res.body() = std::move(body);
    res.prepare_payload();
    send(std::move(res));
}

void Connection::send_error(bhttp::status status, bool close_after) {
    if (close_after) keep_alive_ = false;
    bhttp::response<bhttp::string_body> res{status, version_};
    if (status == bhttp::status::method_not_allowed) res.set(bhttp::field::allow, "GET, HEAD");
    res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    res.body() = std::string(bhttp::obsolete_reason(status)) + "\n";
    send(std::move(res));
}

void Connection::send_text(bhttp::status status, std::string body, const char* content_type) {
    bhttp::response<bhttp::string_body> res{status, version_};
    res.set(bhttp::field::content_type, content_type);
    res.body() = std::move(body);
    send(std::move(res));
}

template <class Body>
void Connection::finish_headers(bhttp::response<Body>& res) {
    res.set(bhttp::field::server, "workerd");
    res.set(bhttp::field::date, server_.date().now());
    res.keep_alive(keep_alive_);
    if constexpr (std::is_same_v<Body, bhttp::string_body>) {
        res.prepare_payload();
        if (head_) {
            // HEAD: the GET's headers, Content-Length included, and no body.
            const auto length = res.body().size();
            res.body().clear();
            res.content_length(length);
        }
    } else if constexpr (std::is_same_v<Body, bhttp::empty_body>) {
        if (res.result() == bhttp::status::not_modified) res.erase(bhttp::field::content_length);
    }
}

// The response goes to the kernel at once, as far as the socket takes it (a small response: all
// of it, with no trip through the loop); what is left is written asynchronously. The request
// counts as finished when its last byte is handed over: its time is the worker's, not the time
// its completion then waits behind other connections' work in the loop.
template <class Body>
void Connection::send(bhttp::response<Body>&& res) {
    phase_ = Phase::writing;
    finish_headers(res);
    struct Outgoing {
        explicit Outgoing(bhttp::response<Body>&& m) : message(std::move(m)), serializer(message) {}
        bhttp::response<Body> message;
        bhttp::response_serializer<Body> serializer;
    };
    auto out = std::make_shared<Outgoing>(std::move(res));
    response_ = out;
    status_ = static_cast<int>(out->message.result_int());
    const bool close_after = !keep_alive_ || out->message.need_eof();
    beast::error_code ec;
    while (!ec && !out->serializer.is_done()) bhttp::write_some(socket_, out->serializer, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        bhttp::async_write(socket_, out->serializer,
                           [self = shared_from_this(), close_after](const beast::error_code& ec, std::size_t) {
                               self->on_write(ec, close_after);
                           });
        return;
    }
    // Written (or failed) here: the next read starts from the loop, so that a client pipelining
    // many requests takes turns with the others and does not deepen this stack.
    finish_request(static_cast<bool>(ec));
    asio::post(socket_.get_executor(), [self = shared_from_this(), ec, close_after] { self->after_write(ec, close_after); });
}

void Connection::finish_request(bool failed) {
    if (!request_started_) return;
    server_.request_finished(*request_started_, shed_, failed ? 0 : status_);
    request_started_.reset();
    shed_ = false;
    status_ = 0;
}

void Connection::on_write(const beast::error_code& ec, bool close_after) {
    finish_request(static_cast<bool>(ec));
    after_write(ec, close_after);
}

void Connection::after_write(const beast::error_code& ec, bool close_after) {
    response_.reset();
    if (ec || close_after) return close();
    last_activity_ = Clock::now();
    read_request();
}

void Connection::expire(Clock::time_point now) {
    if (phase_ != Phase::reading) return;
    if (server_.draining()) {
        const auto since = std::max(last_activity_, server_.drain_started());
        if (now - since >= Server::kDrainIdleWindow) close();
    } else if (now - last_activity_ >= server_.options().keepalive_timeout) {
        close();
    }
}

void Connection::close() {
    beast::error_code ignored;
    if (socket_.is_open()) {
        socket_.shutdown(Socket::shutdown_send, ignored);
        socket_.close(ignored);
    }
}

}  // namespace workerd::http
