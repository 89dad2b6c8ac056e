#include "daemon/load/load_generator.hpp"

#include <algorithm>
#include <cctype>
#include <deque>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>
#include <fmt/format.h>

namespace workerd::load {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::beast::error_code;

// ---- request specs and URLs ---------------------------------------------------------------

std::optional<RequestSpec> parse_request_spec(const std::string& text, std::string& error) {
    RequestSpec r;
    std::string rest = text;
    // METHOD: an upper-case word before the target.
    if (const auto space = rest.find(' '); space != std::string::npos && rest[0] != '/') {
        const std::string method = rest.substr(0, space);
        if (method.empty() || !std::all_of(method.begin(), method.end(), [](unsigned char c) { return std::isupper(c); })) {
            error = fmt::format("'{}': a request is [METHOD ]/PATH[:WEIGHT][ BODY], e.g. 'POST /items:2 {{\"a\":1}}'", text);
            return std::nullopt;
        }
        r.method = method;
        rest = rest.substr(space + 1);
    }
    if (rest.empty() || rest[0] != '/') {
        error = fmt::format("'{}': the path must start with '/'", text);
        return std::nullopt;
    }
    if (const auto space = rest.find(' '); space != std::string::npos) {
        r.body = rest.substr(space + 1);
        rest = rest.substr(0, space);
    }
    if (const auto colon = rest.rfind(':'); colon != std::string::npos && colon + 1 < rest.size() &&
                                            std::all_of(rest.begin() + static_cast<long>(colon) + 1, rest.end(),
                                                        [](unsigned char c) { return std::isdigit(c); })) {
        const std::string digits = rest.substr(colon + 1);
        if (digits.size() > 6 || std::stoi(digits) < 1) {
            error = fmt::format("'{}': the weight must be 1 to 999999", text);
            return std::nullopt;
        }
        r.weight = std::stoi(digits);
        rest = rest.substr(0, colon);
    }
    if (rest.find_first_of("\r\n\t") != std::string::npos) {
        error = fmt::format("'{}': the path has control characters", text);
        return std::nullopt;
    }
    r.target = rest;
    if (!r.body.empty()) {
        r.content_type = (r.body[0] == '{' || r.body[0] == '[') ? "application/json" : "text/plain; charset=utf-8";
    }
    return r;
}

std::vector<RequestSpec> read_request_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(fmt::format("cannot read {}", path));
    std::vector<RequestSpec> out;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#') continue;
        line = line.substr(first);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
        std::string error;
        auto r = parse_request_spec(line, error);
        if (!r) throw std::runtime_error(fmt::format("{}:{}: {}", path, number, error));
        out.push_back(std::move(*r));
    }
    if (out.empty()) throw std::runtime_error(fmt::format("{}: no request in it", path));
    return out;
}

std::optional<Url> parse_url(const std::string& text, std::string& error) {
    const std::string scheme = "http://";
    if (text.rfind(scheme, 0) != 0) {
        error = fmt::format("'{}': only http:// URLs (e.g. http://127.0.0.1:8000/healthz)", text);
        return std::nullopt;
    }
    Url u;
    std::string rest = text.substr(scheme.size());
    const auto slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    if (slash != std::string::npos) u.target = rest.substr(slash);
    if (!authority.empty() && authority[0] == '[') {  // [::1]:8000
        const auto close = authority.find(']');
        if (close == std::string::npos) {
            error = fmt::format("'{}': unclosed '[' in the host", text);
            return std::nullopt;
        }
        u.host = authority.substr(1, close - 1);
        if (close + 1 < authority.size() && authority[close + 1] == ':') u.port = authority.substr(close + 2);
    } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
        u.host = authority.substr(0, colon);
        u.port = authority.substr(colon + 1);
    } else {
        u.host = authority;
    }
    if (u.host.empty() || u.port.empty()) {
        error = fmt::format("'{}': no host", text);
        return std::nullopt;
    }
    return u;
}

