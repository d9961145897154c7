"""Run a function in a separate Python process, with progress frames, lock-step and cancel.

The panels' heavy work (the U-Net's inference, the diffusion with its direction estimate,
fine-tuning) runs here rather than in a thread of the GUI process, so it cannot hold the
GUI's Python lock (GIL): measured on
the 2-core machine, a training thread's Python parts and torch's first import of
``torch._dynamo`` (about 900 modules, 2.9 s under load, in pieces of 0.4 to 0.8 s) stalled
napari's event loop for up to 0.6 s while fine-tuning (docs/performance.md, section 9).

`run_in_child` is called from a worker thread of the calling process (a panel's napari
worker) and blocks it until the child returns; it speaks the panels' protocol:

* **Frames, lock-step.** The function gets a ``post`` keyword (when ``on_frame`` is given):
  ``post(value)`` sends ``value`` to the parent, where ``on_frame(value)`` is called in
  the waiting thread, and returns once ``on_frame`` has returned (the panel has taken
  the frame in), so the child is never more than one frame ahead of the display.
* **Cancel at once.** ``should_stop()`` is polled every `POLL` seconds while the child
  computes, and ``on_frame`` returning False cancels too: the child is terminated at
  once (SIGTERM, then SIGKILL), wherever it is, and `run_in_child` returns None. With a
  ``grace`` (for short frames, as diffusion steps), a task is stopped at its next frame
  if that comes within ``grace`` seconds, and the child stays for the next task.
* **Errors as one line.** An exception in the child is raised again in the parent (the
  same class when it can be pickled, else `ChildError`) with its message, without the
  child's traceback; a child that dies raises `ChildError` saying how.

A child is a new interpreter (never a fork: the GUI process has Qt and OpenMP threads), kept
for the next call (`Child`): spawning one and importing torch in it costs seconds, so
`prewarm` starts one early (a panel does when it opens) and a finished call leaves its
child idle for the next. A terminated child is replaced on the next call. `shutdown`
(called at exit) ends them all; on Linux a child also ends when its parent dies. This
module imports neither napari nor Qt; the child imports what its function needs, and
`WARM` while it waits for a task.

The environment variable ``TUBEDIFF_WORKER_PROCESS=0`` runs the function in the calling
thread instead (same protocol, no process): for debugging with a debugger. Windows always
does (the child's socket is an inherited file descriptor).
"""

from __future__ import annotations

import atexit
import importlib
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

#: Seconds between two looks at ``should_stop`` (and at whether the child is alive) while
#: the child computes: how late a Cancel acts at most.
POLL = 0.05

#: What a child imports (``"module"``) or calls (``"module:function"``), one by one, while it
#: waits for a task: torch and the U-Net (Segment), the optimiser machinery (Fine-tune) and
#: numba's kernels (Diffusion), which cost seconds at a task's first call (measured in the
#: panel's worker thread, docs/performance.md section 9). A task that comes meanwhile
#: waits for the current one only.
WARM = ("torch", "napari_tubediff.workers.tasks", "napari_tubediff.models.backbones",
        "napari_tubediff.workers.tasks:warm_optimiser", "napari_tubediff.workers.tasks:warm_kernels")


_CHILD = "__tubediff_child__"  # this module's name when it runs as a child's main script


class _Stopped(BaseException):
    """In the child: the parent stopped the task at a frame (not an error of the task)."""


class ChildError(RuntimeError):
    """The child failed with an exception that could not be sent back, or died."""


def enabled() -> bool:
    """Whether work goes to a child process: on POSIX systems (the child's socket is an
    inherited file descriptor), unless ``TUBEDIFF_WORKER_PROCESS`` is ``0``."""
    off = os.environ.get("TUBEDIFF_WORKER_PROCESS", "1").strip().lower() in ("0", "no", "false", "off")
    return os.name == "posix" and not off


def _dumps(obj) -> bytes:
    # plain pickle, not multiprocessing's: torch's reducers would move tensors to shared
    # memory through file descriptors, which a terminated child could leave behind
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _child_main() -> None:  # pragma: no cover - in the child
    """The child's entry point (`Child`): the socket and settings come in the environment."""
    conn = Connection(int(os.environ.pop("TUBEDIFF_CHILD_FD")))
    threads = int(os.environ.pop("TUBEDIFF_CHILD_THREADS", "0")) or None
    warm = tuple(w for w in os.environ.pop("TUBEDIFF_CHILD_WARM", "").split(",") if w)
    if sys.platform.startswith("linux"):
        try:  # end with the parent even if it is killed (PR_SET_PDEATHSIG = 1)
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    _serve(conn, threads, warm)


