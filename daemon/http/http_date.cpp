#include "daemon/http/http_date.hpp"

#include <ctime>

namespace workerd::http {

std::string format_http_date(std::time_t t) {
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[64];
    const std::size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(buf, n);
}

std::optional<std::time_t> parse_http_date(std::string_view text) {
    const std::string s(text);
    std::tm tm{};
    const char* end = ::strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == nullptr || *end != '\0') return std::nullopt;
    return ::timegm(&tm);
}

const std::string& DateCache::now() {
    const std::time_t t = std::time(nullptr);
    if (t != second_) {
        second_ = t;
        text_ = format_http_date(t);
    }
    return text_;
}

}  // namespace workerd::http
