"""Small helpers shared by the core: atomic writes, path handling."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError


def _default_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give (0666 less the umask).

    ``tempfile.mkstemp`` creates files readable by their owner only; reports and
    exports must stay readable by the rest of a lab group as usual.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    Nothing half-written is ever left under ``path``: if the block raises, the
    temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for libraries that write by file name.

    On success the temporary file is renamed over ``path``; on error it is removed.
    The temporary name keeps ``path``'s suffix so writers that sniff it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_readable(path: str | os.PathLike) -> None:
    """Raise a one-line :class:`InputError` if ``path`` is missing, a folder or empty."""
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.isdir(path):
        raise InputError(path, "is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise InputError(path, "file is empty")


def slug(name: str) -> str:
    """A short file-name-safe form of ``name`` (an image id, a path) that stays unique.

    The stem's safe characters (at most 40) and 6 hex digits of its SHA-1, so two
    images whose names differ only in unsafe characters never share a folder.
    """
    import hashlib
    import re

    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem)[:40] or "image"
    return f"{base}-{hashlib.sha1(str(name).encode()).hexdigest()[:6]}"


def cache_dir(*parts: str, create: bool = False) -> Path:
    """The plugin's cache folder (``NAPARI_NUCLEUS_AI_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/napari-nucleus-ai``, else ``~/.cache/napari-nucleus-ai``), or a
    folder ``parts`` below it; made when ``create``."""
    env = os.environ.get("NAPARI_NUCLEUS_AI_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = (base if env else base / "napari-nucleus-ai").joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
