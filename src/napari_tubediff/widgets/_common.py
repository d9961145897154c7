"""GUI glue shared by the panels: the worker-to-panel protocol (`Panel`, `Job`), layer choices
that follow the viewer, adding or updating layers.

The protocol, written once for every panel
-------------------------------------------
A panel's long work runs in a napari worker thread (`napari.qt.threading.create_worker`);
the heavy torch and numba work (segmenting, diffusing, fine-tuning) goes on from there to a
separate process (`workers.process.run_in_child`), which speaks the same protocol, so it
never holds the GUI process's Python lock. What the worker produces travels to the panel
as *frames* (a diffusion step, a training update). These rules make the controls act on
what is on screen:

* **Lock-step (backpressure).** After posting a frame the worker waits (`Gate.post`) until
  the panel has taken it in; the panel releases it at once while running, and not while
  paused. So the worker is never more than one step ahead of what the panel shows, and
  Pause, Step, Cancel and Reset act within one step of the screen.
* **One event at a time, state not order.** A job's events (frame, result, error, end) are
  queued and handled one after the other (`Job._push`), never one inside another, even when
  a Qt call in a handler (anything that calls ``processEvents``) delivers the next
  one early. The status line is derived from the job's single state variable
  (`Job.state`: running, paused, cancelling, cancelled, failed, done) each time it is
  shown (`Panel.refresh`), so it always says the state that holds. While a job runs, its
  count is shown at most every `STATUS_INTERVAL` (a new label text repaints the whole
  window); a pause, Step, the end or an error is shown at once.
* **Display throttled by time.** Taking a frame in is cheap (store it, count the step);
  drawing it into layers is done at most every `DRAW_INTERVAL` seconds, and once more at
  the end of a burst (`Panel.request_draw`), however fast the steps come. A drawing's cost
  (its own work and the canvas repaint it causes) is measured, and the next one waits
  long enough that drawing takes at most `DRAW_SHARE` of the GUI thread's time. The
  count is the panel's status line: napari's progress bar (activity dock) is not used,
  as making one cost 0.3 to 0.5 s of the GUI thread and each update repainted the whole
  window inside its ``setValue`` (``processEvents``), measured on the 2-core machine.
* **A core for the GUI.** While a job runs, torch and numba use all cores but one in its
  worker thread (`leave_a_core`), so the panel's own work leaves the event loop a core
  (on two cores, torch's two threads left the GUI thread waiting). The worker thread is not
  given a lower priority: it holds Python's GIL at times, and the GUI thread, waiting for
  the GIL, would then wait for a thread the scheduler puts last (measured: ticks of 25 to
  55 ms instead of 10 while the Directions panel worked, at nice 10).
* **Layers reused.** A layer a panel made before takes the new data in place (`put_image`;
  `put_layer` for Vectors), as adding a layer costs napari far more than new data.
* **New layers in two turns.** A layer the panels add (not a Labels layer) is added hidden
  and shown a moment later, on another turn of the event loop (`put_image`, `put_layer`),
  so napari's adding it (its visual, controls and list row) and its first slice,
  thumbnail and upload are two shorter stalls instead of one long one.

Closing the viewer cancels every job quietly: napari's close cancels its registered
workers (``worker.quit`` cancels the gate too), and a panel whose widget is gone ignores
whatever its jobs still deliver and stops listening to the viewer's events
(`Panel.listen`, `connect_while_alive`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container
from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from ..core.checks import check_field

#: Keyboard shortcuts bound on the viewer by the panels (listed in the panels and docs/user_guide.md).
SHORTCUTS = {
    "step": "Shift-N",
    "accept": "Shift-Y",
    "undo": "Shift-U",
}

#: Seconds between two redraws of a running job's layers at most: 15 a second, more than
#: an annotator follows of a run and less than a screen shows.
DRAW_INTERVAL = 1 / 15

#: The most of the GUI thread's time that redrawing a running job may take. A drawing
#: that cost ``c`` seconds (its own work and the canvas repaint after it) is followed by
#: ``c * (1 - DRAW_SHARE) / DRAW_SHARE`` seconds without one, so the event loop is free
#: the rest of the time, for the annotator's clicks and for taking the next frame in: a
#: fast (GPU) canvas redraws at `DRAW_INTERVAL`, a slow one (software OpenGL on a busy
#: machine, 150 to 300 ms a drawing with its repaint) about once every 1.5 to 3 seconds.
DRAW_SHARE = 0.1

#: Seconds between two updates of a running job's status line at most (a drawing updates
#: it too; a pause, the end or an error at once). Changing a label's text repaints the
#: whole window, canvas included: 60 ms of the GUI thread per change at load 5 on the
#: 2-core machine (software OpenGL under Xvfb; `benchmarks/bench_gui.py`, docs/performance.md
#: section 9), which once per frame took half of the GUI thread during a Diffusion run.
STATUS_INTERVAL = 0.25

#: Milliseconds between adding a layer hidden and showing it (`put_image`, `put_layer`): room
#: for the event loop to answer the annotator in between.
AFTER_ADD_MS = 25

#: Milliseconds after a drawing when its cost is read: the canvas repaint it asked for
#: (``QWindow.requestUpdate``, a few ms later) has run by then.
_SETTLE_MS = 20

#: A job's states (`Job.state`): while its worker runs, and at the end.
RUNNING, PAUSED, CANCELLING = "running", "paused", "cancelling"
DONE, CANCELLED, FAILED = "done", "cancelled", "failed"


#: Modules napari imports on the GUI thread the first time a panel adds a layer: pandas,
#: by napari's layer features table (``_validate_features``) when the Directions panel adds
#: its Vectors layer, 0.3 s at load 10 on the 2-core machine (profiled, docs/performance.md
#: section 9). `preload` imports them in a background thread when a panel opens.
PRELOAD = ("pandas",)

_preloaded = threading.Event()


def preload() -> None:
    """Import `PRELOAD` in a daemon thread, once per process (an import done there holds the
    GUI's Python lock only in short pieces, where one on the GUI thread stalls it whole)."""
    if _preloaded.is_set():
        return
    _preloaded.set()

    def imports():
        import importlib

        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass

    threading.Thread(target=imports, name="tubediff-preload", daemon=True).start()


def worker_threads() -> int:
    """Threads a panel's worker may compute with: all cores but one, which is the GUI thread's."""
    return max(1, (os.cpu_count() or 1) - 1)


_threads_lock = threading.Lock()
_threads_users = [0, None]  # jobs inside `leave_a_core` now, torch's thread count before the first


@contextmanager
def leave_a_core():
    """In a worker thread: torch and numba compute with `worker_threads` threads until the end.

    numba's count is the calling thread's own; torch's is the process's, so it is put
    back once the last job that lowered it has ended.

    While jobs compute in child processes (`workers.process.enabled`), a library the viewer's
    process has not loaded yet is left unloaded: importing torch or numba in a worker thread
    holds Python's lock in their C initialisation and stalled the GUI thread for 0.15 to 0.3 s
    at a session's first job; the children set their own counts (``threads``).
    """
    from ..workers.process import enabled

    n = worker_threads()
    load = not enabled()
    torch = _loaded("torch", load)
    if torch is not None:
        with _threads_lock:
            if _threads_users[0] == 0:
                _threads_users[1] = torch.get_num_threads()
            _threads_users[0] += 1
        # torch's OpenMP threads follow the count of the thread that calls them: set it here
        torch.set_num_threads(min(n, _threads_users[1]))
    numba = _loaded("numba", load)
    numba_before = None
    if numba is not None:
        numba_before = numba.get_num_threads()
        numba.set_num_threads(min(n, numba_before))
    try:
        yield
    finally:
        if numba_before is not None:
            numba.set_num_threads(numba_before)
        if torch is not None:
            with _threads_lock:
                _threads_users[0] -= 1
                if _threads_users[0] == 0:
                    torch.set_num_threads(_threads_users[1])


def _loaded(name: str, load: bool):
    """The module ``name`` if it is imported (or ``load`` and it imports), else None."""
    module = sys.modules.get(name)
    if module is None and load:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - both are declared dependencies
            return None
    return module


def _leaving_a_core(func: Callable) -> Callable:
    """``func`` (a generator function or not) run inside `leave_a_core`."""
    if inspect.isgeneratorfunction(func):
        def gen(*args, **kwargs):
            with leave_a_core():
                return (yield from func(*args, **kwargs))
        return gen

    def call(*args, **kwargs):
        with leave_a_core():
            return func(*args, **kwargs)
    return call


class _Relay(QObject):
    # emitted in the worker thread, delivered in the GUI thread (queued connection)
    posted = Signal(object)


class Gate:
    """The worker's side of the lock-step: post a frame, then wait until the panel took it in.

    Made in the GUI thread with the worker. `post` returns False once the job is
    cancelled (at once if it already was), so a worker loop reads
    ``if not gate.post(frame): return``; `cancelled` is the flag to poll between
    frames (e.g. a training loop's ``should_stop``).
    """

    def __init__(self):
        self._relay = _Relay()
        self.posted = self._relay.posted
        self._cond = threading.Condition()
        self._sent = 0
        self._taken = 0
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def post(self, value) -> bool:
        """Worker thread: send ``value`` to the panel and wait until it is taken in (False: cancelled)."""
        with self._cond:
            if self._cancelled:
                return False
            self._sent += 1
            n = self._sent
        self.posted.emit(value)
        with self._cond:
            while self._taken < n and not self._cancelled:
                self._cond.wait()
            return not self._cancelled

    def release(self) -> None:
        """GUI thread: the frames posted so far are on screen; the worker may compute the next."""
        with self._cond:
            self._taken = self._sent
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()


class SteppedWorker(GeneratorWorker):
    """napari's generator worker in lock-step with its panel: each yielded value passes a `Gate`.

    napari's own pause (a polling loop that emits ``paused`` whenever the worker gets
    there) is not used: a panel pauses a job by not releasing the gate. ``serial``
    (a lock, optional) is held while the worker computes: a new run of a panel waits
    for the one just dropped (Reset) to stop at its next frame, so two never compute
    at once (numba's workqueue threading layer aborts the process on concurrent calls).
    """

    def __init__(self, func, *args, **kwargs):
        super().__init__(func, *args, **kwargs)
        self.gate = Gate()
        self.serial = None

    def work(self):
        with self.serial or nullcontext():
            while not (self.abort_requested or self.gate.cancelled):
                try:
                    value = self._gen.send(None)
                except StopIteration as stop:
                    return stop.value
                if not self.gate.post(value):
                    break
            self._gen.close()
            return None

    def quit(self) -> None:
        """Cancel: also wakes a worker waiting at its gate (napari calls this when the viewer closes)."""
        super().quit()
        self.gate.cancel()


class GatedFunctionWorker(FunctionWorker):
    """napari's function worker whose function posts frames through a `Gate` (keyword ``gate``)."""

    def __init__(self, func, *args, **kwargs):
        super().__init__(func, *args, **kwargs)
        self.gate = Gate()
        self._kwargs["gate"] = self.gate
        self.serial = None

    def work(self):
        with self.serial or nullcontext():  # as in SteppedWorker
            if self.abort_requested:
                return None
            return super().work()

    def quit(self) -> None:
        super().quit()
        self.gate.cancel()


class Job:
    """One run of a worker as its panel sees it: one state, events one at a time, lock-step.

    ``func`` runs in a napari worker. A generator function's yielded values are its
    frames; a plain function given ``on_frame`` gets a `Gate` (keyword ``gate``) to post
    them; other functions just return a result (``gated``: they get a `Gate` too, to poll
    Cancel, e.g. `workers.process.run_in_child`'s ``should_stop``). ``on_frame(job, value)`` takes a frame
    in (cheaply: it stores it and sets ``job.step``; drawing is `Panel.request_draw`'s
    business), ``on_result(job, value)`` the return value of a job that was not
    cancelled, ``on_error(job, exc)`` and ``on_end(job)`` the rest.

    `state`: running, paused (Pause; Step lets one more frame through and stays paused),
    cancelling (after Cancel, until the worker has stopped), then done, cancelled or
    failed. ``step`` counts from where the job starts to ``total``; ``note`` is what the
    job does before its first frame.
    """

    def __init__(self, panel: Panel, func: Callable, *args, step: int = 0, total: int = 0, desc: str = "",
                 note: str = "", on_frame=None, on_result=None, on_error=None, on_end=None,
                 gated: bool = False, **kwargs):
        self.panel = panel
        self.state = RUNNING
        self.step = int(step)
        self.total = int(total)
        self.frames = 0
        self.note = note
        self.error = ""
        self.desc = desc  # what the job does, in words
        self._held = False       # a frame is shown and its worker waits for the gate
        self._one_more = False   # Step while paused: let one frame through
        self._detached = False
        self._events: deque = deque()
        self._busy = False
        self._on = {"frame": on_frame, "result": on_result, "error": on_error, "end": on_end}
        if inspect.isgeneratorfunction(func):
            cls = SteppedWorker
        else:
            cls = GatedFunctionWorker if on_frame is not None or gated else FunctionWorker
        self.worker = create_worker(_leaving_a_core(func), *args, _worker_class=cls, _ignore_errors=True,
                                    **kwargs)
        gate = getattr(self.worker, "gate", None)
        if gate is not None:
            self.worker.serial = panel._serial
            gate.posted.connect(lambda v: self._push("frame", v))
        self.worker.returned.connect(lambda v: self._push("result", v))
        self.worker.errored.connect(lambda e: self._push("error", e))
        self.worker.finished.connect(lambda: self._push("end", None))

    # -- controls (GUI thread) ---------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the worker may still deliver something (running, paused or cancelling)."""
        return self.state in (RUNNING, PAUSED, CANCELLING)

    def start(self) -> None:
        self.worker.start()

    def pause(self) -> None:
        if self.state == RUNNING:
            self.state = PAUSED
            self.panel.refresh()

    def resume(self) -> None:
        if self.state == PAUSED:
            self.state = RUNNING
            self._one_more = False
            self._release()
            self.panel.refresh()

    def toggle_pause(self) -> None:
        self.resume() if self.state == PAUSED else self.pause()

    def step_once(self) -> None:
        """While paused: one more frame (the one being computed, or the next), then paused again."""
        if self.state == PAUSED:
            self._one_more = True
            self._release()

    def cancel(self) -> None:
        """Stop the worker at its next frame; frames that arrive after this are not taken in."""
        if self.state in (RUNNING, PAUSED):
            self.state = CANCELLING
            self.worker.quit()
            self.panel.refresh()

    def detach(self) -> None:
        """Cancel and forget: nothing the worker still delivers reaches the panel (Reset, close)."""
        self._detached = True
        if self.active:
            self.state = CANCELLED
        self.worker.quit()

    # -- events (GUI thread, one at a time) --------------------------------------------
    def _push(self, kind: str, value) -> None:
        self._events.append((kind, value))
        if self._busy:
            return  # a handler of this job is further up the stack: it takes this event next
        self._busy = True
        try:
            while self._events:
                self._handle(*self._events.popleft())
        finally:
            self._busy = False

    def _handle(self, kind: str, value) -> None:
        panel = self.panel
        if self.state in (RUNNING, PAUSED) and self.worker.abort_requested:
            # quit from outside the panel: napari cancels its workers as the viewer closes,
            # so nothing more is drawn into it (the panel's Cancel and Reset say so first)
            self.state = CANCELLED
            self._detached = True
            panel.close_quietly()
        if self._detached or not panel.alive:
            if kind == "end":
                panel._jobs.discard(self)
            return
        callback = self._on[kind]
        if kind == "frame":
            if self.state not in (RUNNING, PAUSED):
                return  # after Cancel: the display keeps the last frame taken in
            self.frames += 1
            callback(self, value)
            last = self.total and self.step >= self.total  # the worker only has to end now
            if (self._one_more or self.state == PAUSED) and not last:
                self._one_more = False
                self._held = True  # the job stops here: show this frame now
            else:
                self._release()
            # the layers: at most every DRAW_INTERVAL while running (and less often when drawing
            # is slow: a 3D history can take a second); the status line at most every
            # STATUS_INTERVAL, whatever the drawing's pace, so it never reads "step 1" while
            # the run is at step 49; at once where the job stops (paused, Step)
            panel.request_draw(now=self._held)
            if self._held:
                panel.refresh()
            else:
                panel.refresh_soon()
            return
        if kind == "result":
            if self.state == RUNNING and callback is not None:
                callback(self, value)
        elif kind == "error":
            self.state = FAILED
            self.error = str(value) or type(value).__name__
            if callback is not None:
                callback(self, value)
        elif kind == "end":
            if self.state == CANCELLING:
                self.state = CANCELLED
            elif self.state in (RUNNING, PAUSED):  # paused on the last frame: that is the end
                self.state = DONE
            panel._jobs.discard(self)
            panel.request_draw(now=True)
            if callback is not None:
                callback(self)
        panel.refresh()

    def _release(self) -> None:
        self._held = False
        gate = getattr(self.worker, "gate", None)
        if gate is not None:
            gate.release()


def status_line(job: Job, unit: str = "step", done: str | None = None, count: str | None = None) -> str:
    """The status of ``job`` in words, from its state: what holds now, never a stale count.

    ``unit`` names a frame ("step", "update"); ``done`` replaces the count at the end;
    ``count`` replaces "step 12 / 30" while running or paused and at the end.
    """
    count = count or f"{unit} {job.step}" + (f" / {job.total}" if job.total else "")
    if job.state == RUNNING:
        return job.note if job.note and not job.frames else count
    if job.state == PAUSED:
        return f"paused at {count}"
    if job.state == CANCELLING:
        return f"cancelling at {unit} {job.step}..."
    if job.state == CANCELLED:
        return f"cancelled at {unit} {job.step}"
    if job.state == FAILED:
        return f"failed: {job.error}"
    return done if done is not None else (count if job.frames else "done")


class Panel(Container):
    """A dock widget that runs `Job` s and shows their state: the base of every panel.

    Subclasses give a ``status`` Label and may override `status_text` (the status from
    the current job's state, or the last note), `show_controls` (which buttons are
    enabled in which state) and `show_frame` (draw the newest frame into layers;
    throttled by `request_draw`).
    """

    def __init__(self, viewer: napari.viewer.Viewer, **kwargs):
        super().__init__(labels=True, **kwargs)
        self._viewer = viewer
        self.job: Job | None = None
        self.note = ""             # the status while no job is current
        self.done_text = None      # the status of a job that is done (its result, in words)
        self.unit = "step"         # what a job's frame is called in the status
        self.alive = True
        self._jobs: set[Job] = set()
        self._serial = threading.Lock()  # held by a stepped job's worker while it computes
        self._listening: list = []
        self._next_draw = 0.0      # when the layers may be drawn again (time.monotonic)
        self.last_draw_cost = 0.0  # seconds the last drawing took, with its repaint (see _settled)
        self._settling = False     # a drawing is being painted (see _settled)
        self._pending = False      # ... and another was asked for meanwhile
        self._drawing = False
        self._draw_again = False
        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.draw)
        self._status_timer = QTimer(self.native)  # a status update due (`refresh_soon`)
        self._status_timer.setSingleShot(True)
        self._status_timer.timeout.connect(self.refresh)
        jobs, listening = self._jobs, self._listening

        def gone(*_):  # the widget is being deleted (the viewer closes): touch no Qt object
            try:
                self.alive = False
                for job in list(jobs):
                    job.detach()
                jobs.clear()
                for emitter, callback in listening:
                    try:
                        emitter.disconnect(callback)
                    except (AttributeError, RuntimeError, ValueError):
                        pass  # at interpreter exit the emitter may already be torn down
                listening.clear()
            except Exception:  # noqa: BLE001
                # at interpreter exit the collector may have emptied this closure's cells
                # (NameError) before Qt sends ``destroyed``; an exception escaping a Qt slot
                # aborts the process (PyQt calls qFatal), so nothing may leave this slot
                pass

        self._gone = gone
        self.native.destroyed.connect(gone)

    def close_quietly(self) -> None:
        """The viewer is closing: cancel every job, draw nothing more, stop listening."""
        if self.alive:
            self._timer.stop()
            self._status_timer.stop()
            self._gone()

    @property
    def _worker(self):
        """The running job's napari worker (None when idle)."""
        job = self.job
        return job.worker if job is not None and job.active else None

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.active

    def start(self, func: Callable, *args, **kwargs) -> Job:
        """Run ``func`` as this panel's job (see `Job` for the keywords)."""
        job = Job(self, func, *args, **kwargs)
        self.job = job
        self.done_text = None
        self._jobs.add(job)
        job.start()
        self.refresh()
        return job

    def listen(self, emitter, callback) -> None:
        """Connect ``callback`` to a viewer event for as long as this panel exists."""
        def guarded(*args, **kwargs):
            if self.alive:
                callback(*args, **kwargs)

        emitter.connect(guarded)
        self._listening.append((emitter, guarded))

    def say(self, text: str) -> None:
        """Show ``text`` as the status (unless a job is active, whose state it shows)."""
        self.note = text
        if not self.busy:
            self.job = None
        self.refresh()

    # -- showing (GUI thread) -------------------------------------------------------------
    def refresh(self) -> None:
        """The status line and the buttons, derived from the state that holds now."""
        if not self.alive:
            return
        self._status_timer.stop()  # up to date now
        self.show_controls()
        text = self.status_text()
        if self.status.value != text:  # a new text repaints the window
            self.status.value = text

    def refresh_soon(self) -> None:
        """`refresh` within `STATUS_INTERVAL` (at once if it is 0): frames that come faster share one."""
        if not self.alive:
            return
        if STATUS_INTERVAL <= 0:
            self.refresh()
        elif not self._status_timer.isActive():
            self._status_timer.start(int(STATUS_INTERVAL * 1000))

    def status_text(self) -> str:
        job = self.job
        return self.note if job is None else status_line(job, self.unit, self.done_text, self.count_text(job))

    def count_text(self, job: Job) -> str | None:
        """The count in the status ("step 12 / 30" if None; subclasses say more)."""
        return None

    def show_controls(self) -> None:
        """Enable the buttons that make sense in the current state (subclasses)."""

    def show_frame(self) -> None:
        """Draw the newest frame taken in into the viewer's layers (subclasses)."""

    def request_draw(self, now: bool = False) -> None:
        """Draw now if the last drawing is old enough (`DRAW_INTERVAL`) or ``now``, else once when it is."""
        if not self.alive:
            return
        if not now and self._settling:  # the last drawing is still being painted
            self._pending = True
            return
        wait = self._next_draw - time.monotonic()
        if now or wait <= 0:
            self._timer.stop()
            self.draw()
        elif not self._timer.isActive():
            self._timer.start(int(wait * 1000) + 1)

    def draw(self) -> None:
        if not self.alive:
            return
        if self._drawing:  # a Qt call below processed events that asked for a drawing
            self._draw_again = True
            return
        self._drawing = True
        began = time.monotonic()
        try:
            again = True
            while again:
                self._draw_again = False
                self.show_frame()
                again = self._draw_again
        finally:
            self._drawing = False
        self.refresh()
        if not self._settling:
            # the canvas repaints in the event loop after this: a short timer fires once it
            # has (late by as long as the repaint took)
            self._settling, self._began = True, began
            QTimer.singleShot(_SETTLE_MS, self._settled)

    def _settled(self) -> None:
        """After a drawing and its repaint: the next drawing waits so that drawing takes at most
        `DRAW_SHARE` of the GUI thread's time."""
        self._settling = False
        if not self.alive:
            return
        end = time.monotonic()
        cost = max(0.0, end - self._began - _SETTLE_MS / 1000)
        self.last_draw_cost = cost
        self._next_draw = end + max(DRAW_INTERVAL - _SETTLE_MS / 1000, cost * (1 - DRAW_SHARE) / DRAW_SHARE)
        if self._pending:
            self._pending = False
            self.request_draw()



