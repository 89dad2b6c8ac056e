#include "daemon/http/connection.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <thread>

#include <boost/beast/http/error.hpp>
#include <fmt/format.h>

#include "daemon/http/http_date.hpp"
#include "daemon/http/static_files.hpp"

namespace workerd::http {

namespace beast = boost::beast;

namespace {

constexpr long kMaxDemoMs = 60'000;
constexpr std::size_t kReadSize = 64 * 1024;
/// The most a connection sends in one turn of the loop before letting the others have theirs
/// (a fast reader of a large file would otherwise keep the loop to itself), as nginx's
/// sendfile_max_chunk.
constexpr std::uint64_t kSendPerTurn = 2 * 1024 * 1024;
/// A file part this large goes from the worker on its client's CPU (Handoff); smaller answers
/// gain more from the board's even spread than from where they are sent.
constexpr std::uint64_t kHandOffFrom = 1024 * 1024;

// A whole number query parameter (at most 9 digits); nullopt when absent or not one.
std::optional<long> whole_param(const Target& target, const char* name) {
    auto text = query_param(target.query, name);
    if (!text || text->empty() || text->size() > 9 ||
        text->find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    return std::stol(*text);
}

// ms=N for the demo endpoints; nullopt when absent or not a number.
std::optional<long> demo_ms(const Target& target) {
    const auto ms = whole_param(target, "ms");
    return ms ? std::optional<long>(std::min(*ms, kMaxDemoMs)) : std::nullopt;
}

void append_number(std::string& out, std::uint64_t n) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
}

}  // namespace

Connection::Connection(Server& server, UniqueFd socket, bool tcp, std::string_view handed)
    : server_(server), socket_(std::move(socket)), tcp_(tcp), last_activity_(Clock::now()) {
    if (!handed.empty()) {
        handed_ = true;
        const auto space = buffer_.prepare(handed.size());
        std::memcpy(space.data(), handed.data(), handed.size());
        buffer_.commit(handed.size());
    }
}

Connection::~Connection() {
    // A request cut short by the worker's own exit still counts as finished: failed.
    if (request_started_) server_.request_finished(*request_started_, shed_, 0);
}

void Connection::start() {
    // Watched for everything at once, edge-triggered, until it closes: no epoll_ctl per request.
    server_.loop().add(socket_.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP, this);
    read_request();  // the request may be there already: clients send it right after connecting
}

void Connection::on_events(std::uint32_t events) {
    if (phase_ == Phase::closed) return;
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) peer_closed_ = true;
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) readable_ = true;
    if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) writable_ = true;
    if (phase_ == Phase::reading && readable_) {
        read_more();
    } else if (phase_ == Phase::writing && writable_) {
        write_more();
    }
}

void Connection::read_request() {
    phase_ = Phase::reading;
    buffer_.consume(parsed_);  // the previous request's
    parsed_ = 0;
    request_whole_ = true;
    parser_.emplace(head_);
    parser_->header_limit(static_cast<std::uint32_t>(server_.options().max_header_size));
    parser_->body_limit(server_.options().max_body_size);
    parse_buffered();
}

void Connection::parse_buffered() {
    while (buffer_.size() > parsed_) {
        beast::error_code ec;
        const auto data = buffer_.data();
        const std::size_t used = parser_->put(
            boost::asio::const_buffer(static_cast<const char*>(data.data()) + parsed_, data.size() - parsed_), ec);
        parsed_ += used;
        if (parsed_ > Handoff::kMaxBytes) {  // a long request (a body): not handed; as before
            buffer_.consume(parsed_);
            parsed_ = 0;
            request_whole_ = false;
        }
        if (ec == bhttp::error::need_more) break;
        if (ec) return on_request(ec);
        if (parser_->is_done()) return on_request({});
        if (used == 0) break;
    }
    read_more();
}

void Connection::read_more() {
    if (!readable_) return;  // the next edge says when there is more
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    const auto space = buffer_.prepare(kReadSize);
    iovec iov{space.data(), space.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = 0;
    do {
        n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        readable_ = false;
        return;
    }
    if (n < 0) return close();
    if (n == 0) {
        // The client closed its side: the end of a request sent without a length, or of the
        // connection between requests.
        if (!parser_->got_some()) return close();
        beast::error_code ec;
        parser_->put_eof(ec);
        return on_request(ec);
    }
    // Less than asked for: the kernel had no more (unless the peer has closed, when the next
    // read returns the end). The next edge says when there is.
    if (static_cast<std::size_t>(n) < space.size() && !peer_closed_) readable_ = false;
    received_ns_ = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts{};
            std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
            received_ns_ = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
        }
    }
    // (last_activity_ stays: a request must arrive whole within keepalive_timeout of the last
    // one; a byte at a time does not keep a connection open.)
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