namespace {

// ---- the response parser: status and length only, nothing kept ------------------------

class ResponseParser : public http::basic_parser<false> {
public:
    ResponseParser() {
        // Not boost::none: Boost 1.74 compares the length with the empty optional and refuses
        // every body.
        body_limit(std::numeric_limits<std::uint64_t>::max());
        header_limit(64 * 1024);
    }
    int status = 0;

private:
    void on_request_impl(http::verb, boost::beast::string_view, boost::beast::string_view, int, error_code&) override {}
    void on_response_impl(int code, boost::beast::string_view, int, error_code&) override { status = code; }
    void on_field_impl(http::field, boost::beast::string_view, boost::beast::string_view, error_code&) override {}
    void on_header_impl(error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
    std::size_t on_body_impl(boost::beast::string_view body, error_code&) override { return body.size(); }
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body, error_code&) override {
        return body.size();
    }
    void on_finish_impl(error_code&) override {}
};

/// The request bytes, made once.
std::string wire_request(const RequestSpec& r, const std::string& host, const std::string& port) {
    std::string out = fmt::format("{} {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: workerd-load\r\n", r.method, r.target,
                                  host.find(':') != std::string::npos ? "[" + host + "]" : host, port);
    if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
        out += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n",
                           r.content_type.empty() ? "text/plain; charset=utf-8" : r.content_type, r.body.size());
    }
    out += "\r\n";
    out += r.body;
    return out;
}

/// A smooth weighted round robin over the request kinds, computed once: a repeating sequence
/// in which each kind appears `weight` times, spread out.
std::vector<int> request_sequence(const std::vector<RequestSpec>& requests) {
    long total = 0;
    for (const auto& r : requests) total += r.weight;
    std::vector<long> current(requests.size(), 0);
    std::vector<int> out;
    out.reserve(static_cast<std::size_t>(total));
    for (long step = 0; step < total; ++step) {
        std::size_t pick = 0;
        for (std::size_t i = 0; i < requests.size(); ++i) {
            current[i] += requests[i].weight;
            if (current[i] > current[pick]) pick = i;
        }
        current[pick] -= total;
        out.push_back(static_cast<int>(pick));
    }
    return out;
}

struct Pending {
    Clock::time_point scheduled;
    int request = 0;
    bool retried = false;
};

/// What a lane has seen since the caller last looked (for the progress line).
struct Window {
    LatencyHistogram latency;
    std::uint64_t ok = 0;
    std::uint64_t errors = 0;
};

/// One event loop with its share of the connections and of the rate.
class Lane {
public:
    Lane(const Options& o, std::vector<tcp::endpoint> endpoints, const std::vector<std::string>& wire,
         const std::vector<int>& sequence, int connections, double rate, std::size_t offset, Clock::time_point start)
        : o_(o), endpoints_(std::move(endpoints)), wire_(wire), sequence_(sequence), max_connections_(connections),
          rate_(rate), next_request_(offset), start_(start), end_(start + o.duration), tick_(io_), end_timer_(io_) {
        if (rate_ > 0) {
            interval_ = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate_));
            // Lanes interleave their schedules instead of sending in bursts together.
            next_due_ = start_ + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(static_cast<double>(offset) / (rate_ * o.threads)));
        }
    }

    void run() {
        net::post(io_, [this] { begin(); });
        io_.run();
    }

    /// From another thread: end now (what is in flight is abandoned, not counted).
    void stop() {
        net::post(io_, [this] {
            stopped_ = true;
            finish_all();
        });
    }

    Window take_window() {
        std::lock_guard lock(window_mutex_);
        Window w = window_;
        window_ = Window{};
        return w;
    }

    Result& result() { return result_; }

