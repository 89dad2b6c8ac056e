#include "daemon/wire/listen_address.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <vector>

namespace workerd {
namespace {

bool all_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int fd_for(const std::string& ref, const std::vector<ListenAddress>& listeners) {
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        if (listeners[i].name == ref) return kFirstListenFd + static_cast<int>(i);
    }
    if (all_digits(ref) && ref.size() < 6 && std::stoul(ref) < listeners.size()) {
        return kFirstListenFd + std::stoi(ref);
    }
    throw std::invalid_argument("{fd:" + ref + "} names no listener");
}

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

ListenAddress ListenAddress::tcp(const std::string& host, std::uint16_t port, const std::string& name) {
    ListenAddress a;
    a.host = host;
    a.port = port;
    a.text = host + ":" + std::to_string(port);
    a.name = name;
    return a;
}

ListenAddress ListenAddress::unix_socket(const std::string& path, const std::string& name) {
    ListenAddress a;
    a.kind = Kind::unix_path;
    a.path = path;
    a.text = "unix:" + path;
    a.name = name;
    return a;
}

std::string substitute_fds(const std::string& arg, const std::vector<ListenAddress>& listeners) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        const std::size_t open = arg.find("{fd", pos);
        if (open == std::string::npos) break;
        out.append(arg, pos, open - pos);
        const std::size_t after = open + 3;
        if (after < arg.size() && arg[after] == '}') {
            if (listeners.empty()) throw std::invalid_argument("{fd} used without listeners");
            out += std::to_string(kFirstListenFd);
            pos = after + 1;
        } else if (after < arg.size() && arg[after] == ':') {
            const std::size_t close = arg.find('}', after);
            if (close == std::string::npos) throw std::invalid_argument("unterminated {fd: in '" + arg + "'");
            out += std::to_string(fd_for(arg.substr(after + 1, close - after - 1), listeners));
            pos = close + 1;
        } else {
            out += "{fd";  // not a placeholder ("{fdx"): keep it as written
            pos = after;
        }
    }
    out.append(arg, pos, std::string::npos);
    return out;
}

}  // namespace workerd
