#include "daemon/wire/control_request.hpp"

#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "daemon/wire/spec.hpp"

namespace workerd {

using json = nlohmann::json;

namespace {

// Integers are read as 64-bit and must fit an int: a scale delta of 2^31 is an error, not an
// overflow.
int int_arg(const json& args, const char* name) {
    if (!args.contains(name)) throw ControlError("bad_argument", fmt::format("'{}' is missing", name));
    const json& v = args[name];
    if (!v.is_number_integer()) throw ControlError("bad_argument", fmt::format("'{}' must be an integer", name));
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) {
        throw ControlError("bad_argument", fmt::format("'{}' is out of range", name));
    }
    const auto n = v.get<std::int64_t>();
    if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max()) {
        throw ControlError("bad_argument", fmt::format("'{}' is out of range", name));
    }
    return static_cast<int>(n);
}

bool bool_arg(const json& args, const char* name) {
    if (!args.contains(name)) return false;
    const json& v = args[name];
    if (!v.is_boolean()) throw ControlError("bad_argument", fmt::format("'{}' must be true or false", name));
    return v.get<bool>();
}

}  // namespace

ControlRequest parse_control_request(const std::string& command, const json& args) {
    ControlRequest r;
    if (command == "status") {
        r.command = ControlRequest::Command::status;
    } else if (command == "version") {
        r.command = ControlRequest::Command::version;
    } else if (command == "config") {
        r.command = ControlRequest::Command::config;
    } else if (command == "scale") {
        r.command = ControlRequest::Command::scale;
        const int given = static_cast<int>(args.contains("auto")) + static_cast<int>(args.contains("workers")) +
                          static_cast<int>(args.contains("delta"));
        if (given != 1) {
            throw ControlError("bad_argument", given == 0 ? "scale needs 'workers' (N), 'delta' (+N / -N) or 'auto'"
                                                          : "scale takes one of 'workers', 'delta' and 'auto', not several");
        }
        r.scale_auto = bool_arg(args, "auto");
        // A count past an int is the same mistake as one past kMaxWorkers, and says so alike.
        auto count = [&](const char* name) {
            try {
                return int_arg(args, name);
            } catch (const ControlError& e) {
                if (!args[name].is_number_integer()) throw;
                throw ControlError("bad_argument", fmt::format("the fleet must have 1 to {} workers, not {}{}", kMaxWorkers,
                                                               std::string(name) == "delta" ? "a change of " : "",
                                                               args[name].dump()));
            }
        };
        if (args.contains("workers")) r.workers = count("workers");
        if (args.contains("delta")) r.delta = count("delta");
        if (args.contains("auto") && !r.scale_auto) throw ControlError("bad_argument", "'auto' can only be true");
    } else if (command == "reload") {
        r.command = ControlRequest::Command::reload;
    } else if (command == "restart") {
        r.command = ControlRequest::Command::restart;
        r.all = bool_arg(args, "all");
        if (!r.all) r.slot = int_arg(args, "slot");
    } else if (command == "stop") {
        r.command = ControlRequest::Command::stop;
        r.now = bool_arg(args, "now");
    } else if (command == "rollout") {
        r.command = ControlRequest::Command::rollout;
        if (!args.contains("action") || !args["action"].is_string() ||
            (args["action"] != "promote" && args["action"] != "abort")) {
            throw ControlError("bad_argument", "rollout needs 'action': \"promote\" or \"abort\"");
        }
        r.action = args["action"].get<std::string>();
    } else {
        throw ControlError("unknown_command",
                           fmt::format("unknown command '{}'; try status, scale, reload, restart, rollout, stop, config, version",
                                       command));
    }
    return r;
}

int scale_target(const ControlRequest& request, int desired) {
    const std::int64_t target = request.workers ? std::int64_t{*request.workers}
                                                : std::int64_t{desired} + request.delta.value_or(0);
    if (target < 1 || target > kMaxWorkers) {
        throw ControlError("bad_argument", fmt::format("the fleet must have 1 to {} workers, not {}", kMaxWorkers, target));
    }
    return static_cast<int>(target);
}

}  // namespace workerd
