#pragma once

namespace workerd {

/// CPUs this process may run on (its affinity mask), at least 1. Resolves `workers: auto`.
int available_cpus();

}  // namespace workerd
