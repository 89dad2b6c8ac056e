#include "daemon/wire/units.hpp"

#include <cctype>
#include <cmath>
#include <utility>

#include <fmt/format.h>

namespace workerd {
namespace {

// Splits "1.5s" into number and unit; false when it does not start with a number.
bool split_number(const std::string& text, std::size_t& pos, double& value) {
    const std::size_t start = pos;
    while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) ++pos;
    if (pos == start) return false;
    const std::string number = text.substr(start, pos - start);
    if (number.find('.') != number.rfind('.') || number == ".") return false;
    value = std::stod(number);
    return true;
}

}  // namespace

std::optional<Duration> parse_duration(const std::string& text, std::string& error) {
    if (text.empty()) {
        error = "empty duration; use e.g. 30s or 500ms";
        return std::nullopt;
    }
    if (text[0] == '-') {
        error = "duration '" + text + "' is negative";
        return std::nullopt;
    }
    static const std::pair<const char*, double> kUnits[] = {
        {"ms", 1.0}, {"s", 1000.0}, {"m", 60'000.0}, {"h", 3'600'000.0}};
    double total_ms = 0;
    std::size_t pos = 0;
    bool bare = true;
    while (pos < text.size()) {
        double value = 0;
        if (!split_number(text, pos, value)) {
            error = "'" + text + "' is not a duration; use e.g. 30s, 500ms, 2m or 1m30s";
            return std::nullopt;
        }
        const std::size_t unit_start = pos;
        while (pos < text.size() && std::isalpha(static_cast<unsigned char>(text[pos]))) ++pos;
        const std::string unit = text.substr(unit_start, pos - unit_start);
        if (unit.empty()) {
            if (pos != text.size() || !bare) {
                error = "'" + text + "' is not a duration; use e.g. 30s, 500ms, 2m or 1m30s";
                return std::nullopt;
            }
            total_ms += value * 1000.0;  // a bare number is seconds, as in systemd
            break;
        }
        bare = false;
        bool known = false;
        for (const auto& [name, factor] : kUnits) {
            if (unit == name) {
                total_ms += value * factor;
                known = true;
            }
        }
        if (!known) {
            error = "unknown unit '" + unit + "' in '" + text + "'; use ms, s, m or h";
            return std::nullopt;
        }
    }
    if (total_ms > 1e12) {
        error = "duration '" + text + "' is too large";
        return std::nullopt;
    }
    return Duration(static_cast<Duration::rep>(std::llround(total_ms)));
}

std::optional<std::uint64_t> parse_size(const std::string& text, std::string& error) {
    std::size_t pos = 0;
    double value = 0;
    if (text.empty() || !split_number(text, pos, value)) {
        error = "'" + text + "' is not a size; use e.g. 512MiB, 64KiB or 4096";
        return std::nullopt;
    }
    std::string unit = text.substr(pos);
    while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
    static const std::pair<const char*, double> kUnits[] = {
        {"", 1.0},          {"B", 1.0},          {"KiB", 1024.0},   {"MiB", 1048576.0},
        {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}, {"KB", 1e3},  {"kB", 1e3},
        {"MB", 1e6},        {"GB", 1e9},         {"TB", 1e12},      {"K", 1024.0},
        {"M", 1048576.0},   {"G", 1073741824.0}};
    for (const auto& [name, factor] : kUnits) {
        if (unit == name) {
            const double bytes = value * factor;
            if (bytes > 1.8e19) {
                error = "size '" + text + "' is too large";
                return std::nullopt;
            }
            return static_cast<std::uint64_t>(std::llround(bytes));
        }
    }
    error = "unknown unit '" + unit + "' in '" + text + "'; use B, KiB, MiB, GiB (or KB, MB, GB)";
    return std::nullopt;
}

std::string format_duration(Duration d) {
    const auto ms = d.count();
    if (ms < 1000) return fmt::format("{}ms", ms);
    if (ms < 60'000) {
        return ms % 1000 == 0 ? fmt::format("{}s", ms / 1000)
                              : fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
    }
    const auto minutes = ms / 60'000;
    const auto seconds = (ms % 60'000) / 1000;
    if (minutes < 60) return seconds ? fmt::format("{}m{}s", minutes, seconds) : fmt::format("{}m", minutes);
    return fmt::format("{}h{}m", minutes / 60, minutes % 60);
}

}  // namespace workerd
