"""Recognise a localization file by its content (a few KB), not by its extension.

:func:`detect_format` returns one of :data:`FORMATS` or ``None``. It never raises.
Text files that are delimited tables but match no known header are ``"csv"`` (read
with column aliases or a user mapping). Files that pose as a format they are not
(text named ``.h5``, a truncated HDF5) are still claimed, so the reader can say what
is wrong in one line instead of "unknown format".
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAT73 = b"MATLAB 7.3 MAT-file"
GZIP_MAGIC = b"\x1f\x8b"
INSIGHT3_MAGIC = b"M425"
TEXT_EXTENSIONS = (".csv", ".txt", ".tsv", ".xyz", ".dat")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf", ".he5")

FORMATS = (
    "thunderstorm",
    "nstorm",
    "elyra",
    "oni",
    "rapidstorm",
    "vutara",
    "decode-csv",
    "csv",
    "picasso",
    "decode-h5",
    "smap",
    "smlm",
    "hdf5-bad",
    "storm-analysis",
    "insight3",
    "vlume",
    "smlm-challenge",
)


ALIASES = {
    "x_nm": ("x", "x_nm", "xnm", "xnano", "position_x", "pos_x", "x-nm", "xc", "x_position"),
    "y_nm": ("y", "y_nm", "ynm", "ynano", "position_y", "pos_y", "y-nm", "yc", "y_position"),
    "z_nm": ("z", "z_nm", "znm", "znano", "position_z", "pos_z", "z-nm", "zc", "z_position"),
    "frame": ("frame", "frame_ix", "frames", "first frame", "framenumber", "frame_number", "t"),
    "photons": ("photons", "phot", "photon", "photon-count", "n_photons", "intensity"),
    "precision_nm": (
        "precision_nm",
        "precision",
        "uncertainty",
        "uncertainty_xy",
        "locprec",
        "locprecnm",
        "localization_precision",
        "loc_precision",
    ),
    "channel": ("channel", "probe", "color", "colour", "channel name"),
}


def split_unit(name: str) -> tuple[str, str | None]:
    """``"X (nm)" -> ("x", "nm")``; ``"x" -> ("x", None)``."""
    m = re.match(r"^(.*?)\s*[\[(]\s*([^\])]+?)\s*[\])]\s*$", str(name))
    if m:
        return m.group(1).strip().lower(), m.group(2).strip().lower()
    return str(name).strip().lower(), None


def has_xy_columns(fields) -> bool:
    """True when column names include an x and a y position under a known alias."""
    bases = {split_unit(f)[0] for f in fields}
    return any(a in bases for a in ALIASES["x_nm"]) and any(a in bases for a in ALIASES["y_nm"])


def looks_like_table(path) -> bool:
    """A text file with a delimited header (worth a column mapping)."""
    try:
        text = head_text(path)
    except OSError:
        return False
    return "\x00" not in text[:256] and _looks_delimited(first_lines(text, 6))


def looks_binary(path, nbytes: int = 4096) -> bool:
    """True when the start of a file is not text (NUL bytes or mostly unprintable)."""
    try:
        text = head_text(path, nbytes)
    except OSError:
        return False
    if "\x00" in text:
        return True
    bad = sum(not (ch.isprintable() or ch in "\t\r\n") for ch in text)
    return bad > 0.05 * max(1, len(text))


def is_gzip(path) -> bool:
    """True when ``path`` starts with the gzip signature (``.csv.gz`` and friends)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def head_text(path, nbytes: int = 65536) -> str:
    """The first ``nbytes`` of a file decoded leniently (BOM removed; gzip decompressed)."""
    with open(path, "rb") as fh:
        raw = fh.read(nbytes)
    if raw.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as fh:
                raw = fh.read(nbytes)
        except (OSError, EOFError):
            raw = b"\x00"  # a truncated or corrupt gzip stream: not text
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8", errors="replace")


def first_lines(text: str, n: int = 5) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")[:n]]


def clean_header(line: str) -> str:
    """Header text without quotes (ThunderSTORM may quote the whole header as one field)."""
    return line.replace('"', "").strip()


def detect_format(path) -> str | None:
    """The format of ``path`` (see :data:`FORMATS`) or None if it is not a localization file."""
    try:
        return _detect(os.fspath(path))
    except Exception:  # noqa: BLE001 - a sniffer never raises
        return None