def probability_data(layer, report) -> np.ndarray | None:
    """The checked float32 data of a probability layer, or None after ``report(message)``.

    ``report`` is the calling panel's ``show_error`` (passed in, so each panel reports
    through its own module's notification function).
    """
    if layer is None:
        report("Choose a probability layer (an Image layer with values in [0, 1]; "
               "the Segment panel makes one).")
        return None
    if getattr(layer, "rgb", False):
        report(f"'{layer.name}' is an RGB image: choose a single-channel probability layer "
               "(Segment panel).")
        return None
    try:
        return check_field(np.asarray(layer.data), f"layer '{layer.name}'")
    except ValueError as e:
        report(str(e))
        return None


def lifetime(native) -> Callable[[], bool]:
    """A function telling whether the Qt widget ``native`` still exists.

    Viewer events outlive a dock widget (layers are removed as the viewer closes):
    their callbacks check this before touching the widget.
    """
    flag = _Alive()
    native.destroyed.connect(flag.gone)
    return flag


class QuietSlot:
    """``fn(*args)`` as a Qt slot that never raises (the signal's own arguments are ignored):
    for ``destroyed``, which may come at interpreter exit when anything can be half torn
    down, and an exception escaping a slot aborts the process (PyQt calls qFatal)."""

    def __init__(self, fn: Callable, *args):
        self.fn, self.args = fn, args

    def __call__(self, *_) -> None:
        try:
            self.fn(*self.args)
        except Exception:  # noqa: BLE001 - see the class docstring
            pass


