#pragma once

#include <string>
#include <vector>

namespace workerd::tune {

/// `workerd tune SPEC [options]` (docs/tuning.md). `self` is the workerd binary that runs the
/// tuning fleet. Exit codes: 0 a recommendation, 1 the spec is invalid, 2 usage, 3 the fleet did
/// not start, 4 no worker count met the objective, 130 interrupted (what was measured is shown).
int tune_command(const std::vector<std::string>& args, const std::string& self);

/// `workerd load URL [options]`: the load generator alone (docs/tuning.md). Exit codes: 0 done,
/// 1 errors over --max-errors, 2 usage, 3 the target cannot be resolved.
int load_command(const std::vector<std::string>& args);

}  // namespace workerd::tune
