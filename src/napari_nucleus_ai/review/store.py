"""The corrections store: every label an annotator gives a cell, durably, with its history.

One embedded SQLite database (WAL mode) beside the data or in a project folder.
Each correction is one appended row (never updated in place) holding the image,
the cell, the new label, the author, the time, and what the model had predicted;
the latest row for a cell wins. Undoing a correction appends a row that restores
the previous label (or none), so the full history is always there.

Durability: :meth:`AnnotationStore.set_label` commits with ``synchronous=FULL``
before it returns, so a correction it reported survives the process being
killed (and a power cut). Several processes may write at once, fairly: each
write is one short ``BEGIN IMMEDIATE`` transaction, taken in a retry loop with
randomised exponential back-off (not SQLite's busy handler, which lets a busy
writer starve the others), waiting at most ``timeout`` seconds in all before a
one-line :class:`~napari_nucleus_ai.core.errors.InputError`. Writers kept waiting
say so with a lock on ``<store>-wait`` (created on first contention), and a writer
about to begin lets them go first. Opening a store
whose schema exists only reads, so joining a busy project never waits for the
write lock. SQLite's WAL needs a local file system (not a network share).

Examples
--------
>>> from napari_nucleus_ai.review.store import AnnotationStore
>>> store = AnnotationStore("project/")            # doctest: +SKIP
>>> store.set_label("smear_01.jpg", 17, "lymphocyte", author="ana")  # doctest: +SKIP
>>> store.labels("smear_01.jpg")                   # doctest: +SKIP
{17: 'lymphocyte'}
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no waiting-writer signal, the jittered retry alone
    fcntl = None

STORE_NAME = "nucleus-ai-annotations.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL,
    cell_id INTEGER NOT NULL,
    label TEXT,              -- NULL: back to the model's prediction (unreviewed)
    previous TEXT,           -- the label this row replaced (NULL: none)
    author TEXT NOT NULL,
    time TEXT NOT NULL,      -- ISO 8601 UTC
    predicted TEXT,          -- the model's class for the cell when corrected
    probability REAL,        -- the model's probability of that class
    uncertainty REAL,
    model TEXT,              -- model package name/version that predicted
    action TEXT NOT NULL DEFAULT 'set',  -- set | confirm | undo | redo | clear
    host TEXT,
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS corrections_cell ON corrections (image_id, cell_id, id);
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY,
    info TEXT NOT NULL,      -- JSON: source path, session folder, model, classes...
    time TEXT NOT NULL
);
"""

ACTIONS = ("set", "confirm", "undo", "redo", "clear")

# Back-off between attempts to take the write lock: a random sleep (jitter, so that
# waiters do not retry in step) of up to a delay doubling from _BACKOFF_FIRST up to
# _BACKOFF_CAP. The cap is deliberately small: a writer that
# has waited long must keep trying as often as one that just arrived, else the
# process that just committed (and immediately begins again) always wins. That is
# what SQLite's own busy handler does wrong for us: it sleeps up to 100 ms between
# tries, so a waiting writer almost never finds the lock free (starved for seconds).
_BACKOFF_FIRST = 0.0005
_BACKOFF_CAP = 0.004
# Jitter alone still lets a writer that commits and begins again at once hold the
# lock nearly all the time (writers went 1-1.5 s without a save), so waiting writers say so
# (see _Waiters) and a writer about to begin steps back while they do, for at most
# _COURTESY seconds (two back-off periods: every waiter tries at least once).
_COURTESY = 2 * _BACKOFF_CAP


def _busy(error: sqlite3.Error) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED: another connection holds a lock, try again."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and extended codes)
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def default_author() -> str:
    """The author recorded when none is given: the ``author`` setting, else the login name."""
    try:
        from napari_nucleus_ai.core.settings import get_setting

        name = str(get_setting("author") or "").strip()
    except Exception:  # a broken settings file must not stop annotating
        name = ""
    if name:
        return name
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "unknown"


