#include "daemon/os/logging.hpp"

#include <unistd.h>

#include <cstring>
#include <regex>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "daemon/wire/spec.hpp"

namespace workerd {
namespace {

constexpr const char* kTextPattern = "%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v";

// JSON lines for journald, Kubernetes and log shippers.
class JsonFormatter : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        const auto t = std::chrono::system_clock::to_time_t(msg.time);
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() % 1000;
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        char stamp[96];
        std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
        const auto level = spdlog::level::to_string_view(msg.level);
        const std::string line = json_log_line(stamp, std::string(level.data(), level.size()),
                                               std::string(msg.payload.data(), msg.payload.size()));
        dest.append(line.data(), line.data() + line.size());
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

std::string json_log_line(const std::string& time, const std::string& level, const std::string& message) {
    nlohmann::json j{{"time", time}, {"level", level}, {"msg", message}};
    static const std::regex worker(R"(^worker (\d+) \(pid (\d+)(?:, gen (\d+))?\))");
    static const std::regex reason(
        R"(\((exit|crash by signal|heartbeat timeout|boot timeout|request timeout)\)|recycled: (served|RSS|private memory|lived))");
    std::smatch m;
    if (std::regex_search(message, m, worker)) {
        j["slot"] = std::stoi(m[1]);
        j["pid"] = std::stol(m[2]);
        if (m[3].matched) j["generation"] = std::stol(m[3]);
    }
    if (std::regex_search(message, m, reason)) {
        if (m[1].matched) {
            j["reason"] = m[1].str();
        } else {
            const std::string kind = m[2];
            j["reason"] = kind == "served"           ? "max_requests"
                          : kind == "RSS"            ? "max_rss"
                          : kind == "private memory" ? "max_private"
                                                     : "max_lifetime";
        }
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void setup_logging(const LogSpec& spec) {
    std::shared_ptr<spdlog::logger> logger;
    spdlog::drop("workerd");
    if (!spec.file.empty()) {
        logger = spdlog::basic_logger_st("workerd", spec.file);  // appends
    } else {
        logger = ::isatty(STDERR_FILENO) && !spec.json ? spdlog::stderr_color_st("workerd")
                                                       : spdlog::stderr_logger_st("workerd");
    }
    if (spec.json) {
        logger->set_formatter(std::make_unique<JsonFormatter>());
    } else {
        logger->set_pattern(kTextPattern);
    }
    spdlog::set_default_logger(logger);
    set_log_level(spec.level);
    // Lines go out as they are logged: a daemon killed by SIGKILL loses nothing.
    spdlog::flush_on(spdlog::level::trace);
}

void reopen_log(const LogSpec& spec) {
    if (spec.file.empty()) return;
    setup_logging(spec);
}

void set_log_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

}  // namespace workerd
