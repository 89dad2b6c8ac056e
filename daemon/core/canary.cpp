#include "daemon/core/canary.hpp"

#include <fmt/format.h>

#include "daemon/wire/units.hpp"

namespace workerd::core {

namespace {

constexpr double kP99SlackMs = 5.0;

std::uint64_t answered(const RequestStats& s) {
    std::uint64_t n = 0;
    for (auto c : s.responses) n += c;
    return n;
}

std::string percent(double share) { return fmt::format("{:.1f}%", share * 100.0); }

std::string ms(std::optional<double> v) { return v ? fmt::format("{:.0f} ms", *v) : std::string("-"); }

}  // namespace

std::optional<double> error_share(const RequestStats& s) {
    const auto n = answered(s);
    if (n == 0) return std::nullopt;
    const auto bad = s.responses[static_cast<std::size_t>(ResponseClass::server_error)] +
                     s.responses[static_cast<std::size_t>(ResponseClass::failed)];
    return static_cast<double>(bad) / static_cast<double>(n);
}

CanaryVerdict judge_canary(const AnalysisSpec& spec, const RequestStats& canaries, const RequestStats& old,
                           Duration window) {
    CanaryVerdict v;
    const auto new_errors = error_share(canaries);
    const auto old_errors = error_share(old);
    const auto new_p99 = canaries.percentile_ms(0.99);
    const auto old_p99 = old.percentile_ms(0.99);
    std::string errors_text;
    if (new_errors && old_errors) errors_text = fmt::format("5xx {} vs {}, ", percent(*new_errors), percent(*old_errors));
    v.summary = fmt::format("{}p99 {} vs {} over {} and {} requests", errors_text, ms(new_p99), ms(old_p99),
                            format_duration(window), canaries.served);
    // Both sides answered in the window: with nothing from the old workers there is nothing to
    // compare with (the verdict waits).
    v.enough = canaries.served >= spec.min_requests && old.served > 0;
    if (!v.enough) return v;
    if (new_errors) {
        const double base = old_errors.value_or(0.0);
        if (*new_errors > base + spec.max_error_increase && *new_errors > base * spec.max_error_ratio) v.pass = false;
    }
    if (new_p99 && old_p99 && *new_p99 > *old_p99 * spec.max_p99_ratio && *new_p99 - *old_p99 > kP99SlackMs) v.pass = false;
    return v;
}

}  // namespace workerd::core
