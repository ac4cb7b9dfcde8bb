"""Plugin settings, stored as JSON in the user's config folder.

Settings are few and plain: the compute device and the default author name for
corrections. ``NAPARI_NUCLEUS_AI_<KEY>`` environment variables override the file
(e.g. ``NAPARI_NUCLEUS_AI_DEVICE=cpu``), which is how CI and scripts pin them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {"device": "auto", "author": ""}


def config_dir() -> Path:
    """Folder for the settings file (``NAPARI_NUCLEUS_AI_CONFIG_DIR`` overrides it)."""
    env = os.environ.get("NAPARI_NUCLEUS_AI_CONFIG_DIR")
    if env:
        return Path(env)
    if os.name == "nt":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "napari-nucleus-ai"


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load_settings() -> dict[str, Any]:
    """All settings: defaults, then the file, then environment overrides."""
    values = dict(DEFAULTS)
    try:
        stored = json.loads(settings_path().read_text())
        if isinstance(stored, dict):
            values.update({k: v for k, v in stored.items() if k in DEFAULTS})
    except (OSError, ValueError):
        pass  # a missing or broken settings file means defaults
    for key in DEFAULTS:
        env = os.environ.get(f"NAPARI_NUCLEUS_AI_{key.upper()}")
        if env:
            values[key] = env
    return values


def get_setting(key: str) -> Any:
    return load_settings()[key]


def set_setting(key: str, value: Any) -> None:
    """Store one setting (atomically; the file is never left half-written)."""
    from napari_nucleus_ai.core.files import atomic_write

    if key not in DEFAULTS:
        raise KeyError(f"unknown setting {key!r}; known: {sorted(DEFAULTS)}")
    try:
        stored = json.loads(settings_path().read_text())
        if not isinstance(stored, dict):
            stored = {}
    except (OSError, ValueError):
        stored = {}
    stored[key] = value
    with atomic_write(settings_path(), "w") as fh:
        json.dump(stored, fh, indent=2)
