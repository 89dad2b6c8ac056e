#include "daemon/wire/notify.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace workerd {
namespace {

// Bounds in microseconds, computed once: 500 * 2^(k/2).
const std::array<std::int64_t, kLatencyBuckets - 1>& bounds_us() {
    static const auto table = [] {
        std::array<std::int64_t, kLatencyBuckets - 1> t{};
        for (int k = 0; k < kLatencyBuckets - 1; ++k) {
            t[k] = std::llround(500.0 * std::pow(2.0, k / 2.0));
        }
        return t;
    }();
    return table;
}

template <typename T>
bool parse_int(std::string_view text, T& out) {
    if (text.empty()) return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && out >= 0;
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
            std::string_view rest = value;
            for (int k = 0; !rest.empty(); ++k) {
                if (k >= kLatencyBuckets) return std::nullopt;
                const auto comma = rest.find(',');
                if (!parse_int(rest.substr(0, comma), s.buckets[k])) return std::nullopt;
                rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
            }
        }
        // Unknown fields: ignored.
    }
    return s;
}

}  // namespace

double latency_bound_ms(int k) {
    return k < kLatencyBuckets - 1 ? static_cast<double>(bounds_us()[k]) / 1000.0 : INFINITY;
}

int latency_bucket(std::int64_t micros) {
    const auto& b = bounds_us();
    int lo = 0;
    int hi = kLatencyBuckets - 1;  // answer in [lo, hi]
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (micros <= b[mid]) hi = mid; else lo = mid + 1;
    }
    return lo;
}

std::optional<double> RequestStats::percentile_ms(double q) const {
    std::uint64_t total = 0;
    for (auto n : buckets) total += n;
    if (total == 0) return std::nullopt;
    const double rank = q * static_cast<double>(total);
    double seen = 0;
    for (int k = 0; k < kLatencyBuckets; ++k) {
        const double n = static_cast<double>(buckets[k]);
        if (n > 0 && seen + n >= rank) {
            const double lo = k == 0 ? 0.0 : latency_bound_ms(k - 1);
            const double hi = k == kLatencyBuckets - 1 ? lo * std::sqrt(2.0) : latency_bound_ms(k);
            return lo + (hi - lo) * std::clamp((rank - seen) / n, 0.0, 1.0);
        }
        seen += n;
    }
    return latency_bound_ms(kLatencyBuckets - 2);
}

std::string RequestStats::format() const {
    int last = kLatencyBuckets - 1;
    while (last > 0 && buckets[last] == 0) --last;
    std::string out = fmt::format("served={} inflight={} oldest_ms={} sum_us={} buckets=", served, inflight,
                                  oldest_ms, sum_us);
    for (int k = 0; k <= last; ++k) fmt::format_to(std::back_inserter(out), "{}{}", k ? "," : "", buckets[k]);
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
