"""Data loading for the trust prototypes: PBC crops and BCCD white-cell crops.

Nothing is copied: files are read in place from ``../shared/data/smear`` beside the checkout (or $TRUST_DATA).
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("TRUST_DATA", Path(__file__).parents[3] / "shared" / "data" / "smear"))
CLASSES = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature granulocyte",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)
NORMAL5 = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")


def read_rgb(path) -> np.ndarray:
    """RGB image as float32 ``(H, W, 3)`` in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def load_pbc(root=None):
    """PBC crops: ``(images list, labels (N,), names list)``; labels index :data:`CLASSES`."""
    root = Path(root or DATA / "pbc")
    imgs, ys, names = [], [], []
    for k, c in enumerate(CLASSES):
        for p in sorted((root / c).glob("*.png")):
            imgs.append(read_rgb(p))
            ys.append(k)
            names.append(f"{c}/{p.name}")
    return imgs, np.asarray(ys), names


def bccd_boxes(root=None) -> list[tuple[str, tuple[int, int, int, int]]]:
    """WBC boxes of BCCD (VOC XML plus ``wbc_extra.csv`` kind=wbc): ``[(image, (x0,y0,x1,y1))]``.

    Boxes touching the image border by less than 4 px margin are kept; 'ignore' boxes are not.
    """
    root = Path(root or DATA / "bccd")
    out = []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        t = ET.parse(xml).getroot()
        name = Path(t.findtext("filename")).stem
        for o in t.iter("object"):
            if o.findtext("name") != "WBC":
                continue
            b = o.find("bndbox")
            box = tuple(int(float(b.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            out.append((name, box))
    with open(root / "wbc_extra.csv") as f:
        for r in csv.DictReader(f):
            if r["kind"] == "wbc":
                out.append(
                    (r["image"], tuple(int(float(r[k])) for k in ("xmin", "ymin", "xmax", "ymax")))
                )
    return out


def crop_box(img: np.ndarray, box, margin: float = 0.15) -> np.ndarray:
    """Square crop around ``box`` (x0, y0, x1, y1) enlarged by ``margin`` of its side per side;
    parts outside the image are filled by edge reflection."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    h = int(round(s / 2))
    pad = h + 2
    p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    yi, xi = int(round(cy)) + pad, int(round(cx)) + pad
    return p[yi - h : yi + h, xi - h : xi + h]


def load_bccd(margin: float = 0.15, root=None, min_side: int = 40):
    """BCCD white-cell crops: ``(images, ids)``; ids are ``image:x0,y0,x1,y1``.

    Boxes cut by the image border (within 2 px of it) are skipped: half cells.
    """
    root = Path(root or DATA / "bccd")
    cache: dict = {}
    imgs, ids = [], []
    for name, box in bccd_boxes(root):
        if name not in cache:
            cache[name] = read_rgb(root / "JPEGImages" / f"{name}.jpg")
        im = cache[name]
        x0, y0, x1, y1 = box
        if min(x1 - x0, y1 - y0) < min_side:
            continue
        if x0 <= 2 or y0 <= 2 or x1 >= im.shape[1] - 2 or y1 >= im.shape[0] - 2:
            continue
        imgs.append(crop_box(im, box, margin))
        ids.append(f"{name}:{x0},{y0},{x1},{y1}")
    return imgs, ids
