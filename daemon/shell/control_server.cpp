#include "daemon/shell/control_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <optional>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/os/control_path.hpp"
#include "daemon/wire/handover.hpp"

namespace workerd {

namespace asio = boost::asio;
using json = nlohmann::json;
using local = asio::local::stream_protocol;

namespace {

std::string socket_path(const ControlSpec& spec) {
    if (!spec.socket.empty()) return spec.socket;
    const std::string path = default_control_socket();
    // The default directory may not exist yet (/run/workerd, /tmp/workerd-UID): make it, private
    // unless it is root's runtime directory.
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (std::filesystem::create_directories(dir, ec)) {
        ::chmod(dir.c_str(), ::geteuid() == 0 ? 0755 : 0700);
    }
    return path;
}

Listener bind_control(const ControlSpec& spec, const std::string& path, UniqueFd inherited) {
    // A socket handed over by the previous image (SIGUSR2) is kept when it is still at `path`:
    // clients queued on it during the re-exec are served.
    if (inherited && socket_bound_to(inherited.get(), ListenAddress::unix_socket(path, "control"))) {
        return Listener(ListenAddress::unix_socket(path, "control"), std::move(inherited), 64, /*owns_path=*/true);
    }
    Listener l = open_listener(ListenAddress::unix_socket(path, "control"), 64);
    if (::chmod(path.c_str(), spec.mode) != 0) {
        throw ListenError(fmt::format("chmod {:o} {} failed: {}", spec.mode, path, std::strerror(errno)));
    }
    if (spec.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *spec.group) != 0) {
        throw ListenError(fmt::format("chown :{} {} failed: {}", *spec.group, path, std::strerror(errno)));
    }
    return l;
}

// One reply line. Invalid UTF-8 (from a handler's message, say) is replaced, never thrown.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_reply(const json& id, const std::string& code, const std::string& message) {
    return dump(json{{"id", id}, {"ok", false}, {"error", {{"code", code}, {"message", message}}}});
}

}  // namespace

bool ControlAccess::allows(uid_t uid, gid_t gid) const {
    if (uid == 0 || uid == daemon_uid) return true;
    if (std::find(users.begin(), users.end(), uid) != users.end()) return true;
    if (groups.empty()) return false;
    if (std::find(groups.begin(), groups.end(), gid) != groups.end()) return true;
    // Supplementary groups of the peer's user.
    const passwd* pw = ::getpwuid(uid);
    if (pw == nullptr) return false;
    int n = 64;
    std::vector<gid_t> member_of(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, gid, member_of.data(), &n) < 0) {
        member_of.resize(static_cast<std::size_t>(n));
        if (::getgrouplist(pw->pw_name, gid, member_of.data(), &n) < 0) return false;
    }
    member_of.resize(static_cast<std::size_t>(n));
    return std::any_of(member_of.begin(), member_of.end(), [&](gid_t g) {
        return std::find(groups.begin(), groups.end(), g) != groups.end();
    });
}

// One client connection: read a line, answer it, read the next. Bounded in size and time: a
// line once begun must end within kRequestTimeout (the first byte starts the clock; more
// bytes do not stop it), an idle client goes after kIdleTimeout, and at the cap the client
// that has waited longest for a request of its own makes room (ControlServer::accept).
class ControlServer::Client : public std::enable_shared_from_this<Client> {
public:
    Client(const ControlServer& server, local::socket socket)
        : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()) {}

    void start() { next(); }
    int fd() { return socket_.native_handle(); }
    bool closing() const { return closing_; }
    /// Waiting for a request (idle, or part of a line in) since then; nullopt while answering.
    std::optional<std::chrono::steady_clock::time_point> waiting_since() const { return waiting_since_; }
    void close() {
        closing_ = true;
        boost::system::error_code ignored;
        timer_.cancel();
        socket_.close(ignored);
    }
    // Answers once, then closes (refusals, evictions).
    void reply_and_close(std::string line) {
        closing_ = true;
        write(std::move(line), /*then_close=*/true);
    }

private:
    // Answers the next whole line waiting, or reads more.
    void next() {
        if (closing_) return;
        const auto now = std::chrono::steady_clock::now();
        if (!waiting_since_) waiting_since_ = now;
        const auto nl = pending_.find('\n');
        if (nl != std::string::npos) {
            std::string line = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            line_started_.reset();
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty()) return next();
            waiting_since_.reset();
            write(server_.handle_line(line), false);
            return;
        }
        if (pending_.size() >= kMaxRequest) {
            write(error_reply(nullptr, "bad_request", fmt::format("request line longer than {} bytes", kMaxRequest)), true);
            return;
        }
        if (pending_.empty()) {
            arm_timer(kIdleTimeout);
        } else if (!line_started_) {
            line_started_ = now;
            arm_timer(kRequestTimeout);
        }
        if (reading_) return;
        reading_ = true;
        socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            self->reading_ = false;
            if (ec) return self->close();  // EOF, reset, or closed by the timer
            self->pending_.append(self->chunk_.data(), n);
            self->next();
        });
    }

    void arm_timer(std::chrono::seconds after) {
        timer_.expires_after(after);
        timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            if (ec) return;
            if (auto self = weak.lock()) self->close();
        });
    }

    void write(std::string line, bool then_close) {
        arm_timer(kRequestTimeout);  // a client that does not read its reply is dropped
        out_ = std::move(line);
        out_ += '\n';
        asio::async_write(socket_, asio::buffer(out_),
                          [self = shared_from_this(), then_close](const boost::system::error_code& ec, std::size_t) {
                              if (ec || then_close) return self->close();
                              self->next();
                          });
    }

    const ControlServer& server_;
    local::socket socket_;
    asio::steady_timer timer_;
    std::array<char, 4096> chunk_{};
    std::string pending_;  ///< bytes read and not yet answered
    std::string out_;
    std::optional<std::chrono::steady_clock::time_point> line_started_;
    std::optional<std::chrono::steady_clock::time_point> waiting_since_;
    bool reading_ = false;
    bool closing_ = false;
};

