"""Record what the ``napari-nucleus-ai`` CLI writes, to prove that a refactor changed no behaviour.

``run`` executes a fixed set of CLI commands (``python -m napari_nucleus_ai COMMAND ...``) on the
real shared data against one source tree, writes every output into ``OUT/outputs/<step>/`` and
records ``OUT/manifest.json``: for every step its command line, exit status, stdout and stderr,
and for every output file (and every member of a ``.zip``) its raw SHA-256 and a SHA-256 of its
normalised content. ``compare`` reads two such folders and prints a per-entry table (identical /
differing); it exits 1 on any difference whose name no ``--allow`` glob matches.

Usage (from the repository root; ``--src`` is the ``PYTHONPATH`` of every command)::

    .venv/bin/python benchmarks/cli_outputs.py run --src ../before/src --out /tmp/cli_before
    .venv/bin/python benchmarks/cli_outputs.py run --src src --out /tmp/cli_after \\
        --model-from /tmp/cli_before
    .venv/bin/python benchmarks/cli_outputs.py compare /tmp/cli_before /tmp/cli_after
    .venv/bin/python benchmarks/cli_outputs.py compare A B --allow 'retrain*' --brief

``--model-from DIR`` makes ``predict``, ``classify`` and ``retrain`` use the models trained by an
earlier run (``DIR/models``), so both runs classify with the same weights even if training is not
bit-reproducible; without it the models come from this run's own ``train`` steps. ``--data`` is
the shared data folder (default ``$NAPARI_NUCLEUS_AI_SHARED_DATA``, else ``../shared/data`` beside
the repository). Every command runs on the CPU (``NAPARI_NUCLEUS_AI_DEVICE=cpu``), one thread,
seed 0, ``TZ=UTC``, ``COLUMNS=100`` and a private HOME / XDG_CONFIG_HOME / XDG_CACHE_HOME / TMPDIR
under ``OUT/_env``; inputs the script makes (an empty corrections store, a small retraining set)
live in ``OUT/inputs`` and are not hashed; raw console output is kept in ``OUT/logs``. A run
takes 6-8 minutes on 2 cores shared with other jobs (about 2.5 minutes of CPU; the two ``train``
steps are half of it).

Normalisation (applied identically to both runs, so only the variable parts are hidden):

- text (stdout, stderr, CSV, HTML, JSON strings, TIFF tags, PNG text chunks): the output folder,
  the data folder, the source tree and the interpreter prefix become ``<OUT>``, ``<DATA>``,
  ``<SRC>`` and ``<PREFIX>``; ISO date-times become ``<DATETIME>``; durations (``12.3 s``,
  ``4 min``, ``5 ms``) ``<DURATION>``; progress rates ``<RATE>``; temporary names under
  ``<OUT>/_env/tmp`` ``<TMPNAME>``.
- JSON (files, JSON lines of stdout, JSON strings inside JSON, ``.safetensors`` metadata, ImageJ
  ``Info``): keys that are clearly time, date, duration or host are dropped: ``date``,
  ``datetime``, ``time``, ``timestamp``, ``created``, ``modified``, ``updated``, ``saved``,
  ``started``, ``finished``, ``seconds``, ``duration``, ``elapsed``, ``runtime``, ``wall_time``,
  ``host``, ``hostname`` and names ending ``_at``, ``_date``, ``_time``, ``_timestamp``,
  ``_seconds``, ``_host`` (in practice: the model card's ``provenance.date`` and
  ``provenance.seconds``, the training folder manifest's ``created``, ``seconds`` in ``train``'s
  summary line).
- TIFF: pixels, shape and dtype of every page plus its tags, except the byte offsets/counts and
  ``DateTime``. PNG: every chunk but ``tIME``. ``.safetensors``: every tensor's name, dtype, shape
  and bytes, plus the normalised metadata with sorted keys (the Rust writer's key order changes
  from process to process); ``tensors_sha256`` hashes the tensors alone.
- ``.zip``: each member is listed and normalised by its own type (``model.zip!card.json``); the
  zip's normalised hash covers the member names and their normalised hashes, not zip timestamps.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(
    os.environ.get("NAPARI_NUCLEUS_AI_SHARED_DATA", ROOT.parent / "shared" / "data")
)
PACKAGE = "napari_nucleus_ai"
PROG = "napari-nucleus-ai"
MANIFEST = "manifest.json"
FORMAT = "napari-nucleus-ai cli outputs"
SEED = "0"
TIMEOUT_S = 900
#: the commands whose ``--help`` is recorded and whose existence gates their steps
COMMANDS = (
    "info",
    "render",
    "segment",
    "import-dataset",
    "train",
    "predict",
    "classify",
    "report",
    "export-trainset",
    "retrain",
)
#: model name in ``OUT/models`` -> the train step that makes it
MODELS = {"pbc-none.zip": "train-none", "pbc-imagenet.zip": "train-imagenet"}
BCCD_FIELDS = ("BloodImage_00000", "BloodImage_00001", "BloodImage_00002", "BloodImage_00003")

TIME_KEYS = frozenset(
    [
        "date",
        "datetime",
        "time",
        "timestamp",
        "created",
        "modified",
        "updated",
        "saved",
        "started",
        "finished",
        "seconds",
        "duration",
        "elapsed",
        "runtime",
        "wall_time",
        "host",
        "hostname",
    ]
)
TIME_SUFFIXES = ("_at", "_date", "_time", "_timestamp", "_seconds", "_host")
TEXT_RULES = (
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}|\s?UTC)?"
        ),
        "<DATETIME>",
    ),
    (re.compile(r"\d+(?:\.\d+)?\s?(?:it/s|s/it)"), "<RATE>"),
    (
        re.compile(r"(?<![^\s(=:,\[])\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|min|minutes)\b"),
        "<DURATION>",
    ),
    (re.compile(r"<OUT>/_env/tmp/[^\s/'\",:;)\]]+"), "<OUT>/_env/tmp/<TMPNAME>"),
)
TEXT_SUFFIXES = frozenset(
    [".csv", ".tsv", ".txt", ".html", ".htm", ".md", ".yaml", ".yml", ".xml", ".log", ".svg"]
)
TIFF_SKIP_TAGS = frozenset(
    [
        "StripOffsets",
        "StripByteCounts",
        "TileOffsets",
        "TileByteCounts",
        "IJMetadataByteCounts",
        "DateTime",
    ]
)


# ---------------------------------------------------------------------------- normalisation
@dataclass
class Normaliser:
    """Hide the variable parts of outputs: paths of this run, date-times, durations.

    Parameters
    ----------
    replacements
        ``(literal, token)`` pairs, applied longest literal first.
    """

    replacements: list[tuple[str, str]]

    @classmethod
    def for_run(cls, out: Path, data: Path, src: Path, prefix: Path) -> Normaliser:
        """The replacements of one run: its output, data, source and interpreter folders."""
        pairs = {}
        for path, token in ((prefix, "<PREFIX>"), (src, "<SRC>"), (data, "<DATA>"), (out, "<OUT>")):
            for variant in {str(path), str(path.resolve()), os.path.abspath(path)}:
                pairs[variant] = token
        ordered = sorted(pairs.items(), key=lambda kv: -len(kv[0]))
        return cls([(k, v) for k, v in ordered if k not in ("", "/")])

    def text(self, s: str) -> str:
        """``s`` with paths, date-times, durations and temporary names replaced by tokens."""
        for literal, token in self.replacements:
            s = s.replace(literal, token)
        for pattern, token in TEXT_RULES:
            s = pattern.sub(token, s)
        return s

    def json(self, obj):
        """``obj`` without time/host keys, strings normalised (JSON inside strings too)."""
        if isinstance(obj, dict):
            return {k: self.json(v) for k, v in obj.items() if not is_time_key(k)}
        if isinstance(obj, list | tuple):
            return [self.json(v) for v in obj]
        if isinstance(obj, str):
            inner = parse_json(obj)
            if isinstance(inner, dict | list):
                return json.dumps(self.json(inner))
            return self.text(obj)
        return obj

    def lines(self, s: str) -> str:
        """Console output: JSON lines through :meth:`json`, the others through :meth:`text`."""
        out = []
        for line in s.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            parsed = parse_json(body) if body.lstrip().startswith("{") else None
            norm = json.dumps(self.json(parsed)) if isinstance(parsed, dict) else self.text(body)
            out.append(norm + line[len(body) :])
        return "".join(out)


def is_time_key(key) -> bool:
    """Whether a JSON key names a time, date, duration or host (dropped by normalisation)."""
    k = str(key).lower()
    return k in TIME_KEYS or k.endswith(TIME_SUFFIXES)


def parse_json(s: str):
    """``s`` parsed as JSON when it looks like an object or array, else ``None``."""
    t = s.strip()
    if not (t.startswith("{") or t.startswith("[")):
        return None
    try:
        return json.loads(t)
    except ValueError:
        return None


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------- digests by type
def digest(name: str, data: bytes, norm: Normaliser) -> dict:
    """Record of one file: kind, size, raw and normalised SHA-256 (+ ``tensors_sha256``).

    Parameters
    ----------
    name
        File or zip-member name; its suffix chooses the normalisation.
    data
        The file's bytes.
    norm
        The run's normaliser.
    """
    suffix = Path(name.lower()).suffix
    rec = {"kind": "raw", "size": len(data), "sha256": sha256(data)}
    try:
        if suffix == ".json":
            rec.update(kind="json", normalised_sha256=json_digest(data, norm))
        elif suffix in TEXT_SUFFIXES:
            rec.update(kind="text", normalised_sha256=sha256(norm.text(data.decode()).encode()))
        elif suffix in (".tif", ".tiff"):
            rec.update(kind="tiff", normalised_sha256=tiff_digest(data, norm))
        elif suffix == ".png":
            rec.update(kind="png", normalised_sha256=png_digest(data, norm))
        elif suffix == ".safetensors":
            full, tensors = safetensors_digest(data, norm)
            rec.update(kind="safetensors", normalised_sha256=full, tensors_sha256=tensors)
        elif suffix == ".zip":
            rec.update(kind="zip")
    except (ValueError, UnicodeDecodeError, struct.error, KeyError) as e:
        rec.update(kind="raw", note=f"not normalised: {type(e).__name__}: {e}")
    rec.setdefault("normalised_sha256", rec["sha256"])
    return rec


def json_digest(data: bytes, norm: Normaliser) -> str:
    """SHA-256 of a JSON document without its time/host keys (key order kept)."""
    try:
        obj = json.loads(data)
    except ValueError:
        return sha256(norm.text(data.decode()).encode())
    return sha256(json.dumps(norm.json(obj), ensure_ascii=False).encode())


def tiff_digest(data: bytes, norm: Normaliser) -> str:
    """SHA-256 of every page's shape, dtype, pixels and tags (no offsets, no DateTime)."""
    import tifffile

    h = hashlib.sha256()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        for page in tif.pages:
            pixels = page.asarray()
            h.update(f"{pixels.shape}|{pixels.dtype.str}|".encode())
            h.update(pixels.tobytes())
            for tag in page.tags:
                if tag.name not in TIFF_SKIP_TAGS:
                    h.update(f"{tag.name}={tag_text(tag.value, norm)}\n".encode())
    return h.hexdigest()


