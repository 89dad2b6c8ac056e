"""Queue time for uvicorn: the kernel's receive timestamp of each read.

A request's queue time is how long its bytes sat in the kernel before the worker took it up.
The kernel stamps each segment as it arrives (SO_TIMESTAMPNS, set on the listening socket and
inherited by every connection accepted from it), and hands the stamp over with recvmsg; asyncio's
socket transport reads with recv, which drops it. So each connection's transport reads with
recvmsg instead (the same steps as asyncio's own read, Python 3.11), and the stamp goes into
protocol.received_ns before the HTTP protocol parses the bytes: the task uvicorn creates for the
request inherits it, and StatsMiddleware subtracts it from the time the app is called.

Where asyncio's transport is not the one this knows (another event loop, another Python), reads
stay as they are and no queue time is measured.
"""

import socket
import struct

from workerd_uvicorn.protocol import received_ns

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CONTROL_SIZE = socket.CMSG_SPACE(16)  # struct timespec
_TCP = (socket.AF_INET, socket.AF_INET6)


def wanted(environ):
    """Whether to measure: always, unless WORKERD_UVICORN_QUEUE_TIME=0 (and no queue_timeout)."""
    return bool(environ.get("WORKERD_QUEUE_TIMEOUT_MS")) or environ.get("WORKERD_UVICORN_QUEUE_TIME") != "0"


def enable(listening):
    """Asks the kernel to stamp what arrives on connections accepted from `listening` (TCP)."""
    if listening.family in _TCP:
        try:
            listening.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass


def stamp(ancdata):
    """The SCM_TIMESTAMPNS of a recvmsg's ancillary data, in ns; 0 when absent."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds * 1_000_000_000 + nanoseconds
    return 0


def read_with_timestamps(transport):
    """Makes asyncio's socket `transport` read with recvmsg; False when it cannot."""
    sock = getattr(transport, "_sock", None)
    if sock is None or sock.family not in _TCP or not hasattr(transport, "_read_ready_cb") \
            or not hasattr(transport, "_read_ready__on_eof"):
        return False

    def read_ready():
        # asyncio.selector_events._SelectorSocketTransport._read_ready__data_received, with
        # recvmsg in place of recv.
        if transport._conn_lost:  # pylint: disable=protected-access
            return
        try:
            data, ancdata, _, _ = sock.recvmsg(transport.max_size, _CONTROL_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # pylint: disable=broad-except
            transport._fatal_error(exc, "Fatal read error on socket transport")  # pylint: disable=protected-access
            return
        if not data:
            transport._read_ready__on_eof()  # pylint: disable=protected-access
            return
        received_ns.set(stamp(ancdata))
        try:
            transport._protocol.data_received(data)  # pylint: disable=protected-access
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # pylint: disable=broad-except
            transport._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")  # pylint: disable=protected-access

    transport._read_ready_cb = read_ready  # pylint: disable=protected-access
    return True


def timestamping(protocol_class):
    """`protocol_class` (uvicorn's HTTP protocol) reading with timestamps."""

    class Timestamping(protocol_class):  # pylint: disable=too-few-public-methods
        def connection_made(self, transport):
            read_with_timestamps(transport)
            super().connection_made(transport)

    Timestamping.__name__ = Timestamping.__qualname__ = f"Timestamping{protocol_class.__name__}"
    return Timestamping