def _serve(conn, threads: int | None, warm: tuple[str, ...]) -> None:  # pragma: no cover - in the child
    """The child's loop: run tasks until the parent goes, and ``warm`` while none waits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the parent's to handle
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
    pending = list(warm)
    while True:
        if pending and not conn.poll(0):  # warm only while no task waits: a task comes first
            _warm(pending.pop(0))
            continue
        try:
            task = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            func, args, kwargs, frames = pickle.loads(task)
        except Exception as e:  # noqa: BLE001 - e.g. a function the child cannot import
            conn.send_bytes(_dumps(("error", (None, f"the worker process could not take the task: {e}"))))
            continue
        if frames:
            def post(value, _conn=conn):
                _conn.send_bytes(_dumps(("frame", value)))
                if _conn.recv_bytes() != b"go":  # the parent took the frame in, or stops the task
                    raise _Stopped
                return True

            kwargs = dict(kwargs, post=post)
        try:
            reply = ("result", func(*args, **kwargs))
        except _Stopped:
            reply = ("stopped", None)
        except Exception as e:  # noqa: BLE001 - every failure goes back as one message
            reply = ("error", _portable(e))
        try:
            conn.send_bytes(_dumps(reply))
        except (EOFError, OSError):
            return
        except Exception as e:  # noqa: BLE001 - a result that cannot be pickled
            conn.send_bytes(_dumps(("error", (None, f"the result could not be sent back: {e}"))))


def _warm(name: str) -> None:  # pragma: no cover - in the child
    """Import ``"module"`` or call ``"module:function"`` (best effort: a task reports its own errors)."""
    module, _, func = name.partition(":")
    try:
        m = importlib.import_module(module)
        if func:
            getattr(m, func)()
    except Exception:  # noqa: BLE001
        pass


def _portable(e: BaseException) -> tuple[bytes | None, str]:
    """``e`` pickled (None if it cannot be) and in words, to raise again in the parent (`_raise`)."""
    try:
        blob = _dumps(e)
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        blob = None
    return blob, f"{type(e).__name__}: {e}"


class _ChildReply(Exception):
    """Carries the child's exception out of `Child._run` (the child is idle again)."""


def _raise(blob: bytes | None, text: str):
    """Raise the child's exception as itself when it unpickles as itself, else a `ChildError`."""
    try:
        e = pickle.loads(blob) if blob is not None else None
    except Exception:  # noqa: BLE001 - e.g. a class whose constructor takes other arguments
        e = None
    if not isinstance(e, Exception) or f"{type(e).__name__}: {e}" != text:
        e = ChildError(text)
    raise _ChildReply() from e


class Child:
    """One child process that runs tasks one at a time (see the module docstring).

    Started as ``python -c ...`` with a socket to the parent (not with multiprocessing's
    spawn, which imports the parent's main script again in the child: a script that opens
    napari without a ``__main__`` guard would open a second viewer there). The child's
    module search path is the parent's.

    Examples
    --------
    >>> import operator
    >>> child = Child(warm=())   # nothing to import first
    >>> child.run(operator.add, 2, 3)
    5
    >>> child.terminate(); child.alive()
    False
    """

    def __init__(self, threads: int | None = None, warm: tuple[str, ...] | None = None):
        warm = WARM if warm is None else warm
        here, child_end = socket.socketpair()
        # the parent's search path (this package's copy first), so that a function pickled by
        # name imports the same module in the child
        path = [str(Path(__file__).resolve().parents[2])] + [p for p in sys.path if p]
        # this file run as a script (it needs the standard library only): the child imports
        # the package, and torch, only when a task (or `WARM`) needs them
        code = ("import os, runpy, sys; "
                "sys.path[:0] = os.environ.pop('TUBEDIFF_CHILD_PATH').split(os.pathsep); "
                f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name={_CHILD!r})")
        env = dict(os.environ, TUBEDIFF_CHILD_PATH=os.pathsep.join(path),
                   TUBEDIFF_CHILD_FD=str(child_end.fileno()), TUBEDIFF_CHILD_THREADS=str(threads or 0),
                   TUBEDIFF_CHILD_WARM=",".join(warm))
        from ..core.device import passive_openmp  # here: this file also runs as a plain script

        passive_openmp(env)  # the child's torch threads sleep when idle, as the commands' do
        self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(child_end.fileno(),),
                                        stdin=subprocess.DEVNULL, env=env, close_fds=True)
        child_end.close()  # the child's end lives in the child: EOF here once it is gone
        self._conn = Connection(here.detach())
        self.closed = False

    def alive(self) -> bool:
        return not self.closed and self.process.poll() is None

    def run(self, func: Callable, *args, on_frame: Callable | None = None,
            should_stop: Callable[[], bool] | None = None, grace: float = 0.0, **kwargs):
        """``func(*args, **kwargs)`` in the child (see `run_in_child`); None when cancelled."""
        stop = should_stop or (lambda: False)
        if stop():
            return None
        try:
            return self._run(func, args, kwargs, on_frame, stop, grace)
        except _ChildReply as reply:
            raise reply.__cause__ from None  # the child's own exception, and it is idle again
        except BaseException:
            # anything else (``on_frame`` raised, the task did not pickle, an interrupt) leaves
            # the child mid-task: it cannot take the next one
            self.terminate()
            raise

    def _run(self, func, args, kwargs, on_frame, stop, grace):
        self._conn.send_bytes(_dumps((func, args, kwargs, on_frame is not None)))
        deadline = None  # cancelled: when the child is terminated if no frame came by then
        while True:
            if deadline is None and stop():
                if on_frame is None or grace <= 0:
                    self.terminate()
                    return None
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                self.terminate()
                return None
            try:
                ready = self._conn.poll(POLL)
            except (EOFError, OSError):
                ready = True
            if not ready:
                if self.process.poll() is not None:
                    self.closed = True
                    raise ChildError(f"the worker process ended unexpectedly (exit code "
                                     f"{self.process.returncode})")
                continue
            try:
                kind, value = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                try:
                    self.process.wait(1)
                except subprocess.TimeoutExpired:
                    pass
                self.closed = True
                raise ChildError(f"the worker process ended unexpectedly (exit code "
                                 f"{self.process.returncode})") from None
            if kind == "frame":
                if deadline is not None or on_frame(value) is False or stop():
                    if grace <= 0:
                        self.terminate()
                        return None
                    # stopped at a frame: the child ends the task and stays for the next
                    self._conn.send_bytes(b"stop")
                    deadline = min(deadline or math.inf, time.monotonic() + grace)
                    continue
                self._conn.send_bytes(b"go")
            elif kind == "error":
                _raise(*value)
            elif kind == "stopped":
                return None
            else:
                return value

    def terminate(self) -> None:
        """End the child now (whatever it is doing) and quietly."""
        self.closed = True
        p = self.process
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:  # pragma: no cover - a child that ignores SIGTERM
                p.kill()
                p.wait(2)
        self._conn.close()