def tag_text(value, norm: Normaliser) -> str:
    """A TIFF tag value as normalised text (ImageJ metadata dicts through :meth:`json`)."""
    if isinstance(value, dict):
        return json.dumps(norm.json(value), default=str)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return norm.text(str(value))


def png_digest(data: bytes, norm: Normaliser) -> str:
    """SHA-256 of a PNG's chunks, without ``tIME`` and with normalised text chunks."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    h, pos = hashlib.sha256(data[:8]), 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"tIME":
            continue
        if kind in (b"tEXt", b"iTXt"):
            body = norm.text(body.decode("latin-1")).encode("latin-1")
        h.update(kind + struct.pack(">I", len(body)) + body)
    return h.hexdigest()


def safetensors_digest(data: bytes, norm: Normaliser) -> tuple[str, str]:
    """(SHA-256 of normalised metadata + tensors, SHA-256 of the tensors alone).

    The header is a map written from a Rust ``HashMap``: its key order (``__metadata__``'s
    ``format`` and ``card``) changes from process to process, so keys and tensors are sorted.
    """
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors = hashlib.sha256()
    for name, info in sorted(header.items()):
        start, stop = info["data_offsets"]
        tensors.update(json.dumps([name, info["dtype"], info["shape"]]).encode())
        tensors.update(body[start:stop])
    full = hashlib.sha256(json.dumps(norm.json(meta), sort_keys=True).encode() + tensors.digest())
    return full.hexdigest(), tensors.hexdigest()


def zip_records(name: str, data: bytes, norm: Normaliser) -> tuple[dict[str, dict], str]:
    """Records of a zip's members (``NAME!member``) and the zip's normalised hash."""
    records, h = {}, hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            rec = digest(info.filename, zf.read(info), norm)
            records[f"{name}!{info.filename}"] = rec
            h.update(f"{info.filename}\0{rec['normalised_sha256']}\n".encode())
    return records, h.hexdigest()


def hash_outputs(outputs: Path, norm: Normaliser) -> dict[str, dict]:
    """Records of every file under ``outputs`` (relative POSIX names), zip members included."""
    records = {}
    for path in sorted(p for p in outputs.rglob("*") if p.is_file() or p.is_symlink()):
        name = path.relative_to(outputs).as_posix()
        data = path.read_bytes()
        rec = digest(name, data, norm)
        records[name] = rec
        if rec["kind"] == "zip":
            try:
                members, rec["normalised_sha256"] = zip_records(name, data, norm)
            except zipfile.BadZipFile as e:
                rec.update(kind="raw", note=f"not a zip: {e}")
                continue
            records.update(members)
    return records


# --------------------------------------------------------------------------------- the run
@dataclass
class Step:
    """One CLI invocation.

    Parameters
    ----------
    name
        Unique, stable name; outputs go to ``outputs/<name>/``.
    command
        CLI subcommand ("" for top-level options).
    args
        Arguments after the subcommand.
    needs
        Files that must exist before the step can run (outputs of earlier steps).
    skip
        Reason not to run it at all ("" to run).
    """

    name: str
    command: str
    args: list[str]
    needs: list[Path] = field(default_factory=list)
    skip: str = ""


@dataclass
class Context:
    """Where one run reads and writes, and what its CLI offers."""

    src: Path
    out: Path
    data: Path
    python: str
    model_from: Path | None
    env: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)

    @property
    def outputs(self) -> Path:
        return self.out / "outputs"

    @property
    def models(self) -> Path:
        return self.out / "models"

    @property
    def inputs(self) -> Path:
        return self.out / "inputs"

    def step_dir(self, name: str) -> Path:
        """``outputs/<name>``, created."""
        d = self.outputs / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def flag(self, command: str, name: str, *values: str) -> list[str]:
        """``[name, *values]`` if ``command --help`` lists ``name``, else ``[]``."""
        return (
            [name, *values]
            if re.search(rf"{re.escape(name)}\b", self.helps.get(command, ""))
            else []
        )


def make_env(ctx: Context) -> dict[str, str]:
    """The environment of every command: --src on PYTHONPATH, CPU, one thread, private dirs."""
    base = ctx.out / "_env"
    dirs = {k: base / k for k in ("home", "config", "cache", "data", "state", "tmp", "mpl")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NAPARI_NUCLEUS_AI_", "PYTHON", "XDG_", "OMP_", "MKL_"))
    }
    env.update(
        PYTHONPATH=str(ctx.src),
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
        NAPARI_NUCLEUS_AI_DEVICE="cpu",
        NAPARI_NUCLEUS_AI_CONFIG_DIR=str(dirs["config"] / "napari-nucleus-ai"),
        NAPARI_NUCLEUS_AI_CACHE_DIR=str(dirs["cache"] / "napari-nucleus-ai"),
        HOME=str(dirs["home"]),
        XDG_CONFIG_HOME=str(dirs["config"]),
        XDG_CACHE_HOME=str(dirs["cache"]),
        XDG_DATA_HOME=str(dirs["data"]),
        XDG_STATE_HOME=str(dirs["state"]),
        MPLCONFIGDIR=str(dirs["mpl"]),
        TORCH_HOME=str(dirs["cache"] / "torch"),
        TMPDIR=str(dirs["tmp"]),
        USER="cli-outputs",
        LOGNAME="cli-outputs",
        TZ="UTC",
        LC_ALL="C.UTF-8",
        LANG="C.UTF-8",
        COLUMNS="100",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        QT_QPA_PLATFORM="offscreen",
    )
    return env


def check_package(ctx: Context) -> str:
    """The imported package's ``__init__`` path; exits if it does not come from ``--src``."""
    code = f"import {PACKAGE} as m; print(m.__file__)"
    res = subprocess.run(
        [ctx.python, "-c", code], env=ctx.env, capture_output=True, text=True, check=False
    )
    found = Path(res.stdout.strip() or "?").resolve()
    if res.returncode or not found.is_relative_to(ctx.src.resolve()):
        sys.exit(f"{PACKAGE} is imported from {found}, not from {ctx.src}: {res.stderr.strip()}")
    return str(found)


