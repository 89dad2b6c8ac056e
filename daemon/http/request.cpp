#include "daemon/http/request.hpp"

namespace workerd::http {

void RequestHead::clear() {
    method = bhttp::verb::unknown;
    target.clear();
    version = 11;
    if_none_match.clear();
    if_modified_since.clear();
    range.clear();
    accept_encoding.clear();
    has_if_none_match = has_if_modified_since = has_range = false;
}

void RequestParser::on_request_impl(bhttp::verb method, boost::beast::string_view, boost::beast::string_view target,
                                    int version, boost::beast::error_code&) {
    head_.method = method;
    head_.target.assign(target.data(), target.size());
    head_.version = static_cast<unsigned>(version);
}

void RequestParser::on_field_impl(bhttp::field name, boost::beast::string_view, boost::beast::string_view value,
                                  boost::beast::error_code&) {
    auto keep = [&](std::string& into, bool* seen = nullptr) {
        if (!into.empty()) into += ", ";
        into.append(value.data(), value.size());
        if (seen != nullptr) *seen = true;
    };
    switch (name) {
        case bhttp::field::if_none_match: return keep(head_.if_none_match, &head_.has_if_none_match);
        case bhttp::field::if_modified_since: return keep(head_.if_modified_since, &head_.has_if_modified_since);
        case bhttp::field::range: return keep(head_.range, &head_.has_range);
        case bhttp::field::accept_encoding: return keep(head_.accept_encoding);
        default: return;
    }
}

}  // namespace workerd::http
