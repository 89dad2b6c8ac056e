#include "daemon/wire/notify.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace workerd {
namespace {

template <typename T>
bool parse_int(std::string_view text, T& out) {
    if (text.empty()) return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && out >= 0;
}

// Bounds in microseconds, computed once: first * 2^(k/per_octave).
template <int N>
std::array<std::int64_t, N - 1> make_bounds(double first_us, double per_octave) {
    std::array<std::int64_t, N - 1> t{};
    for (int k = 0; k < N - 1; ++k) t[k] = std::llround(first_us * std::pow(2.0, k / per_octave));
    return t;
}

const std::array<std::int64_t, kLatencyBuckets - 1>& bounds_us() {
    static const auto table = make_bounds<kLatencyBuckets>(500.0, 2.0);
    return table;
}

const std::array<std::int64_t, kQueueBuckets - 1>& queue_bounds_us() {
    static const auto table = make_bounds<kQueueBuckets>(125.0, 8.0);
    return table;
}

// The bucket of `micros` among `bounds` (the last bucket: above every bound).
template <std::size_t N>
int bucket_of(const std::array<std::int64_t, N>& bounds, std::int64_t micros) {
    int lo = 0;
    int hi = static_cast<int>(N);  // answer in [lo, hi]
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (micros <= bounds[mid]) hi = mid; else lo = mid + 1;
    }
    return lo;
}

// The q-quantile of a bucketed histogram, interpolated inside its bucket; the last bucket
// (unbounded) is taken as one step wide.
template <std::size_t N>
std::optional<double> quantile_ms(const std::array<std::uint64_t, N>& counts, double q,
                                  const std::array<std::int64_t, N - 1>& bounds_us, double step) {
    std::uint64_t total = 0;
    for (auto n : counts) total += n;
    if (total == 0) return std::nullopt;
    const auto bound = [&](std::size_t k) { return static_cast<double>(bounds_us[k]) / 1000.0; };
    const double rank = q * static_cast<double>(total);
    double seen = 0;
    for (std::size_t k = 0; k < N; ++k) {
        const double n = static_cast<double>(counts[k]);
        if (n > 0 && seen + n >= rank) {
            const double lo = k == 0 ? 0.0 : bound(k - 1);
            const double hi = k == N - 1 ? lo * step : bound(k);
            return lo + (hi - lo) * std::clamp((rank - seen) / n, 0.0, 1.0);
        }
        seen += n;
    }
    return bound(N - 2);
}

// "a,b,c" into counts; false on a bad number or too many.
template <std::size_t N>
bool parse_counts(std::string_view rest, std::array<std::uint64_t, N>& out) {
    for (std::size_t k = 0; !rest.empty(); ++k) {
        if (k >= N) return false;
        const auto comma = rest.find(',');
        if (!parse_int(rest.substr(0, comma), out[k])) return false;
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    return true;
}

// ",a,b,c" up to the last non-zero count (at least one).
template <std::size_t N>
void format_counts(std::string& out, const std::array<std::uint64_t, N>& counts) {
    std::size_t last = N - 1;
    while (last > 0 && counts[last] == 0) --last;
    for (std::size_t k = 0; k <= last; ++k) fmt::format_to(std::back_inserter(out), "{}{}", k ? "," : "", counts[k]);
}

std::optional<RequestStats> parse_stats(std::string_view text) {
    RequestStats s;
    while (!text.empty()) {
        const auto space = text.find(' ');
        std::string_view field = text.substr(0, space);
        text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
        if (field.empty()) continue;
        const auto eq = field.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        const auto name = field.substr(0, eq);
        const auto value = field.substr(eq + 1);
        if (name == "served") {
            if (!parse_int(value, s.served)) return std::nullopt;
        } else if (name == "inflight") {
            if (!parse_int(value, s.inflight)) return std::nullopt;
        } else if (name == "oldest_ms") {
            if (!parse_int(value, s.oldest_ms)) return std::nullopt;
        } else if (name == "sum_us") {
            if (!parse_int(value, s.sum_us)) return std::nullopt;
        } else if (name == "buckets") {
            if (!parse_counts(value, s.buckets)) return std::nullopt;
        } else if (name == "queue_sum_us") {
            if (!parse_int(value, s.queue_sum_us)) return std::nullopt;
        } else if (name == "queue") {
            if (!parse_counts(value, s.queue)) return std::nullopt;
        } else if (name == "shed") {
            if (!parse_int(value, s.shed)) return std::nullopt;
        } else if (name == "responses") {
            if (!parse_counts(value, s.responses)) return std::nullopt;
        }
        // Unknown fields: ignored.
    }
    return s;
}

}  // namespace

double latency_bound_ms(int k) {
    return k < kLatencyBuckets - 1 ? static_cast<double>(bounds_us()[k]) / 1000.0 : INFINITY;
}