def run_step(ctx: Context, step: Step, norm: Normaliser) -> dict:
    """Run one step (or record why not); its normalised command, exit status and output."""
    argv = [step.command] if step.command else []
    argv += step.args
    rec = {"name": step.name, "command": [PROG, *(norm.text(a) for a in argv)]}
    missing = [p for p in step.needs if not p.exists()]
    if step.command and step.command not in ctx.helps:
        step.skip = step.skip or f"command {step.command!r} is not in this CLI"
    if missing and not step.skip:
        step.skip = f"missing input {norm.text(str(missing[0]))} (an earlier step failed)"
    if step.skip:
        return {**rec, "status": "skipped", "reason": step.skip}
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            [ctx.python, "-m", PACKAGE, *argv],
            cwd=ctx.outputs,
            env=ctx.env,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        rec.update(status="timeout", reason=f"no exit within {TIMEOUT_S} s")
        res = subprocess.CompletedProcess(argv, None, e.stdout or b"", e.stderr or b"")
    else:
        rec.update(status="ran", exit=res.returncode)
    seconds = round(time.perf_counter() - t0, 2)
    write_logs(ctx, step.name, res)
    stdout, stderr = (b.decode(errors="replace") for b in (res.stdout, res.stderr))
    return {**rec, "stdout": norm.lines(stdout), "stderr": norm.lines(stderr), "seconds": seconds}


