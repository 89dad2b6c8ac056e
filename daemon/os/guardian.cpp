#include "daemon/os/guardian.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <set>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/os/output_pipe.hpp"
#include "daemon/os/spawn.hpp"

namespace workerd {

Guardian Guardian::start(const std::string& self_exe) {
    PipePair pipe = make_pipe();
    SpawnRequest request;
    request.argv = {self_exe, "guard"};
    request.stdin_fd = pipe.read_end.get();
    request.stderr_fd = STDERR_FILENO;
    request.die_with_parent = false;  // the whole point: it outlives the daemon
    const pid_t pid = spawn_process(request);
    // Never block the daemon: the guardian reads at once, and a message is a dozen bytes.
    ::fcntl(pipe.write_end.get(), F_SETFL, ::fcntl(pipe.write_end.get(), F_GETFL) | O_NONBLOCK);
    return Guardian(pid, std::move(pipe.write_end));
}

Guardian Guardian::adopt(pid_t pid, UniqueFd pipe) { return Guardian(pid, std::move(pipe)); }

void Guardian::send(char op, pid_t pgid) {
    if (!pipe_) return;
    const std::string line = fmt::format("{}{}\n", op, pgid);
    if (::write(pipe_.get(), line.data(), line.size()) < 0) {
        spdlog::error("guardian (pid {}): write failed: {}; process group {} is not {}", pid_, std::strerror(errno), pgid,
                      op == '+' ? "guarded" : "released");
    }
}

int run_guardian(int in) {
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGTTIN, SIGTTOU, SIGTSTP}) {
        ::signal(sig, SIG_IGN);
    }
    std::set<pid_t> groups;
    std::string pending;
    char buf[4096];
    while (true) {
        const ssize_t n = ::read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // the daemon is gone
        pending.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
            const std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            const long pgid = line.size() > 1 ? std::strtol(line.c_str() + 1, nullptr, 10) : 0;
            if (pgid <= 1) continue;
            if (line[0] == '+') groups.insert(static_cast<pid_t>(pgid));
            if (line[0] == '-') groups.erase(static_cast<pid_t>(pgid));
        }
    }
    int killed = 0;
    for (pid_t pgid : groups) {
        if (::kill(-pgid, SIGKILL) == 0) ++killed;
    }
    if (killed > 0) {
        std::fprintf(stderr, "workerd guard: the daemon is gone; killed %d process group(s) its workers left\n", killed);
    }
    return 0;
}

}  // namespace workerd
