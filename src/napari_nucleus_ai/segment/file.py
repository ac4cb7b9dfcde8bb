"""One file in, labels and a cell table out: the per-file segmentation that ``segment`` and ``batch`` share."""

from __future__ import annotations

from napari_nucleus_ai.core.errors import InputError


def segment_file(
    path,
    method: str,
    out_dir,
    pixel_size_um=None,
    pixel_size_nm=100.0,
    tile=None,
    params=None,
    on_progress=None,
):
    """Segment one file and write ``<stem>_labels.tif`` + ``<stem>_cells.csv``; return both paths."""
    from pathlib import Path

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.segment.run import segment
    from napari_nucleus_ai.segment.writers import write_labels_tif

    params = dict(params or {})
    path = Path(path)
    stem = path.stem
    if method == "storm-nuclei":
        from napari_nucleus_ai.localizations import read_localizations

        table = read_localizations(path)
        result = run_sync(
            segment(table, "storm-nuclei", source=str(path), pixel_size_nm=pixel_size_nm, **params),
            on_progress,
        )
    else:
        from napari_nucleus_ai.core.errors import InputError
        from napari_nucleus_ai.images import read_image

        img = read_image(path)
        px = pixel_size_um or (img.pixel_size_um[0] if img.pixel_size_um else None)
        data = img.levels[0]
        axes = img.axes
        if method == "wbc" and not img.rgb:
            raise InputError(path, f"wbc needs a colour smear image; this one is {axes}")
        if not img.rgb and method != "wbc":
            data, axes = grey_plane(data, axes, path)
        try:
            result = run_sync(
                segment(
                    data,
                    method,
                    pixel_size_um=px,
                    rgb=img.rgb,
                    tile=tile,
                    source=str(path),
                    **params,
                ),
                on_progress,
            )
        except InputError as e:
            raise InputError(path, e.problem) from None
    out_dir = Path(out_dir)
    labels_path = out_dir / f"{stem}_labels.tif"
    cells_path = out_dir / f"{stem}_cells.csv"
    write_labels_tif(labels_path, result.labels, result.scale, result.unit)
    from napari_nucleus_ai.cells import write_cell_table

    write_cell_table(result.table, cells_path)
    if method == "storm-nuclei":
        storm = result.extra["storm"]
        loc_path = out_dir / f"{stem}_localizations.csv"
        from napari_nucleus_ai.core.files import atomic_write

        with atomic_write(loc_path, "w", newline="") as fh:
            storm.localizations.to_csv(fh, index=False)
    return result, labels_path, cells_path


def grey_plane(data, axes: str, path):
    """A (Y, X) or (T, Y, X) view of a fluorescence image (first channel, first z)."""

    keep = []
    index = []
    for a in axes:
        if a in "YX" or (a == "T"):
            index.append(slice(None))
            keep.append(a)
        elif a in "CZI":
            index.append(0)
        else:
            raise InputError(path, f"cannot segment axes {axes}")
    return data[tuple(index)], "".join(keep)
