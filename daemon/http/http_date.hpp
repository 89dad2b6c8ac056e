#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace workerd::http {

/// "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 IMF-fixdate).
std::string format_http_date(std::time_t t);

/// Parses an IMF-fixdate; nullopt for anything else (obsolete formats are ignored, which
/// only means a conditional request is answered in full).
std::optional<std::time_t> parse_http_date(std::string_view text);

/// The Date header value, formatted at most once per second.
class DateCache {
public:
    const std::string& now();

private:
    std::time_t second_ = 0;
    std::string text_;
};

}  // namespace workerd::http
