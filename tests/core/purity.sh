#!/bin/sh
# A pure library makes no system call, reads no clock, draws no global randomness and asks the
# host nothing (users, groups, files, the environment): none of the symbols below may be
# undefined in it (they would come from libc or the C++ runtime). Run by ctest for the fleet
# core and the spec reader: purity.sh path/to/libworkerd_fleet.a [WHAT]
set -eu
lib=$1
what=${2:-the fleet core}
forbidden='^(fork|vfork|execve|execvp|kill|tgkill|syscall|wait|waitpid|wait4|waitid|read|write|open|open64|openat|close|pipe|pipe2|socket|connect|accept|accept4|bind|listen|send|sendmsg|recv|recvmsg|poll|epoll_wait|select|ioctl|fcntl|getpid|getppid|time|gettimeofday|clock_gettime|clock|sleep|usleep|nanosleep|rand|random|srand|srandom|getrandom|fopen|fprintf|printf|puts|fputs|fwrite|getpwnam|getpwnam_r|getpwuid|getpwuid_r|getgrnam|getgrnam_r|getgrgid|getgrgid_r|stat|stat64|lstat|lstat64|fstat|fstat64|statx|__xstat|__xstat64|__lxstat|access|faccessat|getcwd|getenv|secure_getenv|realpath|opendir|std::chrono::_V2::steady_clock::now|std::chrono::_V2::system_clock::now|std::random_device::.*|std::filesystem::.*(status|exists|current_path|absolute|canonical|directory_iterator).*|std::basic_[io]?fstream.*|spdlog::.*)$'
undefined=$(nm -u -C "$lib")  # fails, and so does this script, when the library is not there
symbols=$(printf '%s\n' "$undefined" | sed -n 's/^ *U //p' | sed 's/(.*//' | sort -u)
[ -n "$symbols" ] || { echo "no undefined symbols read from $lib"; exit 1; }
bad=$(printf '%s\n' "$symbols" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
  echo "$what uses what it must not (system calls, clocks, randomness, host lookups, logging):"
  printf '  %s\n' $bad
  exit 1
fi
echo "ok: $what has $(printf '%s\n' "$symbols" | wc -l) undefined symbols, none a system call, clock, random source or host lookup"