class _Alive:
    """`lifetime`'s answer. Plain attributes, no closure: at interpreter exit the garbage
    collector may empty a closure's cells before Qt sends ``destroyed``, and the exception
    that a slot then raises aborts the process (PyQt calls qFatal)."""

    def __init__(self):
        self.value = True

    def gone(self, *_):
        self.value = False

    def __call__(self) -> bool:
        return getattr(self, "value", False)


def layers_of(viewer, *kinds):
    """``(name, layer)`` choices of the viewer's layers of the given napari layer classes."""
    return [(lay.name, lay) for lay in viewer.layers if isinstance(lay, kinds)]


def follow_layers(viewer, *combos: ComboBox, prefer: str | None = None) -> None:
    """Refresh the combo boxes' choices when layers are added, removed or renamed.

    With ``prefer``, a combo box moves to the newest layer named exactly ``prefer`` (or,
    without one, whose name contains it) unless its current layer already qualifies:
    "refined" picks ``refined`` over ``refined (earlier)``. A nullable combo box with
    nothing named so stays empty.
    """

    alive = lifetime(combos[0].native)

    def refresh(*_):
        if not alive():
            return  # the panel is gone (the viewer closes)
        for c in combos:
            c.reset_choices()
            if prefer is None:
                continue
            layers = [ch for ch in c.choices if ch is not None]
            named = [ch for ch in layers if prefer in ch.name.lower()]
            exact = [ch for ch in named if ch.name.lower() == prefer]
            cur = c.value
            if cur is not None and cur in (exact or named):
                continue
            if named:
                c.value = (exact or named)[-1]

    ev = viewer.layers.events
    for e in (ev.inserted, ev.removed, ev.moved):
        e.connect(refresh)
    for lay in viewer.layers:
        lay.events.name.connect(refresh)
    ev.inserted.connect(lambda e: e.value.events.name.connect(refresh))
    refresh()


