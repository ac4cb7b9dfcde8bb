"""``--out`` checked before the work starts: the folder exists and is writable, the extension fits."""

from __future__ import annotations

import os
from pathlib import Path

from napari_nucleus_ai.core.errors import UsageError


def _writable_parent(out: Path, option: str) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise UsageError(f"{option} {out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"{option} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {out}: folder {parent} is not writable")


def check_out_file(path, suffixes: tuple[str, ...], what: str, option: str = "--out") -> Path:
    """``path`` as a :class:`Path` if a ``what`` file can be written there, else :class:`UsageError`.

    ``suffixes`` are the extensions of the format written (lower case, with the dot).
    """
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{option} {out}: is a folder; give a {what} file name ({suffixes[0]})")
    if out.suffix.lower() not in suffixes:
        raise UsageError(
            f"{option} {out}: writes a {what}; use a name ending in {' or '.join(suffixes)}"
        )
    _writable_parent(out, option)
    if out.exists() and not os.access(out, os.W_OK):
        raise UsageError(f"{option} {out}: exists and is not writable")
    return out


def check_out_dir(path, option: str = "--out") -> Path:
    """``path`` as a :class:`Path` if it is (or can be created as) a writable folder."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{option} {out}: is a file, not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {out}: folder is not writable")
        return out
    # created by the command: its parent must be an existing, writable folder
    _writable_parent(out, option)
    return out
