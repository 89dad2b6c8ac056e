#include "daemon/http/target.hpp"

namespace workerd::http {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return std::nullopt;
            const int hi = hex_value(in[i + 1]);
            const int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return out;
}

}  // namespace

std::optional<Target> parse_target(std::string_view target) {
    if (target.empty() || target.front() != '/') return std::nullopt;
    Target t;
    const auto q = target.find('?');
    std::string_view raw_path = target.substr(0, q);
    if (q != std::string_view::npos) t.query = std::string(target.substr(q + 1));
    auto decoded = percent_decode(raw_path, false);
    if (!decoded || decoded->find('\0') != std::string::npos) return std::nullopt;
    // Segments are checked after decoding, so "%2e%2e" and "..%2f" are caught like "..".
    std::size_t start = 0;
    while (start <= decoded->size()) {
        std::size_t end = decoded->find('/', start);
        if (end == std::string::npos) end = decoded->size();
        const std::string_view segment(decoded->data() + start, end - start);
        if (segment == ".." || segment.find('\\') != std::string_view::npos) return std::nullopt;
        start = end + 1;
    }
    t.path = std::move(*decoded);
    return t;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    std::size_t start = 0;
    while (start <= query.size()) {
        std::size_t end = query.find('&', start);
        if (end == std::string_view::npos) end = query.size();
        const std::string_view pair = query.substr(start, end - start);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            if (eq == std::string_view::npos) return std::string();
            return percent_decode(pair.substr(eq + 1), true);
        }
        start = end + 1;
    }
    return std::nullopt;
}

}  // namespace workerd::http
