"""Run a core generator without blocking napari's UI.

:func:`start_work` is the one way docks start long work: it runs a core
generator (which yields :class:`~napari_nucleus_ai.core.progress.Progress` and returns
a result) in a ``napari.qt.threading.thread_worker``, feeds a
``napari.utils.progress`` bar, supports cancel (``worker.quit()``), reports
errors as one-line notifications and calls ``on_result`` on the main thread,
where result layers are added.

Tests (or ``NAPARI_NUCLEUS_AI_SYNC=1``) pass ``sync=True`` to run it in the
calling thread with the same callbacks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator
from typing import Any

from napari_nucleus_ai.core.errors import one_line
from napari_nucleus_ai.core.progress import Progress


class SyncWork:
    """What :func:`start_work` returns when run synchronously (mirrors the worker API used)."""

    def __init__(self, result=None, error: BaseException | None = None):
        self.result = result
        self.error = error

    def quit(self) -> None:  # nothing to cancel: the work is already done
        pass

    @property
    def is_running(self) -> bool:
        return False


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _print_if_unexpected(error: BaseException) -> None:
    """A bug (not a :class:`~napari_nucleus_ai.core.errors.NucleusAIError`) keeps its traceback."""
    from napari_nucleus_ai.core.errors import NucleusAIError

    if not isinstance(error, NucleusAIError):
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__)


def _sync_default() -> bool:
    """``NAPARI_NUCLEUS_AI_SYNC`` set (and not 0): run work on the calling thread."""
    return os.environ.get("NAPARI_NUCLEUS_AI_SYNC", "") not in ("", "0")


def start_work(
    gen_func: Callable[..., Generator[Any, None, Any]],
    *args,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    description: str = "working",
    sync: bool | None = None,
    freeze_gc: bool = False,
    **kwargs,
):
    """Run ``gen_func(*args, **kwargs)`` in a thread with a napari progress bar.

    Parameters
    ----------
    gen_func : callable returning a generator
        Core generator function; yields :class:`Progress`, returns the result.
    on_result : callable, optional
        Called on the main thread with the generator's return value.
    on_error : callable, optional
        Called with the exception; by default a one-line napari error notification.
    on_progress : callable, optional
        Called with every :class:`Progress` (e.g. to update a plot in a dock).
    on_finish : callable, optional
        Called last, whatever happened (re-enable buttons here).
    description : str
        Text of the progress bar.
    sync : bool, optional
        Run in this thread (tests). Default: ``NAPARI_NUCLEUS_AI_SYNC`` env var.
    freeze_gc : bool
        While the worker runs, keep the objects that exist when it starts (napari, Qt,
        torch: ~0.5 M) out of the cyclic garbage collector's full passes (``gc.freeze``,
        undone when the worker finishes). Work that allocates many Python objects (laptrack's
        graphs) triggers full collections; each scans the whole heap holding the GIL and
        froze the UI for 0.25 s (quiet machine) to 1.7 s (loaded) in a napari process.

    Returns
    -------
    napari.qt.threading.GeneratorWorker or SyncWork
        Call ``.quit()`` to cancel a running worker.
    """
    from napari.utils import progress as progress_bar

    if sync is None:
        sync = _sync_default()
    report_error = on_error or (lambda e: _notify_error(one_line(e)))
    pbar = progress_bar(desc=description, total=0)
    state = {"done": 0}

    def _progress(item: Any) -> None:
        if not isinstance(item, Progress):
            return
        if item.total and pbar.total != item.total:
            pbar.total = item.total
        if item.message:
            pbar.set_description(f"{description}: {item.message}")
        step = item.done - state["done"]
        if step > 0:
            pbar.update(step)
        state["done"] = item.done
        if on_progress is not None:
            on_progress(item)

    def _finish() -> None:
        if frozen:
            _thaw_gc()
            frozen.clear()
        pbar.close()
        if on_finish is not None:
            on_finish()

    frozen = []

    if sync:
        from napari_nucleus_ai.core.progress import run_sync

        try:
            result = run_sync(gen_func(*args, **kwargs), _progress)
        except Exception as e:  # reported like the threaded path does
            _finish()
            report_error(e)
            return SyncWork(error=e)
        try:
            if on_result is not None:
                on_result(result)
        finally:
            _finish()
        return SyncWork(result=result)

    from napari.qt.threading import thread_worker

    # ignore_errors: without it the worker re-raises every error on the main thread, and
    # napari's worker relays it as a second notification (with traceback); the error is
    # reported once, as one line, by report_error (a bug's traceback still goes to stderr)
    worker = thread_worker(gen_func, start_thread=False, ignore_errors=True)(*args, **kwargs)
    relay = getattr(worker, "_relay_error", None)
    if relay is not None:
        with contextlib.suppress(TypeError, RuntimeError):  # not connected in this version
            worker.errored.disconnect(relay)
    worker.yielded.connect(_progress)
    if on_result is not None:
        worker.returned.connect(on_result)
    worker.errored.connect(_print_if_unexpected)
    worker.errored.connect(report_error)
    worker.finished.connect(_finish)
    if freeze_gc:
        _freeze_gc()
        frozen.append(True)
    worker.start()
    return worker


_GC_FREEZERS = [0]  # workers running with freeze_gc (the freeze is process-wide)


def _freeze_gc() -> None:
    import gc

    if _GC_FREEZERS[0] == 0:
        gc.freeze()
    _GC_FREEZERS[0] += 1


def _thaw_gc() -> None:
    import gc

    _GC_FREEZERS[0] = max(0, _GC_FREEZERS[0] - 1)
    if _GC_FREEZERS[0] == 0:
        gc.unfreeze()


#: torch's C++ libraries in load order (Linux and macOS names); a missing one is skipped.
TORCH_LIBS = (
    "libgomp.so.1",
    "libc10.so",
    "libtorch_cpu.so",
    "libtorch.so",
    "libomp.dylib",
    "libc10.dylib",
    "libtorch_cpu.dylib",
    "libtorch.dylib",
)


def preload_torch() -> list[str]:
    """Load torch's C++ libraries with the GIL released; call it in a worker before ``import torch``.

    ``import torch`` loads ``libtorch_cpu`` (~430 MB: relocations and thousands of operator
    registrations) inside the import of ``torch._C``, holding the GIL all along: napari's
    event loop, waiting for the GIL, froze for 0.4-1.5 s during a dock's first torch job
    however the work was threaded. Loaded here first through libc's ``dlopen`` called via
    ``ctypes`` (which releases the GIL around a foreign call), the libraries are already
    in the process when ``import torch`` asks for them, and the import holds the GIL for
    its Python part only. Nothing is done when torch is imported already, absent, or the
    platform has no ``dlopen`` (Windows): it is only a warm-up.

    Returns
    -------
    list of str
        The library files loaded.
    """
    import sys

    if "torch" in sys.modules or not hasattr(os, "RTLD_NOW"):
        return []
    import ctypes
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("torch")
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
    except (ImportError, ValueError, OSError, AttributeError):
        return []
    if spec is None or spec.origin is None:
        return []
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    folder = Path(spec.origin).parent / "lib"
    loaded = []
    for name in TORCH_LIBS:
        path = folder / name
        if not path.is_file():
            continue
        # RTLD_LOCAL: the symbols stay private, as when torch loads them itself
        if not dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL):
            break  # torch's own import will load (and report) it
        loaded.append(str(path))
    return loaded


#: Modules a model dock imports in the background when it opens (:func:`warm_up`).
WARM_MODULES = (
    "torch",
    "napari_nucleus_ai.classify.cells",
    "napari_nucleus_ai.classify.demo_models",
)
_WARMING: list = []


def warm_up(modules=WARM_MODULES):
    """Import torch and the classification code in a background thread, once per process.

    ``import torch`` holds the GIL for ~100-200 ms at a time while ``torch._C`` registers
    its bindings (C code, no thread switch), even after :func:`preload_torch`: napari's
    event loop stalls for as long, whichever thread imports. Started when a model dock
    opens, that stall falls while the user picks a model, not in the first
    classification. A plain daemon thread (no Qt object, nothing to clean up); a failed
    import is left for the dock's own job to report. Returns the thread, or None when
    torch is imported already or the warm-up has started before.
    """
    import sys
    import threading

    if "torch" in sys.modules or _WARMING:
        return None

    def work():
        import importlib

        preload_torch()
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the dock's job reports it in one line
                return

    thread = threading.Thread(target=work, name="napari-nucleus-ai warm-up", daemon=True)
    _WARMING.append(thread)
    thread.start()
    return thread


STEP_GAP_MS = 10


def run_in_steps(steps: list[Callable[[], None]], sync: bool | None = None) -> None:
    """Run UI-thread ``steps`` one per event-loop turn, so the viewer repaints between them.

    Adding a large layer costs a few hundred ms on the UI thread (its visual, its controls);
    three such steps in one call are one long freeze, three calls are three short ones.
    The next step is a timer ``STEP_GAP_MS`` later, not ``singleShot(0)``: Qt 6 delivers a
    zero-delay single shot as a posted event, and the chain of them ran in one
    ``processEvents`` without a timer, a repaint or an input event in between (a 0.4 s
    freeze measured on a 20-frame 1024 x 1024 result).
    With ``sync`` (tests, ``NAPARI_NUCLEUS_AI_SYNC``) they run at once, in order.
    A step that raises does not stop the ones after it (the last may be a clean-up); its
    error goes to Qt's exception hook (napari's notification), or with ``sync`` is raised
    once all steps ran.
    """
    if sync is None:
        sync = _sync_default()
    steps = list(steps)
    if sync:
        errors = []
        for step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - raised after the other steps
                errors.append(e)
        if errors:
            raise errors[0]
        return
    from qtpy.QtCore import QTimer

    def _next() -> None:
        try:
            if steps:
                steps.pop(0)()
        finally:
            if steps:
                QTimer.singleShot(STEP_GAP_MS, _next)

    _next()