void Connection::on_request(const beast::error_code& ec) {
    if (ec == bhttp::error::end_of_stream) return close();
    phase_ = Phase::processing;
    last_activity_ = Clock::now();
    request_started_ = last_activity_;
    shed_ = server_.request_started(ec ? std::nullopt : queued_us());
    if (ec == bhttp::error::header_limit) return send_error(bhttp::status::request_header_fields_too_large, true);
    if (ec == bhttp::error::body_limit) return send_error(bhttp::status::payload_too_large, true);
    if (ec) return send_error(bhttp::status::bad_request, true);
    version_ = head_.version;
    head_only_ = head_.method == bhttp::verb::head;
    // While draining, every response says Connection: close: the client reconnects to a
    // worker that is not going away, and nothing is reset under it.
    keep_alive_ = parser_->keep_alive() && !server_.draining();
    // Too late to be useful (queue_timeout), or too many at once (max_concurrency): 503 now.
    if (shed_) return send_unavailable();
    route();
}

// 503 with a hint to retry; the connection stays open for the next request.
void Connection::send_unavailable() {
    begin(bhttp::status::service_unavailable);
    header("Retry-After", "1");
    header("Content-Type", "text/plain; charset=utf-8");
    body_.assign("Service Unavailable\n");
    body_view_ = body_;
    end_head(body_.size());
    send();
}

void Connection::route() {
    if (!parse_target(head_.target, target_)) return send_error(bhttp::status::bad_request, false);
    const bool get_or_head = head_.method == bhttp::verb::get || head_.method == bhttp::verb::head;
    if (target_.path == "/healthz") {
        if (!get_or_head) return send_error(bhttp::status::method_not_allowed, false);
        if (version_ == 11 && keep_alive_ && !head_only_) {
            status_ = 200;
            out_.assign(server_.healthz_response());  // head and body, made once a second
            body_view_ = {};
            return send();
        }
        return send_text(bhttp::status::ok, "ok\n", "text/plain; charset=utf-8");
    }
    if (server_.options().demo && target_.path.rfind("/demo/", 0) == 0) {
        if (!get_or_head) return send_error(bhttp::status::method_not_allowed, false);
        return serve_demo();
    }
    if (server_.files() != nullptr) {
        if (!get_or_head) return send_error(bhttp::status::method_not_allowed, false);
        return serve_static();
    }
    send_error(bhttp::status::not_found, false);
}

