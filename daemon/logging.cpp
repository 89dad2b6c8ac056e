#include "daemon/logging.hpp"

#include <unistd.h>

#include <cstring>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace workerd {

void setup_logging(const std::string& level) {
    auto logger = ::isatty(STDERR_FILENO) ? spdlog::stderr_color_st("workerd")
                                          : spdlog::stderr_logger_st("workerd");
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
    spdlog::set_default_logger(logger);
    set_log_level(level);
    // Lines go out as they are logged: a daemon killed by SIGKILL loses nothing.
    spdlog::flush_on(spdlog::level::trace);
}

void set_log_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

std::string signal_name(int sig) {
    if (const char* abbrev = ::sigabbrev_np(sig)) return std::string("SIG") + abbrev;
    return "signal " + std::to_string(sig);
}

}  // namespace workerd
