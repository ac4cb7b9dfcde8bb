"""What a model package is, from its card: ``napari-nucleus-ai info MODEL``.

:func:`describe_package` reads the card and the names and shapes of the weights' tensors
(the safetensors header), never the tensors' values: no torch, no module is built, so
``info`` stays fast. :func:`read_card` is :func:`.package.read_package` reading the tensors' header only, with
its one-line :class:`~napari_nucleus_ai.core.errors.InputError` messages.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

from napari_nucleus_ai.models.package import (
    CARD,
    FALLBACK,
    PICKLE_SUFFIXES,
    WEIGHTS,
    read_package,
)

__all__ = ["PACKAGE_SUFFIXES", "describe_package", "is_package", "read_card", "summarise"]

#: Names the package reader answers for (with its one-line error when the file is broken)
#: when no data reader takes the file; ``.bin`` is left to the data readers (Insight3
#: localizations), which name its problem better than the pickle refusal would.
PACKAGE_SUFFIXES = (".zip", ".safetensors", *(s for s in PICKLE_SUFFIXES if s != ".bin"))

#: Provenance entries shown under ``training`` as the card has them (after ``data`` and the
#: crop counts).
TRAINING_KEYS = ("date", "trained_with", "device", "seconds", "epochs_run")


def is_package(path) -> bool:
    """Whether ``path`` is a model package by what it holds (not by its name).

    A folder holding ``card.json`` or ``weights.safetensors``, a zip holding a
    ``card.json``, or a safetensors file (a package as one file, or weights without a card).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    p = Path(path)
    if p.is_dir():
        return (p / CARD).is_file() or (p / WEIGHTS).is_file()
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                return any(_base(i.filename) == CARD for i in zf.infolist())
        with open(p, "rb") as fh:
            return _is_safetensors_header(fh.read(10))
    except (OSError, zipfile.BadZipFile):
        return False


def _base(name: str) -> str:
    return name.rstrip("/").split("/")[-1]


def _is_safetensors_header(head: bytes) -> bool:
    """A safetensors file starts with its header's length (8 bytes) and ``{"``."""
    return (
        len(head) == 10 and head[8:10] == b'{"' and 0 < int.from_bytes(head[:8], "little") < 1 << 27
    )


def read_card(path) -> tuple[dict, dict, list[Path]]:
    """``(card, shapes, files)`` of a package, without reading the tensors' values.

    Parameters
    ----------
    path : str or os.PathLike
        A package folder, zip or single safetensors file.

    Returns
    -------
    card : dict
        Validated, as :func:`.package.read_package` reads it.
    shapes : dict
        ``{tensor name: shape}`` of the weights.
    files : list of Path
        The files the package is (the zip or safetensors file; a folder's card and weights).

    Raises
    ------
    InputError
        :func:`.package.read_package`'s one line for a missing, broken or pickle-based package.
    """
    path = Path(path)
    card, shapes = read_package(path, shapes_only=True)
    return card, shapes, [path / CARD, path / WEIGHTS] if path.is_dir() else [path]


def describe_package(path) -> dict:
    """What ``info MODEL`` prints: the model, its fallback model, and the files.

    Parameters
    ----------
    path : str or os.PathLike
        A package folder, zip or single safetensors file.

    Returns
    -------
    dict
        ``kind`` ("model package"), ``format``, the first model's summary
        (:func:`summarise`), ``fallback`` (the fallback model's, when there is one),
        ``size_bytes`` and ``files`` (``name``, ``bytes``, ``sha256`` of each file).

    Raises
    ------
    InputError
        One line for a missing, broken or pickle-based package (see :func:`read_card`).
    """
    card, shapes, files = read_card(path)
    path = Path(path)
    layout = "folder" if path.is_dir() else "zip" if zipfile.is_zipfile(path) else "safetensors"
    own = {k: v for k, v in shapes.items() if not k.startswith(FALLBACK)}
    out = {
        "kind": "model package",
        "format": f"{card['format']} {card['format_version']} ({layout})",
        **summarise(card, own),
    }
    if "fallback" in card:
        fb = {k[len(FALLBACK) :]: v for k, v in shapes.items() if k.startswith(FALLBACK)}
        out["fallback"] = summarise(card["fallback"], fb)
    listed = [{"name": f.name, "bytes": f.stat().st_size, "sha256": _sha256(f)} for f in files]
    out["size_bytes"] = sum(f["bytes"] for f in listed)
    out["files"] = listed
    return out


