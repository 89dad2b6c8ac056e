#pragma once

// Upgrading the daemon itself (SIGUSR2): the workerd binary is re-executed in place, so the
// pid systemd (or anyone) tracks stays the same. The listen, control and metrics sockets and
// the workers' pipes survive the exec; the new image adopts the workers and replaces them
// through the rolling path (a successor READY before its predecessor drains), so no request
// is dropped. The new image runs the spec in effect, handed over as text, not the file as it
// may have been edited since: an upgrade changes the binary only (SIGHUP re-reads the spec).
// Before anything is handed over, the new binary must pass `workerd check --strict` on that
// text; if it does not, or exec fails, the running daemon carries on as it was.

#include <string>
#include <vector>

#include "daemon/os/sd_notify.hpp"
#include "daemon/wire/handover.hpp"
#include "daemon/wire/spec.hpp"

namespace workerd {

/// Runs `EXE check --strict --stdin SPEC` with the text of the spec in effect on its stdin: the
/// new binary must start on this machine and accept that spec as `start` would (the root policy
/// included), since the new image runs exactly that. Returns why not, or an empty string.
/// Blocks the loop for as long as the check runs (tens of milliseconds; at most 10 s).
std::string preflight(const std::string& exe, const Spec& spec, bool allow_root, const std::vector<std::string>& env);

/// Re-executes `exe` with `argv`, `env` and the handover `h` (its descriptors kept open across
/// the exec), telling systemd it reloads. Returns only when the exec failed: why.
std::string reexec(const std::string& exe, const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const Handover& h, const SystemdNotifier& systemd);

}  // namespace workerd