_lock = threading.Lock()
_idle: list[Child] = []     # children waiting for a task (at most one is kept)
_busy: set[Child] = set()   # children running a task now


_users: list[int | None] = [None]  # panels keeping a child warm (`prewarm` ... `release`); None: no panel yet


def prewarm(threads: int | None = None) -> None:
    """Start a child now (if none is idle) so that the first task does not wait for torch.

    Each call counts one user (a panel) until its `release`: once the last user is gone (the
    viewer closed), no child is kept idle, and one that finishes a task then ends. Without
    any (a script calling `run_in_child`), a finished call's child is kept for the next.
    """
    if not enabled():
        return
    with _lock:
        _users[0] = (_users[0] or 0) + 1
        if any(c.alive() for c in _idle):
            return
        _idle.clear()
        _idle.append(Child(threads))


def release() -> None:
    """One `prewarm` user is gone; with none left, end the idle child (in the background:
    the caller, a closing panel, does not wait for it)."""
    with _lock:
        _users[0] = max(0, (_users[0] or 0) - 1)
        if _users[0]:
            return
        children = list(_idle)
        _idle.clear()
    if children:
        threading.Thread(target=lambda: [c.terminate() for c in children], daemon=True).start()


def run_in_child(func: Callable, *args, on_frame: Callable | None = None,
                 should_stop: Callable[[], bool] | None = None, threads: int | None = None,
                 grace: float = 0.0, **kwargs):
    """``func(*args, **kwargs)`` in a child process; its return value, or None when cancelled.

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled by name), importable without napari or Qt.
        With ``on_frame`` it gets a keyword ``post``: ``post(value)`` hands ``value`` to
        ``on_frame`` in this thread and returns once that has returned.
    on_frame : callable, optional
        Called in this thread with each frame; returning False cancels.
    should_stop : callable, optional
        Polled every `POLL` seconds; True terminates the child at once.
    threads : int, optional
        torch's and numba's thread count in a child started for this call.
    grace : float, optional
        Seconds a cancelled task may take to reach its next frame, where the child stops
        it and stays for the next task (no new process to start); after that, or with 0,
        the child is terminated.

    Raises
    ------
    Exception
        The child's exception (its class when it pickles, else `ChildError`), or
        `ChildError` when the child died.
    """
    if not enabled():
        stop = should_stop or (lambda: False)
        if on_frame is not None:
            def post(value):
                if on_frame(value) is False or stop():
                    raise _Stopped
                return True

            kwargs["post"] = post
        if stop():
            return None
        try:
            return func(*args, **kwargs)
        except _Stopped:
            return None
    with _lock:
        while _idle and not _idle[-1].alive():
            _idle.pop()
        child = _idle.pop() if _idle else None
        if child is None:
            child = Child(threads)
        _busy.add(child)
    try:
        return child.run(func, *args, on_frame=on_frame, should_stop=should_stop, grace=grace, **kwargs)
    finally:
        with _lock:
            _busy.discard(child)
            # a panel's child is kept for its next task, but none once every panel has gone
            keep = child.alive() and not _idle and _users[0] != 0
            if keep:
                _idle.append(child)
        if child.alive() and not keep:
            child.terminate()


def shutdown() -> None:
    """End every child (idle or busy) now, quietly."""
    with _lock:
        children = list(_idle) + list(_busy)
        _idle.clear()
    for c in children:
        c.terminate()


atexit.register(shutdown)

if __name__ == _CHILD:  # pragma: no cover - run by `Child` in the child
    _child_main()
