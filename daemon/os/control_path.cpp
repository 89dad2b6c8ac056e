#include "daemon/os/control_path.hpp"

#include <unistd.h>

#include <cstdlib>

namespace workerd {

std::string default_control_socket() {
    auto env = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v != nullptr ? v : "";
    };
    // RUNTIME_DIRECTORY may list several directories, separated by ':'; the first is ours.
    if (std::string dir = env("RUNTIME_DIRECTORY"); !dir.empty()) {
        return dir.substr(0, dir.find(':')) + "/workerd.sock";
    }
    if (::geteuid() == 0) return "/run/workerd/workerd.sock";
    if (std::string dir = env("XDG_RUNTIME_DIR"); !dir.empty()) return dir + "/workerd.sock";
    return "/tmp/workerd-" + std::to_string(::geteuid()) + "/workerd.sock";
}

}  // namespace workerd
