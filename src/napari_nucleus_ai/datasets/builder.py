"""Turn a parsed source (a :class:`Plan`) into a training folder with a manifest.

Every importer module only *reads its layout* into a :class:`Plan`: the items
it found (a file to copy, or pixels to write) with the label the source gives
them, plus what it had to skip and why. :func:`build` does the rest the same way
for all of them: labels -> classes through the vocabulary, each image decoded
once to prove it is readable, files copied (or linked, or re-encoded as PNG)
into ``OUT/<class>/``, and ``_manifest.json``, ``_files.csv`` and ``_skipped.csv``
written beside them. The folder is assembled under a temporary name and renamed
at the end, so an interrupted import never leaves a half-filled training folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.datasets.harmonise import MODES, Vocabulary, load_vocabulary, safe_class_name

MANIFEST = "_manifest.json"
FILES = "_files.csv"
SKIPPED = "_skipped.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LINK_MODES = ("copy", "hardlink", "symlink")
FORMATS = ("copy", "png", "csv")


@dataclass
class Item:
    """One training example found in a source.

    Exactly one of ``path`` (a file to copy) and ``load`` (a function returning
    pixels to write as PNG) is set.
    """

    label: str
    name: str
    path: Path | None = None
    load: Callable[[], np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skip:
    """Something in the source that did not become a training example."""

    path: str
    category: str
    detail: str = ""


@dataclass
class Plan:
    """What an importer found in its source."""

    kind: str
    dataset: str  # the vocabulary's data set key
    source: Path
    info: dict[str, str]
    items: list[Item] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    modality: str = "image"  # or "localizations"
    vocabulary_required: bool = True  # unknown labels are skipped, not passed through


@dataclass
class Report:
    """The outcome of :func:`build`: what :func:`import_dataset` returns."""

    out: Path
    classes: dict[str, int]
    skipped: list[Skip]
    manifest: dict[str, Any]

    @property
    def n_files(self) -> int:
        return sum(self.classes.values())

    def summary(self) -> str:
        """Several lines for the terminal."""
        lines = [f"{self.out}: {self.n_files} files in {len(self.classes)} classes"]
        width = max((len(c) for c in self.classes), default=0)
        lines += [f"  {c:<{width}}  {n}" for c, n in self.classes.items()]
        if self.skipped:
            cats = Counter(s.category for s in self.skipped)
            lines.append(
                f"skipped {len(self.skipped)}: "
                + ", ".join(f"{n} {c}" for c, n in cats.most_common())
                + f" (see {self.out / SKIPPED})"
            )
        return "\n".join(lines)


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file completely (truncated files fail here, not in training)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except Exception as e:  # every decoder has its own exception types
        text = " ".join(str(e).split())[:120] or type(e).__name__
        raise InputError(path, f"unreadable image ({text})") from None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar TIFF
    if arr.size == 0 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] > 4):
        raise InputError(path, f"not a 2D grey or colour image (shape {arr.shape})")
    return arr


def write_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # CellaVision/Precipoint alpha is constant; drop it
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16 and arr.ndim == 2:
            pass  # PIL writes 16-bit grey PNG
        else:
            lo, hi = float(np.min(arr)), float(np.max(arr))
            arr = ((arr - lo) / (hi - lo or 1.0) * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG")


def verify_localizations(path: Path) -> None:
    """A localization file must be read by the plugin's localization readers."""
    from napari_nucleus_ai import io as nio
    from napari_nucleus_ai.core.files import check_readable

    check_readable(path)
    family = nio.family_for(path)
    if family is None or not family.__name__.endswith(".localizations"):
        raise InputError(path, "not a localization format napari-nucleus-ai can read")
    family.describe(path)


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """Check ``out`` and return the temporary folder to assemble into."""
    if out.exists():
        if not out.is_dir():
            raise InputError(out, "exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise InputError(out, "exists and is not empty (use --overwrite to replace it)")
            if not (out / MANIFEST).is_file():
                raise InputError(
                    out,
                    "is not a folder made by import-dataset (no _manifest.json); not replacing it",
                )
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _to_thunderstorm(item: Item, dest: Path) -> Path:
    """Rewrite a localization file as a ThunderSTORM CSV in nm (no side-files needed)."""
    from napari_nucleus_ai.localizations import read_localizations, write_thunderstorm_csv

    dest = dest.with_suffix(".csv")
    write_thunderstorm_csv(read_localizations(item.path).data, dest)
    return dest


def _place(item: Item, dest: Path, link: str, fmt: str, arr: np.ndarray | None) -> None:
    if item.load is not None or (fmt == "png" and arr is not None):
        write_png(item.load() if arr is None else arr, dest)
    elif link == "hardlink":
        try:
            os.link(item.path, dest)
        except OSError:  # other file system: fall back to a copy
            shutil.copyfile(item.path, dest)
    elif link == "symlink":
        os.symlink(Path(item.path).resolve(), dest)
    else:
        shutil.copyfile(item.path, dest)


def build(
    plan: Plan,
    out: str | os.PathLike,
    *,
    labels: str = "native",
    vocabulary: Vocabulary | str | os.PathLike | None = None,
    link: str = "copy",
    fmt: str = "copy",
    verify: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    options: dict[str, Any] | None = None,
) -> Generator[Progress, None, Report]:
    """Write ``plan`` as ``out/<class>/<file>`` plus manifest; a generator (see module doc)."""
    if labels not in MODES:
        raise InputError(None, f"labels must be one of {MODES}, got {labels!r}")
    if link not in LINK_MODES:
        raise InputError(None, f"link must be one of {LINK_MODES}, got {link!r}")
    if fmt not in FORMATS:
        raise InputError(None, f"format must be one of {FORMATS}, got {fmt!r}")
    vocab = vocabulary if isinstance(vocabulary, Vocabulary) else load_vocabulary(vocabulary)
    out = Path(out).absolute()
    src = plan.source.absolute()
    if src.is_dir() and (out == src or src in out.parents):
        raise InputError(out, "--out must not be inside SOURCE (the next import would read it)")
    skipped = list(plan.skipped)
    if strict and skipped:
        s = skipped[0]
        raise InputError(s.path, f"{s.category}: {s.detail}".rstrip(": "))

    # labels -> classes first, so nothing is written for a source we would reject
    chosen: list[tuple[Item, str]] = []
    label_map: dict[str, str] = {}
    for item in plan.items:
        entry = vocab.lookup(plan.dataset, item.label)
        if entry is not None:
            cls = entry.class_for(labels)
            if cls is None:
                skipped.append(
                    Skip(_where(item), "excluded class", f"{item.label!r} has no {labels} class")
                )
                continue
        elif not plan.vocabulary_required and labels == "common" and vocab.to_common(item.label):
            cls = vocab.to_common(item.label)  # a free label that names a known cell type
        elif plan.vocabulary_required or labels == "common":
            known = ", ".join(e.label for e in vocab.entries(plan.dataset)) or "none"
            skipped.append(
                Skip(
                    _where(item),
                    "unknown class",
                    f"unknown {plan.dataset} class code {item.label!r} (known: {known})",
                )
            )
            continue
        else:
            cls = safe_class_name(item.label)
        label_map[str(item.label)] = cls
        chosen.append((item, cls))
    if strict and len(skipped) > len(plan.skipped):
        s = skipped[len(plan.skipped)]
        raise InputError(s.path, f"{s.category}: {s.detail}")
    if not chosen:
        why = Counter(s.category for s in skipped).most_common(3)
        raise InputError(
            plan.source,
            f"no usable {plan.kind} examples found"
            + (f" (skipped: {', '.join(f'{n} {c}' for c, n in why)})" if why else ""),
        )

    tmp = _prepare_out(out, overwrite)
    try:
        rows = []
        used: set[tuple[str, str]] = set()
        counts: Counter[str] = Counter()
        total = len(chosen)
        for i, (item, cls) in enumerate(chosen):
            if i % 25 == 0:
                yield Progress(i, total, f"importing {plan.kind}: {i}/{total}")
            arr = None
            try:
                if item.load is not None:
                    arr = item.load()
                elif verify and plan.modality == "image":
                    arr = read_pixels(item.path)
                elif verify and plan.modality == "localizations":
                    verify_localizations(item.path)
            except InputError as e:
                if strict:
                    raise
                cat = "missing file" if "no such file" in str(e) else "unreadable"
                skipped.append(Skip(_where(item), cat, e.problem))
                continue
            name = safe_class_name(item.name)
            # localization files that need a side-file (Picasso .yaml) or --format csv become
            # ThunderSTORM CSVs in nm: one self-contained file per nucleus, as train expects
            convert = plan.modality == "localizations" and (
                fmt == "csv" or bool(item.meta.get("side_files"))
            )
            if item.load is not None or (fmt == "png" and arr is not None):
                name = Path(name).stem + ".png"
            elif convert:
                name = Path(name).stem + ".csv"
            name = _unique(name, cls, used)
            (tmp / cls).mkdir(exist_ok=True)
            if convert:
                try:
                    _to_thunderstorm(item, tmp / cls / name)
                except InputError as e:
                    if strict:
                        raise
                    skipped.append(Skip(_where(item), "unreadable", e.problem))
                    continue
            else:
                _place(item, tmp / cls / name, link, fmt, arr)
            counts[cls] += 1
            rows.append(
                {
                    "file": f"{cls}/{name}",
                    "class": cls,
                    "source_label": item.label,
                    "source": _where(item),
                    **item.meta,
                }
            )
        yield Progress(total, total, "writing manifest")
        classes = dict(sorted(counts.items()))
        if not classes:
            raise InputError(plan.source, "no readable examples (every file was skipped)")
        manifest = _manifest(plan, out, labels, vocab, label_map, classes, skipped, options)
        _write_tables(tmp, rows, skipped)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.replaced-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Report(out, classes, skipped, manifest)


def _where(item: Item) -> str:
    return str(item.meta.get("source", item.path if item.path is not None else item.name))


def _unique(name: str, cls: str, used: set[tuple[str, str]]) -> str:
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while (cls, candidate.casefold()) in used:
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    used.add((cls, candidate.casefold()))
    return candidate


def _write_tables(tmp: Path, rows: list[dict], skipped: list[Skip]) -> None:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    with open(tmp / FILES, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    with open(tmp / SKIPPED, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "category", "detail"])
        w.writerows([s.path, s.category, s.detail] for s in skipped)


def _manifest(plan, out, labels, vocab, label_map, classes, skipped, options) -> dict:
    from datetime import datetime, timezone

    from napari_nucleus_ai import __version__

    return {
        "format": "napari-nucleus-ai training folder",
        "format_version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": f"napari-nucleus-ai {__version__} import-dataset",
        "kind": plan.kind,
        "modality": plan.modality,
        "source": str(plan.source.absolute()),
        **plan.info,
        "labels": labels,
        "vocabulary": list(vocab.sources),
        "label_map": dict(sorted(label_map.items())),
        "classes": classes,
        "n_files": sum(classes.values()),
        "n_skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s.category for s in skipped).most_common()),
        "options": options or {},
        **({"notes": plan.notes} if plan.notes else {}),
        "layout": f"{out.name}/<class>/<file>; {FILES} lists every file with its source label",
    }
