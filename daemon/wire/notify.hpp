#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace workerd {

/// The worker protocol, version 1 (docs/worker-protocol.md): one KEY=VALUE message per line on
/// a pipe from each worker to the daemon.
inline constexpr int kProtocolVersion = 1;
inline constexpr std::size_t kMaxNotifyLine = 4096;  ///< including the newline

/// Latency buckets fixed by the protocol: bucket k counts requests with latency in
/// (bound(k-1), bound(k)], bound(k) = 0.5 ms * 2^(k/2) for k < kLatencyBuckets - 1; the last
/// bucket counts everything slower than 65.5 s.
inline constexpr int kLatencyBuckets = 36;
double latency_bound_ms(int k);
/// The bucket for a latency in microseconds.
int latency_bucket(std::int64_t micros);

struct RequestStats {
    std::uint64_t served = 0;
    std::int64_t inflight = 0;
    std::int64_t oldest_ms = 0;
    std::uint64_t sum_us = 0;  ///< total latency of the served requests (optional field)
    std::array<std::uint64_t, kLatencyBuckets> buckets{};

    /// "served=... inflight=... oldest_ms=... buckets=..." (trailing zero buckets left out).
    std::string format() const;
    /// The q-quantile (0..1) of the latencies in ms, interpolated inside its bucket; nullopt
    /// when no request was counted. Within ~20% of the truth (buckets are sqrt(2) apart).
    std::optional<double> percentile_ms(double q) const;
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
