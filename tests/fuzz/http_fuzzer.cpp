// The bundled worker's request reading, as a client could drive it: bytes in chunks of any size
// to the request parser (Beast's framing with the worker's RequestHead), then the target, the
// Range and Accept-Encoding and If-None-Match readers on what it kept. Nothing may crash, a
// parsed target is never one with a ".." segment, and a range stays inside the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/http/request.hpp"
#include "daemon/http/static_files.hpp"
#include "daemon/http/target.hpp"

using namespace workerd::http;

namespace {

void check_head(const RequestHead& head) {
    Target t;
    if (parse_target(head.target, t)) {
        if (t.path.empty() || t.path.front() != '/') std::abort();
        if (t.path.find("/../") != std::string::npos || t.path.ends_with("/..")) std::abort();
        if (t.path.find('\0') != std::string::npos) std::abort();
    }
    for (std::uint64_t size : {0ull, 1ull, 20ull, 1ull << 40}) {
        ByteRange r;
        if (parse_range(head.range, size, r) == RangeKind::partial && (r.first > r.last || r.last >= size)) std::abort();
    }
    (void)accepts_encoding(head.accept_encoding, "gzip");
    (void)accepts_encoding(head.accept_encoding, "br");
    (void)etag_matches(head.if_none_match, "W/\"14-17d\"");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The first byte picks the chunk size, as a read could end anywhere.
    const std::size_t chunk = 1 + data[0] % 64;
    const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
    RequestHead head;
    std::string buffered;
    std::size_t at = 0;
    // Requests one after another on one connection, as the worker reads them.
    while (at < input.size() || !buffered.empty()) {
        RequestParser parser(head);
        parser.header_limit(2048);
        parser.body_limit(4096);
        boost::beast::error_code ec;
        bool progress = true;
        while (progress && !parser.is_done()) {
            if (!buffered.empty()) {
                const std::size_t used = parser.put(boost::asio::buffer(buffered), ec);
                buffered.erase(0, used);
                if (ec && ec != bhttp::error::need_more) break;
                ec = {};
                if (parser.is_done()) break;
            }
            progress = at < input.size();
            if (progress) {
                buffered.append(input, at, chunk);
                at += std::min(chunk, input.size() - at);
            }
        }
        if (!parser.is_done()) {
            if (!ec) parser.put_eof(ec);
            break;  // an error ends the connection, as in the worker
        }
        check_head(head);
    }
    return 0;
}
