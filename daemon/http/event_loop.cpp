#include "daemon/http/event_loop.hpp"

#include <sys/signalfd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>

namespace workerd::http {
namespace {

[[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string(what) + ": " + std::strerror(errno)); }

}  // namespace

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)), events_(256) {
    if (!epoll_) fail("epoll_create1");
}

void EventLoop::add(int fd, std::uint32_t events, Watcher* watcher) {
    epoll_event ev{};
    ev.events = events | EPOLLET;
    ev.data.ptr = watcher;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) fail("epoll_ctl");
}

void EventLoop::remove(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

EventLoop::TimerId EventLoop::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    const TimerId id = next_timer_++;
    const auto due = Clock::now() + delay;
    timers_.emplace(std::make_pair(due, id), std::move(fn));
    timer_due_.emplace(id, due);
    return id;
}

void EventLoop::cancel(TimerId id) {
    const auto it = timer_due_.find(id);
    if (it == timer_due_.end()) return;
    timers_.erase({it->second, id});
    timer_due_.erase(it);
}

void EventLoop::post(std::function<void()> fn) { posted_.push_back(std::move(fn)); }

void EventLoop::on_signals(std::initializer_list<int> signals, std::function<void(int)> fn) {
    sigset_t set;
    sigemptyset(&set);
    for (int s : signals) sigaddset(&set, s);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) fail("sigprocmask");
    signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signal_fd_) fail("signalfd");
    on_signal_ = std::move(fn);
    add(signal_fd_.get(), EPOLLIN, &signal_watcher_);
}

void EventLoop::SignalWatcher::on_events(std::uint32_t) {
    signalfd_siginfo info{};
    while (::read(loop_.signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        loop_.on_signal_(static_cast<int>(info.ssi_signo));
    }
}

int EventLoop::timeout_ms(Clock::time_point now) const {
    if (!posted_.empty()) return 0;
    if (timers_.empty()) return -1;
    const auto due = timers_.begin()->first.first;
    if (due <= now) return 0;
    // Rounded up: waking a little early would only find nothing due and wait again.
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(due - now).count();
    return static_cast<int>(std::min<std::int64_t>((us + 999) / 1000, 60'000));
}

void EventLoop::run_timers(Clock::time_point now) {
    // Only those due now: a timer a callback sets for "now" runs on the next turn.
    while (!timers_.empty() && timers_.begin()->first.first <= now) {
        auto node = timers_.extract(timers_.begin());
        timer_due_.erase(node.key().second);
        node.mapped()();
    }
}

void EventLoop::run() {
    while (!stopped_) {
        const int n = ::epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()),
                                   timeout_ms(Clock::now()));
        if (n < 0 && errno != EINTR) fail("epoll_wait");
        for (int i = 0; i < n && !stopped_; ++i) {
            static_cast<Watcher*>(events_[i].data.ptr)->on_events(events_[i].events);
        }
        // What was deferred during this turn runs now; what those calls defer waits a turn.
        for (std::size_t k = posted_.size(); k > 0 && !stopped_; --k) {
            auto fn = std::move(posted_.front());
            posted_.pop_front();
            fn();
        }
        if (!stopped_) run_timers(Clock::now());
    }
}

}  // namespace workerd::http
