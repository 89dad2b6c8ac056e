#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace workerd::http {

/// A regular file found under the static root.
struct StaticFile {
    std::string path;        ///< canonical, inside the root
    std::uint64_t size = 0;
    std::time_t mtime = 0;
    long mtime_nsec = 0;
};

/// Where a URL path leads under the root.
struct StaticLookup {
    enum class Kind { file, redirect, not_found } kind = Kind::not_found;
    StaticFile file;         ///< for file
    std::string location;    ///< for redirect: the URL path with a trailing '/'
};

/// Maps a decoded, already ".."-free URL path to a file under `canonical_root` (as returned
/// by realpath). A directory serves its index.html; a directory asked for without a trailing
/// '/' redirects to it. Anything whose real path (after symlinks) leaves the root, and
/// anything that is not a regular file, is not found.
StaticLookup lookup_static(const std::string& canonical_root, const std::string& url_path);

/// Content-Type by file extension (case-insensitive); application/octet-stream otherwise.
std::string_view content_type_for(std::string_view path);

/// A weak validator from size and modification time: W/"<size hex>-<mtime ns hex>".
std::string make_etag(const StaticFile& file);

/// If-None-Match: true when `header` ("*", or a list of entity tags) matches `etag`, using
/// the weak comparison RFC 9110 prescribes for If-None-Match.
bool etag_matches(std::string_view header, std::string_view etag);

/// One byte range, inclusive.
struct ByteRange {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
};

enum class RangeKind {
    full,           ///< no usable Range header (absent, not bytes=, several ranges): send 200
    partial,        ///< send 206 with `out`
    unsatisfiable,  ///< send 416
};

/// Parses a Range header against a file of `size` bytes: "bytes=a-b", "bytes=a-", "bytes=-n".
RangeKind parse_range(std::string_view header, std::uint64_t size, ByteRange& out);

}  // namespace workerd::http
