#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace workerd {

using Duration = std::chrono::milliseconds;

/// Parses a duration: "30s", "500ms", "2m", "1h", "1.5s", "1m30s", or a bare number of
/// seconds ("30", systemd's convention). Negative values and unknown units are rejected.
/// On failure returns nullopt and sets `error` ("unknown unit 'sec' in '30sec'; use ms, s, m or h").
std::optional<Duration> parse_duration(const std::string& text, std::string& error);

/// Parses a size in bytes: "512MiB", "1GiB", "64KiB", "10MB" (powers of 1000), "4096" (bytes).
std::optional<std::uint64_t> parse_size(const std::string& text, std::string& error);

/// "1.5s", "250ms", "2m0s"-style text for logs.
std::string format_duration(Duration d);

}  // namespace workerd
