"""Import of a bioimage.io package exported by napari-nucleus-ai, without running its code.

The card comes from ``config["napari-nucleus-ai"]`` and must name one of this package's
architectures; the tensors come from the safetensors attachment (or, failing that, from
the state dict read with ``torch.load(weights_only=True)``); every file is checked
against the SHA-256 the RDF declares; the modules are built by this package's code.
Anything else is refused with one line.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.bioimageio.layout import (
    ARCHITECTURE_CALLABLE,
    ARCHITECTURE_MODULE,
    CONFIG_KEY,
    short,
)
from napari_nucleus_ai.models.bioimageio.source import Source, checked, read_rdf


def import_bioimageio(source, out) -> Path:
    """Turn a bioimage.io package exported by napari-nucleus-ai back into a model package.

    Nothing from the file is executed: YAML is parsed safely, tensors come from the
    safetensors attachment (or the state dict via ``torch.load(weights_only=True)``),
    the modules are built by this package from the card's architecture name and loaded
    strictly (a fallback model too, from the safetensors attachment). ``out``: ``.zip``,
    ``.safetensors`` or a folder (written atomically).
    """
    from napari_nucleus_ai.models.package import build_from, save_model

    path = Path(source)
    src = Source(path)
    try:
        rdf = read_rdf(src)
        if rdf.get("type") != "model":
            raise InputError(path, f"not a bioimage.io model (type {rdf.get('type')!r})")
        ours, card = _our_config(path, rdf)
        _check_channel_names(path, rdf, card)
        tensors = _read_tensors(src, rdf, ours, card)
        package = build_from(card, tensors, path)
    finally:
        src.close()
    return save_model(card, package.modules, out, fallback=package.fallback)


def _our_config(path: Path, rdf: dict) -> tuple[dict, dict]:
    """``(config["napari-nucleus-ai"], validated card)``, or a refusal as a foreign package."""
    from napari_nucleus_ai.models.card import validate_card
    from napari_nucleus_ai.models.nets.registry import ARCHS

    config = rdf.get("config") if isinstance(rdf.get("config"), dict) else {}
    ours = config.get(CONFIG_KEY)
    if not isinstance(ours, dict) or not isinstance(ours.get("card"), dict):
        refuse_foreign(path, rdf, f"its config has no {CONFIG_KEY!r} card")
    card = ours["card"]
    arch = (card.get("architecture") or {}).get("name")
    if card.get("kind") != "classifier" or arch not in ARCHS:
        refuse_foreign(
            path, rdf, f"its card names kind {card.get('kind')!r}, architecture {arch!r}"
        )
    try:
        return ours, validate_card(card, None)
    except InputError as e:
        raise InputError(path, f"rdf.yaml config: {e.problem}") from None


def _check_channel_names(path: Path, rdf: dict, card: dict) -> None:
    """The output's channel names, when declared, must be the card's classes in order."""
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


def _read_tensors(src: Source, rdf: dict, ours: dict, card: dict) -> dict:
    """The package's tensors: the safetensors attachment if declared and present, else the state dict."""
    from napari_nucleus_ai.models.package import MAX_WEIGHTS_BYTES, _read_tensors_bytes

    declared = {
        a.get("source"): a.get("sha256")
        for a in rdf.get("attachments") or []
        if isinstance(a, dict)
    }
    weights_file = ours.get("weights_file") or "weights.safetensors"
    if isinstance(weights_file, str) and weights_file in declared and src.has(weights_file):
        data = checked(src, weights_file, declared[weights_file], MAX_WEIGHTS_BYTES)
        tensors = _read_tensors_bytes(data, src.path)
        _check_card_matches(src.path, card, data)
        return tensors
    if "fallback" in card:
        raise InputError(
            src.path,
            "the model has a fallback model, which only its weights.safetensors attachment "
            "holds (the pytorch_state_dict weights are the first model alone), and that "
            "attachment is missing",
        )
    return _tensors_from_state_dict(src, rdf)


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


def _tensors_from_state_dict(src: Source, rdf: dict) -> dict:
    """The package's tensors (``m<i>.<name>``) from our ``pytorch_state_dict`` weights."""
    import torch

    from napari_nucleus_ai.models.package import MAX_WEIGHTS_BYTES

    entry = (rdf.get("weights") or {}).get("pytorch_state_dict")
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
        refuse_foreign(src.path, rdf, "it has neither our safetensors weights nor a state dict")
    arch = entry.get("architecture") or {}
    if (
        arch.get("import_from") != ARCHITECTURE_MODULE
        or arch.get("callable") != ARCHITECTURE_CALLABLE
    ):
        refuse_foreign(src.path, rdf, "its state dict is for another architecture")
    data = checked(src, entry["source"], entry.get("sha256"), MAX_WEIGHTS_BYTES)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - weights_only refuses anything but tensors
        raise InputError(
            src.path, f"'{entry['source']}' is not a plain state dict ({short(e, 80)})"
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


def refuse_foreign(path: Path, rdf: dict, why: str):
    """Raise the one-line refusal of a package this plugin did not export."""
    weights = rdf.get("weights") if isinstance(rdf.get("weights"), dict) else {}
    formats = ", ".join(k for k, v in weights.items() if v) or "none"
    raise InputError(
        path,
        f"not a napari-nucleus-ai export ({why}; weights: {formats}): bioimage.io models that "
        "need their own Python code or TorchScript would run code from the file, so they are "
        "not imported",
    )
