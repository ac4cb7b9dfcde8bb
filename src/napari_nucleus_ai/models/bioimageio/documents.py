"""The human-facing files of an export: README, cover image, environment and citations."""

from __future__ import annotations

import io

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.bioimageio.layout import INPUT_ID, OUTPUT_ID, STATE_DICT_ONLY

MODALITY_TEXT = {
    "brightfield_rgb": "brightfield (stained smear) cell crops",
    "fluorescence": "fluorescence nucleus crops",
    "storm": "patches of STORM renders of nuclei",
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


# ---------------------------------------------------------------- citations
def parse_cite(item) -> dict:
    """A citation entry from a dict or a ``"TEXT|DOI"`` / ``"TEXT|URL"`` string.

    Parameters
    ----------
    item : dict or str
        A ready entry (copied) or the ``--cite`` option's text.

    Returns
    -------
    dict
        ``{"text": ..., "doi": ...}`` or ``{"text": ..., "url": ...}``.

    Raises
    ------
    InputError
        A string without both a text and a reference.
    """
    if isinstance(item, dict):
        return dict(item)
    text, sep, ref = str(item).rpartition("|")
    if not sep or not text.strip() or not ref.strip():
        raise InputError(None, f"--cite {item!r} must be 'TEXT|DOI' or 'TEXT|URL'")
    ref = ref.strip()
    key = "url" if ref.startswith(("http://", "https://")) else "doi"
    return {"text": text.strip(), key: ref}


def citations(arch: str, extra: list[dict]) -> list[dict]:
    """napari's citation, the backbone's paper (if known), then ``extra``."""
    cites = [dict(NAPARI_CITE)] + ([dict(ARCH_CITES[arch])] if arch in ARCH_CITES else [])
    return cites + extra


# ---------------------------------------------------------------- README.md
def readme(
    card: dict, tta: int, cites: list[dict], validated_with: str, torchscript: bool = True
) -> str:
    """The package's ``README.md``: input, output, weights, training, validation, citations.

    Parameters
    ----------
    card : dict
        The classifier's model card.
    tta : int
        Test-time transforms inside the exported network.
    cites : list of dict
        The package's citations.
    validated_with : str
        What the package was checked with, for one sentence.
    torchscript : bool
        Whether the package has ``torchscript`` weights (the README says why not).

    Returns
    -------
    str
        Markdown text ending with a newline.
    """
    lines = (
        _readme_input_output(card, tta)
        + _readme_weights(card, torchscript)
        + _readme_training(card.get("provenance", {}))
        + _readme_validation(card.get("metrics", {}), validated_with)
    )
    lines += [f"* {c['text']} ({c.get('doi') or c.get('url')})" for c in cites]
    return "\n".join(lines) + "\n"


def _readme_input_output(card: dict, tta: int) -> list[str]:
    from napari_nucleus_ai import __version__

    classes = ", ".join(c["name"] for c in card["classes"])
    spec = card["input"]
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
        f"member(s) x {tta} test-time dihedral transform(s)" + _adaptive_text(card, tta) + ".",
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
    if isinstance(card.get("fallback"), dict):
        lines += [
            "Fallback model: napari-nucleus-ai classifies the cells this model's domain-shift "
            "score puts out of its domain (another microscope) with a second model in the "
            "canonical cell frame, kept in `card.json` + `weights.safetensors`. The frame "
            "(finding, centring and scaling the cell, stain normalisation) runs before any "
            "network, so this package's weights are the first model alone: for cells out of "
            "its domain they can differ from napari-nucleus-ai's classification.",
            "",
        ]
    return lines + [
        "Cells whose uncertainty (normalised entropy of the probabilities) is above "
        f"{card['uncertainty']['threshold']:g} are reported as *unidentified* by "
        "napari-nucleus-ai.",
        "",
    ]


def _adaptive_text(card: dict, tta: int) -> str:
    """How the adaptive test-time views work, or nothing for a card without them."""
    from napari_nucleus_ai.models.classifier_kind import adaptive_gate

    gate = adaptive_gate(card)
    if gate is None or tta < 2:
        return ""
    return (
        f"; a crop whose first view's normalised entropy is at most {gate:g} keeps that "
        "view's probabilities (adaptive test-time views, as napari-nucleus-ai predicts)"
    )


def _readme_weights(card: dict, torchscript: bool) -> list[str]:
    """The weights section: TorchScript (or why there is none), the state dict, the package."""
    arch = card["architecture"]["name"]
    script = (
        [
            "* `torchscript`: traced on the CPU (run it on the CPU); members, test-time "
            "augmentation, temperature and softmax are inside."
        ]
        if torchscript
        else [
            f"* no `torchscript`: the {arch!r} architecture's {STATE_DICT_ONLY[arch]}. "
            "Its `pytorch_state_dict` architecture runs that code inside `forward`."
        ]
    )
    return [
        "## Weights",
        "",
        *script,
        "* `pytorch_state_dict`: the same module; architecture "
        "`napari_nucleus_ai.models.bioimageio.bioimageio_classifier` "
        f"(`pip install '{_requirement(card['architecture'])}'`, see `environment.yaml`).",
        "* `card.json` + `weights.safetensors`: the napari-nucleus-ai package itself "
        "(`napari-nucleus-ai import-bioimageio` restores it).",
        "",
    ]


def _readme_training(prov: dict) -> list[str]:
    lines = ["## Training", ""]
    for key in ("data", "n_train", "n_val", "class_counts", "seed", "trained_with", "date"):
        if key in prov:
            lines.append(f"* {key}: {prov[key]}")
    return lines


def _readme_validation(metrics: dict, validated_with: str) -> list[str]:
    lines = ["", "## Validation", ""]
    shown = False
    for key in ("val_accuracy", "val_balanced_accuracy", "val_nll", "val_ece"):
        v = metrics.get(key)
        if isinstance(v, int | float):
            lines.append(f"* {key}: {v:.4g}")
            shown = True
    if not shown:
        lines.append("* no validation metrics were recorded in the card")
    return lines + [
        "",
        "Metrics are on the stratified validation hold-out of the training data; validate "
        "on your own labelled cells before relying on the model.",
        "",
        f"This package was checked with {validated_with}.",
        "",
        "## Cite",
        "",
    ]


# ---------------------------------------------------------------- environment.yaml
def _requirement(architecture: dict) -> str:
    """The pip requirement that runs ``architecture``: the plugin, with ``[pretrained]`` for a
    ``morph`` with ImageNet features (the backbone's network code)."""
    from napari_nucleus_ai import __version__

    params = architecture.get("params") or {}
    extra = "[pretrained]" if architecture["name"] == "morph" and params.get("imagenet") else ""
    return f"napari-nucleus-ai{extra}>={__version__}"


def environment(architecture: dict) -> str:
    """The conda ``environment.yaml`` the ``pytorch_state_dict`` weights need.

    Parameters
    ----------
    architecture : dict
        The card's ``architecture`` entry (``name`` and ``params``).

    Returns
    -------
    str
        The YAML text.
    """
    from napari_nucleus_ai.models.nets.registry import TIMM_ARCHS

    pip = [_requirement(architecture)]
    pip += ["timm>=0.9"] if architecture["name"] in TIMM_ARCHS else []
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


# ---------------------------------------------------------------- cover.png
def cover(x: np.ndarray, probs: np.ndarray, colours: list[str], stretch: bool) -> bytes:
    """A 2:1 PNG: the test crop (contrast-stretched if ``stretch``) beside a bar per class.

    Parameters
    ----------
    x : ndarray, shape (1, C, S, S)
        The raw test crop in [0, 1].
    probs : ndarray, shape (n_classes,)
        The package's probabilities for it.
    colours : list of str
        ``#rrggbb`` colour of each class.
    stretch : bool
        Stretch the crop between its 0.5th and 99.5th percentiles (dark fluorescence).

    Returns
    -------
    bytes
        The PNG file, 512 x 256 pixels.
    """
    from PIL import Image

    h = 256
    left = _cover_crop(x, h, stretch)
    right = np.full((h, h, 3), 255, np.uint8)
    bar = max(1, (h - 16) // max(len(probs), 1))
    for i, (p, colour) in enumerate(zip(probs, colours, strict=True)):
        rgb = [int(colour[j : j + 2], 16) for j in (1, 3, 5)]
        top = h - 8 - int(round(float(p) * (h - 16)))
        right[top : h - 8, 8 + i * bar : 8 + (i + 1) * bar - 2] = rgb
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([left, right], 1)).save(buf, format="PNG")
    return buf.getvalue()


def _cover_crop(x: np.ndarray, h: int, stretch: bool) -> np.ndarray:
    """The crop as ``(h, h, 3)`` uint8 RGB, nearest-neighbour resized."""
    img = np.asarray(x[0], np.float32)
    img = img.mean(0) if img.shape[0] not in (1, 3) else img
    img = np.repeat(img, 3, 0) if img.shape[0] == 1 else img
    lo, hi = (
        (float(np.percentile(img, 0.5)), float(np.percentile(img, 99.5))) if stretch else (0, 1)
    )
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
    idx = (np.arange(h) * img.shape[0] // h).clip(0, img.shape[0] - 1)
    return (img[idx][:, idx] * 255).astype(np.uint8)