private:
    struct Conn {
        // Beast reads what the buffer has room for (at least 512 bytes, at most 64 KiB), and the
        // parser empties it as it goes: without room made here, a large body came 512 bytes a call.
        explicit Conn(net::io_context& io) : socket(io), timer(io) { buffer.reserve(64 * 1024); }
        tcp::socket socket;
        net::steady_timer timer;
        boost::beast::flat_buffer buffer;
        std::optional<ResponseParser> parser;
        Pending current;
        Clock::time_point sent;
        bool open = false;
        bool busy = false;
        bool timed_out = false;
        std::uint64_t answered = 0;  ///< responses on this connection (a reused one may be stale)
        std::uint64_t turn = 0;      ///< which request the timer is for
    };

    void begin() {
        end_timer_.expires_at(end_);
        end_timer_.async_wait([this](const error_code& ec) {
            if (!ec) end_schedule();
        });
        if (rate_ > 0) {
            tick();
        } else {
            for (int i = 0; i < max_connections_; ++i) issue(new_conn(), Pending{Clock::now(), next_kind()});
        }
    }

    int next_kind() {
        const int k = sequence_[next_request_ % sequence_.size()];
        next_request_ += static_cast<std::size_t>(o_.threads);
        return k;
    }

    Conn* new_conn() {
        conns_.push_back(std::make_unique<Conn>(io_));
        return conns_.back().get();
    }

    // Open loop: queue every request now due, hand them to free connections, wait for the next.
    void tick() {
        if (scheduling_over_) return;
        const auto now = Clock::now();
        while (next_due_ <= now && next_due_ < end_) {
            pending_.push_back(Pending{next_due_, next_kind()});
            next_due_ += interval_;
        }
        expire_pending(now);
        dispatch();
        if (next_due_ >= end_) return;  // the end timer takes over
        tick_.expires_at(next_due_);
        tick_.async_wait([this](const error_code& ec) {
            if (!ec) tick();
        });
    }

    void dispatch() {
        while (!pending_.empty() && !stopped_) {
            Conn* c = nullptr;
            if (!idle_.empty()) {
                c = idle_.back();
                idle_.pop_back();
            } else if (static_cast<int>(conns_.size()) < max_connections_) {
                c = new_conn();
            } else {
                return;
            }
            const Pending p = pending_.front();
            pending_.pop_front();
            issue(c, p);
        }
    }

    /// Requests that waited for a connection longer than the timeout are not sent: timeouts.
    void expire_pending(Clock::time_point now) {
        while (!pending_.empty() && now - pending_.front().scheduled > o_.timeout) {
            record_failure(&result_.timeouts, now - pending_.front().scheduled);
            pending_.pop_front();
        }
    }

    void end_schedule() {
        scheduling_over_ = true;
        tick_.cancel();
        // What is still due gets the timeout to be answered.
        end_timer_.expires_at(Clock::now() + o_.timeout);
        end_timer_.async_wait([this](const error_code& ec) {
            if (ec) return;
            result_.unsent += pending_.size();
            pending_.clear();
            finish_all();
        });
        maybe_done();
    }

    void maybe_done() {
        if (!scheduling_over_ || !pending_.empty()) return;
        for (const auto& c : conns_) {
            if (c->busy) return;
        }
        finish_all();
    }

    void finish_all() {
        if (finished_) return;
        finished_ = true;
        tick_.cancel();
        end_timer_.cancel();
        for (auto& c : conns_) {
            c->timer.cancel();
            error_code ignored;
            c->socket.close(ignored);
        }
    }

    void issue(Conn* c, Pending p) {
        c->busy = true;
        c->current = p;
        c->timed_out = false;
        c->sent = Clock::now();
        const auto turn = ++c->turn;
        c->timer.expires_at(c->sent + o_.timeout);
        c->timer.async_wait([c, turn](const error_code& ec) {
            if (ec || c->turn != turn || !c->busy) return;
            c->timed_out = true;
            error_code ignored;
            c->socket.close(ignored);  // the pending operation ends with operation_aborted
        });
        if (c->open) return send(c);
        ++result_.connections_opened;
        net::async_connect(c->socket, endpoints_, [this, c](const error_code& ec, const tcp::endpoint&) {
            if (ec) return fail(c, c->timed_out ? &result_.timeouts : &result_.connect_errors);
            error_code ignored;
            c->socket.set_option(tcp::no_delay(true), ignored);
            c->open = true;
            c->answered = 0;
            c->buffer.clear();
            send(c);
        });
    }

    void send(Conn* c) {
        const std::string& bytes = wire_[static_cast<std::size_t>(c->current.request)];
        net::async_write(c->socket, net::buffer(bytes), [this, c](const error_code& ec, std::size_t) {
            if (ec) return retry_or_fail(c);
            c->parser.emplace();
            http::async_read(c->socket, c->buffer, *c->parser, [this, c](const error_code& ec, std::size_t n) {
                if (ec) return retry_or_fail(c);
                result_.bytes += n;
                answered(c);
            });
        });
    }

    /// A kept-alive connection the server had closed fails before any answer: the request is
    /// sent again once on a new connection, as browsers and HTTP libraries do.
    void retry_or_fail(Conn* c) {
        const bool stale = c->answered > 0 && !c->timed_out && !c->current.retried &&
                           (!c->parser || !c->parser->got_some());
        close(c);
        if (stale && !stopped_) {
            Pending p = c->current;
            p.retried = true;
            return issue(c, p);
        }
        fail(c, c->timed_out ? &result_.timeouts : &result_.io_errors);
    }

    void answered(Conn* c) {
        c->timer.cancel();
        const auto now = Clock::now();
        const auto since = rate_ > 0 ? c->current.scheduled : c->sent;
        const auto micros = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - since).count());
        const bool ok = c->parser->status < 400;
        (ok ? result_.ok : result_.http_errors) += 1;
        result_.latency.record(micros);
        if (ok) result_.ok_latency.record(micros);
        result_.sent_latency.record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - c->sent).count()));
        {
            std::lock_guard lock(window_mutex_);
            window_.latency.record(micros);
            (ok ? window_.ok : window_.errors) += 1;
        }
        ++c->answered;
        if (!c->parser->keep_alive()) close(c);
        next(c);
    }

    void fail(Conn* c, std::uint64_t* counter) {
        c->timer.cancel();
        close(c);
        if (stopped_) return;
        const auto waited = Clock::now() - (rate_ > 0 ? c->current.scheduled : c->sent);
        record_failure(counter, counter == &result_.timeouts ? waited : Clock::duration::zero());
        next(c);
    }

    void record_failure(std::uint64_t* counter, Clock::duration waited) {
        ++*counter;
        // A timeout's latency is at least its wait: it counts in the percentiles too.
        if (waited > Clock::duration::zero()) {
            const auto micros = static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(waited).count());
            result_.latency.record(micros);
            std::lock_guard lock(window_mutex_);
            window_.latency.record(micros);
        }
        std::lock_guard lock(window_mutex_);
        ++window_.errors;
    }

    void close(Conn* c) {
        error_code ignored;
        c->socket.close(ignored);
        c->open = false;
        c->buffer.clear();
    }

    /// The connection is free: the next request, if there is one.
    void next(Conn* c) {
        c->busy = false;
        if (stopped_ || finished_) return;
        if (rate_ > 0) {
            if (!pending_.empty()) {
                const Pending p = pending_.front();
                pending_.pop_front();
                return issue(c, p);
            }
            idle_.push_back(c);
            return maybe_done();
        }
        if (scheduling_over_) return maybe_done();
        issue(c, Pending{Clock::now(), next_kind()});
    }

    const Options& o_;
    std::vector<tcp::endpoint> endpoints_;
    const std::vector<std::string>& wire_;
    const std::vector<int>& sequence_;
    int max_connections_;
    double rate_;
    std::size_t next_request_;
    Clock::time_point start_, end_;
    Clock::duration interval_{};
    Clock::time_point next_due_{};

    net::io_context io_{1};
    net::steady_timer tick_;
    net::steady_timer end_timer_;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::vector<Conn*> idle_;
    std::deque<Pending> pending_;
    bool scheduling_over_ = false;
    bool stopped_ = false;
    bool finished_ = false;

    Result result_;
    std::mutex window_mutex_;
    Window window_;
};

}  // namespace

