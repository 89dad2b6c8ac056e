#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace workerd::http {

/// The parts of a request target ("/a%20b/c?ms=10").
struct Target {
    std::string path;   ///< percent-decoded
    std::string query;  ///< raw, without '?'
};

/// Splits and percent-decodes a request target. nullopt when it is not an origin-form path
/// or decodes to something unsafe: a NUL byte, a bad %-escape, or a ".." segment (raw or
/// encoded as %2e%2e, with encoded slashes too).
std::optional<Target> parse_target(std::string_view target);

/// The same into `out`, whose strings keep their capacity (the request path's way); false
/// where the other gives nullopt (`out` is then unspecified).
bool parse_target(std::string_view target, Target& out);

/// The value of `name` in a query string ("ms=10&x=1"), percent-decoded; nullopt if absent.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

}  // namespace workerd::http
