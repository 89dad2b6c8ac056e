#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace workerd {

/// An error reply: `code` is a stable word for scripts ("bad_request", "unknown_command",
/// "bad_argument", "forbidden", "busy", ...), `message` one sentence for people.
struct ControlError : std::runtime_error {
    ControlError(std::string code, const std::string& message)
        : std::runtime_error(message), code(std::move(code)) {}
    std::string code;
};

/// A control command with its arguments checked (docs/control-protocol.md). Reading a request
/// needs no daemon state, so it is a plain function the tests and the fuzzer call directly;
/// the arbiter then carries the request out.
struct ControlRequest {
    enum class Command { status, version, config, scale, reload, restart, stop, rollout };
    Command command = Command::status;
    // scale: exactly one of these three.
    std::optional<int> workers;  ///< an absolute size
    std::optional<int> delta;    ///< a relative one (+N / -N)
    bool scale_auto = false;     ///< back to the autoscaler
    // restart: one slot, or every active one.
    std::optional<int> slot;
    bool all = false;
    // stop: at once instead of gracefully.
    bool now = false;
    // rollout: "promote" (a canary rollout goes on without its verdict) or "abort" (it fails).
    std::string action;

    /// scale, reload, restart and rollout change the fleet: a stopping daemon refuses them.
    bool changes_fleet() const {
        return command == Command::scale || command == Command::reload || command == Command::restart ||
               command == Command::rollout;
    }
};

/// Reads `command` and its `args` object. Throws ControlError: "unknown_command" for a command
/// it does not know, "bad_argument" for a missing, mistyped or out-of-range argument.
ControlRequest parse_control_request(const std::string& command, const nlohmann::json& args);

/// The size a scale request asks for, given the current one; throws ControlError
/// ("bad_argument") unless it is 1 .. kMaxWorkers. Not for scale_auto requests.
int scale_target(const ControlRequest& request, int desired);

}  // namespace workerd
