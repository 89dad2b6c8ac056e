#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace workerctl {

/// `workerctl status` for people: a header and the per-worker table.
std::string render_status(const nlohmann::json& status);

/// One frame of `workerctl top`: totals (with requests/s from the previous frame's status, if
/// any), then the status table, cut to `rows` lines.
std::string render_top(const nlohmann::json& status, const nlohmann::json* previous,
                       double interval_s, int rows);

/// "3m12s", "1h04m", "0.4s".
std::string human_duration(double seconds);
/// "5.2MiB".
std::string human_bytes(double bytes);

}  // namespace workerctl
