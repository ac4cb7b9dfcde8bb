"""Export reviewed cells as a training set: class folders of crops or localization subsets.

Qt-free. The layout is the one ``napari-nucleus-ai train DATA`` reads
(:func:`napari_nucleus_ai.classify.trainset.load_class_folders`)::

    OUT/<class>/<image>_cell<id>.png     image crops (TIFF for non-8-bit data)
    OUT/<class>/<image>_cell<id>.csv     or one nucleus's localizations (ThunderSTORM CSV)
    OUT/_manifest.csv                    file, class, image, cell, predicted, reviewed

By default only reviewed cells (their latest correction) are exported;
``include_predicted=True`` adds unreviewed cells with the model's class.
``unidentified`` is never a training class.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.files import slug
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.framing import default_window


@dataclass
class ExportItem:
    """One image (or STORM field) to export cells from.

    Attributes
    ----------
    image_id : str
    table : DataFrame
        Cell table (``label``, centroids, bboxes in physical units, ``class``...).
    corrections : dict
        ``{cell: label}`` (e.g. ``AnnotationStore.labels(image_id)``).
    image : array, optional
        ``(Y, X)`` or ``(Y, X, C)`` pixels for crops.
    labels : array, optional
        Label image; needed with ``localizations`` to assign them to cells.
    localizations : DataFrame, optional
        ``x_nm, y_nm, ...`` (the normalised localization table) for STORM nuclei.
    scale, translate : sequence of float
        Physical pixel size / offset of ``image`` and ``labels`` (``y, x``).
    """

    image_id: str
    table: pd.DataFrame
    corrections: dict = field(default_factory=dict)
    image: np.ndarray | None = None
    labels: np.ndarray | None = None
    localizations: pd.DataFrame | None = None
    scale: Sequence[float] = (1.0, 1.0)
    translate: Sequence[float] = (0.0, 0.0)


def _safe_class(name: str) -> str:
    safe = re.sub(r'[\\/:*?"<>|]+', "_", str(name)).strip(" .")
    if not safe:
        raise InputError(None, f"class name {name!r} cannot be a folder name")
    return safe


def selected_cells(
    item: ExportItem,
    include_predicted: bool = False,
    exclude: Iterable[str] = (CLASS_UNIDENTIFIED,),
) -> pd.DataFrame:
    """The cells to export with columns ``label, class, model_class, reviewed``."""
    from napari_nucleus_ai.review.queue import apply_corrections

    t = apply_corrections(item.table, item.corrections)
    keep = t["reviewed"] | (include_predicted & t["class"].notna())
    t = t[keep & t["class"].notna() & ~t["class"].isin(list(exclude))]
    return t


def crop(image: np.ndarray, centre_px: tuple[float, float], side_px: int) -> np.ndarray:
    """A ``side_px`` square around ``centre_px`` (y, x), edge-padded at the image border."""
    side_px = max(int(round(side_px)), 2)
    y0 = int(round(centre_px[0] - side_px / 2))
    x0 = int(round(centre_px[1] - side_px / 2))
    h, w = image.shape[:2]
    ys = np.clip(np.arange(y0, y0 + side_px), 0, h - 1)
    xs = np.clip(np.arange(x0, x0 + side_px), 0, w - 1)
    return np.asarray(image[ys[:, None], xs[None, :]])


def _write_crop(arr: np.ndarray, path_stem: Path) -> Path:
    from napari_nucleus_ai.core.files import atomic_path

    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[-1] in (3, 4)):
        from PIL import Image

        path = path_stem.with_suffix(".png")
        with atomic_path(path) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
    else:
        import tifffile

        path = path_stem.with_suffix(".tif")
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, arr)
    return path


def export_training_set(
    out: str | os.PathLike,
    items: Sequence[ExportItem],
    *,
    include_predicted: bool = False,
    exclude: Iterable[str] = (CLASS_UNIDENTIFIED,),
    window: float | None = None,
):
    """Write the class-folder training set (generator: yields Progress, returns a summary).

    Parameters
    ----------
    out : path
        Output folder (created; existing files of the same cells are replaced).
    items : sequence of ExportItem
    include_predicted : bool
        Also export unreviewed cells under the model's class.
    exclude : classes never exported (default ``unidentified``).
    window : float, optional
        Crop side in the table's physical units (default :func:`napari_nucleus_ai.models.framing.default_window`).

    Returns
    -------
    dict
        ``{"out": Path, "counts": {class: n}, "files": n, "kind": "crops"|"localizations"}``.
    """
    out = Path(out)
    exclude = set(exclude) | {CLASS_UNIDENTIFIED}
    chosen = [(it, selected_cells(it, include_predicted, exclude)) for it in items]
    total = sum(len(c) for _, c in chosen)
    if total == 0:
        raise InputError(out, "no reviewed cells to export (review some cells first)")
    kinds = {"localizations" if it.localizations is not None else "crops" for it, _ in chosen}
    if len(kinds) > 1:
        raise InputError(out, "cannot mix STORM localizations and image crops in one training set")
    kind = kinds.pop()
    manifest, done = [], 0
    yield Progress(0, total, "exporting cells")
    for item, cells in chosen:
        if cells.empty:
            continue
        stem = slug(item.image_id)
        sy, sx = (float(v) for v in list(item.scale)[-2:])
        ty, tx = (float(v) for v in list(item.translate)[-2:])
        if kind == "localizations":
            files = _export_localizations(out, item, cells, stem, (sy, sx), (ty, tx))
        else:
            if item.image is None:
                raise InputError(None, f"{item.image_id}: no image to crop cells from")
            side = window or default_window(item.table)
            img = np.asarray(item.image)
            files = {}
            for row in cells.itertuples(index=False):
                cy = (row.centroid_y - ty) / sy
                cx = (row.centroid_x - tx) / sx
                arr = crop(img, (cy, cx), side / sy)
                folder = out / _safe_class(row[cells.columns.get_loc("class")])
                folder.mkdir(parents=True, exist_ok=True)
                files[int(row.label)] = _write_crop(arr, folder / f"{stem}_cell{int(row.label)}")
        for row in cells.itertuples(index=False):
            path = files.get(int(row.label))
            if path is None:
                continue
            manifest.append(
                {
                    "file": path.relative_to(out).as_posix(),
                    "class": row[cells.columns.get_loc("class")],
                    "image": item.image_id,
                    "cell": int(row.label),
                    "predicted": row.model_class,
                    "reviewed": bool(row.reviewed),
                }
            )
        done += len(cells)
        yield Progress(done, total, f"exported {done} cells")
    man = pd.DataFrame(
        manifest, columns=["file", "class", "image", "cell", "predicted", "reviewed"]
    )
    from napari_nucleus_ai.core.files import atomic_write

    with atomic_write(out / "_manifest.csv", "w", newline="") as fh:
        man.to_csv(fh, index=False)
    counts = man["class"].value_counts().to_dict()
    return {
        "out": out,
        "counts": {str(k): int(v) for k, v in counts.items()},
        "files": len(man),
        "kind": kind,
    }


def _export_localizations(out, item, cells, stem, scale, translate) -> dict[int, Path]:
    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv

    if item.labels is None:
        raise InputError(None, f"{item.image_id}: localizations need the nuclei label image")
    locs = item.localizations
    lab = np.asarray(item.labels)
    if lab.ndim != 2:
        raise InputError(None, f"{item.image_id}: STORM nuclei labels must be 2D")
    iy = np.floor((locs["y_nm"].to_numpy(float) - translate[0]) / scale[0]).astype(np.int64)
    ix = np.floor((locs["x_nm"].to_numpy(float) - translate[1]) / scale[1]).astype(np.int64)
    inside = (iy >= 0) & (iy < lab.shape[0]) & (ix >= 0) & (ix < lab.shape[1])
    owner = np.zeros(len(locs), np.int64)
    owner[inside] = lab[iy[inside], ix[inside]]
    files = {}
    for row in cells.itertuples(index=False):
        sub = locs[owner == int(row.label)]
        if sub.empty:
            continue
        folder = out / _safe_class(row[cells.columns.get_loc("class")])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}_cell{int(row.label)}.csv"
        write_thunderstorm_csv(sub, path)
        files[int(row.label)] = path
    return files


def items_from_store(store, image_ids: Sequence[str] | None = None) -> list[ExportItem]:
    """Export items for images reviewed in ``store`` (saved sessions; pixels from their source).

    Image crops come from the session's source image (read again from disk);
    STORM nuclei from its localization file.
    """
    from napari_nucleus_ai.review.session import load_session

    ids = (
        list(image_ids)
        if image_ids
        else [i for i in store.images() if (store.image_info(i) or {}).get("session")]
    )
    if not ids:
        raise InputError(store.path, "no reviewed images with a saved session in this store")
    items = []
    for image_id in ids:
        s = load_session(store, image_id)
        if s is None:
            raise InputError(store.path, f"no saved session for image {image_id!r}")
        item = ExportItem(
            image_id,
            s.table,
            s.corrections,
            labels=s.labels,
            scale=list(s.scale)[-2:],
            translate=list(s.translate)[-2:],
        )
        src = s.info.get("source")
        if src:
            p = Path(src) if Path(src).is_absolute() else store.path.parent / src
            from napari_nucleus_ai import localizations

            if localizations.sniff(p):
                item.localizations = localizations.read_localizations(p).data
            else:
                from napari_nucleus_ai.images import read_image

                item.image = np.asarray(read_image(p).levels[0])
        items.append(item)
    return items
