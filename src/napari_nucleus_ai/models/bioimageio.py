"""bioimage.io model packages for classifier packages: export, and import of our own exports.

:func:`export_bioimageio` writes a bioimage.io model package (a zip with ``rdf.yaml``,
model description format 0.5) for a classifier package:

* input ``crop`` (batch, channel, y, x): the crop this package prepares (centre-squared,
  resized to the card's crop size, scaled to [0, 1]; a STORM model takes one rendered
  patch), with the card's per-channel normalisation declared as preprocessing
  (``fixed_zero_mean_unit_variance``), so bioimage.io tools normalise it as we do; the
  space axes carry the card's physical pixel size;
* output ``probabilities`` (batch, channel): the calibrated class probabilities, one
  channel per class (channel names = class names), the mean over the ensemble members
  and the card's test-time augmentations (MC dropout is left out: the export is
  deterministic);
* weights ``torchscript`` (the network traced on the CPU, members, TTA, temperature and
  softmax included) and ``pytorch_state_dict`` (the same module's state dict; its
  architecture is :func:`bioimageio_classifier` from this library, so running it needs
  ``pip install napari-nucleus-ai``);
* ``test_input.npy`` / ``test_output.npy`` computed by the package itself, a cover image,
  ``README.md``, authors, license, citations and tags;
* the package's own files, ``card.json`` and ``weights.safetensors``, as attachments, and
  the card in ``config["napari-nucleus-ai"]["card"]``, so nothing is lost on the way back.

:func:`import_bioimageio` turns such a zip (or its unpacked folder) back into a normal
model package **without executing code from it**: ``rdf.yaml`` is parsed with
``yaml.safe_load``, the card must be in its ``config`` and name one of this package's
architectures, the tensors come from the safetensors attachment (or, failing that, from
the state dict read with ``torch.load(weights_only=True)``), every file is checked against
the SHA-256 the RDF declares, and the modules are built from the architecture name by this
package's code. Anything else (bioimage.io models that need their own Python code, or
TorchScript alone, whose loading runs TorchScript) is refused with one line.

:func:`validate_bioimageio` checks a package with the maintained ``bioimageio.spec``
library (optional extra ``napari-nucleus-ai[bioimageio]``) without network access.

Qt-free; torch is imported inside functions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError

CONFIG_KEY = "napari-nucleus-ai"
RDF = "rdf.yaml"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
BIOIMAGEIO_FORMAT = "0.5.4"
INPUT_ID, OUTPUT_ID = "crop", "probabilities"
TORCHSCRIPT = "weights_torchscript.pt"
STATE_DICT = "weights_state_dict.pt"
ENVIRONMENT = "environment.yaml"
TEST_INPUT, TEST_OUTPUT = "test_input.npy", "test_output.npy"
COVER, README = "cover.png", "README.md"
SAMPLE_INPUT, SAMPLE_OUTPUT = "sample_input.tif", "sample_output.tif"
MAX_RDF_BYTES = 4 << 20
UNITS = {"um": "micrometer", "nm": "nanometer"}
MODALITY_TAGS = {
    "brightfield_rgb": ["brightfield", "blood-smear", "cells"],
    "fluorescence": ["fluorescence-light-microscopy", "nuclei"],
    "storm": ["single-molecule-localization-microscopy", "storm", "nuclei", "chromatin"],
}
MODALITY_TEXT = {
    "brightfield_rgb": "brightfield (stained smear) cell crops",
    "fluorescence": "fluorescence nucleus crops",
    "storm": "patches of STORM renders of nuclei",
}
NOT_SCRIPTABLE = {
    "morph": "its cell-morphology descriptor (nucleus segmentation, watershed, texture) is "
    "numpy/scikit-image code, which TorchScript can neither trace nor script; train a "
    "'hybrid' or 'smallcnn' model to share on bioimage.io",
}
NAPARI_CITE = {
    "text": "napari contributors. napari: a multi-dimensional image viewer for Python",
    "doi": "10.5281/zenodo.3555620",
}
ARCH_CITES = {
    "densenet121": {
        "text": "Huang, Liu, van der Maaten, Weinberger. Densely connected convolutional "
        "networks. CVPR 2017",
        "url": "https://arxiv.org/abs/1608.06993",
    },
    "resnext50_32x4d": {
        "text": "Xie, Girshick, Dollar, Tu, He. Aggregated residual transformations for deep "
        "neural networks. CVPR 2017",
        "url": "https://arxiv.org/abs/1611.05431",
    },
    "efficientnet_b0": {
        "text": "Tan, Le. EfficientNet: rethinking model scaling for convolutional neural "
        "networks. ICML 2019",
        "url": "https://arxiv.org/abs/1905.11946",
    },
}
# the order in which tta = 1, 2, 4, 8 adds dihedral transforms (as models/engine.py)
_DIHEDRAL = (
    (0, False),
    (0, True),
    (1, False),
    (3, False),
    (2, False),
    (1, True),
    (2, True),
    (3, True),
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(e: BaseException, n: int = 120) -> str:
    return " ".join(str(e).split())[:n] or type(e).__name__


# ---------------------------------------------------------------- the exported module
def bioimageio_classifier(
    architecture: str,
    channels: int,
    n_classes: int,
    params: dict | None = None,
    members: int = 1,
    temperature: float = 1.0,
    tta: int = 1,
):
    """The exported network: ``(N, C, H, W)`` normalised crops -> ``(N, n_classes)`` probabilities.

    The mean over ``members`` networks of ``architecture`` and ``tta`` dihedral transforms
    of the softmax of the logits divided by ``temperature``, as the package predicts
    (without MC dropout). This is the ``pytorch_state_dict`` architecture of exported
    packages (``from napari_nucleus_ai.models.bioimageio import bioimageio_classifier``).
    """
    from .architectures import build_architecture

    nets = [
        build_architecture(architecture, int(channels), int(n_classes), params)
        for _ in range(int(members))
    ]
    return _ensemble(nets, float(temperature), int(tta))


def _ensemble(nets: list, temperature: float, tta: int):
    import torch
    from torch import nn

    transforms = _DIHEDRAL[: max(1, min(int(tta), len(_DIHEDRAL)))]

    class NucleusAIClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(nets)
            self.temperature = float(temperature)
            self.transforms = transforms

        def forward(self, x):
            total = None
            for net in self.members:
                for k, flip in self.transforms:
                    t = torch.flip(x, dims=(-1,)) if flip else x
                    if k:
                        t = torch.rot90(t, k, dims=(-2, -1))
                    p = torch.softmax(net(t) / self.temperature, dim=1)
                    total = p if total is None else total + p
            return total / float(len(self.members) * len(self.transforms))

    return NucleusAIClassifier().eval()


# ---------------------------------------------------------------- export helpers
def _refuse_unexportable(package, path) -> None:
    card = package.card
    if card["kind"] != "classifier":
        raise InputError(
            path,
            f"only classifier packages can be exported to bioimage.io (this is a "
            f"{card['kind']!r} model)",
        )
    arch = card["architecture"]["name"]
    if arch in NOT_SCRIPTABLE:
        raise InputError(
            path,
            f"the {arch!r} architecture cannot be exported to bioimage.io: {NOT_SCRIPTABLE[arch]}",
        )


def _sample_input(package, sample) -> np.ndarray:
    """One raw network input ``(1, C, S, S)`` in [0, 1] (before normalisation)."""
    from .inputs import raw_inputs

    card = package.card
    spec = card["input"]
    c, s = int(spec["channels"]), int(spec["crop_size"])
    if sample is None:  # deterministic: noise with the training set's channel statistics
        rng = np.random.default_rng(0)
        mean = np.asarray(spec["normalisation"]["mean"], np.float32)[:, None, None]
        std = np.asarray(spec["normalisation"]["std"], np.float32)[:, None, None]
        x = mean + std * rng.standard_normal((c, s, s)).astype(np.float32)
        return np.clip(x, 0.0, 1.0)[None].astype(np.float32)
    if isinstance(sample, str | os.PathLike):
        from ..predict import read_item

        sample = read_item(os.fspath(sample), package)
    x, _ = raw_inputs([sample], card)
    return np.ascontiguousarray(x[:1], np.float32)


def _package_probs(package, x_norm: np.ndarray, tta: int) -> np.ndarray:
    import torch

    from .engine import probability_samples

    package.to("cpu")
    samples = probability_samples(
        package.modules,
        x_norm,
        device=torch.device("cpu"),
        temperature=package.temperature,
        tta=tta,
        mc_dropout=0,
    )
    return samples.mean(0).astype(np.float32)


def _trace(wrapper, x: np.ndarray, expected: np.ndarray, path) -> bytes:
    """TorchScript of ``wrapper`` (traced on the CPU) checked against the package's output."""
    import warnings

    import torch

    example = torch.from_numpy(np.repeat(x, 2, 0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about constant shapes
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            got = traced(torch.from_numpy(np.repeat(x, 3, 0))).numpy()
    except Exception as e:  # noqa: BLE001 - tracing raises many types
        raise InputError(
            path, f"the network cannot be traced to TorchScript ({_short(e)})"
        ) from None
    if got.shape != (3, expected.shape[1]) or not np.allclose(got, expected, atol=1e-4, rtol=1e-3):
        raise InputError(
            path, "the TorchScript trace does not reproduce the package's probabilities"
        )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 marks TorchScript deprecated
        torch.jit.save(traced, buf)
    return buf.getvalue()


def _cover(x: np.ndarray, probs: np.ndarray, colours: list[str], stretch: bool) -> bytes:
    """A 2:1 PNG: the test crop (contrast-stretched if ``stretch``) beside a bar per class."""
    from PIL import Image

    h = 256
    img = np.asarray(x[0], np.float32)
    img = img.mean(0) if img.shape[0] not in (1, 3) else img
    img = np.repeat(img, 3, 0) if img.shape[0] == 1 else img
    lo, hi = (
        (float(np.percentile(img, 0.5)), float(np.percentile(img, 99.5))) if stretch else (0, 1)
    )
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
    idx = (np.arange(h) * img.shape[0] // h).clip(0, img.shape[0] - 1)
    left = (img[idx][:, idx] * 255).astype(np.uint8)
    right = np.full((h, h, 3), 255, np.uint8)
    n = len(probs)
    bar = max(1, (h - 16) // max(n, 1))
    for i, (p, colour) in enumerate(zip(probs, colours, strict=True)):
        rgb = [int(colour[j : j + 2], 16) for j in (1, 3, 5)]
        top = h - 8 - int(round(float(p) * (h - 16)))
        right[top : h - 8, 8 + i * bar : 8 + (i + 1) * bar - 2] = rgb
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([left, right], 1)).save(buf, format="PNG")
    return buf.getvalue()


def _tiff(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(arr, np.float32), photometric="minisblack")
    return buf.getvalue()


def _bioimageio_name(name: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
    out = " ".join("".join(ch if ch in allowed else " " for ch in name).split())[:64]
    return out if len(out) >= 5 else f"{out} classifier".strip()


def _readme(card: dict, tta: int, cites: list[dict], validated_with: str) -> str:
    from .. import __version__

    classes = ", ".join(c["name"] for c in card["classes"])
    spec, prov, metrics = card["input"], card.get("provenance", {}), card.get("metrics", {})
    unit = spec["unit"]
    scale = (
        f"{spec['pixel_size']:g} {unit} per pixel"
        if unit != "px"
        else "source pixels (no physical scale recorded)"
    )
    lines = [
        f"# {card['name']}",
        "",
        f"A {card['architecture']['name']} classifier of {MODALITY_TEXT[card['modality']]} "
        f"into {len(card['classes'])} classes: {classes}. Trained and exported with "
        f"napari-nucleus-ai {__version__}.",
        "",
        "## Input and output",
        "",
        f"* `{INPUT_ID}`: (batch, channel, y, x) float32, {spec['channels']} channel(s) of "
        f"{spec['crop_size']} x {spec['crop_size']} pixels at {scale}, scaled to [0, 1] "
        "by the image's dtype range (8-bit divided by 255, 16-bit by 65535), centred on the cell; normalised per channel with the "
        "training set's mean and std (declared as `fixed_zero_mean_unit_variance` "
        "preprocessing).",
        f"* `{OUTPUT_ID}`: (batch, class) calibrated probabilities (temperature "
        f"{card['calibration']['temperature']:.4g}), the mean over {card['members']} ensemble "
        f"member(s) x {tta} test-time dihedral transform(s).",
        "",
    ]
    if card["modality"] == "storm":
        st = spec["storm"]
        lines += [
            f"STORM: the input is one {spec['crop_size']}-pixel patch of a nucleus rendered at "
            f"{st['render_pixel_nm']:g} nm (Gaussian blur {st['blur_px']:g} px, normalised by "
            "the nucleus' 99.5th density percentile). napari-nucleus-ai classifies a nucleus "
            f"by the geometric mean of the probabilities of {st['patches']} patches.",
            "",
        ]
    lines += [
        "Cells whose uncertainty (normalised entropy of the probabilities) is above "
        f"{card['uncertainty']['threshold']:g} are reported as *unidentified* by "
        "napari-nucleus-ai.",
        "",
        "## Weights",
        "",
        "* `torchscript`: traced on the CPU (run it on the CPU); members, test-time "
        "augmentation, temperature and softmax are inside.",
        "* `pytorch_state_dict`: the same module; architecture "
        "`napari_nucleus_ai.models.bioimageio.bioimageio_classifier` "
        "(`pip install napari-nucleus-ai`).",
        "* `card.json` + `weights.safetensors`: the napari-nucleus-ai package itself "
        "(`napari-nucleus-ai import-bioimageio` restores it).",
        "",
        "## Training",
        "",
    ]
    for key in ("data", "n_train", "n_val", "class_counts", "seed", "trained_with", "date"):
        if key in prov:
            lines.append(f"* {key}: {prov[key]}")
    lines += ["", "## Validation", ""]
    shown = False
    for key in ("val_accuracy", "val_balanced_accuracy", "val_nll", "val_ece"):
        v = metrics.get(key)
        if isinstance(v, int | float):
            lines.append(f"* {key}: {v:.4g}")
            shown = True
    if not shown:
        lines.append("* no validation metrics were recorded in the card")
    lines += [
        "",
        "Metrics are on the stratified validation hold-out of the training data; validate "
        "on your own labelled cells before relying on the model.",
        "",
        f"This package was checked with {validated_with}.",
        "",
        "## Cite",
        "",
    ]
    lines += [f"* {c['text']} ({c.get('doi') or c.get('url')})" for c in cites]
    return "\n".join(lines) + "\n"


def _environment(arch: str) -> str:
    from .. import __version__
    from .architectures import TIMM_ARCHS

    pip = [f"napari-nucleus-ai>={__version__}"] + (["timm>=0.9"] if arch in TIMM_ARCHS else [])
    lines = [
        "name: napari-nucleus-ai",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        "  - python>=3.10",
        "  - pytorch>=2.2",
        "  - pip",
        "  - pip:",
    ] + [f"    - {p}" for p in pip]
    return "\n".join(lines) + "\n"


def _parse_cite(item) -> dict:
    if isinstance(item, dict):
        return dict(item)
    text, sep, ref = str(item).rpartition("|")
    if not sep or not text.strip() or not ref.strip():
        raise InputError(None, f"--cite {item!r} must be 'TEXT|DOI' or 'TEXT|URL'")
    ref = ref.strip()
    key = "url" if ref.startswith(("http://", "https://")) else "doi"
    return {"text": text.strip(), key: ref}


def export_bioimageio(
    model_path,
    out_zip,
    *,
    sample=None,
    authors=None,
    license: str = "CC-BY-4.0",
    cite=None,
    tags=None,
    description: str | None = None,
    tta: int | None = None,
    state_dict: bool = True,
    validate: bool = True,
) -> dict:
    """Write a bioimage.io model package (zip, ``rdf.yaml`` format 0.5) for a classifier.

    Parameters
    ----------
    model_path : path
        A classifier package (folder, zip or ``.safetensors``).
    out_zip : path
        The ``.zip`` to write (atomically: nothing is left behind on error).
    sample : path or array, optional
        A crop image (or STORM localization file / render) for the test tensors and the
        cover; a deterministic noise crop with the training set's statistics by default.
    authors : list of str or dict, optional
        Default: the plugin's author setting, if any.
    license : str
        SPDX identifier of the weights' license.
    cite : list of dict or ``"TEXT|DOI"`` / ``"TEXT|URL"`` strings, optional
        Added to napari's citation and the backbone's paper.
    tags, description : optional extras.
    tta : int, optional
        Test-time transforms inside the exported network (default: the card's).
    state_dict : bool
        Also write ``pytorch_state_dict`` weights.
    validate : bool
        Check the zip with ``bioimageio.spec`` (offline) when it is installed.

    Returns
    -------
    dict with ``path``, ``status`` (``valid-format``/``passed``/``failed`` or
    ``not validated``), ``validation`` (one line), ``weights`` and ``probabilities``.
    """
    import torch
    import yaml

    from .. import __version__
    from ..utils import atomic_path
    from .inputs import normalise
    from .package import CARD, WEIGHTS, load_model

    model_path, out_zip = Path(model_path), Path(out_zip)
    if out_zip.suffix.lower() != ".zip":
        raise InputError(out_zip, "a bioimage.io package is written as a .zip")
    extra_cites = [_parse_cite(c) for c in (cite or [])]  # bad options fail before the work
    package = load_model(model_path, cache=False)
    _refuse_unexportable(package, model_path)
    card = package.card
    arch = card["architecture"]["name"]
    spec = card["input"]
    tta = int(card["uncertainty"].get("tta", 1) if tta is None else tta)
    if not 1 <= tta <= 8:
        raise InputError(None, f"tta must be 1..8, got {tta}")

    raw = _sample_input(package, sample)
    x = normalise(raw, card).astype(np.float32)
    probs = _package_probs(package, x, tta)
    wrapper = _ensemble([m.to("cpu").eval() for m in package.modules], package.temperature, tta)
    files: dict[str, bytes] = {}
    files[TORCHSCRIPT] = _trace(wrapper, x, np.repeat(probs, 3, 0), model_path)
    if state_dict:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in wrapper.state_dict().items()}, buf)
        files[STATE_DICT] = buf.getvalue()
        files[ENVIRONMENT] = _environment(arch).encode()
    for name, arr in ((TEST_INPUT, raw), (TEST_OUTPUT, probs)):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        files[name] = buf.getvalue()
    files[COVER] = _cover(raw, probs[0], package.colours, card["modality"] != "brightfield_rgb")
    files[SAMPLE_INPUT] = _tiff(raw[0])
    files[SAMPLE_OUTPUT] = _tiff(probs)
    # the package itself: card.json + weights.safetensors, exactly as save_model writes them
    import tempfile

    from .package import save_model

    with tempfile.TemporaryDirectory(prefix="nucleus-ai-export-") as tmp:
        save_model(card, package.modules, Path(tmp) / "pkg")
        for name in (CARD, WEIGHTS):
            files[name] = (Path(tmp) / "pkg" / name).read_bytes()

    cites = [dict(NAPARI_CITE)] + ([dict(ARCH_CITES[arch])] if arch in ARCH_CITES else [])
    cites += extra_cites
    if authors is None:
        from ..settings import load_settings

        author = str(load_settings().get("author") or "").strip()
        authors = [author] if author else []
    authors = [a if isinstance(a, dict) else {"name": str(a)} for a in authors]
    validated_with = (
        f"bioimageio.spec {_spec_version()} (format validation, offline)"
        if validate and have_bioimageio_spec()
        else "napari-nucleus-ai's own checks only (bioimageio.spec was not run)"
    )
    files[README] = _readme(card, tta, cites, validated_with).encode()

    space = {"type": "space", "size": int(spec["crop_size"])}
    if spec["unit"] in UNITS:
        space.update(unit=UNITS[spec["unit"]], scale=float(spec["pixel_size"]))
    c = int(spec["channels"])
    channel_names = (
        ["red", "green", "blue"]
        if c == 3
        else ["intensity"]
        if c == 1
        else [f"channel{i}" for i in range(c)]
    )
    norm = spec["normalisation"]
    rdf = {
        "format_version": BIOIMAGEIO_FORMAT,
        "type": "model",
        "name": _bioimageio_name(card["name"]),
        "description": (
            description
            or f"{arch} classifier of {MODALITY_TEXT[card['modality']]} into "
            f"{len(card['classes'])} classes ({', '.join(package.classes)}), exported from "
            "napari-nucleus-ai"
        )[:512],
        "authors": authors,
        "cite": cites,
        "license": license,
        "tags": sorted(
            set(
                ["napari-nucleus-ai", "classification", "pytorch", "2d", arch]
                + MODALITY_TAGS[card["modality"]]
                + list(tags or [])
            )
        ),
        "documentation": README,
        "covers": [COVER],
        "attachments": [
            {"source": CARD, "sha256": _sha256(files[CARD])},
            {"source": WEIGHTS, "sha256": _sha256(files[WEIGHTS])},
        ],
        "inputs": [
            {
                "id": INPUT_ID,
                "description": "cell crop scaled to [0, 1], centred on the cell",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": channel_names},
                    {"id": "y", **space},
                    {"id": "x", **space},
                ],
                "test_tensor": {"source": TEST_INPUT, "sha256": _sha256(files[TEST_INPUT])},
                "sample_tensor": {
                    "source": SAMPLE_INPUT,
                    "sha256": _sha256(files[SAMPLE_INPUT]),
                },
                "data": {"type": "float32"},
                "preprocessing": [
                    {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                    {
                        "id": "fixed_zero_mean_unit_variance",
                        "kwargs": {
                            "axis": "channel",
                            "mean": [float(v) for v in norm["mean"]],
                            "std": [float(v) for v in norm["std"]],
                        },
                    },
                ],
            }
        ],
        "outputs": [
            {
                "id": OUTPUT_ID,
                "description": "calibrated class probabilities",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": list(package.classes)},
                ],
                "test_tensor": {"source": TEST_OUTPUT, "sha256": _sha256(files[TEST_OUTPUT])},
                "sample_tensor": {
                    "source": SAMPLE_OUTPUT,
                    "sha256": _sha256(files[SAMPLE_OUTPUT]),
                },
                "data": {"type": "float32", "range": [0.0, 1.0]},
            }
        ],
        "weights": {},
        "config": {
            CONFIG_KEY: {
                "version": __version__,
                "card": card,
                "card_file": CARD,
                "weights_file": WEIGHTS,
                "tta": tta,
            },
            "bioimageio": {
                "architecture_type": arch,
                "modality": card["modality"],
                "task": "classification",
                "target_structure": [
                    "nuclei" if card["modality"] != "brightfield_rgb" else "cells"
                ],
            },
        },
    }
    torch_version = torch.__version__.split("+")[0]
    if state_dict:
        rdf["weights"]["pytorch_state_dict"] = {
            "source": STATE_DICT,
            "sha256": _sha256(files[STATE_DICT]),
            "architecture": {
                "callable": "bioimageio_classifier",
                "import_from": "napari_nucleus_ai.models.bioimageio",
                "kwargs": {
                    "architecture": arch,
                    "channels": c,
                    "n_classes": len(package.classes),
                    "params": dict(card["architecture"].get("params") or {}),
                    "members": int(card["members"]),
                    "temperature": float(package.temperature),
                    "tta": tta,
                },
            },
            "pytorch_version": torch_version,
            "dependencies": {"source": ENVIRONMENT, "sha256": _sha256(files[ENVIRONMENT])},
        }
    rdf["weights"]["torchscript"] = {
        "source": TORCHSCRIPT,
        "sha256": _sha256(files[TORCHSCRIPT]),
        "pytorch_version": torch_version,
        **({"parent": "pytorch_state_dict"} if state_dict else {}),
    }
    files_rdf = yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(RDF, files_rdf)
        for name, data in files.items():
            zf.writestr(name, data)
    status, message = "not validated", "validation skipped"
    with atomic_path(out_zip) as tmp:
        tmp.write_bytes(buf.getvalue())
        if validate:
            status, message = _validate_before_rename(tmp, out_zip, rdf)
    return {
        "path": os.fspath(out_zip),
        "status": status,
        "validation": message,
        "weights": list(rdf["weights"]),
        "probabilities": probs[0].tolist(),
        "classes": list(package.classes),
    }


def _validate_before_rename(tmp_name, out_zip: Path, rdf: dict) -> tuple[str, str]:
    try:
        status, message = validate_bioimageio(tmp_name, _known_urls(rdf))
    except ImportError:
        return "not validated", (
            "bioimageio.spec is not installed (pip install 'napari-nucleus-ai[bioimageio]')"
        )
    if status == "failed":
        raise InputError(out_zip, f"bioimageio.spec finds the package invalid: {message}")
    return status, message


def _known_urls(rdf: dict) -> list[str]:
    return [c["url"] for c in rdf.get("cite", []) if "url" in c]


def validate_bioimageio(path, known_urls=()) -> tuple[str, str]:
    """``(status, one line)`` of ``bioimageio.spec``'s format validation of a package.

    Offline: local files are read and their SHA-256 checked (``perform_io_checks``); the
    only remote references an export holds, the citation URLs, are passed to the library
    as ``known_files`` so it does not request them (DOIs are checked by pattern only).
    Raises ImportError without bioimageio.spec.
    """
    import bioimageio.spec as spec  # noqa: F401 - ImportError when the extra is missing
    from bioimageio.spec import load_description

    path = Path(path)
    known = {u: None for u in known_urls}
    if not known:
        rdf = _read_rdf_any(path)
        known = {u: None for u in _known_urls(rdf)}
    descr = load_description(
        path, format_version="discover", perform_io_checks=True, known_files=known
    )
    summary = descr.validation_summary

    def where(loc) -> str:
        return f"{'.'.join(map(str, loc))}: " if loc else ""

    def clip(msg: str, n: int = 160) -> str:
        msg = " ".join(str(msg).split())
        return msg if len(msg) <= n else msg[: n - 3] + "..."

    errors = [f"{where(e.loc)}{clip(e.msg)}" for e in summary.errors]
    warnings = [
        f"{where(w.loc)}{w.msg}"
        for d in summary.details
        for w in d.warnings
        if getattr(w, "severity", 30) >= 30
    ]
    if errors:
        return "failed", " ".join("; ".join(errors[:3]).split())[:400]
    note = f" ({len(warnings)} warning(s): {'; '.join(warnings[:2])})" if warnings else ""
    return str(summary.status), " ".join(
        f"bioimageio.spec {_spec_version()}: {summary.status}{note}".split()
    )[:400]


def have_bioimageio_spec() -> bool:
    """True when the optional ``bioimageio.spec`` library can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("bioimageio.spec") is not None
    except (ImportError, ValueError):
        return False


def _spec_version() -> str:
    try:
        from importlib.metadata import version

        return version("bioimageio.spec")
    except Exception:  # noqa: BLE001
        return "?"


# ---------------------------------------------------------------- reading a package
class _Source:
    """Files of a bioimage.io package in a zip or a folder, size-limited, never executed."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = None
        if not path.exists():
            raise InputError(path, "no such bioimage.io package (zip or folder)")
        if path.is_dir():
            return
        if path.stat().st_size == 0:
            raise InputError(path, "file is empty")
        if not zipfile.is_zipfile(path):
            raise InputError(path, "not a bioimage.io package: not a zip file or folder")
        try:
            self.zip = zipfile.ZipFile(path)
            names = [i.filename for i in self.zip.infolist()]
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(path, f"damaged zip ({_short(e, 80)})") from None
        if len(names) != len(set(names)):
            raise InputError(path, "zip holds duplicate members")

    def has(self, name: str) -> bool:
        if self.zip is None:
            return (self.path / name).is_file()
        return name in self.zip.namelist()

    def read(self, name: str, limit: int) -> bytes:
        if "/" in name or "\\" in name or name.startswith(".") or ":" in name:
            raise InputError(self.path, f"refusing file reference {name!r} outside the package")
        if self.zip is None:
            f = self.path / name
            if not f.is_file():
                raise InputError(self.path, f"package has no {name}")
            if f.stat().st_size > limit:
                raise InputError(f, f"'{name}' is too large")
            return f.read_bytes()
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise InputError(self.path, f"package has no {name}") from None
        if info.file_size > limit:
            raise InputError(
                self.path, f"'{name}' in the zip is too large ({info.file_size} bytes)"
            )
        try:
            with self.zip.open(info) as fh:
                data = fh.read(limit + 1)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise InputError(self.path, f"damaged zip ({_short(e, 80)})") from None
        if len(data) > limit:
            raise InputError(self.path, f"'{name}' in the zip is larger than it claims")
        return data

    def rdf_name(self) -> str:
        for name in RDF_NAMES:
            if self.has(name):
                return name
        raise InputError(self.path, "not a bioimage.io package: no rdf.yaml or bioimageio.yaml")

    def close(self):
        if self.zip is not None:
            self.zip.close()


def _read_rdf(src: _Source) -> dict:
    import yaml

    name = src.rdf_name()
    try:
        rdf = yaml.safe_load(src.read(name, MAX_RDF_BYTES))
    except yaml.YAMLError as e:
        raise InputError(src.path, f"{name} is not valid YAML ({_short(e, 80)})") from None
    if not isinstance(rdf, dict):
        raise InputError(src.path, f"{name} is not a YAML mapping")
    return rdf


def _read_rdf_any(path: Path) -> dict:
    src = _Source(Path(path))
    try:
        return _read_rdf(src)
    finally:
        src.close()


def _checked(src: _Source, name: str, sha256: str | None, limit: int) -> bytes:
    data = src.read(name, limit)
    if sha256 and _sha256(data) != str(sha256).lower():
        raise InputError(
            src.path, f"'{name}' does not match the SHA-256 in rdf.yaml (the file was changed)"
        )
    return data


def _refuse_foreign(path: Path, rdf: dict, why: str):
    weights = rdf.get("weights") if isinstance(rdf.get("weights"), dict) else {}
    formats = ", ".join(k for k, v in weights.items() if v) or "none"
    raise InputError(
        path,
        f"not a napari-nucleus-ai export ({why}; weights: {formats}): bioimage.io models that "
        "need their own Python code or TorchScript would run code from the file, so they are "
        "not imported",
    )


def import_bioimageio(source, out) -> Path:
    """Turn a bioimage.io package exported by napari-nucleus-ai back into a model package.

    Nothing from the file is executed: YAML is parsed safely, tensors come from the
    safetensors attachment (or the state dict via ``torch.load(weights_only=True)``),
    the modules are built by this package from the card's architecture name and loaded
    strictly. ``out``: ``.zip``, ``.safetensors`` or a folder (written atomically).
    """
    from .architectures import ARCHS
    from .card import validate_card
    from .package import MAX_WEIGHTS_BYTES, _read_tensors_bytes, build_from, save_model

    path = Path(source)
    src = _Source(path)
    try:
        rdf = _read_rdf(src)
        if rdf.get("type") != "model":
            raise InputError(path, f"not a bioimage.io model (type {rdf.get('type')!r})")
        config = rdf.get("config") if isinstance(rdf.get("config"), dict) else {}
        ours = config.get(CONFIG_KEY)
        if not isinstance(ours, dict) or not isinstance(ours.get("card"), dict):
            _refuse_foreign(path, rdf, f"its config has no {CONFIG_KEY!r} card")
        card = ours["card"]
        arch = (card.get("architecture") or {}).get("name")
        if card.get("kind") != "classifier" or arch not in ARCHS:
            _refuse_foreign(
                path, rdf, f"its card names kind {card.get('kind')!r}, architecture {arch!r}"
            )
        try:
            card = validate_card(card, None)
        except InputError as e:
            raise InputError(path, f"rdf.yaml config: {e.problem}") from None
        outputs = rdf.get("outputs") or [{}]
        names = [
            a.get("channel_names")
            for a in (outputs[0].get("axes") or [])
            if isinstance(a, dict) and a.get("type") == "channel"
        ]
        classes = [c["name"] for c in card["classes"]]
        if names and names[0] != classes:
            raise InputError(
                path, "the output channel names in rdf.yaml differ from the card's classes"
            )
        declared = {
            a.get("source"): a.get("sha256")
            for a in rdf.get("attachments") or []
            if isinstance(a, dict)
        }
        weights_file = ours.get("weights_file") or "weights.safetensors"
        tensors = None
        if isinstance(weights_file, str) and weights_file in declared and src.has(weights_file):
            data = _checked(src, weights_file, declared[weights_file], MAX_WEIGHTS_BYTES)
            tensors = _read_tensors_bytes(data, path)
            _check_card_matches(path, card, data)
        else:
            tensors = _tensors_from_state_dict(src, rdf, card)
        package = build_from(card, tensors, path)
    finally:
        src.close()
    return save_model(card, package.modules, out)


def _check_card_matches(path: Path, card: dict, safetensors_bytes: bytes) -> None:
    """The card stored with the weights at export must be the card in rdf.yaml."""
    import struct

    n = struct.unpack("<Q", safetensors_bytes[:8])[0]
    try:
        meta = json.loads(safetensors_bytes[8 : 8 + n]).get("__metadata__") or {}
        stored = json.loads(meta["card"]) if "card" in meta else None
    except (ValueError, KeyError):
        stored = None
    if stored is not None and _canonical(stored) != _canonical(card):
        raise InputError(
            path,
            "the card in rdf.yaml config differs from the card stored with the weights "
            "(the package was edited after export)",
        )


def _canonical(card: dict) -> str:
    return json.dumps(card, sort_keys=True)


def _tensors_from_state_dict(src: _Source, rdf: dict, card: dict) -> dict:
    import torch

    from .package import MAX_WEIGHTS_BYTES

    entry = (rdf.get("weights") or {}).get("pytorch_state_dict")
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
        _refuse_foreign(src.path, rdf, "it has neither our safetensors weights nor a state dict")
    arch = entry.get("architecture") or {}
    if (
        arch.get("import_from") != "napari_nucleus_ai.models.bioimageio"
        or arch.get("callable") != "bioimageio_classifier"
    ):
        _refuse_foreign(src.path, rdf, "its state dict is for another architecture")
    data = _checked(src, entry["source"], entry.get("sha256"), MAX_WEIGHTS_BYTES)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - weights_only refuses anything but tensors
        raise InputError(
            src.path, f"'{entry['source']}' is not a plain state dict ({_short(e, 80)})"
        ) from None
    if not isinstance(state, dict):
        raise InputError(src.path, f"'{entry['source']}' is not a state dict")
    tensors = {}
    for key, t in state.items():
        head, i, rest = (str(key).split(".", 2) + ["", ""])[:3]
        if head != "members" or not i.isdigit() or not rest or not isinstance(t, torch.Tensor):
            raise InputError(src.path, f"unexpected entry {key!r} in '{entry['source']}'")
        tensors[f"m{i}.{rest}"] = t
    return tensors
