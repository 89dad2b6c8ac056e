#include "daemon/control_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/control_path.hpp"
#include "daemon/handover.hpp"

namespace workerd {

namespace asio = boost::asio;
using json = nlohmann::json;
using local = asio::local::stream_protocol;

namespace {

ListenAddress unix_address(const std::string& path) {
    ListenAddress a;
    a.kind = ListenAddress::Kind::unix_path;
    a.path = path;
    a.text = "unix:" + path;
    a.name = "control";
    return a;
}

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
    if (inherited && socket_bound_to(inherited.get(), unix_address(path))) {
        return Listener(unix_address(path), std::move(inherited), 64, /*owns_path=*/true);
    }
    Listener l = open_listener(unix_address(path), 64);
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

// One client connection: read a line, answer it, read the next. Bounded in size and time.
class ControlServer::Client : public std::enable_shared_from_this<Client> {
public:
    Client(const ControlServer& server, local::socket socket, std::shared_ptr<int> count)
        : server_(server), socket_(std::move(socket)), buffer_(kMaxRequest), timer_(socket_.get_executor()),
          count_(std::move(count)) {
        ++*count_;
    }
    ~Client() { --*count_; }

    void start() { read(); }
    int fd() { return socket_.native_handle(); }
    void close() {
        boost::system::error_code ignored;
        timer_.cancel();
        socket_.close(ignored);
    }
    // Answers once, then closes (refusals).
    void reply_and_close(std::string line) {
        write(std::move(line), /*then_close=*/true);
    }

private:
    void read() {
        // Idle between requests: kIdleTimeout; once a request has begun, kRequestTimeout.
        arm_timer(buffer_.size() > 0 ? kRequestTimeout : kIdleTimeout);
        asio::async_read_until(socket_, buffer_, '\n',
                               [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                                   self->on_read(ec, n);
                               });
    }

    void arm_timer(std::chrono::seconds after) {
        timer_.expires_after(after);
        timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            if (ec) return;
            if (auto self = weak.lock()) self->close();
        });
    }

    void on_read(const boost::system::error_code& ec, std::size_t n) {
        if (ec == asio::error::not_found) {
            // The buffer is full and holds no newline: the line is too long.
            write(error_reply(nullptr, "bad_request",
                              fmt::format("request line longer than {} bytes", kMaxRequest)),
                  true);
            return;
        }
        if (ec) return close();  // EOF, reset, or closed by the timer
        std::string line(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + static_cast<std::ptrdiff_t>(n) - 1);
        buffer_.consume(n);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) return read();
        write(server_.handle_line(line), false);
    }

    void write(std::string line, bool then_close) {
        timer_.expires_after(kRequestTimeout);  // a client that does not read its reply is dropped
        timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            if (ec) return;
            if (auto self = weak.lock()) self->close();
        });
        out_ = std::move(line);
        out_ += '\n';
        asio::async_write(socket_, asio::buffer(out_),
                          [self = shared_from_this(), then_close](const boost::system::error_code& ec, std::size_t) {
                              if (ec || then_close) return self->close();
                              self->read();
                          });
    }

    const ControlServer& server_;
    local::socket socket_;
    asio::streambuf buffer_;
    asio::steady_timer timer_;
    std::string out_;
    std::shared_ptr<int> count_;
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
            // Forget clients that have gone, so the list does not grow.
            open_.erase(std::remove_if(open_.begin(), open_.end(), [](auto& w) { return w.expired(); }),
                        open_.end());
            auto client = std::make_shared<Client>(*this, std::move(socket), clients_);
            open_.push_back(client);
            ucred cred{};
            socklen_t len = sizeof cred;
            if (::getsockopt(client->fd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
                cred.uid = static_cast<uid_t>(-1);
            }
            if (!access_.allows(cred.uid, cred.gid)) {
                spdlog::warn("control: refused a client: uid {} (pid {}) is not allowed; see control.users and control.groups",
                             cred.uid, cred.pid);
                client->reply_and_close(error_reply(nullptr, "forbidden",
                    fmt::format("uid {} may not control this daemon (allowed: root, uid {}, and the spec's control.users/groups)",
                                cred.uid, access_.daemon_uid)));
            } else if (*clients_ > kMaxClients) {
                client->reply_and_close(error_reply(nullptr, "busy", "too many control connections; try again"));
            } else {
                client->start();
            }
        } else {
            spdlog::warn("control: accept failed: {}", ec.message());
        }
        accept();
    });
}

std::string ControlServer::handle_line(const std::string& line, const Handler& handler) {
    json request;
    try {
        request = json::parse(line);
    } catch (const json::exception&) {
        return error_reply(nullptr, "bad_request", "not a JSON object: expected {\"id\": 1, \"command\": \"status\"}");
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
