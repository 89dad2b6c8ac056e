#include "daemon/core/leak.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "daemon/wire/units.hpp"

namespace workerd::core {

namespace {

constexpr std::size_t kMinPoints = 6;  ///< three for the baseline's side, three lately
constexpr std::size_t kSmoothing = 3;  ///< points averaged at each end

/// "48 MiB", "5.3 KiB", "812 B".
std::string bytes_text(double b) {
    const double a = std::abs(b);
    if (a >= 10.0 * (1 << 20)) return fmt::format("{:.0f} MiB", b / (1 << 20));
    if (a >= 1 << 20) return fmt::format("{:.1f} MiB", b / (1 << 20));
    if (a >= 10.0 * 1024) return fmt::format("{:.0f} KiB", b / 1024);
    if (a >= 1024) return fmt::format("{:.1f} KiB", b / 1024);
    return fmt::format("{:.0f} B", b);
}

/// 9100 -> "9,100"
std::string count_text(std::uint64_t n) {
    const std::string digits = std::to_string(n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

/// The least-squares slope of bytes against x(point) over [first, last); nullopt when x does
/// not vary.
template <typename X>
std::optional<double> slope(const std::vector<MemoryPoint>& p, std::size_t first, X x) {
    const double n = static_cast<double>(p.size() - first);
    double mx = 0, my = 0;
    for (std::size_t i = first; i < p.size(); ++i) {
        mx += x(p[i]);
        my += static_cast<double>(p[i].bytes);
    }
    mx /= n;
    my /= n;
    double sxy = 0, sxx = 0;
    for (std::size_t i = first; i < p.size(); ++i) {
        const double dx = x(p[i]) - mx;
        sxy += dx * (static_cast<double>(p[i].bytes) - my);
        sxx += dx * dx;
    }
    if (sxx <= 0) return std::nullopt;
    return sxy / sxx;
}

double mean_bytes(const std::vector<MemoryPoint>& p, std::size_t first, std::size_t count) {
    double sum = 0;
    for (std::size_t i = first; i < first + count; ++i) sum += static_cast<double>(p[i].bytes);
    return sum / static_cast<double>(count);
}

double mean_served(const std::vector<MemoryPoint>& p, std::size_t first, std::size_t count) {
    double sum = 0;
    for (std::size_t i = first; i < first + count; ++i) sum += static_cast<double>(p[i].served);
    return sum / static_cast<double>(count);
}

}  // namespace

void MemoryTrend::add(const MemoryPoint& p, std::uint64_t warmup) {
    if (p.served < warmup || p.bytes <= 0) return;
    if (!points_.empty() && ++skipped_ < stride_) return;
    skipped_ = 0;
    points_.push_back(p);
    if (points_.size() <= kMaxPoints) return;
    std::vector<MemoryPoint> kept;
    for (std::size_t i = 0; i < points_.size(); i += 2) kept.push_back(points_[i]);
    points_ = std::move(kept);
    stride_ *= 2;
}

LeakVerdict judge_leak(const LeakSpec& spec, const MemoryTrend& trend, std::optional<long> limit,
                       const std::string& limit_name) {
    LeakVerdict v;
    const auto& p = trend.points();
    if (p.size() < kMinPoints) return v;
    const double before = mean_bytes(p, 0, kSmoothing);
    const double now = mean_bytes(p, p.size() - kSmoothing, kSmoothing);
    v.growth = static_cast<long>(now - before);
    v.requests = p.back().served - p.front().served;
    // Lately: the newer half. Its rise, by either measure, has to be more than noise.
    const std::size_t half = p.size() / 2;
    const auto per_request = slope(p, half, [](const MemoryPoint& m) { return static_cast<double>(m.served); });
    const auto per_second = slope(p, half, [&](const MemoryPoint& m) {
        return std::chrono::duration<double>(m.at - p.front().at).count();
    });
    v.per_request = per_request.value_or(0.0);
    v.per_second = per_second.value_or(0.0);
    const double noise = static_cast<double>(spec.min_growth) / 8.0;
    const double late_requests = static_cast<double>(p.back().served - p[half].served);
    const double late_seconds = std::chrono::duration<double>(p.back().at - p[half].at).count();
    const bool rising_by_requests = v.per_request * late_requests >= noise;
    const bool rising_by_time = v.per_second * late_seconds >= noise;
    // A trend, not a jump: most of the growth in one step between two points (a cache filled,
    // a big request's buffers kept) waits for more growth to follow before it counts.
    long largest_step = 0;
    for (std::size_t i = 1; i < p.size(); ++i) largest_step = std::max(largest_step, p[i].bytes - p[i - 1].bytes);
    const bool spread = largest_step * 2 <= v.growth;

    v.summary = fmt::format("grew {} over {} requests", bytes_text(static_cast<double>(v.growth)), count_text(v.requests));
    // Per request: the growth over the requests between the two ends' averaged points.
    const double smoothed_requests = mean_served(p, p.size() - kSmoothing, kSmoothing) - mean_served(p, 0, kSmoothing);
    if (smoothed_requests > 0) {
        v.summary += fmt::format(" ({}/request)", bytes_text(static_cast<double>(v.growth) / smoothed_requests));
    }
    if (!spread) return v;
    if (v.growth >= static_cast<long>(spec.min_growth) && rising_by_requests &&
        v.per_request >= static_cast<double>(spec.per_request)) {
        v.leaking = true;
    }
    if (limit && rising_by_time && v.per_second > 0 && v.growth >= static_cast<long>(spec.min_growth / 4)) {
        const double left = static_cast<double>(*limit - p.back().bytes);
        const auto in = Duration(static_cast<Duration::rep>(std::max(0.0, left / v.per_second) * 1000.0));
        if (in <= spec.horizon) {
            v.crosses_in = in;
            v.leaking = true;
            v.summary += fmt::format("; at {}/s it reaches {} in {}", bytes_text(v.per_second), limit_name, format_duration(in));
        }
    }
    return v;
}

}  // namespace workerd::core
