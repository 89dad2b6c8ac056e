#include "daemon/os/orphans.hpp"

#include <dirent.h>
#include <signal.h>

#include <cerrno>
#include <fstream>
#include <string>

namespace workerd {

bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

bool Orphans::terminate(pid_t target, Clock::time_point kill_at, int signal) {
    if (::kill(target, signal) != 0 && errno == ESRCH) return false;
    due_[target] = signal == SIGKILL ? Due{Clock::now() + kRecheck, true} : Due{kill_at, false};
    return true;
}

std::vector<pid_t> Orphans::expire(Clock::time_point now) {
    std::vector<pid_t> gone;
    for (auto it = due_.begin(); it != due_.end();) {
        const pid_t target = it->first;
        if (::kill(target, 0) != 0 && errno == ESRCH) {
            if (target < 0) gone.push_back(-target);
            it = due_.erase(it);
            continue;
        }
        Due& due = it->second;
        if (now >= due.next) {
            if (!due.killed) ::kill(target, SIGKILL);
            due = {now + kRecheck, true};
        }
        ++it;
    }
    return gone;
}

void Orphans::kill_all(Clock::time_point now) {
    for (auto& [target, due] : due_) {
        ::kill(target, SIGKILL);
        due = {now + kRecheck, true};
    }
}

std::optional<Orphans::Clock::time_point> Orphans::next_deadline() const {
    std::optional<Clock::time_point> next;
    for (const auto& [target, due] : due_) {
        if (!next || due.next < *next) next = due.next;
    }
    return next;
}

std::vector<pid_t> children_of_this_process() {
    std::vector<pid_t> out;
    DIR* tasks = ::opendir("/proc/self/task");
    if (tasks == nullptr) return out;
    while (const dirent* e = ::readdir(tasks)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
        for (pid_t pid; in >> pid;) out.push_back(pid);
    }
    ::closedir(tasks);
    return out;
}

}  // namespace workerd
