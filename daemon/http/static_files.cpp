#include "daemon/http/static_files.hpp"

#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <boost/beast/core/string.hpp>
#include <fmt/format.h>

namespace workerd::http {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
    if (s.empty() || s.size() > 19) return false;
    out = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        out = out * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

bool inside_root(const std::string& root, const std::string& path) {
    return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                            (root.back() == '/' || path[root.size()] == '/'));
}

std::string real_path(const std::string& path) {
    char buf[PATH_MAX];
    return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

std::string_view content_type_for(std::string_view path) {
    const auto slash = path.rfind('/');
    const auto dot = path.rfind('.');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
        return "application/octet-stream";
    }
    const std::string ext = lower(path.substr(dot + 1));
    static const std::pair<const char*, const char*> kTypes[] = {
        {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},   {"xml", "application/xml"},
        {"svg", "image/svg+xml"},             {"png", "image/png"},
        {"jpg", "image/jpeg"},                {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},                 {"webp", "image/webp"},
        {"avif", "image/avif"},               {"ico", "image/x-icon"},
        {"woff", "font/woff"},                {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},                  {"otf", "font/otf"},
        {"wasm", "application/wasm"},         {"pdf", "application/pdf"},
        {"zip", "application/zip"},           {"gz", "application/gzip"},
        {"mp4", "video/mp4"},                 {"webm", "video/webm"},
        {"mp3", "audio/mpeg"},                {"ogg", "audio/ogg"},
        {"wav", "audio/wav"},                 {"map", "application/json"},
    };
    for (const auto& [e, type] : kTypes) {
        if (ext == e) return type;
    }
    return "application/octet-stream";
}

std::string make_etag(const StaticFile& file) {
    const auto ns = static_cast<unsigned long long>(file.mtime) * 1'000'000'000ull +
                    static_cast<unsigned long long>(file.mtime_nsec);
    return fmt::format("W/\"{:x}-{:x}\"", file.size, ns);
}

bool etag_matches(std::string_view header, std::string_view etag) {
    auto opaque = [](std::string_view t) {
        t = trim(t);
        if (t.substr(0, 2) == "W/") t.remove_prefix(2);
        return t;
    };
    const std::string_view want = opaque(etag);
    std::size_t start = 0;
    while (start <= header.size()) {
        std::size_t end = header.find(',', start);
        if (end == std::string_view::npos) end = header.size();
        const std::string_view item = trim(header.substr(start, end - start));
        if (item == "*" || (!item.empty() && opaque(item) == want)) return true;
        start = end + 1;
    }
    return false;
}

bool accepts_encoding(std::string_view header, std::string_view coding) {
    // "gzip, deflate, br;q=0.5, *;q=0": a named coding's own q wins over "*".
    std::optional<bool> named, star;
    std::size_t start = 0;
    while (start <= header.size()) {
        std::size_t end = header.find(',', start);
        if (end == std::string_view::npos) end = header.size();
        std::string_view item = trim(header.substr(start, end - start));
        start = end + 1;
        const auto semi = item.find(';');
        const std::string_view name = trim(item.substr(0, semi));
        bool ok = true;
        if (semi != std::string_view::npos) {
            // q=0, q=0.0, q=0.000: not acceptable; anything else above 0 is.
            std::string_view params = trim(item.substr(semi + 1));
            if (params.size() >= 2 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=') {
                const std::string_view q = trim(params.substr(2));
                ok = !q.empty() && q.find_first_not_of("0.") != std::string_view::npos;
            }
        }
        if (boost::beast::iequals({name.data(), name.size()}, {coding.data(), coding.size()})) named = ok;
        if (name == "*") star = ok;
    }
    return named ? *named : star.value_or(false);
}

RangeKind parse_range(std::string_view header, std::uint64_t size, ByteRange& out) {
    header = trim(header);
    if (header.substr(0, 6) != "bytes=") return RangeKind::full;
    const std::string_view spec = trim(header.substr(6));
    if (spec.find(',') != std::string_view::npos) return RangeKind::full;  // several: send all
    const auto dash = spec.find('-');
    if (dash == std::string_view::npos) return RangeKind::full;
    const std::string_view a = trim(spec.substr(0, dash));
    const std::string_view b = trim(spec.substr(dash + 1));
    std::uint64_t first = 0, last = 0;
    if (a.empty()) {  // suffix: the last n bytes
        if (!parse_u64(b, last)) return RangeKind::full;
        if (last == 0 || size == 0) return RangeKind::unsatisfiable;
        out.first = last >= size ? 0 : size - last;
        out.last = size - 1;
        return RangeKind::partial;
    }
    if (!parse_u64(a, first)) return RangeKind::full;
    if (b.empty()) {
        last = size == 0 ? 0 : size - 1;
    } else if (!parse_u64(b, last) || last < first) {
        return RangeKind::full;  // syntactically invalid: ignore the header
    }
    if (first >= size) return RangeKind::unsatisfiable;
    out.first = first;
    out.last = last >= size ? size - 1 : last;
    return RangeKind::partial;
}

}  // namespace workerd::http
