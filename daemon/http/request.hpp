#pragma once

#include <cstdint>
#include <string>

#include <boost/beast/http/basic_parser.hpp>

namespace workerd::http {

namespace bhttp = boost::beast::http;

/// What the bundled worker keeps of a request: the request line and the few fields it acts on.
/// The strings keep their capacity from one request to the next on a connection.
struct RequestHead {
    bhttp::verb method = bhttp::verb::unknown;
    std::string target;
    unsigned version = 11;
    std::string if_none_match;
    std::string if_modified_since;
    std::string range;
    std::string accept_encoding;
    bool has_if_none_match = false;
    bool has_if_modified_since = false;
    bool has_range = false;

    void clear();
};

/// Beast's HTTP/1.1 request parser (framing, limits, chunked bodies), writing the request line
/// and the fields RequestHead names into `head`, and nothing else: no allocation per field.
/// Bodies are read and dropped (nothing the worker serves takes one), still held to
/// body_limit(). A field sent twice is joined with ", " (RFC 9110 5.3).
class RequestParser : public bhttp::basic_parser<true> {
public:
    explicit RequestParser(RequestHead& head) : head_(head) { head_.clear(); }

private:
    void on_request_impl(bhttp::verb method, boost::beast::string_view method_str, boost::beast::string_view target,
                         int version, boost::beast::error_code& ec) override;
    void on_response_impl(int, boost::beast::string_view, int, boost::beast::error_code&) override {}
    void on_field_impl(bhttp::field name, boost::beast::string_view name_string, boost::beast::string_view value,
                       boost::beast::error_code& ec) override;
    void on_header_impl(boost::beast::error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>&, boost::beast::error_code&) override {}
    std::size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code&) override { return body.size(); }
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, boost::beast::error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body, boost::beast::error_code&) override {
        return body.size();
    }
    void on_finish_impl(boost::beast::error_code&) override {}

    RequestHead& head_;
};

}  // namespace workerd::http