void Connection::serve_demo() {
    const auto& o = server_.options();
    if (target_.path == "/demo/whoami") {
        return send_text(bhttp::status::ok,
                         fmt::format("{{\"pid\":{},\"slot\":{},\"generation\":{}}}\n", ::getpid(), o.slot, o.generation),
                         "application/json");
    }
    if (target_.path == "/demo/status") {
        // Answers with the status asked for (200..599): a failing route, for the response
        // classes in STATS and what watches them.
        const auto code = whole_param(target_, "code");
        if (!code || *code < 200 || *code > 599 || *code == 204 || *code == 304) {  // (those have no body)
            return send_text(bhttp::status::bad_request,
                             "code must be an HTTP status from 200 to 599 (not 204 or 304), e.g. ?code=500\n",
                             "text/plain; charset=utf-8");
        }
        return send_text(static_cast<bhttp::status>(*code), fmt::format("{{\"status\":{}}}\n", *code), "application/json");
    }
    const bool io = target_.path == "/demo/io";
    const bool block = target_.path == "/demo/block";
    const bool cpu = target_.path == "/demo/cpu";
    if (!io && !block && !cpu) return send_error(bhttp::status::not_found, false);
    const auto ms = demo_ms(target_);
    if (!ms) {
        return send_text(bhttp::status::bad_request, "ms must be a whole number of milliseconds, e.g. ?ms=100\n",
                         "text/plain; charset=utf-8");
    }
    std::string body = fmt::format("{{\"{}_ms\":{},\"pid\":{}}}\n", io ? "waited" : block ? "blocked" : "burned",
                                   *ms, ::getpid());
    if (io) {
        // Waits on a timer: the loop keeps serving other connections meanwhile.
        timer_ = server_.loop().after(std::chrono::milliseconds(*ms), [self = shared_from_this(), body] {
            self->timer_.reset();
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

void Connection::serve_static() {
    FileCache& files = *server_.files();
    auto found = files.find(target_.path, *request_started_);
    if (found->kind == CachedFile::Kind::redirect) {
        begin(bhttp::status::moved_permanently);
        out_ += "Location: ";
        out_ += found->location;
        if (!target_.query.empty()) {
            out_ += '?';
            out_ += target_.query;
        }
        out_ += "\r\n";
        header("Content-Type", "text/plain; charset=utf-8");
        body_.assign("moved to ").append(found->location).append("\n");
        body_view_ = body_;
        end_head(body_.size());
        return send();
    }
    if (found->kind == CachedFile::Kind::unavailable) {
        return send_unavailable();  // out of descriptors: a moment later it may work; 404 would be a lie
    }
    if (found->kind != CachedFile::Kind::file) return send_error(bhttp::status::not_found, false);

    // A precompressed sibling (file.br, file.gz) when the client takes it, as nginx's
    // gzip_static; its presence makes every answer for the file vary by Accept-Encoding.
    std::shared_ptr<const CachedFile> chosen = found;
    std::string_view encoding;
    bool vary = false;
    if (server_.options().precompressed) {
        static constexpr std::pair<std::string_view, std::string_view> kSiblings[] = {{".br", "br"}, {".gz", "gzip"}};
        if (!found->siblings_known) {
            // Looked up once for as long as the entry lives (its validity): not per request.
            for (std::size_t i = 0; i < 2; ++i) {
                key_.assign(found->file.path).append(kSiblings[i].first);
                auto sibling = files.find(key_, *request_started_);
                if (sibling->kind == CachedFile::Kind::file) found->siblings[i] = std::move(sibling);
            }
            found->siblings_known = true;
        }
        for (std::size_t i = 0; i < 2; ++i) {
            auto& sibling = found->siblings[i];
            if (sibling && (!sibling->in_memory || *request_started_ >= sibling->valid_until)) {
                // Sent from its file (checked at each use, like any file sent that way), or
                // past its own validity: asked for again.
                key_.assign(found->file.path).append(kSiblings[i].first);
                auto fresh = files.find(key_, *request_started_);
                sibling = fresh->kind == CachedFile::Kind::file ? std::move(fresh) : nullptr;
            }
            if (!sibling) continue;
            vary = true;
            if (encoding.empty() && accepts_encoding(head_.accept_encoding, kSiblings[i].second)) {
                chosen = sibling;
                encoding = kSiblings[i].second;
            }
        }
    }
    const CachedFile& file = *chosen;

    // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    bool not_modified = false;
    if (head_.has_if_none_match) {
        not_modified = etag_matches(head_.if_none_match, file.etag);
    } else if (head_.has_if_modified_since) {
        const auto since = parse_http_date(head_.if_modified_since);
        not_modified = since && file.file.mtime <= *since;
    }
    if (not_modified) {
        begin(bhttp::status::not_modified);
        representation(file, encoding, vary);
        end_head(std::nullopt);
        body_view_ = {};
        return send();
    }

    ByteRange range{0, file.file.size == 0 ? 0 : file.file.size - 1};
    RangeKind kind = RangeKind::full;
    if (head_.has_range) kind = parse_range(head_.range, file.file.size, range);
    if (kind == RangeKind::unsatisfiable) {
        begin(bhttp::status::range_not_satisfiable);
        out_ += "Content-Range: bytes */";
        append_number(out_, file.file.size);
        out_ += "\r\n";
        header("Content-Type", "text/plain; charset=utf-8");
        body_.assign("range not satisfiable\n");
        body_view_ = body_;
        end_head(body_.size());
        return send();
    }
    const std::uint64_t length = file.file.size == 0 ? 0 : range.last - range.first + 1;
    if (length >= kHandOffFrom && !head_only_ && hand_off()) return;
    // The common answer (the whole file, as it is, on a kept-alive HTTP/1.1 connection) reuses
    // the head made for the file's previous one within the same second, as /healthz does.
    const bool plain = kind == RangeKind::full && encoding.empty() && version_ == 11 && keep_alive_;
    if (plain && file.head_date == server_.date().now() && file.head_vary == vary) {
        status_ = 200;
        out_.assign(file.head);
    } else {
        head_for_file(file, found->type, encoding, vary, kind, range, length);
        if (plain) {
            file.head.assign(out_);
            file.head_date = server_.date().now();
            file.head_vary = vary;
        }
    }
    body_for_file(std::move(chosen), range, length);
}

bool Connection::hand_off() {
    if (!server_.hands_off()) return false;
    server_.note_cpu();
    if (handed_ || !tcp_ || !request_whole_ || server_.draining()) return false;
    int incoming = -1;
    socklen_t len = sizeof incoming;
    if (::getsockopt(socket_.get(), SOL_SOCKET, SO_INCOMING_CPU, &incoming, &len) != 0 || incoming < 0 ||
        incoming == ::sched_getcpu()) {
        return false;
    }
    const auto data = buffer_.data();
    if (!server_.hand_off(incoming, socket_.get(), std::string_view(static_cast<const char*>(data.data()), data.size()))) {
        return false;
    }
    // The other worker holds the socket now. Out of this loop's epoll set first: closing this
    // descriptor alone would not take it out while the other's stays open.
    server_.request_handed_off();
    request_started_.reset();
    phase_ = Phase::closed;
    server_.loop().remove(socket_.get());
    socket_.reset();  // no shutdown: the connection goes on over there
    server_.closed(this);
    return true;
}

void Connection::representation(const CachedFile& file, std::string_view encoding, bool vary) {
    header("ETag", file.etag);
    header("Last-Modified", file.last_modified);
    if (!encoding.empty()) header("Content-Encoding", encoding);
    if (vary) header("Vary", "Accept-Encoding");
}

void Connection::head_for_file(const CachedFile& file, std::string_view type, std::string_view encoding, bool vary,
                               RangeKind kind, const ByteRange& range, std::uint64_t length) {
    begin(kind == RangeKind::partial ? bhttp::status::partial_content : bhttp::status::ok);
    representation(file, encoding, vary);
    header("Content-Type", type);
    header("Accept-Ranges", "bytes");
    if (kind == RangeKind::partial) {
        out_ += "Content-Range: bytes ";
        append_number(out_, range.first);
        out_ += '-';
        append_number(out_, range.last);
        out_ += '/';
        append_number(out_, file.file.size);
        out_ += "\r\n";
    }
    end_head(length);
}

void Connection::body_for_file(std::shared_ptr<const CachedFile> chosen, const ByteRange& range, std::uint64_t length) {
    if (chosen->in_memory) {
        body_view_ = std::string_view(chosen->content).substr(range.first, length);
    } else {
        body_view_ = {};
        file_offset_ = range.first;
        file_left_ = length;
    }
    file_ = std::move(chosen);  // keeps the descriptor (and the bytes) while they are sent
    send();
}

void Connection::begin(bhttp::status status) {
    status_ = static_cast<int>(status);
    out_.assign(version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    append_number(out_, static_cast<unsigned>(status));
    out_ += ' ';
    const auto reason = bhttp::obsolete_reason(status);
    out_.append(reason.data(), reason.size());
    out_ += "\r\nServer: workerd\r\nDate: ";
    out_ += server_.date().now();
    out_ += "\r\n";
}

void Connection::header(std::string_view name, std::string_view value) {
    out_ += name;
    out_ += ": ";
    out_ += value;
    out_ += "\r\n";
}

void Connection::end_head(std::optional<std::uint64_t> length) {
    if (length) {
        out_ += "Content-Length: ";
        append_number(out_, *length);
        out_ += "\r\n";
    }
    // HTTP/1.1 keeps the connection unless told; HTTP/1.0 closes it unless told.
    if (version_ >= 11 && !keep_alive_) out_ += "Connection: close\r\n";
    if (version_ < 11 && keep_alive_) out_ += "Connection: keep-alive\r\n";
    out_ += "\r\n";
}

void Connection::send_text(bhttp::status status, std::string_view body, std::string_view content_type) {
    begin(status);
    header("Content-Type", content_type);
    body_.assign(body);
    body_view_ = body_;
    end_head(body_.size());
    send();
}

void Connection::send_error(bhttp::status status, bool close_after) {
    if (close_after) keep_alive_ = false;
    begin(status);
    if (status == bhttp::status::method_not_allowed) header("Allow", "GET, HEAD");
    header("Content-Type", "text/plain; charset=utf-8");
    const auto reason = bhttp::obsolete_reason(status);
    body_.assign(reason.data(), reason.size()).append("\n");
    body_view_ = body_;
    end_head(body_.size());
    send();
}

// The response goes to the kernel at once, as far as the socket takes it (a small response: all
// of it, in one sendmsg); what is left waits for the socket's next writable edge. The request
// counts as finished when its last byte is handed over: its time is the worker's, not the time
// its completion then waits behind other connections' work in the loop.
void Connection::send() {
    phase_ = Phase::writing;
    sent_ = 0;
    if (head_only_) {
        body_view_ = {};  // HEAD: the GET's headers, Content-Length included, and no body
        file_left_ = 0;
    }
    write_more();
}

void Connection::write_more() {
    std::uint64_t budget = kSendPerTurn;
    while (true) {
        const std::size_t in_memory = out_.size() + body_view_.size();
        if (sent_ < in_memory) {
            iovec iov[2];
            int count = 0;
            if (sent_ < out_.size()) iov[count++] = {out_.data() + sent_, out_.size() - sent_};
            const std::size_t from = sent_ > out_.size() ? sent_ - out_.size() : 0;
            if (from < body_view_.size()) {
                iov[count++] = {const_cast<char*>(body_view_.data()) + from, body_view_.size() - from};
            }
            msghdr msg{};
            msg.msg_iov = iov;
            msg.msg_iovlen = static_cast<std::size_t>(count);
            // MSG_MORE: with a file part to come, the head waits to share its packet.
            const ssize_t n = ::sendmsg(socket_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT | (file_left_ > 0 ? MSG_MORE : 0));
            if (n < 0) {
                if (write_failed()) continue;
                return;
            }
            sent_ += static_cast<std::size_t>(n);
            continue;
        }
        if (file_left_ == 0) break;
        if (budget == 0) {
            // Others' turn; this one goes on at the end of it.
            server_.loop().post([self = shared_from_this()] {
                if (self->phase_ == Phase::writing && self->writable_) self->write_more();
            });
            return;
        }
        // A file part that takes more than one call (more than this turn may send, or a call
        // came back short, below) goes out corked to its last byte: each call would otherwise
        // end with a part-filled packet, pushed at once (nginx's tcp_nopush; a file that goes
        // in one call costs no setsockopt).
        const std::uint64_t want = std::min(file_left_, budget);
        if (want < file_left_ && !corked_) cork(true);
        auto offset = static_cast<off_t>(file_offset_);
        const ssize_t n = ::sendfile(socket_.get(), file_->fd.get(), &offset, want);
        if (n < 0) {
            if (write_failed()) continue;
            return;
        }
        // The file shrank under us: the promised length cannot be kept, so the client must see
        // the connection end rather than wait for bytes that will not come.
        if (n == 0) return close();
        file_offset_ += static_cast<std::uint64_t>(n);
        file_left_ -= static_cast<std::uint64_t>(n);
        budget -= std::min(budget, static_cast<std::uint64_t>(n));
        if (file_left_ > 0 && !corked_) cork(true);
    }
    if (corked_) cork(false);  // and what waits goes
    finish_request();
    after_write();
}

void Connection::cork(bool on) {
    if (!tcp_) return;
    const int value = on ? 1 : 0;
    if (::setsockopt(socket_.get(), IPPROTO_TCP, TCP_CORK, &value, sizeof value) == 0) corked_ = on;
}

bool Connection::write_failed() {
    if (errno == EINTR) return true;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        writable_ = false;  // the next writable edge goes on
    } else {
        close();
    }
    return false;
}

void Connection::finish_request(bool failed) {
    if (!request_started_) return;
    server_.request_finished(*request_started_, shed_, failed ? 0 : status_);
    request_started_.reset();
    shed_ = false;
    status_ = 0;
}

void Connection::after_write() {
    body_view_ = {};
    file_.reset();
    if (!keep_alive_) return close();
    last_activity_ = Clock::now();
    if (buffer_.size() > parsed_ || readable_) {
        // Something may be there already (a client pipelining, or a read that filled the
        // buffer): read it on the next turn, so that such a client takes turns with the others.
        phase_ = Phase::processing;
        server_.loop().post([self = shared_from_this()] {
            if (self->phase_ == Phase::processing) self->read_request();
        });
        return;
    }
    read_request();  // waits for the next edge: no read that could only say "nothing yet"
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
    if (phase_ == Phase::closed) return;
    phase_ = Phase::closed;
    if (timer_) server_.loop().cancel(*timer_);
    timer_.reset();
    // A request cut short (the client went away mid-request, a write failed) still counts as
    // finished: failed.
    finish_request(true);
    ::shutdown(socket_.get(), SHUT_WR);
    socket_.reset();  // and out of the epoll set with it
    file_.reset();
    server_.closed(this);
}

}  // namespace workerd::http