Result run(const Options& o) {
    if (o.requests.empty()) throw std::invalid_argument("no request to send");
    const int threads = std::max(1, o.threads);
    const int connections = std::max(threads, o.connections);

    std::vector<tcp::endpoint> endpoints;
    {
        net::io_context io;
        tcp::resolver resolver(io);
        error_code ec;
        const auto found = resolver.resolve(o.host, o.port, ec);
        if (ec) throw std::runtime_error(fmt::format("cannot resolve {}:{}: {}", o.host, o.port, ec.message()));
        for (const auto& e : found) endpoints.push_back(e.endpoint());
    }
    std::vector<std::string> wire;
    for (const auto& r : o.requests) wire.push_back(wire_request(r, o.host, o.port));
    const std::vector<int> sequence = request_sequence(o.requests);

    const auto start = Clock::now() + std::chrono::milliseconds(1);
    std::vector<std::unique_ptr<Lane>> lanes;
    for (int i = 0; i < threads; ++i) {
        const int share = connections / threads + (i < connections % threads ? 1 : 0);
        lanes.push_back(std::make_unique<Lane>(o, endpoints, wire, sequence, share, o.rate / threads,
                                               static_cast<std::size_t>(i), start));
    }
    std::atomic<int> running{threads};
    std::vector<std::thread> pool;
    for (auto& lane : lanes) {
        pool.emplace_back([&lane, &running] {
            lane->run();
            --running;
        });
    }

    // The caller's thread: progress and the stop flag, until every lane is done.
    bool stopped = false;
    auto last = Clock::now();
    auto next_progress = last + o.progress_interval;
    std::uint64_t errors = 0;
    while (running > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (!stopped && o.stop != nullptr && o.stop->load()) {
            stopped = true;
            for (auto& lane : lanes) lane->stop();
        }
        const auto now = Clock::now();
        if (o.on_progress && now >= next_progress && running > 0) {
            Window all;
            for (auto& lane : lanes) {
                const Window w = lane->take_window();
                all.latency.merge(w.latency);
                all.ok += w.ok;
                all.errors += w.errors;
            }
            errors += all.errors;
            const double seconds = std::chrono::duration<double>(now - last).count();
            o.on_progress(Progress{std::chrono::duration<double>(now - start).count(),
                                   static_cast<double>(all.ok) / seconds,
                                   static_cast<double>(all.latency.percentile(99)) / 1000.0, errors});
            last = now;
            next_progress = now + o.progress_interval;
        }
    }
    for (auto& t : pool) t.join();

    Result total;
    for (auto& lane : lanes) {
        Result& r = lane->result();
        total.latency.merge(r.latency);
        total.ok_latency.merge(r.ok_latency);
        total.sent_latency.merge(r.sent_latency);
        total.ok += r.ok;
        total.http_errors += r.http_errors;
        total.connect_errors += r.connect_errors;
        total.io_errors += r.io_errors;
        total.timeouts += r.timeouts;
        total.unsent += r.unsent;
        total.bytes += r.bytes;
        total.connections_opened += r.connections_opened;
    }
    total.stopped = stopped;
    const auto schedule_end = std::min(Clock::now(), start + o.duration);
    total.seconds = std::max(1e-3, std::chrono::duration<double>(schedule_end - start).count());
    return total;
}

}  // namespace workerd::load
