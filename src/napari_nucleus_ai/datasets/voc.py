"""Pascal-VOC box sets (BCCD and alike): square crops cut around the boxes.

Layout (BCCD, Shenggan/BCCD_Dataset)::

    Annotations/BloodImage_00000.xml    <object><name>WBC</name><bndbox>xmin...
    JPEGImages/BloodImage_00000.jpg
    ImageSets/Main/trainval.txt         (optional; image_set= selects one list)

Every box whose ``name`` is in ``objects`` (default ``WBC``) becomes one crop of
``size`` x ``size`` pixels centred on the box, so the magnification stays that of
the slide (``fit_box=True`` instead cuts a square just around a larger box and
scales it to ``size``). Parts of the window outside the field are filled with
the field's median colour. The class is the box name, or, with ``labels_csv``
(e.g. BCCD's ``labels.csv``: ``Image,Category``), the cell type given for the
field; fields whose entry names several types are skipped as ambiguous.
``extra_boxes`` adds boxes from a CSV ``image,xmin,ymin,xmax,ymax,kind``
(``kind`` ``wbc``; ``ignore`` rows are not cut), such as ``wbc_extra.csv``
in this project's shared BCCD data.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.datasets.builder import Item, Plan, Skip, read_pixels

INFO = {
    "dataset": "BCCD (Blood Cell Count and Detection), Pascal-VOC boxes",
    "citation": "BCCD Dataset, github.com/Shenggan/BCCD_Dataset (MIT), after "
    "github.com/cosmicad/dataset",
    "licence": "MIT",
    "url": "https://github.com/Shenggan/BCCD_Dataset",
}


def parse_xml(path: Path) -> tuple[str, list[tuple[str, float, float, float, float]]]:
    """``(image file name, [(name, xmin, ymin, xmax, ymax), ...])`` of one VOC file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(path, f"not valid VOC XML ({e})") from None
    filename = (root.findtext("filename") or f"{path.stem}.jpg").strip()
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            coords = [np.nan] * 4
        boxes.append((name, *coords))
    return filename, boxes


def _image_for(xml: Path, filename: str, source: Path) -> Path:
    for folder in (source / "JPEGImages", xml.parent.parent / "JPEGImages", xml.parent, source):
        for cand in (folder / filename, *folder.glob(f"{Path(filename).stem}.*")):
            if cand.is_file() and cand.suffix.lower() != ".xml":
                return cand
    return source / "JPEGImages" / filename


