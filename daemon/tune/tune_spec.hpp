#pragma once

#include <string>
#include <vector>

#include "daemon/wire/spec.hpp"

namespace workerd::tune {

/// Where the tuning fleet runs instead of the spec's production places.
struct TunePlaces {
    std::vector<int> ports;      ///< one free loopback port per listener, in the spec's order
    std::string control_socket;  ///< in tune's own temporary directory
    int workers = 1;
};

/// The spec's YAML rewritten for a tuning run: every listener on 127.0.0.1 at the given ports
/// (names kept), `workers` fixed, the control socket moved, and what would reach outside the
/// run dropped (`autoscale`, `metrics`, `log.file`). Paths the reader resolved against the
/// spec's folder (`app.cwd`, `app.builtin.root`) are written absolute, so the copy runs from
/// anywhere. `spec` is the same file already read and validated; `text` its YAML.
std::string tuning_spec_text(const std::string& text, const Spec& spec, const TunePlaces& places);

}  // namespace workerd::tune