def summarise(card: dict, shapes: dict) -> dict:
    """One model of a package: what it is, what it reads, how it answers and how it was trained.

    Parameters
    ----------
    card : dict
        A validated card (the package's, or its ``fallback``).
    shapes : dict
        ``{tensor name: shape}`` of this model's weights.

    Returns
    -------
    dict
        ``name``, ``model_kind``, ``task``, ``architecture`` (``name``, ``params``; for a
        latent-diffusion model also ``autoencoder_training``, the card's
        ``diffusion.autoencoder``; for a diffusion model ``training_precision``, the card's
        ``diffusion.precision``), ``members``, ``parameters``, ``classes`` (``name``,
        ``colour``), ``input``, ``uncertainty``, ``trust``, ``training``.
    """
    arch = {
        "name": card["architecture"]["name"],
        "params": card["architecture"].get("params") or {},
    }
    diffusion = card.get("diffusion") or {}
    if diffusion.get("autoencoder"):
        arch["autoencoder_training"] = diffusion["autoencoder"]
    if diffusion.get("precision"):
        arch["training_precision"] = diffusion["precision"]
    out = {"name": card["name"]}
    for key in ("description", "version"):
        if key in card:
            out[key] = card[key]
    out.update(
        model_kind=card["kind"],
        task=card["task"],
        architecture=arch,
        members=card["members"],
        parameters=sum(math.prod(s) for s in shapes.values()),
        classes=[{"name": c["name"], "colour": c["colour"]} for c in card["classes"]],
        input=_input(card),
        uncertainty=_uncertainty(card),
        trust=_trust(card.get("trust") or {}),
        training=_training(card.get("provenance") or {}, card.get("metrics") or {}),
    )
    return out


def _input(card: dict) -> dict:
    from napari_nucleus_ai.core.units import convert

    spec = card["input"]
    out = {
        "channels": spec["channels"],
        "modality": card["modality"],
        "crop_size_px": spec["crop_size"],
        "pixel_size": spec["pixel_size"],
        "pixel_unit": spec["unit"],
    }
    um = convert(spec["pixel_size"], spec["unit"], "um")
    if um is not None:
        out["pixel_size_um"] = um
    if "field" in spec:
        out["field"] = spec["field"]
    out["canonical_frame"] = "frame" in spec
    if "storm" in spec:
        out["storm"] = {
            k: spec["storm"][k] for k in ("render_pixel_nm", "patches") if k in spec["storm"]
        }
    return out


def _uncertainty(card: dict) -> dict:
    unc = card["uncertainty"]
    return {
        "tta": unc.get("tta", 1),
        "tta_mode": unc.get("tta_mode", "all"),
        "mc_dropout": unc.get("mc_dropout", 0),
        "threshold": unc["threshold"],
        "temperature": card["calibration"]["temperature"],
    }


def _trust(trust: dict) -> dict:
    conformal = trust.get("conformal")
    domain = trust.get("domain")
    out = {"conformal_coverage": None if conformal is None else conformal.get("coverage")}
    out["domain_shift_alarm"] = domain is not None
    if domain is not None:
        out["domain_threshold"] = domain["threshold"]
    out["adaptation"] = "adapt" in trust
    return out


def _training(prov: dict, metrics: dict) -> dict:
    out = {}
    if "data" in prov:
        out["data"] = prov["data"]
    if prov.get("sources"):
        out["sources"] = len(prov["sources"])
    if "n_train" in prov or "n_val" in prov:
        n_train, n_val = int(prov.get("n_train", 0)), int(prov.get("n_val", 0))
        out.update(n_crops=n_train + n_val, n_train=n_train, n_val=n_val)
    out.update({k: prov[k] for k in TRAINING_KEYS if k in prov})
    base = prov.get("fine_tuned_from")
    if isinstance(base, dict):
        out["fine_tuned_from"] = f"{base.get('name')} version {base.get('version')}"
    scalars = {  # a metric that could not be measured (NaN in the card) as None
        k: v if math.isfinite(v) else None
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if scalars:
        out["metrics"] = scalars
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