def store_path(location: str | os.PathLike) -> Path:
    """The database file for ``location``: a ``.sqlite``/``.db`` file, or a folder holding one."""
    p = Path(location).expanduser()
    if p.suffix.lower() in (".sqlite", ".sqlite3", ".db"):
        return p
    return p / STORE_NAME


def store_for_data(data_path: str | os.PathLike, project: str | os.PathLike | None = None) -> Path:
    """Where corrections for ``data_path`` live: ``project`` if given, else beside the data."""
    if project:
        return store_path(project)
    return Path(data_path).expanduser().resolve().parent / STORE_NAME


def output_dir(store: str | os.PathLike, kind: str, image_id: str) -> Path:
    """Where outputs of ``kind`` (``reports``, ``models``) for ``image_id`` go.

    Beside the store, one folder per image (named like the training-set export's).
    """
    from napari_nucleus_ai.core.files import slug

    return store_path(store).parent / kind / slug(image_id)


def image_id_for(source: str | os.PathLike, store: str | os.PathLike | None = None) -> str:
    """A stable id for an image file: its path relative to the store's folder when inside it.

    Keeping ids relative lets a project folder (data + store) be moved or shared.
    Anything that is not an existing file (a layer name, a sample) is used as is.
    """
    s = os.fspath(source)
    p = Path(s).expanduser()
    if not p.exists():
        return s
    p = p.resolve()
    if store is not None:
        root = store_path(store).resolve().parent
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.as_posix()


@dataclass(frozen=True)
class Correction:
    """One stored correction, as :meth:`AnnotationStore.set_label` returns it."""

    id: int
    image_id: str
    cell_id: int
    label: str | None
    previous: str | None
    author: str
    time: str
    action: str = "set"


class _Waiters:
    """A cross-process "a writer is waiting for the lock" flag beside the store.

    A writer refused the lock holds a shared ``flock`` on ``<store>-wait`` until it
    gets it; a writer about to begin tests for such holders with a non-blocking
    exclusive ``flock``. The kernel drops the locks of a killed process, so the
    flag never goes stale. The file is created only once writers have contended.
    It is a hint for fairness, never needed for correctness: any failure here is
    ignored.

    Parameters
    ----------
    db : Path
        The store's database file.
    """

    def __init__(self, db: Path):
        self.path = db.with_name(db.name + "-wait")
        self._fd: int | None = None
        self._held = False
        self._closed = False

    def _open(self, create: bool) -> int | None:
        if self._fd is None and fcntl is not None and not self._closed:
            with contextlib.suppress(OSError):
                self._fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
        return self._fd

    def announce(self) -> None:
        """Say this writer is waiting (idempotent)."""
        if self._held or self._open(create=True) is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            self._held = True

    def withdraw(self) -> None:
        """Say this writer no longer waits."""
        if self._held:
            self._held = False
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def others(self) -> bool:
        """True while another writer waits for the lock."""
        if self._held or self._open(create=False) is None:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        self._closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # drops this writer's flock too
            self._fd, self._held = None, False