def spatial_ndim(layer) -> int:
    """Number of spatial axes of a layer's data (an RGB image's colour axis is not one)."""
    if layer is None:
        return 0
    return int(np.ndim(layer.data)) - (1 if getattr(layer, "rgb", False) else 0)


def layer_spacing(layer) -> tuple[float, ...] | None:
    """The voxel spacing of a layer's spatial axes from its ``scale`` (None: isotropic)."""
    nd = spatial_ndim(layer)
    scale = tuple(float(x) for x in np.asarray(getattr(layer, "scale", ()), float)[-nd:]) if nd else ()
    if len(scale) != nd or len(set(scale)) <= 1 or not all(np.isfinite(x) and x > 0 for x in scale):
        return None
    return scale


def view_toggle(viewer, combo: ComboBox) -> CheckBox:
    """A "3D view" check box bound to ``viewer.dims.ndisplay``, for a panel's layer choice.

    It is enabled only while ``combo``'s layer is a volume (3 spatial axes), so 2D data
    is never rendered with a time or channel axis as depth; it follows the viewer's own
    2D/3D button both ways. The viewer is never switched to 3D unless asked.
    """
    box = CheckBox(text="3D view", value=viewer.dims.ndisplay == 3,
                   tooltip="render the volume in 3D (the viewer's 2D/3D button does the same); "
                           "off: slice by slice")

    alive = lifetime(box.native)

    def sync(*_):
        if not alive():
            return
        steady_cursor(viewer)
        box.enabled = spatial_ndim(combo.value) >= 3 or viewer.dims.ndisplay == 3
        if box.value != (viewer.dims.ndisplay == 3):
            box.value = viewer.dims.ndisplay == 3

    def apply(on: bool):
        if on and spatial_ndim(combo.value) < 3:
            box.value = False  # not for 2D data
            return
        viewer.dims.ndisplay = 3 if on else 2

    box.changed.connect(apply)
    viewer.dims.events.ndisplay.connect(sync)
    combo.changed.connect(sync)
    sync()
    return box


