#pragma once

#include <string>

namespace workerd {

/// Sends the daemon's log to stderr: "2026-11-23 20:53:01.123 info  message". Colours only
/// when stderr is a terminal. `level` is a spdlog level name (validated by the spec).
void setup_logging(const std::string& level);

/// Changes the level of the running logger.
void set_log_level(const std::string& level);

/// "SIGTERM", "SIGKILL", ... or "signal N".
std::string signal_name(int sig);

}  // namespace workerd