class AnnotationStore:
    """Durable, multi-process corrections store in one SQLite file.

    Parameters
    ----------
    path : str or path-like
        A ``.sqlite``/``.db`` file, or a folder (beside the data, or a project
        folder) in which ``nucleus-ai-annotations.sqlite`` is used. Created if absent.
    author : str, optional
        Default author for corrections (else the ``author`` setting, else the login).
    timeout : float
        Seconds one read or write waits in all for other processes' locks before
        failing with a one-line :class:`~napari_nucleus_ai.core.errors.InputError`.

    Raises
    ------
    InputError
        The file is not a usable store, WAL mode is impossible there, or the
        lock could not be had within ``timeout`` while creating the schema.
    """

    def __init__(self, path: str | os.PathLike, author: str | None = None, timeout: float = 30.0):
        self.path = store_path(path)
        self.author = author or default_author()
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._waiters = _Waiters(self.path)
        self._host = os.uname().nodename if hasattr(os, "uname") else ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # no busy handler: every wait goes through _retry (fair, bounded, one-line error)
            self._con = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._con.execute("PRAGMA busy_timeout = 0")
            # reading the mode takes no lock; switching to WAL (a new file) needs one
            mode = self._retry(lambda: self._con.execute("PRAGMA journal_mode").fetchone()[0])
            if str(mode).lower() != "wal":
                mode = self._retry(
                    lambda: self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                )
            self._con.execute("PRAGMA synchronous = FULL")
            self._con.execute("PRAGMA foreign_keys = ON")
            if str(mode).lower() == "wal" and self._schema_version() is None:
                with self._write():
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self._con.execute(stmt)
                    self._con.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                        (str(SCHEMA_VERSION),),
                    )
        except sqlite3.DatabaseError as e:
            raise InputError(self.path, f"not a usable annotation store ({e})") from None
        if str(mode).lower() != "wal":
            raise InputError(self.path, f"cannot use WAL mode here (got {mode}); use a local disk")

    def _schema_version(self) -> int | None:
        """The stored schema version, found with a read only; ``None`` when not created yet."""

        def read():
            try:
                row = self._con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e).lower():
                    return None
                raise
            return None if row is None else int(row[0])

        # the last table the schema creates must exist too (a store from before it)
        version = self._retry(read)
        if version is None:
            return None
        tables = self._retry(
            lambda: self._con.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='table' "
                "AND name IN ('corrections', 'images')"
            ).fetchone()[0]
        )
        return version if tables == 2 else None

    # -- plumbing ---------------------------------------------------------
    def _retry(self, attempt: Callable[[], object], what: str = "use the store") -> object:
        """Call ``attempt`` until it is not refused by another process's lock.

        Sleeps a random time between tries (full jitter, doubling up to
        ``_BACKOFF_CAP``) and gives up after ``self.timeout`` seconds in all with a
        one-line :class:`InputError` naming the store file. Other errors pass through.
        """
        deadline = None
        delay = _BACKOFF_FIRST
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as e:
                if not _busy(e):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.timeout
                elif now >= deadline:
                    raise InputError(
                        self.path,
                        f"could not {what} within {self.timeout:g} s: another process "
                        f"kept it locked ({e})",
                    ) from None
                time.sleep(min(random.uniform(0.1 * delay, delay), max(0.0, deadline - now)))
                delay = min(2 * delay, _BACKOFF_CAP)

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, after letting writers that already wait go first."""
        # without this a writer that just committed begins again within microseconds
        # and, holding the lock nearly all the time, wins nearly every race
        step_back = time.monotonic() + _COURTESY
        while self._waiters.others() and time.monotonic() < step_back:
            time.sleep(0.001)

        def attempt():
            try:
                self._con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if _busy(e):
                    self._waiters.announce()
                raise
            self._waiters.withdraw()

        try:
            self._retry(attempt, "write to the store")
        finally:
            self._waiters.withdraw()

    class _Txn:
        def __init__(self, store: AnnotationStore):
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            try:
                self.store._begin()
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._con

        def __exit__(self, exc_type, exc, tb):
            try:
                self.store._con.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()
            return False

    def _write(self) -> AnnotationStore._Txn:
        """One short write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), retried fairly."""
        return AnnotationStore._Txn(self)

    def _query(self, sql: str, args: Iterable = ()) -> list[tuple]:
        args = tuple(args)
        with self._lock:
            # WAL readers do not wait for writers; they may briefly meet a lock (recovery
            # after a crash, a checkpoint), which the same bounded retry absorbs
            return self._retry(lambda: self._con.execute(sql, args).fetchall(), "read the store")

    def close(self) -> None:
        with self._lock:
            self._con.close()
            self._waiters.close()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AnnotationStore({os.fspath(self.path)!r})"

    # -- writing ----------------------------------------------------------
    def set_label(
        self,
        image_id: str,
        cell_id: int,
        label: str | None,
        author: str | None = None,
        *,
        predicted: str | None = None,
        probability: float | None = None,
        uncertainty: float | None = None,
        model: str | None = None,
        action: str = "set",
    ) -> Correction:
        """Record that ``cell_id`` of ``image_id`` is ``label``; return once it is on disk.

        ``label=None`` records a return to the model's prediction (the cell is
        unreviewed again). ``predicted``/``probability``/``uncertainty``/``model``
        keep what the model said, for the history and for retraining.
        """
        return self.set_labels(
            image_id,
            {int(cell_id): label},
            author,
            predictions=None
            if predicted is None and probability is None and uncertainty is None
            else {int(cell_id): (predicted, probability, uncertainty)},
            model=model,
            action=action,
        )[0]

    def set_labels(
        self,
        image_id: str,
        labels: Mapping[int, str | None],
        author: str | None = None,
        *,
        predictions: Mapping[int, tuple] | None = None,
        model: str | None = None,
        action: str = "set",
    ) -> list[Correction]:
        """Record several corrections of one image in one durable transaction.

        ``predictions`` maps a cell to ``(predicted, probability, uncertainty)``.
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        image_id = str(image_id)
        author = str(author or self.author)
        predictions = predictions or {}
        out = []
        t = _now()
        host, pid = self._host, os.getpid()
        # everything but the previous label is prepared outside the transaction: the
        # shorter the write lock is held, the more often other writers find it free
        with self._write() as con:
            for cell, label in labels.items():
                cell = int(cell)
                label = None if label is None else str(label)
                row = con.execute(
                    "SELECT label FROM corrections WHERE image_id=? AND cell_id=? "
                    "ORDER BY id DESC LIMIT 1",
                    (image_id, cell),
                ).fetchone()
                previous = row[0] if row else None
                pred, prob, unc = (tuple(predictions.get(cell, ())) + (None, None, None))[:3]
                cur = con.execute(
                    "INSERT INTO corrections (image_id, cell_id, label, previous, author, time,"
                    " predicted, probability, uncertainty, model, action, host, pid)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        image_id,
                        cell,
                        label,
                        previous,
                        author,
                        t,
                        None if pred is None else str(pred),
                        _float_or_none(prob),
                        _float_or_none(unc),
                        model,
                        action,
                        host,
                        pid,
                    ),
                )
                out.append(
                    Correction(cur.lastrowid, image_id, cell, label, previous, author, t, action)
                )
        return out

    def clear_label(self, image_id: str, cell_id: int, author: str | None = None) -> Correction:
        """Return a cell to its prediction (recorded in the history, nothing is deleted)."""
        return self.set_label(image_id, cell_id, None, author, action="clear")

    def register_image(self, image_id: str, **info) -> None:
        """Remember facts about an image (source file, session folder, model, classes).

        Merged into what is stored, read and written in one transaction.
        """
        with self._write() as con:
            row = con.execute(
                "SELECT info FROM images WHERE image_id=?", (str(image_id),)
            ).fetchone()
            merged = json.loads(row[0]) if row else {}
            merged.update(info)
            con.execute(
                "INSERT OR REPLACE INTO images (image_id, info, time) VALUES (?,?,?)",
                (str(image_id), json.dumps(merged, default=str), _now()),
            )

    # -- reading ----------------------------------------------------------
    def labels(self, image_id: str) -> dict[int, str]:
        """``{cell_id: label}`` for cells whose latest correction gives a label."""
        rows = self._query(
            "SELECT c.cell_id, c.label FROM corrections c JOIN ("
            " SELECT cell_id, MAX(id) AS id FROM corrections WHERE image_id=? GROUP BY cell_id"
            ") last ON c.id = last.id",
            (str(image_id),),
        )
        return {int(cell): label for cell, label in rows if label is not None}

    def latest(self, image_id: str):
        """The latest correction of every reviewed cell, as a DataFrame (one row per cell)."""
        import pandas as pd

        rows = self._query(
            "SELECT c.* FROM corrections c JOIN ("
            " SELECT cell_id, MAX(id) AS id FROM corrections WHERE image_id=? GROUP BY cell_id"
            ") last ON c.id = last.id WHERE c.label IS NOT NULL ORDER BY c.cell_id",
            (str(image_id),),
        )
        return pd.DataFrame(rows, columns=self._columns())

    def history(self, image_id: str | None = None, cell_id: int | None = None):
        """Every correction (oldest first) as a DataFrame, optionally for one image / cell."""
        import pandas as pd

        sql, args = "SELECT * FROM corrections", []
        where = []
        if image_id is not None:
            where.append("image_id=?")
            args.append(str(image_id))
        if cell_id is not None:
            where.append("cell_id=?")
            args.append(int(cell_id))
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._query(sql + " ORDER BY id", args)
        return pd.DataFrame(rows, columns=self._columns())

    def _columns(self) -> list[str]:
        return [r[1] for r in self._query("PRAGMA table_info(corrections)")]

    def images(self) -> list[str]:
        """Every image with corrections or registered facts, sorted."""
        rows = self._query(
            "SELECT image_id FROM images UNION SELECT DISTINCT image_id FROM corrections"
        )
        return sorted(r[0] for r in rows)

    def image_info(self, image_id: str) -> dict | None:
        rows = self._query("SELECT info FROM images WHERE image_id=?", (str(image_id),))
        return json.loads(rows[0][0]) if rows else None

    def count(self, image_id: str | None = None) -> int:
        """Number of stored correction rows (history length)."""
        if image_id is None:
            return int(self._query("SELECT COUNT(*) FROM corrections")[0][0])
        return int(
            self._query("SELECT COUNT(*) FROM corrections WHERE image_id=?", (str(image_id),))[0][0]
        )

    def check(self) -> str:
        """SQLite's integrity check (``"ok"`` when the file is sound)."""
        return str(self._query("PRAGMA integrity_check")[0][0])


