// workerctl: talks to a running workerd over its control socket.
// The control protocol arrives with its own issue; for now this only reports its version.
#include <cstdio>
#include <cstring>

#include "daemon/version.hpp"

int main(int argc, char** argv) {
    // 1. `workerctl --version` / `workerctl version`: print the version.
    if (argc == 2 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "version") == 0)) {
        std::printf("workerctl %s\n", workerd::kVersion);
        return 0;
    }
    // 2. Anything else: say plainly that the control commands are not there yet.
    std::fprintf(stderr,
                 "workerctl %s: control commands (status, scale, reload, restart, stop, top) are "
                 "not implemented yet\nusage: workerctl --version\n",
                 workerd::kVersion);
    return 2;
}
