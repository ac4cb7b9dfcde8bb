"""Export of a classifier package as a bioimage.io model package (zip, ``rdf.yaml`` 0.5).

:func:`export_bioimageio` runs the steps in order: check the options and the package,
make the files (:func:`_network_files`, :func:`_tensor_files`, :func:`_package_files`,
the README), build the RDF (:mod:`.rdf`), zip it and validate it before the zip is
renamed into place (:func:`_write_validated`).

Architectures in :data:`STATE_DICT_ONLY` are exported with ``pytorch_state_dict`` weights
only: their ``forward`` runs numpy code that TorchScript cannot trace.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.bioimageio import layout
from napari_nucleus_ai.models.bioimageio.documents import (
    citations,
    cover,
    environment,
    parse_cite,
    readme,
)
from napari_nucleus_ai.models.bioimageio.layout import STATE_DICT_ONLY
from napari_nucleus_ai.models.bioimageio.network import architecture_kwargs, ensemble
from napari_nucleus_ai.models.bioimageio.rdf import build_rdf
from napari_nucleus_ai.models.bioimageio.trace import (
    package_probabilities,
    sample_input,
    state_dict_checked,
    trace_checked,
)
from napari_nucleus_ai.models.bioimageio.validate import (
    have_bioimageio_spec,
    known_urls_of,
    spec_version,
    validate_bioimageio,
)


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
        Also write ``pytorch_state_dict`` weights (the only weights of the architectures
        in :data:`STATE_DICT_ONLY`, for which False is refused).
    validate : bool
        Check the zip with ``bioimageio.spec`` (offline) when it is installed.

    Returns
    -------
    dict with ``path``, ``status`` (``valid-format``/``passed``/``failed`` or
    ``not validated``), ``validation`` (one line), ``weights`` and ``probabilities``.
    """
    from napari_nucleus_ai.models.inputs import normalise
    from napari_nucleus_ai.models.package import load_model

    model_path, out_zip = Path(model_path), Path(out_zip)
    if out_zip.suffix.lower() != ".zip":
        raise InputError(out_zip, "a bioimage.io package is written as a .zip")
    extra_cites = [parse_cite(c) for c in (cite or [])]  # bad options fail before the work
    package = load_model(model_path, cache=False)
    _refuse_unexportable(package, model_path, state_dict)
    card = package.card
    tta = int(card["uncertainty"].get("tta", 1) if tta is None else tta)
    if not 1 <= tta <= 8:
        raise InputError(None, f"tta must be 1..8, got {tta}")

    raw = sample_input(package, sample)
    x = normalise(raw, card).astype(np.float32)
    probs = package_probabilities(package, x, tta)
    files = _network_files(package, x, probs, tta, state_dict, model_path)
    files.update(_tensor_files(package, raw, probs))
    files.update(_package_files(package))
    cites = citations(card["architecture"]["name"], extra_cites)
    files[layout.README] = readme(
        card, tta, cites, _validated_with(validate), torchscript=layout.TORCHSCRIPT in files
    ).encode()
    rdf = build_rdf(
        package,
        files,
        tta=tta,
        cites=cites,
        authors=_authors(authors),
        license=license,
        tags=tags,
        description=description,
        state_dict=state_dict,
    )
    status, message = _write_validated(out_zip, rdf, files, validate)
    return {
        "path": os.fspath(out_zip),
        "status": status,
        "validation": message,
        "weights": list(rdf["weights"]),
        "probabilities": probs[0].tolist(),
        "classes": list(package.classes),
    }


def _refuse_unexportable(package, path, state_dict: bool = True) -> None:
    """Only classifiers without the canonical frame are exported; the architectures in
    :data:`STATE_DICT_ONLY` only with their ``pytorch_state_dict`` weights."""
    card = package.card
    if card["kind"] != "classifier":
        raise InputError(
            path,
            f"only classifier packages can be exported to bioimage.io (this is a "
            f"{card['kind']!r} model)",
        )
    if card.get("input", {}).get("frame"):
        raise InputError(
            path,
            "a model with the canonical cell frame cannot be exported to bioimage.io: the "
            "frame (finding, centring and scaling the cell, stain normalisation) runs before "
            "the network, outside what TorchScript traces",
        )
    arch = card["architecture"]["name"]
    if arch in STATE_DICT_ONLY and not state_dict:
        raise InputError(
            path,
            f"the {arch!r} architecture is exported with pytorch_state_dict weights only, "
            f"never as TorchScript alone: its {STATE_DICT_ONLY[arch]}",
        )


