"""The ``rdf.yaml`` of an export (model description format 0.5) as a dict.

:func:`build_rdf` assembles it from the package and the bytes of the files already made
(their SHA-256 go into the description); each section has its own small function.
"""

from __future__ import annotations

from napari_nucleus_ai.models.bioimageio import layout
from napari_nucleus_ai.models.bioimageio.documents import MODALITY_TEXT
from napari_nucleus_ai.models.bioimageio.layout import REPRODUCE_ATOL, sha256

UNITS = {"um": "micrometer", "nm": "nanometer"}
MODALITY_TAGS = {
    "brightfield_rgb": ["brightfield", "blood-smear", "cells"],
    "fluorescence": ["fluorescence-light-microscopy", "nuclei"],
    "storm": ["single-molecule-localization-microscopy", "storm", "nuclei", "chromatin"],
}


def build_rdf(
    package,
    files: dict[str, bytes],
    *,
    tta: int,
    cites: list[dict],
    authors: list[dict],
    license: str,
    tags,
    description: str | None,
    state_dict: bool,
) -> dict:
    """The model description of an export, in the order it is written.

    Parameters
    ----------
    package : ModelPackage
        The classifier package being exported.
    files : dict of str to bytes
        The package's files by name (all but ``rdf.yaml``), for their SHA-256.
    tta : int
        Test-time transforms inside the exported network.
    cites, authors : list of dict
        The description's ``cite`` and ``authors``.
    license : str
        SPDX identifier.
    tags : list of str or None
        Extra tags.
    description : str or None
        The description; a generated sentence by default.
    state_dict : bool
        Declare ``pytorch_state_dict`` weights (the parent of the TorchScript, when
        ``files`` holds one).

    Returns
    -------
    dict
        The RDF, ready for ``yaml.safe_dump(sort_keys=False)``.
    """
    from napari_nucleus_ai.models.package import CARD, WEIGHTS

    card = package.card
    arch = card["architecture"]["name"]
    return {
        "format_version": layout.BIOIMAGEIO_FORMAT,
        "type": "model",
        "name": bioimageio_name(card["name"]),
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
        "documentation": layout.README,
        "covers": [layout.COVER],
        "attachments": [
            {"source": CARD, "sha256": sha256(files[CARD])},
            {"source": WEIGHTS, "sha256": sha256(files[WEIGHTS])},
        ],
        "inputs": [_input(card["input"], files)],
        "outputs": [_output(package.classes, files)],
        "weights": _weights(package, files, tta, state_dict),
        "config": _config(card, tta),
    }


def bioimageio_name(name: str) -> str:
    """``name`` in the characters bioimage.io allows, 5 to 64 of them."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
    out = " ".join("".join(ch if ch in allowed else " " for ch in name).split())[:64]
    return out if len(out) >= 5 else f"{out} classifier".strip()


def _tensor_files(files: dict[str, bytes], test: str, sample: str) -> dict:
    return {
        "test_tensor": {"source": test, "sha256": sha256(files[test])},
        "sample_tensor": {"source": sample, "sha256": sha256(files[sample])},
    }


def _input(spec: dict, files: dict[str, bytes]) -> dict:
    """The ``crop`` input: axes with the physical pixel size, normalisation as preprocessing."""
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
    return {
        "id": layout.INPUT_ID,
        "description": "cell crop scaled to [0, 1], centred on the cell",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": channel_names},
            {"id": "y", **space},
            {"id": "x", **space},
        ],
        **_tensor_files(files, layout.TEST_INPUT, layout.SAMPLE_INPUT),
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


def _output(classes, files: dict[str, bytes]) -> dict:
    """The ``probabilities`` output: one channel per class, named by the class names."""
    return {
        "id": layout.OUTPUT_ID,
        "description": "calibrated class probabilities",
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": list(classes)},
        ],
        **_tensor_files(files, layout.TEST_OUTPUT, layout.SAMPLE_OUTPUT),
        "data": {"type": "float32", "range": [0.0, 1.0]},
    }


def _weights(package, files: dict[str, bytes], tta: int, state_dict: bool) -> dict:
    """``pytorch_state_dict`` (if written; architecture :func:`bioimageio_classifier`) and
    ``torchscript`` (if made: not for ``morph``, whose descriptor is numpy code)."""
    import torch

    from napari_nucleus_ai.models.bioimageio.network import architecture_kwargs

    torch_version = torch.__version__.split("+")[0]
    weights = {}
    if state_dict:
        weights["pytorch_state_dict"] = {
            "source": layout.STATE_DICT,
            "sha256": sha256(files[layout.STATE_DICT]),
            "architecture": {
                "callable": layout.ARCHITECTURE_CALLABLE,
                "import_from": layout.ARCHITECTURE_MODULE,
                "kwargs": architecture_kwargs(package, tta),
            },
            "pytorch_version": torch_version,
            "dependencies": {
                "source": layout.ENVIRONMENT,
                "sha256": sha256(files[layout.ENVIRONMENT]),
            },
        }
    if layout.TORCHSCRIPT in files:
        weights["torchscript"] = {
            "source": layout.TORCHSCRIPT,
            "sha256": sha256(files[layout.TORCHSCRIPT]),
            "pytorch_version": torch_version,
            **({"parent": "pytorch_state_dict"} if state_dict else {}),
        }
    return weights


def _config(card: dict, tta: int) -> dict:
    """Our card and file names under ``napari-nucleus-ai``, the zoo's hints under ``bioimageio``."""
    from napari_nucleus_ai import __version__
    from napari_nucleus_ai.models.package import CARD, WEIGHTS

    return {
        layout.CONFIG_KEY: {
            "version": __version__,
            "card": card,
            "card_file": CARD,
            "weights_file": WEIGHTS,
            "tta": tta,
        },
        "bioimageio": {
            "architecture_type": card["architecture"]["name"],
            "modality": card["modality"],
            "task": "classification",
            "target_structure": ["nuclei" if card["modality"] != "brightfield_rgb" else "cells"],
            # the export checks its weights against the package within this (trace.py)
            "reproducibility_tolerance": [
                {"absolute_tolerance": REPRODUCE_ATOL, "relative_tolerance": 0.0}
            ],
        },
    }
