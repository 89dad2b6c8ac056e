"""What a hung worker prints when workerd sends it `timeout_signal: SIGABRT`.

The event loop's stack comes first: faulthandler prints it from C, at once, even when Python
code can no longer run (workerd sends the signal to the main thread, where uvicorn's loop
runs). Then, from Python, the other threads: busy ones in full, idle thread-pool threads as one
line (a FastAPI app's pool of 40 threads made one hang 330 lines, the loop's stack last). Then
the worker dies of SIGABRT, as it would without this.
"""

import faulthandler
import os
import signal
import sys
import threading
import traceback


def _is_idle(stack):
    """A pool thread waiting for work: concurrent.futures' _worker in its queue's get, or a
    thread (anyio's workers) waiting in queue.Queue.get."""
    if not stack:
        return False
    top = stack[-1]
    if top.name == "_worker" and top.filename.endswith(os.path.join("concurrent", "futures", "thread.py")):
        return True
    in_get = any(f.name == "get" and f.filename.endswith("queue.py") for f in stack[-3:])
    return in_get and top.filename.endswith("threading.py") and top.name == "wait"


def format_other_threads(frames=None, main_ident=None, names=None):
    """Every thread but the main one: busy ones with their stacks (most recent call last),
    idle pool threads counted in one line."""
    frames = sys._current_frames() if frames is None else frames  # pylint: disable=protected-access
    main_ident = threading.main_thread().ident if main_ident is None else main_ident
    names = {t.ident: t.name for t in threading.enumerate()} if names is None else names
    lines, idle = [], 0
    for ident, frame in frames.items():
        if ident == main_ident:
            continue
        stack = traceback.extract_stack(frame)
        if _is_idle(stack):
            idle += 1
            continue
        lines.append(f"Thread {ident:#x} ({names.get(ident, '?')}), most recent call last:\n")
        lines.extend(traceback.format_list(stack))
    if idle:
        lines.append(f"{idle} idle pool thread(s) waiting for work, not shown\n")
    return "".join(lines)


def install(stream=None):
    """SIGABRT: the signal's thread from C first (the loop), then the others, then abort."""
    stream = sys.stderr if stream is None else stream

    def on_abort(signum, frame):  # pylint: disable=unused-argument
        # On the main thread, once Python runs again (time.sleep is interrupted by the signal).
        try:
            stream.write("Other threads:\n" + (format_other_threads() or "none\n"))
            stream.flush()
        finally:
            signal.signal(signal.SIGABRT, signal.SIG_DFL)
            os.abort()

    # Python's handler first, so that faulthandler's (installed next) runs before it: it
    # prints the current thread's stack and then hands the signal on to this one.
    signal.signal(signal.SIGABRT, on_abort)
    faulthandler.enable(file=stream, all_threads=False)
