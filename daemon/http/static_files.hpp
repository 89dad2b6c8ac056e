#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace workerd::http {

/// A regular file found under the static root.
struct StaticFile {
    std::string path;        ///< the name it was found by, under the root ("/docs/index.html")
    std::uint64_t size = 0;
    std::time_t mtime = 0;
    long mtime_nsec = 0;
};

/// `path` with every symlink, "." and ".." resolved (realpath); empty when it does not exist.
std::string real_path(const std::string& path);

/// Whether `path` (a real path) is `root` or beneath it.
bool inside_root(const std::string& root, const std::string& path);

/// Content-Type by file extension (case-insensitive); application/octet-stream otherwise.
std::string_view content_type_for(std::string_view path);

/// A weak validator from size and modification time: W/"<size hex>-<mtime ns hex>".
std::string make_etag(const StaticFile& file);

/// If-None-Match: true when `header` ("*", or a list of entity tags) matches `etag`, using
/// the weak comparison RFC 9110 prescribes for If-None-Match.
bool etag_matches(std::string_view header, std::string_view etag);

/// Accept-Encoding: whether `coding` ("gzip", "br") is acceptable, named or through "*",
/// with a q-value above 0 (RFC 9110 12.5.3).
bool accepts_encoding(std::string_view header, std::string_view coding);

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
