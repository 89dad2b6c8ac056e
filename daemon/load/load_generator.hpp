#pragma once

// The project's HTTP load generator (`workerd load`, and the engine of `workerd tune`).
//
// Open loop by default: requests are scheduled at a constant arrival rate and each one's latency
// is measured from its *scheduled* time, not from when a connection was free to send it, so a
// server that stalls shows the stall in the percentiles instead of hiding it (the "coordinated
// omission" a closed-loop tool such as wrk makes; wrk2's reason to exist). A request that finds
// every connection busy waits in the generator's queue, and that wait counts. Closed loop
// (`rate` 0): each connection sends its next request as soon as the last is answered, latency
// from the send; for the highest rate the server gives.
//
// HTTP/1.1 keep-alive over a bounded pool of connections (opened as needed), split over
// `threads` event loops; responses parsed by Beast without keeping headers or bodies; errors
// and timeouts counted; latencies in a LatencyHistogram (≤ 0.4% error on percentiles).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/latency_histogram.hpp"

namespace workerd::load {

/// One kind of request and its share of the load.
struct RequestSpec {
    std::string method = "GET";
    std::string target = "/";  ///< path and query
    std::string body;          ///< sent with Content-Length (and a Content-Type, below)
    std::string content_type;  ///< empty: application/json when the body looks like JSON, else text/plain
    int weight = 1;
};

/// Parses `[METHOD ]TARGET[:WEIGHT][ BODY]`: "/items/42", "/search?q=x:3", "POST /items:2 {"a":1}".
/// A trailing ":N" (digits only) is the weight. Returns nullopt with `error` set when malformed.
std::optional<RequestSpec> parse_request_spec(const std::string& text, std::string& error);

/// Reads one request spec per line from `path` ('#' comments and blank lines skipped). Throws
/// std::runtime_error naming the file and line.
std::vector<RequestSpec> read_request_file(const std::string& path);

/// Where to send the load: "http://HOST:PORT/PATH" splits into these (PATH becomes a request).
struct Url {
    std::string host;
    std::string port = "80";
    std::string target = "/";
};
std::optional<Url> parse_url(const std::string& text, std::string& error);

/// What run() reports while it runs, once per `progress_interval`.
struct Progress {
    double elapsed_s = 0;
    double rate = 0;        ///< answered 2xx/3xx per second over the last interval
    double p99_ms = 0;      ///< over the last interval
    std::uint64_t errors = 0;  ///< so far
};

struct Options {
    std::string host = "127.0.0.1";
    std::string port = "80";
    std::vector<RequestSpec> requests{RequestSpec{}};
    double rate = 0;  ///< requests per second; 0 = closed loop
    std::chrono::milliseconds duration{10000};
    int connections = 64;  ///< open loop: at most this many; closed loop: exactly this many
    int threads = 1;       ///< event loops (each takes its share of the rate and connections)
    std::chrono::milliseconds timeout{5000};  ///< per request, from its send
    std::chrono::milliseconds progress_interval{1000};
    std::function<void(const Progress&)> on_progress;  ///< called on run()'s thread
    const std::atomic<bool>* stop = nullptr;           ///< set: end the run early
};

struct Result {
    LatencyHistogram latency;  ///< of every answered request, µs (open loop: from its scheduled time)
    LatencyHistogram ok_latency;  ///< the same, of the 1xx-3xx answers only (goodput's latency)
    /// Of every answered request from the moment it was issued on a connection: without the time
    /// an open-loop request waited in the generator itself (late timer, no free connection).
    LatencyHistogram sent_latency;
    std::uint64_t ok = 0;            ///< 1xx-3xx answers
    std::uint64_t http_errors = 0;   ///< 4xx/5xx answers
    std::uint64_t connect_errors = 0;
    std::uint64_t io_errors = 0;     ///< connection reset or closed mid-request, malformed answer
    std::uint64_t timeouts = 0;      ///< no answer within the timeout (sent, or waiting to be)
    std::uint64_t unsent = 0;        ///< still waiting for a connection when the run ended
    std::uint64_t bytes = 0;         ///< received, headers included
    int connections_opened = 0;
    double seconds = 0;              ///< the schedule's length (shorter when stopped)
    bool stopped = false;

    std::uint64_t errors() const { return http_errors + connect_errors + io_errors + timeouts + unsent; }
    std::uint64_t requests() const { return ok + errors(); }
    double rate() const { return seconds > 0 ? static_cast<double>(ok) / seconds : 0.0; }
    double ms(double percentile) const { return static_cast<double>(latency.percentile(percentile)) / 1000.0; }
};

/// Runs the load on `threads` threads and returns when it is over: the schedule's end, plus up
/// to `timeout` for the answers still due. Throws std::runtime_error when the host cannot be
/// resolved.
Result run(const Options& options);

}  // namespace workerd::load
