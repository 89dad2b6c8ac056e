#include "daemon/wire/listen_address.hpp"

#include <algorithm>
#include <cctype>

namespace workerd {
namespace {

bool parse_port(const std::string& text, std::uint16_t& port, std::string& error) {
    if (text.empty() || text.size() > 5 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        error = text.empty() ? "missing port" : "port '" + text + "' is not a number";
        return false;
    }
    const int value = std::stoi(text);
    if (value > 65535) {
        error = "port " + text + " is out of range 0-65535";
        return false;
    }
    port = static_cast<std::uint16_t>(value);
    return true;
}

}  // namespace

std::string ListenAddress::to_string() const {
    if (kind == Kind::unix_path) return "unix:" + path;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return (host.empty() ? std::string("0.0.0.0") : host) + ":" + std::to_string(port);
}

std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string& error) {
    ListenAddress a;
    a.text = text;
    if (text.rfind("unix:", 0) == 0) {
        a.kind = ListenAddress::Kind::unix_path;
        a.path = text.substr(5);
        if (a.path.empty()) {
            error = "empty unix socket path; use unix:/run/app.sock";
            return std::nullopt;
        }
        return a;
    }
    if (text.empty()) {
        error = "empty address; use HOST:PORT, [IPV6]:PORT or unix:/PATH";
        return std::nullopt;
    }
    std::string port_text;
    if (text[0] == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            error = "'" + text + "' needs the form [IPV6]:PORT, e.g. [::1]:8000";
            return std::nullopt;
        }
        a.host = text.substr(1, close - 1);
        if (a.host.empty()) {
            error = "empty IPv6 address in '" + text + "'";
            return std::nullopt;
        }
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos) {
            error = "'" + text + "' has no port; use HOST:PORT, e.g. 127.0.0.1:8000";
            return std::nullopt;
        }
        if (text.find(':') != colon) {
            error = "IPv6 addresses need brackets: [" + text.substr(0, colon) + "]:" + text.substr(colon + 1);
            return std::nullopt;
        }
        a.host = text.substr(0, colon);  // empty (":8000") means every IPv4 interface
        if (a.host.empty()) a.host = "0.0.0.0";
        port_text = text.substr(colon + 1);
    }
    std::string port_error;
    if (!parse_port(port_text, a.port, port_error)) {
        error = port_error + " in '" + text + "'";
        return std::nullopt;
    }
    return a;
}

}  // namespace workerd
