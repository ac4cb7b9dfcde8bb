"""Model card validation: structure, types and ranges, with one-line errors.

See :mod:`napari_nucleus_ai.models.package` for the card's fields.
"""

from __future__ import annotations

import math

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.kinds import get_kind

FORMAT = "napari-nucleus-ai-model"
FORMAT_VERSION = 1
UNITS = ("nm", "um", "px")
MODALITIES = ("brightfield_rgb", "fluorescence", "storm")


def _need(cond: bool, path, problem: str) -> None:
    if not cond:
        raise InputError(path, f"invalid model card: {problem}")


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def validate_card(card, path=None) -> dict:
    """Check a card's structure and values; return it. One-line InputError otherwise."""
    _need(isinstance(card, dict), path, "not a JSON object")
    _need(card.get("format") == FORMAT, path, f"'format' is not {FORMAT!r}")
    version = card.get("format_version")
    _need(isinstance(version, int), path, "'format_version' missing")
    if version > FORMAT_VERSION:
        raise InputError(
            path,
            f"model format {version} is newer than this plugin reads ({FORMAT_VERSION}); update napari-nucleus-ai",
        )
    for key in ("name", "kind", "task"):
        _need(isinstance(card.get(key), str) and card[key].strip() != "", path, f"'{key}' missing")
    _need(card.get("modality") in MODALITIES, path, f"'modality' must be one of {MODALITIES}")
    classes = card.get("classes")
    _need(
        isinstance(classes, list) and len(classes) >= 1, path, "'classes' must be a non-empty list"
    )
    names = []
    for c in classes:
        _need(
            isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"].strip(),
            path,
            "every class needs a 'name'",
        )
        colour = c.get("colour", "")
        _need(
            isinstance(colour, str)
            and len(colour) == 7
            and colour.startswith("#")
            and all(ch in "0123456789abcdefABCDEF" for ch in colour[1:]),
            path,
            f"class {c['name']!r} colour must be '#rrggbb'",
        )
        names.append(c["name"])
    _need(len(set(names)) == len(names), path, "class names must be unique")
    spec = card.get("input")
    _need(isinstance(spec, dict), path, "'input' missing")
    _need(
        isinstance(spec.get("crop_size"), int) and 8 <= spec["crop_size"] <= 2048,
        path,
        "'input.crop_size' must be 8..2048",
    )
    _need(
        isinstance(spec.get("channels"), int) and 1 <= spec["channels"] <= 4,
        path,
        "'input.channels' must be 1..4",
    )
    _need(
        _is_num(spec.get("pixel_size")) and spec["pixel_size"] > 0,
        path,
        "'input.pixel_size' must be > 0",
    )
    _need(
        _is_num(spec.get("field", 1.0)) and 0.05 <= spec.get("field", 1.0) <= 1.0,
        path,
        "'input.field' must be 0.05..1",
    )
    _need(spec.get("unit") in UNITS, path, f"'input.unit' must be one of {UNITS}")
    if "frame" in spec:
        from napari_nucleus_ai.models.framing import validate_frame

        validate_frame(spec["frame"], lambda ok, problem: _need(ok, path, problem))
    norm = spec.get("normalisation")
    _need(isinstance(norm, dict), path, "'input.normalisation' missing")
    for key in ("mean", "std"):
        v = norm.get(key)
        _need(
            isinstance(v, list) and len(v) == spec["channels"] and all(_is_num(x) for x in v),
            path,
            f"'input.normalisation.{key}' must list one number per channel",
        )
    _need(all(s > 0 for s in norm["std"]), path, "'input.normalisation.std' must be > 0")
    if "trust" in card:
        from napari_nucleus_ai.models.trust import validate_trust

        validate_trust(card["trust"], path, len(classes))
    if card["modality"] == "storm":
        st = spec.get("storm")
        _need(isinstance(st, dict), path, "STORM models need 'input.storm'")
        _need(
            _is_num(st.get("render_pixel_nm")) and 0 < st["render_pixel_nm"] <= 20,
            path,
            "'input.storm.render_pixel_nm' must be in (0, 20] nm",
        )
        _need(
            isinstance(st.get("patches"), int) and 1 <= st["patches"] <= 256,
            path,
            "'input.storm.patches' must be 1..256",
        )
        _need(
            _is_num(st.get("blur_px")) and st["blur_px"] >= 0,
            path,
            "'input.storm.blur_px' must be >= 0",
        )
    arch = card.get("architecture")
    _need(
        isinstance(arch, dict) and isinstance(arch.get("name"), str),
        path,
        "'architecture.name' missing",
    )
    _need(isinstance(arch.get("params", {}), dict), path, "'architecture.params' must be an object")
    _need(
        isinstance(card.get("members"), int) and 1 <= card["members"] <= 64,
        path,
        "'members' must be 1..64",
    )
    cal = card.get("calibration")
    _need(
        isinstance(cal, dict)
        and _is_num(cal.get("temperature"))
        and 0.01 <= cal["temperature"] <= 100,
        path,
        "'calibration.temperature' must be in [0.01, 100]",
    )
    unc = card.get("uncertainty")
    _need(
        isinstance(unc, dict) and _is_num(unc.get("threshold")) and 0 < unc["threshold"] <= 1,
        path,
        "'uncertainty.threshold' must be in (0, 1]",
    )
    _need(
        isinstance(unc.get("tta", 1), int) and 1 <= unc.get("tta", 1) <= 8,
        path,
        "'uncertainty.tta' must be 1..8",
    )
    _need(
        isinstance(unc.get("mc_dropout", 0), int) and 0 <= unc.get("mc_dropout", 0) <= 64,
        path,
        "'uncertainty.mc_dropout' must be 0..64",
    )
    for key in ("provenance", "metrics"):
        _need(isinstance(card.get(key, {}), dict), path, f"'{key}' must be an object")
    if "fallback" in card:
        _validate_fallback(card, path)
    try:
        get_kind(card["kind"], path).validate(card)
    except InputError as e:
        raise InputError(path, e.problem) from None
    return card


def _validate_fallback(card: dict, path) -> None:
    """A fallback model: a whole card of its own, for the same classes and modality, with no
    fallback of its own; the first model routes by its domain-shift score, so it needs one."""
    fb = card["fallback"]
    _need(isinstance(fb, dict), path, "'fallback' must be a model card")
    _need("fallback" not in fb, path, "a fallback model cannot have a fallback of its own")
    validate_card(fb, path)
    names = [c["name"] for c in card["classes"]]
    _need(
        [c["name"] for c in fb["classes"]] == names,
        path,
        "the fallback model must have the same classes in the same order",
    )
    _need(
        fb["modality"] == card["modality"], path, "the fallback model must read the same modality"
    )
    _need(
        bool((card.get("trust") or {}).get("domain")),
        path,
        "a fallback model needs the first model's domain-shift score ('trust.domain') to route cells",
    )