def _read_labels_csv(path: Path) -> dict[str, str]:
    """Image stem -> category, from ``Image,Category`` (BCCD labels.csv) or ``image,class``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise InputError(path, "no such labels file") from None
    if not rows:
        raise InputError(path, "labels file is empty")
    cols = {c.strip().lower(): c for c in rows[0] if c}
    img_col = cols.get("image") or cols.get("file") or cols.get("filename")
    cls_col = cols.get("category") or cols.get("class") or cols.get("label")
    if not img_col or not cls_col:
        raise InputError(path, "labels file needs columns Image and Category (or image and class)")
    out = {}
    for r in rows:
        img, cat = (r.get(img_col) or "").strip(), (r.get(cls_col) or "").strip()
        if not img:
            continue
        if img.isdigit():  # BCCD labels.csv numbers the fields: 0 -> BloodImage_00000
            img = f"BloodImage_{int(img):05d}"
        out[Path(img).stem] = cat
    return out


def _read_extra(path: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise InputError(path, "no such extra-boxes file") from None
    need = {"image", "xmin", "ymin", "xmax", "ymax"}
    if not rows or not need <= set(rows[0]):
        raise InputError(path, "extra boxes need columns image,xmin,ymin,xmax,ymax[,kind]")
    out: dict[str, list] = {}
    for r in rows:
        if (r.get("kind") or "wbc").strip().lower() != "wbc":
            continue
        box = ("WBC", *(float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
        out.setdefault(Path(r["image"]).stem, []).append(box)
    return out


@lru_cache(maxsize=4)
def _field(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A field's pixels and its median colour (the padding), read once for all its boxes."""
    arr = read_pixels(path)
    arr = arr[..., :3] if arr.ndim == 3 else arr
    h, w = arr.shape[:2]
    return arr, np.median(arr.reshape(h * w, -1)[:: max(1, h * w // 20000)], axis=0)


def _crop_field(path: str, box, size: int, fit_box: bool) -> np.ndarray:
    image, fill = _field(path)
    return crop(image, box, size, fit_box, fill)


def crop(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    size: int,
    fit_box: bool = False,
    fill: np.ndarray | None = None,
) -> np.ndarray:
    """A square crop centred on ``box`` (xmin, ymin, xmax, ymax), padded with ``fill``
    (default: the image's median colour)."""
    xmin, ymin, xmax, ymax = box
    cy, cx = (ymin + ymax) / 2.0, (xmin + xmax) / 2.0
    side = size
    if fit_box:
        side = max(size, int(np.ceil(max(xmax - xmin, ymax - ymin) * 1.1)))
    y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
    h, w = image.shape[:2]
    if fill is None:
        fill = np.median(image.reshape(h * w, -1), axis=0)
    fill = np.asarray(fill).astype(image.dtype)
    out = np.empty((side, side, *image.shape[2:]), image.dtype)
    out[...] = fill
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, h), min(x0 + side, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    if side != size:
        from skimage.transform import resize

        out = resize(out, (size, size), order=1, preserve_range=True, anti_aliasing=True)
        out = out.round().astype(image.dtype)
    return out


def plan(
    source,
    *,
    vocab=None,
    objects: str | list[str] = "WBC",
    size: int = 256,
    fit_box: bool = False,
    labels_csv: str | None = None,
    extra_boxes: str | None = None,
    image_set: str | None = None,
) -> Plan:
    """Read a Pascal-VOC tree (see the module docstring)."""
    source = Path(source)
    if isinstance(objects, str):
        objects = [o for o in re.split(r"[,\s]+", objects) if o]
    wanted = {o.casefold() for o in objects}
    if int(size) < 8:
        raise InputError(None, f"crop size must be at least 8 pixels, got {size}")
    size = int(size)
    ann = source / "Annotations" if (source / "Annotations").is_dir() else source
    if not source.exists():
        raise InputError(source, "no such folder")
    xmls = sorted(ann.glob("*.xml"))
    if not xmls:
        raise InputError(source, "no Pascal-VOC .xml files (expected Annotations/*.xml)")
    if image_set:
        ids_path = Path(image_set)
        if not ids_path.is_file():
            for cand in (source / image_set, source / "ImageSets" / "Main" / image_set):
                if cand.is_file():
                    ids_path = cand
                    break
        try:
            keep = {line.split()[0] for line in ids_path.read_text().splitlines() if line.strip()}
        except FileNotFoundError:
            raise InputError(image_set, "no such image-set file") from None
        xmls = [x for x in xmls if x.stem in keep]
    per_image = _read_labels_csv(Path(labels_csv)) if labels_csv else None
    extra = _read_extra(Path(extra_boxes)) if extra_boxes else {}
    result = Plan(
        "voc",
        "voc",
        source,
        dict(INFO),
        vocabulary_required=False,
        notes={"objects": objects, "crop_size_px": size, "fit_box": fit_box},
    )
    n_boxes = 0
    for xml in xmls:
        try:
            filename, boxes = parse_xml(xml)
        except InputError as e:
            result.skipped.append(Skip(str(xml), "unreadable", e.problem))
            continue
        boxes = boxes + extra.get(xml.stem, [])
        img_path = _image_for(xml, filename, source)
        label_for_field = None
        if per_image is not None:
            cat = per_image.get(xml.stem, "")
            kinds = [c for c in re.split(r"[,;]\s*", cat) if c]
            if len(kinds) != 1:
                why = "not in the labels file" if not kinds else f"several cell types ({cat})"
                result.skipped.append(Skip(str(img_path), "unlabelled field", why))
                continue
            label_for_field = kinds[0]
        k = 0
        for name, *coords in boxes:
            if name.casefold() not in wanted:
                continue
            n_boxes += 1
            k += 1
            xmin, ymin, xmax, ymax = coords
            where = f"{img_path}#{name}{k}[{xmin:g},{ymin:g},{xmax:g},{ymax:g}]"
            if not np.all(np.isfinite(coords)) or xmax <= xmin or ymax <= ymin:
                result.skipped.append(Skip(where, "bad box", "box coordinates missing or empty"))
                continue
            result.items.append(
                Item(
                    label=label_for_field or name,
                    name=f"{Path(filename).stem}_{name}{k}.png",
                    load=(
                        lambda p=str(img_path), b=(xmin, ymin, xmax, ymax): _crop_field(
                            p, b, size, fit_box
                        )
                    ),
                    meta={
                        "source": where,
                        "image": str(img_path),
                        "box": f"{xmin:g},{ymin:g},{xmax:g},{ymax:g}",
                        "box_name": name,
                    },
                )
            )
    result.notes["boxes"] = n_boxes
    return result
