#include "daemon/os/zygote_client.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace workerd {

namespace {

constexpr std::size_t kMaxAnswer = 4096;

std::string errno_text(const char* what) { return fmt::format("{}: {}", what, std::strerror(errno)); }

// One message; empty when the peer closed its end. Throws on errors other than EAGAIN
// (nullopt).
std::optional<std::string> receive(int fd, int flags) {
    std::array<char, kMaxAnswer> buffer{};
    while (true) {
        const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), flags);
        if (n >= 0) return std::string(buffer.data(), static_cast<std::size_t>(n));
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return std::nullopt;
        throw SpawnError(errno_text("the zygote's socket"));
    }
}

nlohmann::json parse(const std::string& text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw SpawnError(fmt::format("the zygote said '{}', not a JSON object", text));
    return j;
}

}  // namespace

ZygotePair make_zygote_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) throw SpawnError(errno_text("socketpair"));
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::optional<pid_t> read_zygote_ready(int daemon_end) {
    const auto message = receive(daemon_end, MSG_DONTWAIT);
    if (!message) return std::nullopt;
    if (message->empty()) return 0;  // it ended (its exit says how)
    const auto j = parse(*message);
    if (!j.contains("ready") || !j["ready"].is_number_integer()) {
        throw SpawnError(fmt::format("the zygote's first message was '{}', not {{\"ready\": PID}}", *message));
    }
    return j["ready"].get<pid_t>();
}

pid_t fork_from_zygote(int daemon_end, const SpawnRequest& request, std::chrono::milliseconds timeout) {
    // An answer that came after its request timed out: that worker was given up on (its pipes
    // are closed); it must not serve unmanaged, and its answer must not be taken for this one's.
    while (const auto stale = receive(daemon_end, MSG_DONTWAIT)) {
        if (stale->empty()) throw SpawnError("the zygote is gone");
        const auto j = nlohmann::json::parse(*stale, nullptr, false);
        if (j.is_object() && j.contains("pid") && j["pid"].is_number_integer() && j["pid"].get<long>() > 0) {
            ::kill(j["pid"].get<pid_t>(), SIGKILL);
        }
    }
    nlohmann::json env = nlohmann::json::object();
    for (const auto& entry : request.env) {
        const auto eq = entry.find('=');
        if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
    std::vector<int> fds;
    std::vector<int> targets;
    auto give = [&](int fd, int target) {
        if (fd < 0) return;
        fds.push_back(fd);
        targets.push_back(target);
    };
    give(request.stdout_fd, 1);
    give(request.stderr_fd, 2);
    for (std::size_t i = 0; i < request.inherit_fds.size(); ++i) give(request.inherit_fds[i], 3 + static_cast<int>(i));
    const std::string text = nlohmann::json{{"env", env}, {"fds", targets}, {"parent", ::getpid()}}.dump();

    iovec iov{const_cast<char*>(text.data()), text.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    while (::sendmsg(daemon_end, &msg, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR) continue;
        throw SpawnError(errno == EPIPE || errno == ECONNRESET ? std::string("the zygote is gone")
                                                               : errno_text("sending a fork request to the zygote"));
    }
    pollfd p{daemon_end, POLLIN, 0};
    int ready = 0;
    while ((ready = ::poll(&p, 1, static_cast<int>(timeout.count()))) < 0 && errno == EINTR) {
    }
    if (ready == 0) throw SpawnError(fmt::format("the zygote did not answer a fork request within {} ms", timeout.count()));
    if (ready < 0) throw SpawnError(errno_text("poll"));
    const auto answer = receive(daemon_end, MSG_DONTWAIT);
    if (!answer || answer->empty()) throw SpawnError("the zygote is gone");
    const auto j = parse(*answer);
    if (j.contains("error") && j["error"].is_string()) throw SpawnError("the zygote: " + j["error"].get<std::string>());
    if (!j.contains("pid") || !j["pid"].is_number_integer() || j["pid"].get<long>() <= 0) {
        throw SpawnError(fmt::format("the zygote answered '{}', not {{\"pid\": PID}}", *answer));
    }
    return j["pid"].get<pid_t>();
}

void become_child_subreaper() {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) throw SpawnError(errno_text("prctl(PR_SET_CHILD_SUBREAPER)"));
}

}  // namespace workerd
