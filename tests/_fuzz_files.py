"""Seeded corrupt files for every reader family (used by test_fuzz_readers and benchmarks/bad_inputs).

:func:`seed_files` writes one valid file per format family (generated here; the real
files of ``../shared/data`` are added when present). :func:`fuzz_cases` derives from
each seed, with a seeded :class:`random.Random`: truncations, flipped bytes, random
bytes under the same name, an empty file, the header alone, appended garbage, a
huge-header TIFF / PNG and, for text tables, cells replaced by junk, NaN and 1e308.
"""

from __future__ import annotations

import random
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

REAL = {  # family -> files of ../shared/data/smlm used as extra seeds when present
    "csv": ["locan/Thunderstorm_dstorm_data.csv", "locan/Nanoimager_dstorm_data.csv"],
    "text": ["locan/rapidSTORM_dstorm_data.txt", "locan/Elyra_dstorm_data.txt"],
    "picasso": ["picasso/testdata_locs.hdf5"],
    "decode": ["locan/decode_dstorm_data.h5"],
    "smap": ["locan/smap_dstorm_data.mat"],
    "smlm": ["locan/SMLM_dstorm_data.smlm"],
    "insight3": ["storm-analysis/test_olist.bin"],
}


def _csv(path: Path, rng: np.random.Generator) -> None:
    n = 200
    lines = ['"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","uncertainty [nm]"']
    for i in range(n):
        x, y = rng.uniform(0, 20000, 2)
        lines.append(
            f"{i + 1},{i // 10 + 1},{x:.1f},{y:.1f},120.0,{rng.uniform(500, 3000):.0f},12.5"
        )
    path.write_text("\n".join(lines) + "\n")


def _picasso(path: Path, rng: np.random.Generator) -> None:
    import h5py

    n = 200
    dt = [(k, "f4") for k in ("x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy")]
    locs = np.zeros(n, dtype=[("frame", "u4"), *dt])
    locs["frame"] = np.arange(n) // 10
    locs["x"], locs["y"] = rng.uniform(0, 60, n), rng.uniform(0, 60, n)
    locs["photons"], locs["lpx"], locs["lpy"] = 1000, 0.1, 0.1
    with h5py.File(path, "w") as h:
        h.create_dataset("locs", data=locs)
    path.with_suffix(".yaml").write_text("Width: 64\nHeight: 64\nPixelsize: 130\n")


def _storm_analysis(path: Path, rng: np.random.Generator) -> None:
    import h5py

    with h5py.File(path, "w") as h:
        h.attrs.update(sa_type="3D-DAOSTORM", version=0.1, n_channels=1, movie_l=3)
        h.attrs.update(movie_x=64, movie_y=64, movie_hash_value="", pixel_size=160.0)
        for f in range(3):
            g = h.create_group(f"fr_{f}")
            xs = rng.uniform(0, 60, 20).astype(np.float32)
            g.attrs.update(n_locs=len(xs), dx=0.0, dy=0.0, dz=0.0)
            g["x"], g["y"] = xs, xs[::-1].copy()
            g["z"] = np.zeros_like(xs)
            g["sum"] = np.full(len(xs), 500.0, np.float32)
            g["xsigma"] = np.ones(len(xs), np.float32)


def _insight3(path: Path, rng: np.random.Generator) -> None:
    import pandas as pd

    from napari_nucleus_ai.localizations.stormanalysis import write_insight3

    n = 100
    df = pd.DataFrame(
        {
            "x_nm": rng.uniform(0, 9000, n),
            "y_nm": rng.uniform(0, 9000, n),
            "frame": np.arange(n) // 5,
            "photons": np.full(n, 800.0),
        }
    )
    write_insight3(df, path, pixel_size_nm=160.0)


def _tiff(path: Path, rng: np.random.Generator, rgb: bool = False) -> None:
    import tifffile

    shape = (96, 128, 3) if rgb else (96, 128)
    data = rng.integers(0, 255 if rgb else 4000, shape).astype(np.uint8 if rgb else np.uint16)
    tifffile.imwrite(path, data, photometric="rgb" if rgb else "minisblack")


def _pil(path: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (96, 128, 3)).astype(np.uint8)).save(path)


def huge_tiff(path: Path, side: int = 200_000) -> Path:
    """A 64 x 64 uint8 TIFF whose header says ``side`` x ``side`` (one strip)."""
    import tifffile

    small = path.with_name(path.stem + "_small.tif")
    tifffile.imwrite(small, np.zeros((64, 64), np.uint8))
    b = bytearray(small.read_bytes())
    with tifffile.TiffFile(small) as tf:
        tags = tf.pages[0].tags
        for code in (256, 257, 278):  # ImageWidth, ImageLength, RowsPerStrip
            t = tags[code]
            fmt = "<H" if t.dtype == 3 else "<I"
            struct.pack_into(fmt, b, t.valueoffset, side if fmt == "<I" else min(side, 65535))
    small.unlink()
    path.write_bytes(bytes(b))
    return path