int latency_bucket(std::int64_t micros) { return bucket_of(bounds_us(), micros); }

double queue_bound_ms(int k) {
    return k < kQueueBuckets - 1 ? static_cast<double>(queue_bounds_us()[k]) / 1000.0 : INFINITY;
}

int queue_bucket(std::int64_t micros) { return bucket_of(queue_bounds_us(), micros); }

std::optional<double> RequestStats::percentile_ms(double q) const {
    return quantile_ms(buckets, q, bounds_us(), std::sqrt(2.0));
}

std::optional<double> RequestStats::queue_percentile_ms(double q) const {
    return quantile_ms(queue, q, queue_bounds_us(), std::pow(2.0, 0.125));
}

std::uint64_t RequestStats::queued() const {
    std::uint64_t total = 0;
    for (auto n : queue) total += n;
    return total;
}

void RequestStats::add_counts(const RequestStats& other) {
    served += other.served;
    sum_us += other.sum_us;
    for (int k = 0; k < kLatencyBuckets; ++k) buckets[k] += other.buckets[k];
    queue_sum_us += other.queue_sum_us;
    for (int k = 0; k < kQueueBuckets; ++k) queue[k] += other.queue[k];
    shed += other.shed;
    for (int k = 0; k < kResponseClasses; ++k) responses[k] += other.responses[k];
}

RequestStats RequestStats::since(const RequestStats& earlier) const {
    auto minus = [](std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; };
    RequestStats d;
    d.served = minus(served, earlier.served);
    d.sum_us = minus(sum_us, earlier.sum_us);
    for (int k = 0; k < kLatencyBuckets; ++k) d.buckets[k] = minus(buckets[k], earlier.buckets[k]);
    d.queue_sum_us = minus(queue_sum_us, earlier.queue_sum_us);
    for (int k = 0; k < kQueueBuckets; ++k) d.queue[k] = minus(queue[k], earlier.queue[k]);
    d.shed = minus(shed, earlier.shed);
    for (int k = 0; k < kResponseClasses; ++k) d.responses[k] = minus(responses[k], earlier.responses[k]);
    return d;
}

bool RequestStats::has_responses() const {
    for (auto n : responses) {
        if (n > 0) return true;
    }
    return false;
}

ResponseClass response_class(int status) {
    if (status >= 100 && status < 300) return ResponseClass::informational_or_success;
    if (status >= 300 && status < 400) return ResponseClass::redirect;
    if (status >= 400 && status < 500) return ResponseClass::client_error;
    if (status >= 500 && status < 600) return ResponseClass::server_error;
    return ResponseClass::failed;
}

const char* to_string(ResponseClass c) {
    switch (c) {
        case ResponseClass::informational_or_success: return "2xx";
        case ResponseClass::redirect: return "3xx";
        case ResponseClass::client_error: return "4xx";
        case ResponseClass::server_error: return "5xx";
        case ResponseClass::failed: return "failed";
    }
    return "?";
}

std::string RequestStats::format() const {
    std::string out = fmt::format("served={} inflight={} oldest_ms={} sum_us={} buckets=", served, inflight,
                                  oldest_ms, sum_us);
    format_counts(out, buckets);
    if (queued() > 0 || queue_sum_us > 0) {
        fmt::format_to(std::back_inserter(out), " queue_sum_us={} queue=", queue_sum_us);
        format_counts(out, queue);
    }
    if (shed > 0) fmt::format_to(std::back_inserter(out), " shed={}", shed);
    if (has_responses()) {
        out += " responses=";
        format_counts(out, responses);
    }
    return out;
}

std::optional<NotifyMessage> parse_notify_line(std::string_view line) {
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    const auto key = line.substr(0, eq);
    const auto value = line.substr(eq + 1);
    for (char c : key) {
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return std::nullopt;
    }
    NotifyMessage m;
    auto flag = [&](NotifyMessage::Kind kind) -> std::optional<NotifyMessage> {
        if (value != "1") return std::nullopt;
        m.kind = kind;
        return m;
    };
    if (key == "READY") return flag(NotifyMessage::Kind::ready);
    if (key == "WATCHDOG") return flag(NotifyMessage::Kind::watchdog);
    if (key == "STOPPING") return flag(NotifyMessage::Kind::stopping);
    if (key == "STATUS") {
        m.kind = NotifyMessage::Kind::status;
        m.status = std::string(value);
        return m;
    }
    if (key == "STATS") {
        auto stats = parse_stats(value);
        if (!stats) return std::nullopt;
        m.kind = NotifyMessage::Kind::stats;
        m.stats = *stats;
        return m;
    }
    return m;  // unknown key: ignored by the caller
}

}  // namespace workerd