def _detect(path: str) -> str | None:
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as fh:
        magic = fh.read(1024)
    if magic.startswith(GZIP_MAGIC):
        # Compressed text (``.csv.gz``): the format of what is inside, by its content.
        inner_ext = os.path.splitext(path[:-3] if ext == ".gz" else path)[1].lower()
        text = head_text(path)
        if "\x00" in text[:256]:
            return None
        return _detect_text(text, inner_ext or ".csv")
    if magic.startswith(INSIGHT3_MAGIC) and len(magic) >= 16:
        return "insight3"
    if magic.startswith(HDF5_SIGNATURE):
        return _detect_hdf5(path, ext)
    if magic.startswith(MAT73):
        return "smap" if _is_smap(path) else None
    if magic.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                return "smlm" if "manifest.json" in z.namelist() else None
        except zipfile.BadZipFile:
            return "smlm" if ext == ".smlm" else None
    if ext in HDF5_EXTENSIONS or ext == ".smlm":
        # Named like a binary format but is not one: claim it to say so.
        return "hdf5-bad" if ext in HDF5_EXTENSIONS else "smlm"
    text = head_text(path)
    if "\x00" in text[:256]:
        return None
    return _detect_text(text, ext)


def _detect_hdf5(path: str, ext: str) -> str | None:
    try:
        import h5py

        with h5py.File(path, "r") as h:
            if "locs" in h and getattr(h["locs"], "dtype", None) is not None:
                return "picasso"
            if "data" in h and "xyz" in h["data"]:
                return "decode-h5"
            if ("sa_type" in h.attrs and "version" in h.attrs) or any(
                k.startswith("fr_") for k in h
            ):
                return "storm-analysis"
            return None  # some other HDF5 (an image?) - not ours
    except Exception:  # noqa: BLE001 - unreadable HDF5: truncated or corrupt
        return "hdf5-bad" if ext in HDF5_EXTENSIONS else None


def _is_smap(path: str) -> bool:
    try:
        import h5py

        with h5py.File(path, "r") as h:
            return "saveloc" in h
    except Exception:  # noqa: BLE001 - a truncated .mat still belongs to us
        return path.lower().endswith(".mat")


def _detect_text(text: str, ext: str) -> str | None:
    lines = first_lines(text, 6)
    if lines and lines[0].startswith("#") and not lines[0].startswith("# <localizations"):
        # comment lines first (vLUME, DECODE): look at the table after them
        lines = [ln for ln in first_lines(text, 400) if ln.strip()]
        n_comments = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
        lines = lines[: n_comments + 6]
    first = lines[0] if lines else ""
    header = clean_header(first)
    low = header.lower()
    if first.startswith("# <localizations"):
        return "rapidstorm"
    if re.search(r"(^|,|\t)\s*x \[(nm|px|um|µm)\]", low):
        return "thunderstorm"
    if "\t" in first and (low.startswith("channel name") or low.startswith("name\t")):
        return "nstorm"
    if "\t" in first and low.startswith("id\t") and "lateral localization accuracy" in low:
        return "nstorm"
    if "position x [nm]" in low or low.startswith("index\tfirst frame"):
        return "elyra"
    if "x (nm)" in low:
        return "oni"
    if any("x-nm" in clean_header(line).lower() for line in lines[:2]):
        return "oni"
    if "image-id" in low and ("precisionx" in low or "z-step" in low):
        return "vutara"
    if first.startswith("#"):
        body = [line for line in lines if not line.startswith("#")]
        if body and re.match(r"\s*x\s*,\s*y\s*,", body[0].lower()) and "frame_ix" in body[0]:
            return "decode-csv"
    if ext in TEXT_EXTENSIONS and _looks_delimited(lines) and has_xy_columns(_fields(lines)):
        fields = {split_unit(f)[0] for f in _fields(lines)}
        if {"xnano", "ynano"} <= fields:
            return "smlm-challenge"
        if first.upper().startswith("#LUME"):
            return "vlume"
        return "csv"
    return None


def comment_lines(text: str) -> int:
    """How many lines at the start of ``text`` are ``#`` comments (vLUME, DECODE exports)."""
    n = 0
    for line in text.split("\n"):
        if not line.startswith("#"):
            break
        n += 1
    return n


def _fields(lines: list[str]) -> list[str]:
    line = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), "")
    for sep in ("\t", ",", ";"):
        if sep in line:
            return [f.strip().strip('"') for f in line.split(sep)]
    return line.split()


def _looks_delimited(lines: list[str]) -> bool:
    lines = [line for line in lines if line.strip() and not line.startswith("#")]
    if not lines:
        return False
    printable = sum(ch.isprintable() or ch == "\t" for ch in lines[0]) / max(1, len(lines[0]))
    if printable < 0.95:
        return False
    return any(sep in lines[0] for sep in (",", "\t", ";", " "))
