"""Save and restore an image's review session: segmentation, predictions and corrections.

Qt-free. When review of an image starts, its label image and cell table (with
the model's predictions) are saved beside the corrections store::

    <store folder>/nucleus-ai-sessions/<image>-<hash>/labels.tif
                                                     /cells.csv
                                                     /session.json

and the store's ``images`` registry points at that folder. Reopening the image
(in the review dock, or with :func:`load_session`) brings back the labels, the
predictions and every correction, the latest one winning.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_nucleus_ai.cells import read_cell_table, write_cell_table
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.review.store import AnnotationStore

SESSIONS = "nucleus-ai-sessions"


def session_dir(store: AnnotationStore, image_id: str) -> Path:
    """The folder holding ``image_id``'s session (a readable name plus a short hash)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(image_id)).name)[:60] or "image"
    digest = hashlib.sha1(str(image_id).encode("utf-8")).hexdigest()[:10]
    return store.path.parent / SESSIONS / f"{base}-{digest}"


@dataclass
class Session:
    """What :func:`load_session` returns."""

    image_id: str
    labels: np.ndarray
    table: pd.DataFrame
    corrections: dict[int, str]
    info: dict = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, ...]:
        return tuple(self.info.get("scale") or (1.0,) * self.labels.ndim)

    @property
    def translate(self) -> tuple[float, ...]:
        return tuple(self.info.get("translate") or (0.0,) * self.labels.ndim)


def save_session(
    store: AnnotationStore,
    image_id: str,
    labels: np.ndarray,
    table: pd.DataFrame,
    *,
    scale=None,
    translate=None,
    unit: str = "px",
    classes=None,
    model: str | None = None,
    source: str | None = None,
) -> Path:
    """Write the labels (TIFF) and the cell table (CSV) and register them in the store.

    The files are written atomically, the registry entry last, so a crash never
    leaves a session that points at half-written files.
    """
    import tifffile

    from napari_nucleus_ai.core.files import atomic_path

    labels = np.asarray(labels)
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            None, f"labels must be a 2D/3D integer image, got {labels.dtype} {labels.shape}"
        )
    folder = session_dir(store, image_id)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "labels.tif") as tmp:
        tifffile.imwrite(tmp, labels, compression="zlib")
    write_cell_table(
        table.drop(columns=["reviewed", "predicted"], errors="ignore"), folder / "cells.csv"
    )
    info = {
        "session": folder.relative_to(store.path.parent).as_posix(),
        "scale": [float(s) for s in (scale if scale is not None else [1.0] * labels.ndim)],
        "translate": [
            float(t) for t in (translate if translate is not None else [0.0] * labels.ndim)
        ],
        "unit": unit,
        "classes": list(classes) if classes is not None else None,
        "model": model,
        "source": source,
    }
    from napari_nucleus_ai.core.files import atomic_write

    with atomic_write(folder / "session.json", "w") as fh:
        json.dump({"image_id": str(image_id), **info}, fh, indent=2)
    store.register_image(str(image_id), **info)
    return folder


def has_session(store: AnnotationStore, image_id: str) -> bool:
    info = store.image_info(str(image_id)) or {}
    return (
        bool(info.get("session")) and (store.path.parent / info["session"] / "cells.csv").exists()
    )


def load_session(store: AnnotationStore, image_id: str) -> Session | None:
    """The saved labels, predictions and latest corrections of ``image_id`` (``None`` if never saved)."""
    import tifffile

    info = store.image_info(str(image_id)) or {}
    if not info.get("session"):
        return None
    folder = store.path.parent / info["session"]
    try:
        labels = tifffile.imread(folder / "labels.tif")
    except FileNotFoundError:
        raise InputError(folder / "labels.tif", "session labels are missing") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(folder / "labels.tif", f"unreadable session labels ({e})") from None
    table = read_cell_table(folder / "cells.csv")
    return Session(str(image_id), labels, table, store.labels(str(image_id)), info)


def find_session_for_source(store: AnnotationStore, source: str | os.PathLike) -> str | None:
    """The image id whose session was saved from file ``source`` (``None`` if none)."""
    want = Path(source).expanduser()
    want = want.resolve() if want.exists() else want
    for image_id in store.images():
        info = store.image_info(image_id) or {}
        src = info.get("source")
        if not src or not info.get("session"):
            continue
        p = Path(src)
        if not p.is_absolute():
            p = store.path.parent / p
        if (p.resolve() if p.exists() else p) == want:
            return image_id
    return None
