"""Harness: writer processes hammering one corrections store, with load and SIGKILL.

Used by ``test_store_contention.py`` and ``benchmarks/bench_store.py``. Kept free
of pytest so that the ``spawn``-ed writer processes start fast.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_nucleus_ai.review.store import AnnotationStore

IMAGE = "slide-1"
# cell ids of writer k start at k * STRIDE, so every writer's corrections are its own
STRIDE = 10_000_000


def _label(cell: int) -> str:
    return f"class_{cell % 7}"


def _burn(stop_at: float) -> None:
    """Keep one CPU busy until ``stop_at`` (``time.monotonic``, shared by all processes)."""
    x = 0
    while time.monotonic() < stop_at:
        x += 1


def _writer(
    path: str,
    author: str,
    start: int,
    log_path: str,
    go: mp.synchronize.Event | None,
    timing: mp.sharedctypes.Synchronized,
    min_saves: int,
) -> None:
    """Write corrections as fast as possible; log every save once ``set_label`` returned.

    The log is line-buffered: a line is handed to the kernel (one ``write``) as soon
    as the save returns, so it survives SIGKILL of this process, like a UI showing
    "saved". Lines: ``ready T``, ``S cell t_call t_saved``, ``E t message``.
    """
    with open(log_path, "a", buffering=1) as log:
        t0 = time.monotonic()
        try:
            store = AnnotationStore(path, author=author)
        except Exception as e:  # the test asserts on logged errors
            log.write(f"E {t0} open: {' '.join(str(e).split())}\n")
            return
        log.write(f"ready {time.monotonic() - t0}\n")
        if go is not None:
            go.wait()
        stop_at = timing.value
        cell, saved = start, 0
        while time.monotonic() < stop_at or saved < min_saves:
            t = time.monotonic()
            try:
                store.set_label(IMAGE, cell, _label(cell), author=author, predicted="class_0")
            except Exception as e:
                log.write(f"E {t} {type(e).__name__}: {' '.join(str(e).split())}\n")
                time.sleep(0.01)
                continue
            log.write(f"S {cell} {t} {time.monotonic()}\n")
            cell += 1
            saved += 1
        store.close()


@dataclass
class WriterLog:
    """What one writer process reported: saves ``(cell, t_call, t_saved)`` and errors."""

    author: str
    saves: list[tuple[int, float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    open_s: float | None = None
    killed_at: float | None = None
    started_at: float | None = None

    @classmethod
    def read(cls, author: str, path: Path) -> WriterLog:
        out = cls(author)
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):  # cut by SIGKILL: never reported
                break
            kind, _, rest = line.strip().partition(" ")
            if kind == "S":
                cell, t_call, t_saved = rest.split()
                out.saves.append((int(cell), float(t_call), float(t_saved)))
            elif kind == "E":
                out.errors.append(rest)
            elif kind == "ready":
                out.open_s = float(rest)
        return out

    @property
    def waits(self) -> np.ndarray:
        """Seconds each save took (waiting for the lock + the durable commit)."""
        return np.array([s - c for _, c, s in self.saves])

    def gaps(self, start: float, stop: float) -> np.ndarray:
        """Seconds between consecutive saves, counting ``start`` -> first and last -> ``stop``."""
        t = [start] + [s for _, _, s in self.saves if start <= s <= stop] + [stop]
        return np.diff(np.asarray(t))

    def empty_windows(self, start: float, stop: float, width: float = 1.0) -> list[int]:
        """Indices of the ``width``-s windows in ``[start, stop)`` without a save."""
        times = np.array([s for _, _, s in self.saves])
        out = []
        k = 0
        while start + (k + 1) * width <= stop + 1e-9:
            lo, hi = start + k * width, start + (k + 1) * width
            if not ((times >= lo) & (times < hi)).any():
                out.append(k)
            k += 1
        return out


@dataclass
class ContentionRun:
    """The outcome of :func:`run_contention`."""

    writers: list[WriterLog]  # the first ``n`` writers (writer 0 killed when asked)
    replacement: WriterLog | None  # started right after the kill, opening under contention
    start: float
    stop: float
    lost: list[tuple[str, int]]
    integrity: str


def run_contention(
    folder: Path,
    n_writers: int,
    duration: float,
    burners: int = 1,
    kill_at: float | None = None,
    seed: int = 0,
    ready_timeout: float = 60.0,
) -> ContentionRun:
    """Run ``n_writers`` writer processes against one store for ``duration`` seconds.

    Parameters
    ----------
    folder : Path
        Empty folder for the store and the writers' logs.
    n_writers : int
        Writer processes started together (each opens the store before the start).
    duration : float
        Seconds all writers write at full speed.
    burners : int
        CPU-burning processes running for the whole time (load on the machine).
    kill_at : float, optional
        Seconds after the start at which writer 0 is killed with SIGKILL; a
        replacement writer (new process, new author) is then started at once and
        writes until the end (at least 5 saves).
    seed : int
        Seed for the kill jitter.
    ready_timeout : float
        Seconds allowed for the writers to start and open the store.

    Returns
    -------
    ContentionRun
    """
    ctx = mp.get_context("spawn")
    rng = random.Random(seed)
    store = folder / "project"
    store.mkdir(parents=True, exist_ok=True)
    AnnotationStore(store).close()  # the project exists, as when annotators join it
    go = ctx.Event()
    timing = ctx.Value("d", 0.0)
    authors = [f"w{k}" for k in range(n_writers)]
    logs = {a: folder / f"{a}.log" for a in authors}
    burn_until = time.monotonic() + ready_timeout + duration + 30  # killed sooner, at the end
    burn = [ctx.Process(target=_burn, args=(burn_until,), daemon=True) for _ in range(burners)]
    for p in burn:
        p.start()
    procs = {
        a: ctx.Process(
            target=_writer,
            args=(str(store), a, k * STRIDE, str(logs[a]), go, timing, 1),
            daemon=True,
        )
        for k, a in enumerate(authors)
    }
    replacement = None
    try:
        for p in procs.values():
            p.start()
        deadline = time.monotonic() + ready_timeout
        while not all(_logged(logs[a]) for a in authors):
            if time.monotonic() > deadline:
                raise AssertionError("writers did not start")
            if not all(p.is_alive() for p in procs.values()):
                break  # a writer failed to open: its log says why
            time.sleep(0.02)
        start = time.monotonic() + 0.05
        stop = start + duration
        timing.value = stop
        while time.monotonic() < start:
            time.sleep(0.005)
        go.set()
        killed_at = None
        if kill_at is not None:
            time.sleep(max(0.0, start + kill_at + rng.uniform(0, 0.2) - time.monotonic()))
            os.kill(procs[authors[0]].pid, signal.SIGKILL)
            killed_at = time.monotonic()
            procs[authors[0]].join(10)
            assert procs[authors[0]].exitcode == -signal.SIGKILL
            replacement = ctx.Process(
                target=_writer,
                args=(
                    str(store),
                    "r0",
                    n_writers * STRIDE,
                    str(folder / "r0.log"),
                    None,
                    timing,
                    5,
                ),
                daemon=True,
            )
            replacement.start()
            replaced_at = time.monotonic()
        for p in procs.values():
            p.join(duration + 60)
        if replacement is not None:
            replacement.join(duration + 60)
    finally:
        for p in [*procs.values(), *burn, *([replacement] if replacement else [])]:
            if p.is_alive():
                p.kill()
                p.join(5)
    writers = [WriterLog.read(a, logs[a]) for a in authors]
    if killed_at is not None:
        writers[0].killed_at = killed_at
    rep = None
    if replacement is not None:
        rep = WriterLog.read("r0", folder / "r0.log")
        rep.started_at = replaced_at
    with AnnotationStore(store) as s:
        labels = s.labels(IMAGE)
        integrity = s.check()
    lost = [
        (w.author, cell)
        for w in [*writers, *([rep] if rep else [])]
        for cell, _, _ in w.saves
        if labels.get(cell) != _label(cell)
    ]
    return ContentionRun(writers, rep, start, stop, lost, integrity)


def _logged(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0
