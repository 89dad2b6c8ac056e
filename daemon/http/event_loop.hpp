#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>

#include "daemon/os/unique_fd.hpp"

namespace workerd::http {

using Clock = std::chrono::steady_clock;

/// What the loop calls when a descriptor it watches is ready.
class Watcher {
public:
    /// `events`: the epoll bits (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR).
    virtual void on_events(std::uint32_t events) = 0;

protected:
    ~Watcher() = default;
};

/// The bundled worker's event loop: one epoll set, edge-triggered, as nginx runs it. A socket
/// is added once with everything it will ever wait for; the loop reports each change of
/// readiness once and the owner remembers it (Connection's readable/writable), so that serving
/// a request takes no epoll_ctl and no read that can only say "nothing yet". Timers, deferred
/// calls and signals (a signalfd) are the loop's too. Single-threaded.
class EventLoop {
public:
    using TimerId = std::uint64_t;

    EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    /// Watches `fd` for `events` (EPOLLET is added) until remove() or close(fd).
    void add(int fd, std::uint32_t events, Watcher* watcher);
    void remove(int fd);

    /// Runs `fn` once, `delay` from now. The id is for cancel().
    TimerId after(std::chrono::milliseconds delay, std::function<void()> fn);
    void cancel(TimerId id);

    /// Runs `fn` on the loop's next turn, after the ready descriptors of this one.
    void post(std::function<void()> fn);

    /// Delivers `signals` (blocked for the process from here on) to `fn`.
    void on_signals(std::initializer_list<int> signals, std::function<void(int)> fn);

    /// Runs until stop().
    void run();
    void stop() { stopped_ = true; }

private:
    class SignalWatcher final : public Watcher {
    public:
        explicit SignalWatcher(EventLoop& loop) : loop_(loop) {}
        void on_events(std::uint32_t events) override;

    private:
        EventLoop& loop_;
    };

    int timeout_ms(Clock::time_point now) const;
    void run_timers(Clock::time_point now);

    UniqueFd epoll_;
    bool stopped_ = false;
    TimerId next_timer_ = 1;
    std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
    std::unordered_map<TimerId, Clock::time_point> timer_due_;
    std::deque<std::function<void()>> posted_;
    UniqueFd signal_fd_;
    SignalWatcher signal_watcher_{*this};
    std::function<void(int)> on_signal_;
    std::vector<epoll_event> events_;
};

}  // namespace workerd::http
