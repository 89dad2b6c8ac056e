#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace workerd {

/// The worker protocol, version 3 (docs/worker-protocol.md): one KEY=VALUE message per line on
/// a pipe from each worker to the daemon. Version 2 added STATS' queue-time histogram and shed
/// count, version 3 the answers by class (optional fields: older workers' STATS still parse).
inline constexpr int kProtocolVersion = 3;
inline constexpr std::size_t kMaxNotifyLine = 4096;  ///< including the newline

/// Latency buckets fixed by the protocol: bucket k counts requests with latency in
/// (bound(k-1), bound(k)], bound(k) = 0.5 ms * 2^(k/2) for k < kLatencyBuckets - 1; the last
/// bucket counts everything slower than 65.5 s.
inline constexpr int kLatencyBuckets = 36;
double latency_bound_ms(int k);
/// The bucket for a latency in microseconds.
int latency_bucket(std::int64_t micros);

/// Queue-time buckets (version 2), finer than the latency ones because a queue time is compared
/// with the client's view to within 10%: bucket k counts waits in (bound(k-1), bound(k)],
/// bound(k) = 0.125 ms * 2^(k/8) for k < kQueueBuckets - 1 (so every fourth bound from 0.5 ms
/// on is a latency bound); the last bucket counts everything slower than 65.5 s.
inline constexpr int kQueueBuckets = 154;
double queue_bound_ms(int k);
/// The bucket for a queue time in microseconds.
int queue_bucket(std::int64_t micros);

using LatencyBuckets = std::array<std::uint64_t, kLatencyBuckets>;
using QueueBuckets = std::array<std::uint64_t, kQueueBuckets>;

/// Version 3: the served requests by how they were answered. `failed`: the worker gave up on
/// the request without a status line (the client went away, a write failed or timed out).
enum class ResponseClass { informational_or_success, redirect, client_error, server_error, failed };
inline constexpr int kResponseClasses = 5;
using ResponseCounts = std::array<std::uint64_t, kResponseClasses>;
/// The class of an HTTP status code (1xx and 2xx together, 3xx, 4xx, 5xx; others: failed).
ResponseClass response_class(int status);
/// "2xx", "3xx", "4xx", "5xx", "failed": the `class` label of workerd_responses_total.
const char* to_string(ResponseClass c);

struct RequestStats {
    std::uint64_t served = 0;
    std::int64_t inflight = 0;
    std::int64_t oldest_ms = 0;
    std::uint64_t sum_us = 0;  ///< total latency of the served requests (optional field)
    LatencyBuckets buckets{};
    /// Version 2, optional: how long each request waited in the kernel (its bytes received,
    /// not yet taken up by the worker), shed ones included.
    std::uint64_t queue_sum_us = 0;
    QueueBuckets queue{};
    std::uint64_t shed = 0;  ///< answered 503 at once (queue_timeout, max_concurrency): not in served
    /// Version 3, optional: `served` by class (all zero from an older worker).
    ResponseCounts responses{};
    bool has_responses() const;

    /// "served=... inflight=... oldest_ms=... sum_us=... buckets=..." then, when any was
    /// counted, "queue_sum_us=... queue=...", "shed=..." and "responses=..." (trailing zero
    /// buckets left out).
    std::string format() const;
    /// The q-quantile (0..1) of the latencies in ms, interpolated inside its bucket; nullopt
    /// when no request was counted. Within ~20% of the truth (buckets are sqrt(2) apart).
    std::optional<double> percentile_ms(double q) const;
    /// The same for queue times: within 9% (buckets are 2^(1/8) apart), or 0.125 ms.
    std::optional<double> queue_percentile_ms(double q) const;
    std::uint64_t queued() const;  ///< requests with a queue time
    /// Adds `other`'s counts (served, sums, buckets, shed) to these: a fleet's totals.
    void add_counts(const RequestStats& other);
    /// The counts added since `earlier` (a snapshot of the same totals), none below zero.
    RequestStats since(const RequestStats& earlier) const;
};

struct NotifyMessage {
    enum class Kind { ready, watchdog, status, stopping, stats, unknown };
    Kind kind = Kind::unknown;
    std::string status;   ///< for Kind::status
    RequestStats stats;   ///< for Kind::stats
};

/// Parses one line (without its newline). nullopt for a malformed line: no '=', an empty or
/// non-upper-case key, READY/WATCHDOG/STOPPING with a value other than 1, or bad STATS
/// numbers. Unknown keys and unknown STATS fields are not errors (forward compatibility).
std::optional<NotifyMessage> parse_notify_line(std::string_view line);

}  // namespace workerd
