#pragma once

#include <string>

namespace workerd {

/// Where the control socket lives when the spec does not say (`control.socket`):
/// $RUNTIME_DIRECTORY/workerd.sock (systemd's RuntimeDirectory=), else /run/workerd/workerd.sock
/// for root, else $XDG_RUNTIME_DIR/workerd.sock, else /tmp/workerd-UID/workerd.sock.
std::string default_control_socket();

}  // namespace workerd