def huge_png(path: Path, side: int = 200_000) -> Path:
    """A small PNG whose IHDR says ``side`` x ``side`` (CRC fixed so it parses)."""
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    b = bytearray(path.read_bytes())
    struct.pack_into(">II", b, 16, side, side)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(b))
    return path


GENERATED = {
    "csv": ("locs.csv", _csv),
    "picasso": ("locs.hdf5", _picasso),
    "storm-analysis": ("sa.hdf5", _storm_analysis),
    "insight3": ("olist.bin", _insight3),
    "tiff": ("field.tif", _tiff),
    "tiff-rgb": ("smear.tif", lambda p, r: _tiff(p, r, rgb=True)),
    "png": ("smear.png", _pil),
    "jpeg": ("smear.jpg", _pil),
}


def seed_files(root: Path, shared: Path | None = None, seed: int = 0) -> dict[str, list[Path]]:
    """``{family: [valid file, ...]}`` under ``root`` (real files copied in when ``shared`` exists)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {}
    for family, (name, make) in GENERATED.items():
        d = root / "seeds" / family
        d.mkdir(parents=True, exist_ok=True)
        make(d / name, rng)
        out.setdefault(family, []).append(d / name)
    smlm = shared / "smlm" if shared is not None else None
    if smlm is not None and smlm.is_dir():
        for family, rels in REAL.items():
            for rel in rels:
                src = smlm / rel
                if src.is_file():
                    d = root / "seeds" / f"real-{family}"
                    d.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, d / src.name)
                    yaml = src.with_suffix(".yaml")
                    if yaml.is_file():
                        shutil.copy(yaml, d / yaml.name)
                    out.setdefault(family, []).append(d / src.name)
    return out


def _text_junk(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    if len(lines) < 3:
        return text + "\n,,,\n"
    kind = rng.choice(["nan", "huge", "junk", "drop-col", "quote", "header"])
    i = rng.randrange(1, len(lines))
    cells = (lines[i].split(",") if "," in lines[i] else lines[i].split()) or [""]
    j = rng.randrange(len(cells))
    if kind == "nan":
        cells[j] = "nan"
    elif kind == "huge":
        cells[j] = "1e308"
    elif kind == "junk":
        cells[j] = "x\u00e9\x00;"
    elif kind == "drop-col":
        cells = cells[:-1]
    elif kind == "quote":
        cells[j] = '"' + cells[j]
    else:
        return "\n".join(["\u00ff\ufeff" + lines[0][::-1], *lines[1:]])
    lines[i] = ("," if "," in lines[i] else " ").join(cells)
    return "\n".join(lines) + "\n"


def fuzz_cases(seeds: dict[str, list[Path]], root: Path, seed: int = 20, per_seed: int = 20):
    """Yield ``(family, kind, path)`` for corrupt variants of every seed file."""
    rng = random.Random(seed)
    out = root / "cases"
    out.mkdir(parents=True, exist_ok=True)
    k = 0
    for family, files in seeds.items():
        for src in files:
            data = src.read_bytes()
            text_like = src.suffix.lower() in (".csv", ".txt")
            kinds = ["empty", "header-only", "random-bytes", "append-garbage"]
            kinds += ["truncate"] * 5 + ["flip"] * 6
            kinds += ["text-junk"] * 5 if text_like else ["flip"] * 5
            for kind in kinds[:per_seed]:
                k += 1
                d = out / f"{k:04d}"
                d.mkdir()
                path = d / src.name
                yaml = src.with_suffix(".yaml")
                if yaml.is_file():  # Picasso's side file stays valid: the HDF5 is the target
                    shutil.copy(yaml, d / yaml.name)
                if kind == "empty":
                    b = b""
                elif kind == "header-only":
                    b = data[: min(len(data), rng.choice([4, 16, 64, 512]))]
                elif kind == "random-bytes":
                    b = bytes(rng.getrandbits(8) for _ in range(rng.choice([10, 300, 5000])))
                elif kind == "append-garbage":
                    b = data + bytes(rng.getrandbits(8) for _ in range(777))
                elif kind == "truncate":
                    b = data[: rng.randrange(1, max(2, len(data)))]
                elif kind == "flip":
                    arr = bytearray(data)
                    for _ in range(rng.choice([1, 4, 32, 256])):
                        if arr:
                            arr[rng.randrange(len(arr))] = rng.getrandbits(8)
                    b = bytes(arr)
                else:
                    txt = data.decode("utf-8", "replace")
                    b = _text_junk(txt, rng).encode("utf-8", "replace")
                path.write_bytes(b)
                yield family, kind, path
    d = out / "huge"
    d.mkdir()
    yield "tiff", "huge-header", huge_tiff(d / "huge.tif")
    yield "png", "huge-header", huge_png(d / "huge.png")
    big = d / "big_coord.csv"
    big.write_text("x [nm],y [nm]\n1,2\n1e308,5\n3,4\n")
    yield "csv", "coordinate-1e308", big
