"""Reading options a whole run shares: the camera pixel and a column mapping.

The command line's ``--camera-pixel NM`` and ``--columns x=COL,y=COL,...`` apply to
every localization file a command reads, including files read deep inside
segmentation, training, prediction and Dask batch workers that never see the
arguments. :func:`reading_options` makes them the defaults of
:func:`~napari_nucleus_ai.localizations.read_localizations` for the duration of a
block; they live in one environment variable so worker processes started inside
the block inherit them. Arguments given to ``read_localizations`` always win.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from napari_nucleus_ai.core.errors import InputError

#: the environment variable holding the defaults (JSON)
ENV = "NAPARI_NUCLEUS_AI_LOCALIZATION_OPTIONS"

#: ``--columns`` keys -> standard columns of the normalised table
COLUMN_KEYS = {
    "x": "x_nm",
    "y": "y_nm",
    "z": "z_nm",
    "frame": "frame",
    "sigma": "precision_nm",
    "precision": "precision_nm",
    "photons": "photons",
    "channel": "channel",
}


def parse_columns(text: str | None, flag: str = "--columns") -> dict | None:
    """``"x=X,y=Y,frame=F"`` -> ``{"x_nm": "X", "y_nm": "Y", "frame": "F"}``.

    Column names may contain spaces and brackets (``x=x [px]``); ``x`` and ``y`` are
    required. Errors name ``flag``.
    """
    if text is None or not str(text).strip():
        return None
    mapping = {}
    for item in str(text).split(","):
        if not item.strip():
            continue
        key, sep, col = item.partition("=")
        key = key.strip().lower()
        if not sep or not col.strip():
            raise InputError(None, f"{flag} needs KEY=COLUMN items, got {item.strip()!r}")
        if key not in COLUMN_KEYS:
            known = ", ".join(COLUMN_KEYS)
            raise InputError(None, f"{flag}: unknown key {key!r} (known: {known})")
        mapping[COLUMN_KEYS[key]] = col.strip()
    missing = [k for k in ("x", "y") if COLUMN_KEYS[k] not in mapping]
    if missing:
        raise InputError(None, f"{flag} must name the {' and '.join(missing)} column(s)")
    return mapping


def reading_defaults() -> dict:
    """The defaults in force: ``{"pixel_size_nm": float, "mapping": dict}`` (keys optional)."""
    text = os.environ.get(ENV)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@contextmanager
def reading_options(camera_pixel_nm: float | None = None, mapping: dict | None = None):
    """Make ``camera_pixel_nm`` / ``mapping`` the reading defaults inside the block."""
    value = {}
    if camera_pixel_nm is not None:
        if not camera_pixel_nm > 0:
            raise InputError(
                None, f"--camera-pixel must be a positive size in nm, got {camera_pixel_nm}"
            )
        value["pixel_size_nm"] = float(camera_pixel_nm)
    if mapping:
        value["mapping"] = dict(mapping)
    if not value:
        yield {}
        return
    old = os.environ.get(ENV)
    os.environ[ENV] = json.dumps(value)
    try:
        yield value
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old