def _float_or_none(value) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN -> NULL


class BackgroundWriter:
    """Write corrections on a thread so the UI never waits for the disk.

    ``submit(...)`` queues one :meth:`AnnotationStore.set_label` call and returns
    at once; ``on_saved(correction, token)`` is called from the writer thread
    once the correction is durable (``on_error(exc, token)`` if it failed). The
    UI shows a correction as *saved* only in ``on_saved``.

    Parameters
    ----------
    store : AnnotationStore
    on_saved, on_error : callable, optional
    """

    def __init__(
        self,
        store: AnnotationStore,
        on_saved: Callable[[Correction, object], None] | None = None,
        on_error: Callable[[BaseException, object], None] | None = None,
    ):
        self.store = store
        self.on_saved = on_saved
        self.on_error = on_error
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="annotation-writer", daemon=True)
        self._thread.start()

    def submit(self, image_id: str, cell_id: int, label: str | None, token=None, **kwargs) -> None:
        with self._cv:
            self._pending += 1
        self._queue.put((image_id, cell_id, label, token, kwargs, time.perf_counter()))

    @property
    def pending(self) -> int:
        """Corrections queued but not yet durable."""
        with self._cv:
            return self._pending

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued correction is durable; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the queue and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            image_id, cell_id, label, token, kwargs, _t0 = item
            try:
                corr = self.store.set_label(image_id, cell_id, label, **kwargs)
            except BaseException as e:  # reported to the UI, the thread keeps serving
                if self.on_error is not None:
                    self.on_error(e, token)
            else:
                if self.on_saved is not None:
                    # a UI callback failure must not stop saving
                    with contextlib.suppress(Exception):
                        self.on_saved(corr, token)
            finally:
                with self._cv:
                    self._pending -= 1
                    self._cv.notify_all()