def write_logs(ctx: Context, name: str, res: subprocess.CompletedProcess) -> None:
    """Raw stdout/stderr of a step in ``OUT/logs`` (not hashed; for reading)."""
    logs = ctx.out / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{name}.stdout").write_bytes(res.stdout or b"")
    (logs / f"{name}.stderr").write_bytes(res.stderr or b"")


def help_ok(rec: dict, command: str) -> bool:
    """Whether ``rec`` is a successful ``COMMAND --help`` step of ``command``."""
    return rec["name"] == f"help-{command}" and rec.get("exit") == 0


def slug(path: Path, base: Path) -> str:
    """A step-name fragment for ``path`` relative to ``base``."""
    return path.relative_to(base).as_posix().replace("/", "-").replace(" ", "_")


# -------------------------------------------------------------------------- what is covered
def pbc_crops(ctx: Context, start: int, count: int) -> list[Path]:
    """``count`` PBC crops per class (sorted names, from index ``start``)."""
    classes = sorted(p for p in (ctx.data / "smear" / "pbc").iterdir() if p.is_dir())
    return [f for c in classes for f in sorted(c.glob("*.png"))[start : start + count]]


def bccd_field(ctx: Context, stem: str) -> Path:
    """A BCCD field of view."""
    return ctx.data / "smear" / "bccd" / "JPEGImages" / f"{stem}.jpg"


