"""Which files a batch processes, under which output names, and which are already done."""

from __future__ import annotations

import json
import os
from pathlib import Path

from napari_nucleus_ai.batch.tasks import STATE, Settings, input_stamp, output_paths, state_path
from napari_nucleus_ai.core.errors import InputError

# suffixes a folder walk picks up even when the content sniffers reject the file,
# so a corrupt slide becomes a 'failed' row instead of silently disappearing
DATA_SUFFIXES = {
    ".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif", ".png", ".jpg", ".jpeg", ".bmp", ".jp2",
    ".csv", ".txt", ".tsv", ".hdf5", ".h5", ".smlm", ".mat", ".mrxs", ".dcm",
}  # fmt: skip
SIDE_SUFFIXES = {".yaml", ".yml", ".json", ".md", ".xml", ".html", ".py"}
OUTPUT_ENDINGS = ("_labels.tif", "_cells.csv", "_localizations.csv", "summary.csv")


def _is_candidate(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith((".", "_")) or name.endswith(OUTPUT_ENDINGS):
        return False
    if path.suffix.lower() in SIDE_SUFFIXES:
        return False
    if path.suffix.lower() in DATA_SUFFIXES:
        return True
    from napari_nucleus_ai.io import family_for

    return family_for(path) is not None


def find_inputs(inputs, out_dir=None) -> list[Path]:
    """Files given, and files found recursively in folders given (sorted, no duplicates)."""
    out = Path(out_dir).resolve() if out_dir else None
    found: dict[Path, None] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                here = Path(dirpath)
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if not d.startswith((".", "_")) and (out is None or (here / d).resolve() != out)
                )
                for f in sorted(filenames):
                    if _is_candidate(here / f):
                        found.setdefault(here / f, None)
        else:
            found.setdefault(p, None)  # missing files become failed rows: "no such file"
    if not found:
        raise InputError(None, "no input files found in " + ", ".join(map(str, inputs)))
    return list(found)


def assign_stems(paths: list[Path]) -> list[str]:
    """Output stems: the file stem; stems that collide get their parent folders prefixed."""

    def stem_at(p: Path, depth: int) -> str:
        return "_".join([*p.parent.parts[-depth:], p.stem]) if depth else p.stem

    depth = [0] * len(paths)
    for _ in range(8):
        stems = [stem_at(p, d).lstrip("_/") for p, d in zip(paths, depth, strict=True)]
        groups: dict[str, list[int]] = {}
        for i, st in enumerate(stems):
            groups.setdefault(st.lower(), []).append(i)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return stems
        for g in clashes:
            for i in g:
                depth[i] += 1
    seen: dict[str, int] = {}
    out = []
    for st in stems:  # still colliding (identical paths?): number them
        n = seen.get(st.lower(), 0)
        seen[st.lower()] = n + 1
        out.append(st if n == 0 else f"{st}_{n + 1}")
    return out


def finished_row(path: Path, stem: str, out_dir, settings: Settings) -> dict | None:
    """The saved row of an input finished by an earlier run with the same settings, else None."""
    sp = state_path(out_dir, stem)
    try:
        row = json.loads(sp.read_text())
        stamp = input_stamp(path)
    except (OSError, ValueError):
        return None
    if row.get("status") != "ok" or row.get("settings") != settings.key():
        return None
    if row.get("size") != stamp["size"] or row.get("mtime_ns") != stamp["mtime_ns"]:
        return None  # the input changed since
    if not all(p.exists() for p in output_paths(out_dir, stem, settings.output).values()):
        return None
    return row


def state_dir(out_dir) -> Path:
    return Path(out_dir) / STATE