ControlServer::ControlServer(asio::io_context& io, const ControlSpec& spec, Handler handler, UniqueFd inherited)
    : path_(socket_path(spec)),
      listener_(bind_control(spec, path_, std::move(inherited))),
      acceptor_(io),
      handler_(std::move(handler)) {
    access_.daemon_uid = ::geteuid();
    access_.users = spec.allow_users;
    access_.groups = spec.allow_groups;
    acceptor_.assign(local(), ::fcntl(listener_.fd(), F_DUPFD_CLOEXEC, 0));
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::start() { accept(); }

void ControlServer::stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& weak : open_) {
        if (auto client = weak.lock()) client->close();
    }
    open_.clear();
}

void ControlServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, local::socket socket) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
            // Asio accepts without SOCK_CLOEXEC: a connection open across SIGUSR2's re-exec
            // would stay in the new image, owned by nobody, its client waiting for a reply.
            ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
            // Forget clients that have gone, so the list does not grow.
            std::erase_if(open_, [](const auto& w) {
                auto c = w.lock();
                return !c || c->closing();
            });
            auto client = std::make_shared<Client>(*this, std::move(socket));
            ucred cred{};
            socklen_t len = sizeof cred;
            if (::getsockopt(client->fd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
                cred.uid = static_cast<uid_t>(-1);
            }
            if (!access_.allows(cred.uid, cred.gid)) {
                refused(cred);
                client->reply_and_close(error_reply(nullptr, "forbidden",
                    fmt::format("uid {} may not control this daemon (allowed: root, uid {}, and the spec's control.users/groups)",
                                cred.uid, access_.daemon_uid)));
            } else if (static_cast<int>(open_.size()) < kMaxClients || evict_longest_waiting()) {
                open_.push_back(client);
                client->start();
            } else {
                client->reply_and_close(error_reply(nullptr, "busy", "too many control connections; try again"));
            }
        } else {
            spdlog::warn("control: accept failed: {}", ec.message());
        }
        accept();
    });
}

bool ControlServer::evict_longest_waiting() {
    std::shared_ptr<Client> oldest;
    for (const auto& weak : open_) {
        auto c = weak.lock();
        if (!c || c->closing() || !c->waiting_since()) continue;
        if (!oldest || *c->waiting_since() < *oldest->waiting_since()) oldest = c;
    }
    if (!oldest) return false;
    std::erase_if(open_, [&](const auto& w) { return w.lock() == oldest; });
    oldest->reply_and_close(error_reply(nullptr, "busy", "too many control connections; this one waited longest and makes room"));
    return true;
}

void ControlServer::refused(const ucred& cred) {
    // Said at most every kRefusedLogInterval, with how many were refused meanwhile: a
    // world-writable socket (mode 0666) must not let one user flood the log.
    ++refused_unlogged_;
    const auto now = std::chrono::steady_clock::now();
    if (refused_logged_at_ && now - *refused_logged_at_ < kRefusedLogInterval) return;
    spdlog::warn("control: refused a client: uid {} (pid {}) is not allowed{}; see control.users and control.groups",
                 cred.uid, cred.pid,
                 refused_unlogged_ > 1 ? fmt::format(", nor {} more since the last report", refused_unlogged_ - 1) : "");
    refused_unlogged_ = 0;
    refused_logged_at_ = now;
}

std::string ControlServer::handle_line(const std::string& line, const Handler& handler) {
    json request;
    try {
        request = json::parse(line);
    } catch (const json::exception& e) {
        // What was wrong, without the library's "[json.exception.parse_error.101] " prefix:
        // an overflowing number and a byte that is not UTF-8 are different mistakes.
        std::string why = e.what();
        if (const auto close = why.find("] "); why.starts_with("[json.exception.") && close != std::string::npos) {
            why.erase(0, close + 2);
        }
        return error_reply(nullptr, "bad_request",
                           fmt::format("not valid JSON ({}); expected {{\"id\": 1, \"command\": \"status\"}}", why));
    }
    if (!request.is_object()) return error_reply(nullptr, "bad_request", "the request must be a JSON object");
    const json id = request.contains("id") ? request["id"] : json(nullptr);
    if (!request.contains("command") || !request["command"].is_string()) {
        return error_reply(id, "bad_request", "'command' must be a string");
    }
    const json args = request.contains("args") ? request["args"] : json::object();
    if (!args.is_object()) return error_reply(id, "bad_argument", "'args' must be an object");
    try {
        json result = handler(request["command"].get<std::string>(), args);
        return dump(json{{"id", id}, {"ok", true}, {"result", std::move(result)}});
    } catch (const ControlError& e) {
        return error_reply(id, e.code, e.what());
    } catch (const json::exception& e) {
        return error_reply(id, "bad_argument", e.what());
    } catch (const std::exception& e) {
        return error_reply(id, "internal", e.what());
    }
}

}  // namespace workerd