def help_steps() -> list[Step]:
    """``--version``, ``--help`` and ``COMMAND --help`` (their exit status gates the rest)."""
    steps = [Step("version", "", ["--version"]), Step("help", "", ["--help"])]
    return steps + [Step(f"help-{c}", "", [c, "--help"]) for c in COMMANDS]


def info_steps(ctx: Context) -> list[Step]:
    """``info --json`` of every localization file, 3 BCCD fields, 2 PBC crops, 2 bad paths."""
    files = sorted(p for p in (ctx.data / "smlm").rglob("*") if p.is_file())
    files += [bccd_field(ctx, s) for s in BCCD_FIELDS[:3]] + pbc_crops(ctx, 0, 1)[:2]
    steps = [Step(f"info-{slug(f, ctx.data)}", "info", [str(f), "--json"]) for f in files]
    missing = ctx.data / "smlm" / "no-such-file.csv"
    steps.append(Step("info-missing-file", "info", [str(missing), "--json"]))
    steps.append(Step("info-folder", "info", [str(ctx.data / "smear" / "pbc"), "--json"]))
    return steps


def render_steps(ctx: Context) -> list[Step]:
    """Two localization files by each method, a 3D file colour-coded, a file that is no table."""
    smlm = ctx.data / "smlm"
    sources = (
        ("picasso", smlm / "picasso" / "testdata_locs.hdf5", "10"),
        ("colicoords03", smlm / "colicoords" / "03_storm.csv", "20"),
    )
    steps = []
    for label, path, pixel in sources:
        for method in ("histogram", "gaussian", "precision"):
            name = f"render-{label}-{method}"
            out = ctx.step_dir(name) / f"{label}-{method}.tif"
            args = [str(path), "--out", str(out), "--pixel-size", pixel, "--method", method]
            steps.append(Step(name, "render", args))
    smap, out = smlm / "locan" / "smap_dstorm_data.mat", ctx.step_dir("render-smap-zcolor")
    args = [str(smap), "--out", str(out / "smap-zcolor.tif"), "--pixel-size", "40"]
    steps.append(Step("render-smap-zcolor", "render", [*args, *ctx.flag("render", "--z", "color")]))
    bad = ["--out", str(ctx.step_dir("render-not-a-table") / "bad.tif")]
    steps.append(
        Step("render-not-a-table", "render", [str(smlm / "picasso" / "LICENSE.txt"), *bad])
    )
    return steps


def segment_steps(ctx: Context) -> list[Step]:
    """``segment --method wbc`` of 4 BCCD fields: labels TIFF and cell CSV per field."""
    images = [str(bccd_field(ctx, s)) for s in BCCD_FIELDS]
    out = ctx.step_dir("segment-wbc")
    return [Step("segment-wbc", "segment", [*images, "--method", "wbc", "--out", str(out)])]


