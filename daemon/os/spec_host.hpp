#pragma once

// The host step of loading a spec. Reading the YAML (wire/spec.hpp) asks the host nothing;
// this step resolves what only the host knows, the user database and the file system, and
// reports what fails at the line and column where the value stands. Sizing `workers: auto`
// from cgroups is the step after it (os/sizing.hpp).

#include <string>

#include "daemon/wire/spec.hpp"

namespace workerd {

/// Resolves `reading`'s lookups: users and groups to ids (a number is accepted without a
/// database entry), directories that must exist, and the program, which is only warned about
/// when missing (it may be installed after the spec is written; `check --strict` makes it an
/// error). `shown_file` names the file in every message. The result holds the spec only when
/// there is no error at all, from reading or from the host.
SpecLoadResult resolve_on_host(SpecReading reading, const std::string& shown_file);

/// Reads the spec at `path` and resolves it on this host. `cpu_count` as in read_spec.
SpecLoadResult load_spec_file(const std::string& path, int cpu_count);

/// Same, from text; `file` names it in errors and anchors relative paths (its directory).
SpecLoadResult load_spec_text(const std::string& text, const std::string& file, int cpu_count);

}  // namespace workerd
