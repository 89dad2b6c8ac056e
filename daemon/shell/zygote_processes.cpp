#include "daemon/shell/zygote_processes.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>

#include <spdlog/spdlog.h>

#include "daemon/os/zygote_client.hpp"

namespace workerd {

ZygoteProcesses::ZygoteProcesses(boost::asio::io_context& io, Ready on_ready) : io_(io), on_ready_(std::move(on_ready)) {}

void ZygoteProcesses::add(long generation, pid_t pid, UniqueFd socket, UniqueFd out, UniqueFd err) {
    Zygote& z = zygotes_[generation];
    z = Zygote{};
    z.generation = generation;
    z.pid = pid;
    z.socket = std::move(socket);
    int i = 0;
    for (auto [fd, stream] : {std::pair{&out, "stdout"}, std::pair{&err, "stderr"}}) {
        if (fd->valid()) {
            z.pipes[i] = OutputPipe::start(io_, std::move(*fd), [generation, pid, name = stream](std::string_view line, bool) {
                spdlog::info("zygote of generation {} (pid {}) {}: {}", generation, pid, name, line);
            });
        }
        ++i;
    }
    const int copy = ::fcntl(z.socket.get(), F_DUPFD_CLOEXEC, 3);
    if (copy < 0) {
        spdlog::error("zygote of generation {} (pid {}): cannot watch its socket; stopping it", generation, pid);
        ::kill(pid, SIGKILL);
        return;
    }
    z.waiter = std::make_unique<boost::asio::posix::stream_descriptor>(io_, copy);
    wait_ready(generation);
}

void ZygoteProcesses::wait_ready(long generation) {
    auto it = zygotes_.find(generation);
    if (it == zygotes_.end() || !it->second.waiter) return;
    const pid_t pid = it->second.pid;
    it->second.waiter->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                  [this, generation, pid](const boost::system::error_code& ec) {
        auto it = zygotes_.find(generation);
        if (ec || it == zygotes_.end() || it->second.pid != pid) return;
        Zygote& z = it->second;
        try {
            const auto said = read_zygote_ready(z.socket.get());
            if (!said) return wait_ready(generation);
            z.waiter.reset();
            if (*said == 0) return;  // it ended before it was ready: its exit tells the core
            z.ready = true;
            on_ready_(generation);
        } catch (const std::exception& e) {
            // Not the protocol: it is of no use, and its exit tells the core.
            spdlog::error("zygote of generation {} (pid {}): {}", generation, pid, e.what());
            z.waiter.reset();
            ::kill(pid, SIGKILL);
        }
    });
}

int ZygoteProcesses::socket_of(long generation) const {
    auto it = zygotes_.find(generation);
    return it != zygotes_.end() && it->second.ready ? it->second.socket.get() : -1;
}

void ZygoteProcesses::stop(long generation, pid_t pid) {
    auto it = zygotes_.find(generation);
    if (it != zygotes_.end() && it->second.pid == pid) {
        it->second.waiter.reset();
        it->second.socket.reset();
        it->second.ready = false;
    }
    ::kill(pid, SIGTERM);
}

void ZygoteProcesses::reaped(pid_t pid) {
    for (auto it = zygotes_.begin(); it != zygotes_.end(); ++it) {
        if (it->second.pid == pid) {
            zygotes_.erase(it);
            return;
        }
    }
}

}  // namespace workerd