def import_steps(ctx: Context) -> list[Step]:
    """``import-dataset`` of PBC (plain and ``--fine``), BCCD as VOC, and a vocabulary listing."""
    smear = ctx.data / "smear"
    bccd = smear / "bccd"
    voc = ["--image-set", str(bccd / "trainval.txt"), "--extra-boxes", str(bccd / "wbc_extra.csv")]
    steps = [
        Step("import-pbc", "import-dataset", ["pbc", str(smear / "pbc")]),
        Step("import-pbc-fine", "import-dataset", ["pbc", str(smear / "pbc"), "--fine"]),
        Step("import-bccd", "import-dataset", ["bccd", str(bccd), *voc]),
    ]
    for s in steps:
        s.args += ["--out", str(ctx.step_dir(s.name) / "data")]
    steps.append(Step("import-vocabulary-pbc", "import-dataset", ["pbc", "--show-vocabulary"]))
    return steps


def train_steps(ctx: Context) -> list[Step]:
    """Two cheap classifiers of the PBC crops: without and with ImageNet features."""
    steps = []
    for model, name in MODELS.items():
        imagenet = ctx.flag("train", "--imagenet", "none") if name == "train-none" else []
        args = [str(ctx.data / "smear" / "pbc"), "--out", str(ctx.step_dir(name) / model)]
        args += ["--epochs", "2", "--seed", SEED, *ctx.flag("train", "--threads", "1"), *imagenet]
        steps.append(Step(name, "train", args))
    return steps


def inference_steps(ctx: Context) -> list[Step]:
    """``predict`` of 16 PBC crops and ``classify`` of a segmented BCCD field, per model."""
    crops = [str(p) for p in pbc_crops(ctx, 0, 2)]
    field_ = BCCD_FIELDS[0]
    labels = ctx.outputs / "segment-wbc" / f"{field_}_labels.tif"
    steps = []
    for model in MODELS:
        tag = model.removeprefix("pbc-").removesuffix(".zip")
        path = ctx.models / model
        preds = ctx.step_dir(f"predict-{tag}") / "preds.csv"
        steps.append(
            Step(f"predict-{tag}", "predict", [str(path), *crops, "--out", str(preds)], [path])
        )
        args = [str(path), str(bccd_field(ctx, field_)), "--labels", str(labels)]
        args += ["--out", str(ctx.step_dir(f"classify-{tag}"))]
        steps.append(Step(f"classify-{tag}", "classify", args, [path, labels]))
    return steps


def store_steps(ctx: Context) -> list[Step]:
    """``report`` of classify's cells with an empty store; the store commands' errors.

    Review sessions (what ``report`` without ``--cells`` and ``export-trainset`` read) are only
    written by the napari review dock, so those two are recorded as their one-line errors on an
    empty store, and a real export is skipped with that reason.
    """
    store = ctx.inputs / "store" / "corrections.sqlite"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.touch()
    cells = ctx.outputs / "classify-imagenet" / "cells.csv"
    report = ["--cells", str(cells), "--out", str(ctx.step_dir("report-cells"))]
    export = ["--out", str(ctx.step_dir("export-trainset-empty-store") / "data")]
    reason = "needs a store with saved review sessions, which only the napari review dock writes"
    return [
        Step("report-cells", "report", [str(store), *report, "--title", "BCCD field"], [cells]),
        Step("report-empty-store", "report", [str(store)]),
        Step("report-no-store", "report", [str(ctx.inputs / "no-store")]),
        Step("export-trainset-empty-store", "export-trainset", [str(store), *export]),
        Step("export-trainset-reviewed", "export-trainset", [], skip=reason),
    ]


def retrain_steps(ctx: Context) -> list[Step]:
    """``retrain`` of the no-ImageNet model on 4 other PBC crops per class (class folders)."""
    corrections = ctx.inputs / "retrain-set"
    for crop in pbc_crops(ctx, 2, 4):
        dest = corrections / crop.parent.name / crop.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(crop, dest)
    model = ctx.models / "pbc-none.zip"
    args = [str(model), str(corrections), "--out", str(ctx.step_dir("retrain-none") / "v2.zip")]
    args += ["--no-replay", "--epochs", "1", "--seed", SEED]
    args += ctx.flag("retrain", "--threads", "1")
    return [Step("retrain-none", "retrain", args, [model])]


def install_models(ctx: Context) -> dict[str, dict]:
    """Copy the models predict/classify/retrain use into ``OUT/models``; their hashes.

    From ``--model-from DIR`` (``DIR/models``) when given, else from this run's train steps.
    """
    ctx.models.mkdir(parents=True, exist_ok=True)
    used = {}
    for model, step in MODELS.items():
        src = ctx.model_from / "models" / model if ctx.model_from else ctx.outputs / step / model
        if src.exists():
            shutil.copyfile(src, ctx.models / model)
            used[model] = {"from": str(src), "sha256": sha256(src.read_bytes())}
        else:
            used[model] = {"from": str(src), "missing": True}
    return used


