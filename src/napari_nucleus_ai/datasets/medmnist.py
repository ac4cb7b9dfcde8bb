"""BloodMNIST (MedMNIST v2): PBC crops resized to 28-224 px, in one ``.npz``.

``bloodmnist.npz`` (and ``bloodmnist_64/_128/_224.npz`` of MedMNIST+) holds
``train_images`` (N, H, W, 3) uint8 and ``train_labels`` (N, 1), and the same for
``val`` and ``test``; labels 0-7 are basophil, eosinophil, erythroblast,
immature granulocyte, lymphocyte, monocyte, neutrophil, platelet. Each image is
written as a PNG; ``split="test"`` imports one split (``_files.csv`` records the
split of every file otherwise). Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.datasets.builder import Item, Plan

INFO = {
    "dataset": "BloodMNIST (MedMNIST v2)",
    "citation": "Yang J, Shi R, Wei D, et al. MedMNIST v2 - A large-scale lightweight benchmark for "
    "2D and 3D biomedical image classification. Sci Data 10, 41 (2023), "
    "doi:10.1038/s41597-022-01721-8; images from Acevedo et al. 2020 (PBC)",
    "licence": "CC BY 4.0",
    "url": "https://medmnist.com/ (zenodo.org/records/10519652)",
}
SPLITS = ("train", "val", "test")


def _find_npz(source: Path) -> Path:
    if source.is_file():
        return source
    if source.is_dir():
        found = sorted(source.glob("bloodmnist*.npz")) or sorted(source.glob("*.npz"))
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(p.name for p in found)
            raise InputError(source, f"several .npz files ({names}); give the one to import")
    raise InputError(
        source, "no such .npz file" if not source.exists() else "no .npz file in folder"
    )


def _why(e: Exception) -> str:
    """A whole first sentence of a numpy error, never cut mid-word."""
    text = " ".join(str(e).split())
    if "pickled" in text:
        return "it holds pickled Python objects, which are not loaded: they can run code"
    first = text.split(". ")[0].rstrip(".")
    if len(first) > 160:
        first = first[:160].rsplit(" ", 1)[0] + " ..."
    return first or type(e).__name__


def plan(source, *, vocab=None, split: str | None = None) -> Plan:
    """Read a MedMNIST ``.npz`` (see the module docstring)."""
    path = _find_npz(Path(source))
    if split is not None and split.lower() not in SPLITS:
        raise InputError(None, f"BloodMNIST split must be one of {', '.join(SPLITS)}")
    try:
        npz = np.load(path, allow_pickle=False)
        keys = set(npz.files)
    except Exception as e:
        raise InputError(path, f"not a readable MedMNIST .npz ({_why(e)})") from None
    wanted = [split.lower()] if split else [s for s in SPLITS if f"{s}_images" in keys]
    if not wanted:
        raise InputError(
            path,
            f"no MedMNIST arrays (expected train_images/train_labels...; found {sorted(keys)})",
        )
    result = Plan("bloodmnist", "bloodmnist", path, dict(INFO), notes={"split": split or "all"})
    stem = path.stem
    for s in wanted:
        if f"{s}_images" not in keys or f"{s}_labels" not in keys:
            raise InputError(path, f"missing {s}_images or {s}_labels")
        try:
            images = npz[f"{s}_images"]
            labels = np.asarray(npz[f"{s}_labels"]).reshape(-1)
        except Exception as e:
            raise InputError(path, f"cannot read {s} arrays ({_why(e)})") from None
        if images.ndim not in (3, 4) or len(images) != len(labels):
            raise InputError(
                path, f"{s}_images shape {images.shape} does not match {s}_labels ({len(labels)})"
            )
        for i in range(len(images)):
            result.items.append(
                Item(
                    label=str(int(labels[i])),
                    name=f"{stem}_{s}_{i:05d}.png",
                    load=(lambda a=images, j=i: a[j]),
                    meta={"source": f"{path.name}:{s}_images[{i}]", "split": s, "index": i},
                )
            )
    result.notes["image_shape"] = list(images.shape[1:])
    return result