def _network_files(package, x, probs, tta: int, state_dict: bool, path) -> dict[str, bytes]:
    """The checked TorchScript (not for :data:`STATE_DICT_ONLY`), and the state dict with its
    environment if ``state_dict``, checked by rebuilding it as bioimage.io tools do."""
    import torch

    kwargs = architecture_kwargs(package, tta)
    wrapper = ensemble(
        [m.to("cpu").eval() for m in package.modules],
        package.temperature,
        tta,
        kwargs.get("adaptive"),
    )
    expected = np.repeat(probs, 3, 0)
    arch = package.card["architecture"]["name"]
    files = {}
    if arch not in STATE_DICT_ONLY:
        files[layout.TORCHSCRIPT] = trace_checked(wrapper, x, expected, path)
    if state_dict:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in wrapper.state_dict().items()}, buf)
        files[layout.STATE_DICT] = buf.getvalue()
        files[layout.ENVIRONMENT] = environment(package.card["architecture"]).encode()
        state_dict_checked(files[layout.STATE_DICT], kwargs, x, expected, path)
    return files


def _tensor_files(package, raw: np.ndarray, probs: np.ndarray) -> dict[str, bytes]:
    """Test tensors (``.npy``), the cover and the TIFF sample tensors."""
    files = {}
    for name, arr in ((layout.TEST_INPUT, raw), (layout.TEST_OUTPUT, probs)):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        files[name] = buf.getvalue()
    stretch = package.card["modality"] != "brightfield_rgb"
    files[layout.COVER] = cover(raw, probs[0], package.colours, stretch)
    files[layout.SAMPLE_INPUT] = _tiff(raw[0])
    files[layout.SAMPLE_OUTPUT] = _tiff(probs)
    return files


def _tiff(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(arr, np.float32), photometric="minisblack")
    return buf.getvalue()


def _package_files(package) -> dict[str, bytes]:
    """The package itself: ``card.json`` + ``weights.safetensors``, exactly as save_model writes
    them (its fallback model included)."""
    import tempfile

    from napari_nucleus_ai.models.package import CARD, WEIGHTS, save_model

    with tempfile.TemporaryDirectory(prefix="nucleus-ai-export-") as tmp:
        save_model(package.card, package.modules, Path(tmp) / "pkg", fallback=package.fallback)
        return {name: (Path(tmp) / "pkg" / name).read_bytes() for name in (CARD, WEIGHTS)}


def _authors(authors) -> list[dict]:
    """``authors`` as RDF entries; by default the plugin's author setting, if any."""
    if authors is None:
        from napari_nucleus_ai.core.settings import load_settings

        author = str(load_settings().get("author") or "").strip()
        authors = [author] if author else []
    return [a if isinstance(a, dict) else {"name": str(a)} for a in authors]


def _validated_with(validate: bool) -> str:
    if validate and have_bioimageio_spec():
        return f"bioimageio.spec {spec_version()} (format validation, offline)"
    return "napari-nucleus-ai's own checks only (bioimageio.spec was not run)"


def _write_validated(out_zip: Path, rdf: dict, files: dict[str, bytes], validate: bool):
    """Zip ``rdf.yaml`` and ``files`` to ``out_zip`` atomically, validated before the rename."""
    import zipfile

    import yaml

    from napari_nucleus_ai.core.files import atomic_path

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's where PyYAML has it
        text = yaml.dump(rdf, Dumper=dumper, sort_keys=False, allow_unicode=True)
        zf.writestr(layout.RDF, text.encode())
        for name, data in files.items():
            zf.writestr(name, data)
    status, message = "not validated", "validation skipped"
    with atomic_path(out_zip) as tmp:
        tmp.write_bytes(buf.getvalue())
        if validate:
            status, message = _validate_before_rename(tmp, out_zip, rdf)
    return status, message


def _validate_before_rename(tmp_name, out_zip: Path, rdf: dict) -> tuple[str, str]:
    try:
        status, message = validate_bioimageio(tmp_name, known_urls_of(rdf))
    except ImportError:
        return "not validated", (
            "bioimageio.spec is not installed (pip install 'napari-nucleus-ai[bioimageio]')"
        )
    if status == "failed":
        raise InputError(out_zip, f"bioimageio.spec finds the package invalid: {message}")
    return status, message
