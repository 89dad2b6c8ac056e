#!/bin/sh
# The fleet core makes no system call, reads no clock and draws no global randomness: none of
# the symbols below may be undefined in its library (they would come from libc or the C++
# runtime's clocks and random devices). Run by ctest: purity.sh path/to/libworkerd_fleet.a
set -eu
lib=$1
forbidden='^(fork|vfork|execve|execvp|kill|tgkill|syscall|wait|waitpid|wait4|waitid|read|write|open|openat|close|pipe|pipe2|socket|connect|accept|accept4|bind|listen|send|sendmsg|recv|recvmsg|poll|epoll_wait|select|ioctl|fcntl|getpid|getppid|time|gettimeofday|clock_gettime|clock|sleep|usleep|nanosleep|rand|random|srand|srandom|getrandom|fopen|fprintf|printf|puts|fputs|fwrite|std::chrono::_V2::steady_clock::now|std::chrono::_V2::system_clock::now|std::random_device::.*|spdlog::.*)$'
symbols=$(nm -u -C "$lib" | sed -n 's/^ *U //p' | sed 's/(.*//' | sort -u)
bad=$(printf '%s\n' "$symbols" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
  echo "the fleet core uses what it must not (system calls, clocks, randomness, logging):"
  printf '  %s\n' $bad
  exit 1
fi
echo "ok: $(printf '%s\n' "$symbols" | wc -l) undefined symbols, none a system call, clock or random source"