def steady_cursor(viewer) -> None:
    """Give the cursor a view direction in the 3D view until the mouse gives it one.

    napari 0.9.2's ``Labels.get_status`` passes ``np.asarray(None)`` as the view ray
    when the mouse has not moved over the 3D canvas yet, and fails (``TypeError: len()
    of unsized object``) for a volume Labels layer with features, such as ``bridged``,
    whenever the status bar updates. The camera's view direction is what the canvas
    would set at the first mouse move.
    """
    if viewer.dims.ndisplay != 3:
        return
    cursor = viewer.cursor
    # best effort around a napari bug: a private field (napari warns about the access)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            if getattr(cursor, "_view_direction", 0) is None:
                cursor._view_direction = camera(viewer).calculate_nd_view_direction(
                    viewer.dims.ndim, viewer.dims.displayed)
        except Exception:  # noqa: BLE001 - another napari: nothing to steady
            pass


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer) -> tuple[int, int]:
    """Canvas size in screen pixels (``viewer.canvas.size`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return tuple(canvas.size) if canvas is not None else tuple(viewer._canvas_size)


def put_image(viewer, name: str, data: np.ndarray, like=None, **kwargs):
    """Set the data of Image layer ``name``, or add it (with the spatial scale and offset of ``like``).

    An existing layer keeps its place and display settings when the number of dimensions
    is unchanged (the shape may change, e.g. a growing stack of snapshots).
    """
    if name in viewer.layers and isinstance(viewer.layers[name], napari.layers.Image):
        layer = viewer.layers[name]
        if layer.data.ndim == data.ndim and not layer.rgb:
            layer.data = data
            return layer
        viewer.layers.remove(layer)
    if like is not None:
        nd = data.ndim
        kwargs.setdefault("scale", _pad(like.scale, nd, 1.0))
        kwargs.setdefault("translate", _pad(like.translate, nd, 0.0))
    return _add_in_two_turns(viewer, "image", data, name=name, **kwargs)


def _add_in_two_turns(viewer, kind: str, data, visible: bool = True, **kwargs):
    """``viewer.add_KIND(data, **kwargs)`` hidden, then shown (if ``visible``) `AFTER_ADD_MS` later.

    napari neither slices, nor makes a thumbnail of, nor uploads a hidden layer: adding it
    costs the layer's visual, controls and list row; showing it, in another event, the rest.
    """
    layer = getattr(viewer, f"add_{kind}")(data, visible=False, **kwargs)
    if visible:
        # not a zero timer: Qt runs those before the input that waits, so the two halves
        # would still be one stall for a click
        viewer_layers = viewer.layers  # (a closed viewer has none left)
        QTimer.singleShot(AFTER_ADD_MS, lambda: layer in viewer_layers and show_layer(layer))
    return layer


def show_layer(layer) -> None:
    """Make ``layer`` visible, with napari's dims following data it got while hidden.

    napari 0.9.2 does not update a hidden layer's extent when its data changes, nor when it
    is shown: a stack of snapshots that grew while hidden kept the time slider at its old
    length, so the last steps could not be reached. Setting the data again once shown
    updates it (only then: that repeats the slicing).
    """
    layer.visible = True
    data = layer.data
    if isinstance(layer, napari.layers.Image) and not layer.multiscale and not layer.rgb:
        stale = np.asarray(layer.extent.data[1]) != np.asarray(np.shape(data), float) - 1
        if np.any(stale):
            layer.data = data


def small_labels(data):
    """``data`` as uint8 or uint16 when its labels fit, else as it is.

    napari draws 8- and 16-bit labels as they are, but maps wider ones to its texture with a
    pass over every pixel on the GUI thread (``labels_raw_to_texture_direct``, a numba loop
    compiled on first use): 1.3 s for the Bridged gaps layer of a 1600 x 1067 photograph the
    first time, 0.5 s after. Only in-memory numpy arrays are converted (a lazy array stays lazy).
    """
    if (not isinstance(data, np.ndarray) or data.dtype.kind not in "iu" or data.dtype.itemsize <= 2
            or data.size == 0):
        return data
    lo, hi = int(data.min()), int(data.max())
    if lo < 0 or hi > np.iinfo(np.uint16).max:
        return data
    return data.astype(np.uint8 if hi <= np.iinfo(np.uint8).max else np.uint16)


def put_layer(viewer, name: str, kind: str, data, like=None, **kwargs):
    """Replace layer ``name`` by a new one of ``kind`` ('labels', 'vectors', ...), keeping its place.

    A Vectors layer of the same dimensions and placement is updated in place instead:
    removing a layer and adding one costs napari its controls, list row and visual again
    (0.35 to 0.75 s of the GUI thread at load 10 on the 2-core machine, software OpenGL).
    """
    steady_cursor(viewer)
    if like is not None:
        nd = np.asarray(like.data).ndim - (1 if getattr(like, "rgb", False) else 0)
        kwargs.setdefault("scale", _pad(like.scale, nd, 1.0))
        kwargs.setdefault("translate", _pad(like.translate, nd, 0.0))
    if kind == "vectors" and name in viewer.layers and _update_vectors(viewer.layers[name], data, kwargs):
        return viewer.layers[name]
    index = None
    if name in viewer.layers:
        index = viewer.layers.index(name)
        viewer.layers.remove(name)
    if kind == "labels":
        # at once: napari 0.9.2's data_setitem fails on a Labels layer never sliced, as a
        # hidden one is, and the Accept panel paints into its new layer right away
        layer = viewer.add_labels(small_labels(data), name=name, **kwargs)
    else:
        layer = _add_in_two_turns(viewer, kind, data, name=name, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(layer), index)
    return layer


def _update_vectors(layer, data, kwargs: dict) -> bool:
    """Set a Vectors layer's data, features and look from ``put_layer``'s arguments, redrawn
    once; False (nothing changed) when ``layer`` is not a Vectors layer of the same dimensions
    and placement, or ``kwargs`` holds a setting this does not update."""
    settable = {"features", "edge_color", "edge_colormap", "edge_contrast_limits", "edge_width", "length",
                "vector_style", "scale", "translate"}
    data = np.asarray(data)
    if (not isinstance(layer, napari.layers.Vectors) or not set(kwargs) <= settable
            or data.ndim != 3 or data.shape[-1] != layer.data.shape[-1]
            or not np.allclose(layer.scale, kwargs.get("scale", layer.scale))
            or not np.allclose(layer.translate, kwargs.get("translate", layer.translate))):
        return False
    # napari's private refresh blocker: one redraw (thumbnail, upload) instead of one per
    # setter; without it (a later napari), the same result, drawn more times
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        block = getattr(layer, "_block_refresh", nullcontext)
    with block():
        layer.data = data
        if "features" in kwargs:
            layer.features = kwargs["features"]
        for key in ("edge_colormap", "edge_contrast_limits", "edge_width", "length", "vector_style"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        if "edge_color" in kwargs:  # last: a colour by feature maps the new features
            layer.edge_color = kwargs["edge_color"]
    layer.refresh()
    return True


def _pad(values, nd: int, fill: float):
    v = list(np.asarray(values, float))[-nd:]
    return [fill] * (nd - len(v)) + v