# --------------------------------------------------------------------------------- commands
def prepare_out(out: Path, force: bool) -> None:
    """Create ``out``; an existing non-empty one only with ``force`` and only if it is ours."""
    if out.exists() and any(out.iterdir()):
        if not (force and (out / MANIFEST).exists()):
            sys.exit(f"{out} is not empty (use --force to replace an earlier run's folder)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_steps(ctx: Context, steps: list[Step], norm: Normaliser, done: list[dict]) -> None:
    """Run ``steps`` in order, appending their records to ``done`` with a progress line."""
    for step in steps:
        rec = run_step(ctx, step, norm)
        done.append(rec)
        state = f"exit {rec['exit']}" if "exit" in rec else rec["status"]
        took = f"{rec['seconds']:6.1f} s" if "seconds" in rec else ""
        print(f"[{len(done):3d}] {step.name:<44} {state:<9} {took}", file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    """``run``: execute every step against ``--src``, hash the outputs, write the manifest."""
    t0 = time.perf_counter()
    out, src, data = (
        Path(args.out).absolute(),
        Path(args.src).absolute(),
        Path(args.data).absolute(),
    )
    model_from = Path(args.model_from).absolute() if args.model_from else None
    if not (src / PACKAGE).is_dir() or not data.is_dir():
        sys.exit(f"need --src holding {PACKAGE}/ ({src}) and the shared data folder ({data})")
    if model_from and not all((model_from / "models" / m).exists() for m in MODELS):
        sys.exit(f"--model-from {model_from}: needs models/ with {', '.join(MODELS)}")
    prepare_out(out, args.force)
    ctx = Context(src, out, data, args.python, model_from)
    ctx.outputs.mkdir()
    ctx.env = make_env(ctx)
    norm = Normaliser.for_run(out, data, src, Path(args.python).absolute().parent.parent)
    package = check_package(ctx)
    done: list[dict] = []
    run_steps(ctx, help_steps(), norm, done)
    ctx.helps = {c: r["stdout"] for c in COMMANDS for r in done if help_ok(r, c)}
    first = info_steps(ctx) + render_steps(ctx) + segment_steps(ctx) + import_steps(ctx)
    run_steps(ctx, first + train_steps(ctx), norm, done)
    models = install_models(ctx)
    run_steps(ctx, inference_steps(ctx) + store_steps(ctx) + retrain_steps(ctx), norm, done)
    manifest = {
        "format": FORMAT,
        "src": str(src),
        "package": package,
        "data": str(data),
        "python": args.python,
        "model_from": str(model_from) if model_from else None,
        "models": models,
        "replacements": norm.replacements,
        "seconds": round(time.perf_counter() - t0, 1),
        "steps": done,
        "files": hash_outputs(ctx.outputs, norm),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    ran = sum(r["status"] == "ran" for r in done)
    print(f"{ran} of {len(done)} steps ran, {len(manifest['files'])} files hashed in ", end="")
    print(f"{manifest['seconds']:.0f} s: {out / MANIFEST}")
    return 0


def load_manifest(location: str) -> tuple[dict, Path]:
    """The manifest of a run folder (or of a manifest path) and the run folder."""
    p = Path(location)
    path = p / MANIFEST if p.is_dir() else p
    if not path.exists():
        sys.exit(f"{path}: no manifest here (make one with 'run')")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        sys.exit(f"{path}: not a manifest of {Path(__file__).name}")
    return manifest, path.parent


def entries(manifest: dict) -> dict[str, dict]:
    """Comparable entries: ``STEP::status|command|exit|stdout|stderr`` and every file."""
    out = {}
    for s in manifest["steps"]:
        status = s["status"] + (f": {s['reason']}" if s.get("reason") else "")
        fields = {"status": status, "command": " ".join(s["command"])}
        fields.update({k: s[k] for k in ("exit", "stdout", "stderr") if k in s})
        for key, value in fields.items():
            out[f"{s['name']}::{key}"] = {"value": str(value)}
    for name, rec in manifest["files"].items():
        out[name] = {"value": rec["normalised_sha256"], "raw": rec["sha256"], "kind": rec["kind"]}
    return out


def ordered(names: list[str]) -> list[str]:
    """Entry names grouped by step (in run order): its console entries, then its files."""
    steps = list(dict.fromkeys(n.split("::")[0] for n in names if "::" in n))
    rank = {s: i for i, s in enumerate(steps)}

    def key(name: str) -> tuple:
        if "::" in name:
            return rank[name.split("::")[0]], 0, 0
        return rank.get(name.split("/")[0], len(rank)), 1, name

    return sorted(names, key=key)


def classify_row(name: str, a: dict | None, b: dict | None, allow: list[str]) -> tuple[str, bool]:
    """(status text, counts as a failure) of one entry."""
    allowed = any(fnmatch.fnmatchcase(name, pat) for pat in allow)
    if a is None or b is None:
        status = "only in A" if b is None else "only in B"
    elif a["value"] == b["value"]:
        same_raw = a.get("raw") == b.get("raw")
        return ("identical" if same_raw else "identical (normalised)"), False
    else:
        status = "DIFFERS"
    return (f"{status.lower()} (allowed)", False) if allowed else (status, True)


def short(entry: dict | None) -> str:
    """A table cell: a value, or the start of a hash or of a long text."""
    if entry is None:
        return "-"
    v = entry["value"].replace("\n", "\\n")
    return v[:12] if len(v) == 64 and all(c in "0123456789abcdef" for c in v) else v[:28]


def text_diff(name: str, a: dict, b: dict, dirs: tuple[Path, Path], norms: tuple) -> list[str]:
    """A few lines of normalised diff for differing console output or text files."""
    if "::" in name:
        old, new = a["value"], b["value"]
    elif a.get("kind") in ("text", "json") and "!" not in name:
        paths = [d / "outputs" / name for d in dirs]
        if not all(p.exists() for p in paths):
            return []
        old, new = (readable(p, n) for p, n in zip(paths, norms, strict=True))
    else:
        return []
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "A", "B", lineterm="", n=1)
    return [f"    {line}" for line in list(lines)[2:14]]


def readable(path: Path, norm: Normaliser) -> str:
    """A text or JSON file's normalised text, for a diff."""
    text = path.read_text(errors="replace")
    parsed = parse_json(text) if path.suffix == ".json" else None
    return json.dumps(norm.json(parsed), indent=1) if parsed is not None else norm.text(text)


def cmd_compare(args) -> int:
    """``compare``: per-entry table of two runs; exit 1 on a difference not ``--allow``-ed."""
    (ma, da), (mb, db) = load_manifest(args.a), load_manifest(args.b)
    ea, eb = entries(ma), entries(mb)
    norms = tuple(Normaliser([tuple(p) for p in m["replacements"]]) for m in (ma, mb))
    names = ordered(list(ea) + [n for n in eb if n not in ea])
    failures, counts, diffs = 0, {}, []
    print(f"A: {da} (src {ma['src']})\nB: {db} (src {mb['src']})\n")
    for name in names:
        status, failed = classify_row(name, ea.get(name), eb.get(name), args.allow)
        failures += failed
        counts[status] = counts.get(status, 0) + 1
        if not (args.brief and status.startswith("identical")):
            print(f"{status:<24} {name:<70} {short(ea.get(name)):<28} {short(eb.get(name))}")
        if failed and name in ea and name in eb:
            diffs += [f"  {name}", *text_diff(name, ea[name], eb[name], (da, db), norms)]
    note_models(ma, mb)
    if diffs:
        print("\ndifferences:\n" + "\n".join(diffs))
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print("FAIL: outputs differ" if failures else "OK: no differences outside --allow")
    return 1 if failures else 0


def note_models(ma: dict, mb: dict) -> None:
    """Warn when the two runs classified with different model weights."""
    sha = [{k: v.get("sha256") for k, v in m["models"].items()} for m in (ma, mb)]
    if sha[0] != sha[1]:
        print(
            "\nnote: the runs used different models, so predict/classify/retrain may differ for "
            "that reason alone; run the second with --model-from FIRST_RUN"
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``run`` and ``compare`` sub-commands."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run", help="run the CLI steps against a source tree; write a manifest")
    r.add_argument("--src", required=True, help=f"source folder holding {PACKAGE}/")
    r.add_argument("--out", required=True, help="output folder (must be new or empty)")
    r.add_argument(
        "--data", default=str(DEFAULT_DATA), help=f"shared data (default {DEFAULT_DATA})"
    )
    r.add_argument("--model-from", default=None, help="earlier run folder whose models/ to use")
    r.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
    r.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare", help="compare two run folders (or manifests)")
    c.add_argument("a", help="first run folder or manifest.json")
    c.add_argument("b", help="second run folder or manifest.json")
    c.add_argument(
        "--allow", action="append", default=[], metavar="PATTERN", help="glob of tolerated entries"
    )
    c.add_argument("--brief", action="store_true", help="list only entries that are not identical")
    c.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
