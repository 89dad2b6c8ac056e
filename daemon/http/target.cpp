#include "daemon/http/target.hpp"

namespace workerd::http {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool percent_decode(std::string_view in, bool plus_is_space, std::string& out) {
    // Most paths have nothing to decode: one copy instead of a push_back per byte.
    if (in.find('%') == std::string_view::npos && (!plus_is_space || in.find('+') == std::string_view::npos)) {
        out.assign(in);
        return true;
    }
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            const int hi = hex_value(in[i + 1]);
            const int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return true;
}

}  // namespace

bool parse_target(std::string_view target, Target& t) {
    if (target.empty() || target.front() != '/') return false;
    const auto q = target.find('?');
    const std::string_view raw_path = target.substr(0, q);
    if (q != std::string_view::npos) {
        t.query.assign(target.substr(q + 1));
    } else {
        t.query.clear();
    }
    if (!percent_decode(raw_path, false, t.path) || t.path.find('\0') != std::string::npos) return false;
    // Segments are checked after decoding, so "%2e%2e" and "..%2f" are caught like "..".
    std::size_t start = 0;
    while (start <= t.path.size()) {
        std::size_t end = t.path.find('/', start);
        if (end == std::string::npos) end = t.path.size();
        const std::string_view segment(t.path.data() + start, end - start);
        if (segment == ".." || segment.find('\\') != std::string_view::npos) return false;
        start = end + 1;
    }
    return true;
}

std::optional<Target> parse_target(std::string_view target) {
    Target t;
    if (!parse_target(target, t)) return std::nullopt;
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
            std::string value;
            if (!percent_decode(pair.substr(eq + 1), true, value)) return std::nullopt;
            return value;
        }
        start = end + 1;
    }
    return std::nullopt;
}

}  // namespace workerd::http
