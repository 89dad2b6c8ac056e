#pragma once

#include <string>

#include "daemon/core/health.hpp"  // signal_name, which log lines use

namespace workerd {

struct LogSpec;

/// The daemon's log: to stderr or `log.file`, as text ("2026-11-23 20:53:01.123 info  message";
/// colours only on a terminal) or as JSON lines with the worker's slot, pid, generation and the
/// reason as fields. Throws std::runtime_error when the file cannot be opened.
void setup_logging(const LogSpec& spec);
/// Opens `log.file` again (SIGUSR1, after logrotate moved it); nothing to do for stderr.
void reopen_log(const LogSpec& spec);

/// Changes the level of the running logger.
void set_log_level(const std::string& level);

/// One log line as a JSON object: time, level, msg, and the fields a message about a worker
/// carries ("worker 2 (pid 4242, gen 3) ... (heartbeat timeout)": slot, pid, generation,
/// reason). Public for tests.
std::string json_log_line(const std::string& time, const std::string& level, const std::string& message);

}  // namespace workerd
