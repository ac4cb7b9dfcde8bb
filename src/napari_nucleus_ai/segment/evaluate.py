"""Score a detection against boxes (Pascal VOC): recall, precision and splits.

The measure the BCCD benchmark uses (see ``benchmarks/bench_segment.py``):

- a box is *found* when some object's centroid lies inside it (recall);
- an object is *right* when its centroid lies inside some target box; objects
  whose centroid lies only inside an *ignore* box are not counted (precision);
- a found box is *split* when the centroids of two or more objects lie inside
  it and in no other target box (one cell cut into pieces).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError


def read_voc_boxes(
    path: str | os.PathLike, names=("WBC",)
) -> list[tuple[float, float, float, float]]:
    """Boxes ``(xmin, ymin, xmax, ymax)`` of the objects called ``names`` in a VOC XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise InputError(path, f"not a readable Pascal VOC file ({e})") from None
    boxes = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip() not in names:
            continue
        bb = obj.find("bndbox")
        boxes.append(tuple(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes


def centroids_of(labels: np.ndarray) -> np.ndarray:
    """(N, 2) ``(y, x)`` centroids of labels 1..max (absent ids omitted)."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros((0, 2))
    return np.asarray(ndi.center_of_mass(labels > 0, labels, ids), float).reshape(-1, 2)


def _inside(c, box, margin=0.0) -> bool:
    y, x = c
    x0, y0, x1, y1 = box
    return x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin


@dataclass
class Score:
    """Counts over one or many images; add them with ``+``."""

    boxes: int = 0
    found: int = 0
    objects: int = 0
    right: int = 0
    split: int = 0
    missed: list = field(default_factory=list)
    wrong: list = field(default_factory=list)

    def __add__(self, other: Score) -> Score:
        return Score(
            self.boxes + other.boxes,
            self.found + other.found,
            self.objects + other.objects,
            self.right + other.right,
            self.split + other.split,
            self.missed + other.missed,
            self.wrong + other.wrong,
        )

    @property
    def recall(self) -> float:
        return self.found / self.boxes if self.boxes else 1.0

    @property
    def precision(self) -> float:
        return self.right / self.objects if self.objects else 1.0

    @property
    def split_rate(self) -> float:
        return self.split / self.found if self.found else 0.0

    def summary(self) -> str:
        return (
            f"recall {self.recall:.3f} ({self.found}/{self.boxes})  "
            f"precision {self.precision:.3f} ({self.right}/{self.objects})  "
            f"split {self.split_rate:.3f} ({self.split}/{self.found})"
        )


def score_centroids(centroids, boxes, ignore=(), tag=None) -> Score:
    """Score ``(y, x)`` centroids against target ``boxes`` and ``ignore`` boxes."""
    centroids = np.asarray(centroids, float).reshape(-1, 2)
    s = Score(boxes=len(boxes))
    inside = np.array([[_inside(c, b) for b in boxes] for c in centroids], bool).reshape(
        len(centroids), len(boxes)
    )
    for j, b in enumerate(boxes):
        if inside[:, j].any():
            s.found += 1
            only_here = inside[:, j] & (inside.sum(axis=1) == 1)
            if only_here.sum() >= 2:
                s.split += 1
        else:
            s.missed.append((tag, b))
    for i, c in enumerate(centroids):
        if inside[i].any():
            s.objects += 1
            s.right += 1
        elif any(_inside(c, b) for b in ignore):
            continue
        else:
            s.objects += 1
            s.wrong.append((tag, tuple(np.round(c, 1))))
    return s
