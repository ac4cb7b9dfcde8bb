"""Model packages: a card (JSON) plus safetensors weights, as a folder, a zip or one file.

Layout (folder ``MODEL/`` or the same two files at the root of ``MODEL.zip``)::

    card.json            what the model is (see below)
    weights.safetensors  tensors of every ensemble member, keys "m<i>.<parameter>"

A single ``MODEL.safetensors`` whose metadata holds the card under ``"card"`` is
accepted too (:func:`save_model` always writes the card there as well).

The card (``format: napari-nucleus-ai-model``, ``format_version: 1``) holds
``name``, ``kind`` (see :mod:`.kinds`), ``task``, ``modality``, ``classes``
(``name`` + ``colour``), ``input`` (crop size, pixel size and unit,
normalisation, see :mod:`.inputs`), ``architecture`` (``name`` + ``params``),
``members`` (ensemble size), ``calibration`` (``temperature``), ``uncertainty``
(``threshold``, ``tta``, ``mc_dropout``), ``provenance`` and ``metrics``.

A package may hold a **fallback model** for the cells the first model finds out of its
domain (:func:`napari_nucleus_ai.classify.predict.route`): its whole card under
``fallback`` and its tensors under ``fallback.m<i>.<parameter>`` in the same weights file.

Loading never executes code from the file: JSON is parsed, tensors are read with
safetensors, modules are built from the architecture *name* in this package's
own code. Pickle checkpoints (``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) are refused.
Anything corrupt, truncated, oversized or inconsistent raises a one-line
:class:`~napari_nucleus_ai.core.errors.InputError`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.card import FORMAT, FORMAT_VERSION, validate_card
from napari_nucleus_ai.models.kinds import get_kind

CARD = "card.json"
WEIGHTS = "weights.safetensors"
MAX_CARD_BYTES = 8 << 20  # a card with a domain-shift score of ImageNet features is ~0.7 MB
MAX_WEIGHTS_BYTES = 4 << 30
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


def _parse_card(text: bytes | str, path) -> dict:
    try:
        card = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(
            path, f"model card is not valid JSON ({' '.join(str(e).split())[:80]})"
        ) from None
    return validate_card(card, path)


# ---------------------------------------------------------------- reading
def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(
            path,
            "pickle-based checkpoints are refused because loading them can run code; "
            "export the weights as a napari-nucleus-ai model package (safetensors)",
        )


def _not_safetensors(path, e: Exception) -> InputError:
    return InputError(path, f"weights are not valid safetensors ({' '.join(str(e).split())[:80]})")


def _read_tensors_bytes(data: bytes, path, shapes_only: bool = False) -> dict:
    """Tensors of safetensors bytes (torch), or ``{name: shape}`` from their header alone."""
    try:
        if shapes_only:
            from safetensors import deserialize

            return {name: list(t["shape"]) for name, t in deserialize(data)}
        from safetensors.torch import load

        return load(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise _not_safetensors(path, e) from None


def _read_tensors_file(path: Path, shapes_only: bool = False) -> tuple[dict, dict]:
    """``(tensors or {name: shape}, metadata)`` of a safetensors file (see
    :func:`_read_tensors_bytes`)."""
    from safetensors import safe_open

    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise InputError(path, "weights file is larger than 4 GB")
    try:
        with safe_open(os.fspath(path), framework="numpy" if shapes_only else "pt") as fh:
            meta = fh.metadata() or {}
            if shapes_only:
                return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}, meta  # noqa: SIM118
            return {k: fh.get_tensor(k) for k in fh.keys()}, meta  # noqa: SIM118
    except Exception as e:  # noqa: BLE001
        raise _not_safetensors(path, e) from None


def _zip_member(zf: zipfile.ZipFile, name: str, limit: int, path) -> bytes:
    infos = [
        i for i in zf.infolist() if i.filename.rstrip("/").split("/")[-1] == name and not i.is_dir()
    ]
    if len(infos) != 1:
        raise InputError(path, f"zip holds {len(infos)} '{name}' files, expected 1")
    info = infos[0]
    if info.file_size > limit:
        raise InputError(path, f"'{name}' in the zip is too large ({info.file_size} bytes)")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputError(path, f"'{name}' in the zip is larger than it claims")
    return data


def read_package(path, shapes_only: bool = False) -> tuple[dict, dict]:
    """``(card, tensors)`` from a folder, zip or single safetensors file; nothing is executed.

    ``shapes_only``: the tensors' ``{name: shape}`` from the weights' header instead of
    their values (no torch: ``info MODEL``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such model file or folder")
    _refuse_pickle(path)
    if path.is_dir():
        card_file, weights = path / CARD, path / WEIGHTS
        if not card_file.is_file():
            found = [p.name for p in path.iterdir()][:5]
            raise InputError(
                path, f"not a model package: no {CARD} (found {', '.join(found) or 'nothing'})"
            )
        if card_file.stat().st_size > MAX_CARD_BYTES:
            raise InputError(card_file, f"model card is larger than {MAX_CARD_BYTES >> 20} MB")
        card = _parse_card(card_file.read_bytes(), card_file)
        if not weights.is_file():
            raise InputError(path, f"model package has no {WEIGHTS}")
        tensors, _ = _read_tensors_file(weights, shapes_only)
        return card, tensors
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                card = _parse_card(_zip_member(zf, CARD, MAX_CARD_BYTES, path), path)
                tensors = _read_tensors_bytes(
                    _zip_member(zf, WEIGHTS, MAX_WEIGHTS_BYTES, path), path, shapes_only
                )
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise InputError(path, f"damaged zip ({' '.join(str(e).split())[:80]})") from None
        return card, tensors
    if path.suffix.lower() == ".zip":
        raise InputError(path, "damaged zip (no zip directory: truncated or not a zip)")
    tensors, meta = _read_tensors_file(path, shapes_only)
    if "card" not in meta:
        raise InputError(
            path,
            "safetensors file has no model card in its metadata; use a model package folder or zip",
        )
    return _parse_card(meta["card"], path), tensors


# ---------------------------------------------------------------- the package
class ModelPackage:
    """A loaded model: card, modules (one per ensemble member) and helpers.

    Attributes
    ----------
    card : dict
    modules : list of torch.nn.Module (eval mode)
    classes : list of str
    colours : list of str (``#rrggbb``)
    path : str or None
    """

    def __init__(self, card: dict, modules: list, path=None, fallback=None):
        self.card = card
        self.modules = modules
        self.path = None if path is None else os.fspath(path)
        self.kind = get_kind(card["kind"])
        self._device = None
        #: The :class:`ModelPackage` for cells out of this model's domain, or ``None``.
        self.fallback = fallback
        #: The share of the last chunk's cells sure to go to the fallback, which sets the
        #: order the next chunk is routed in (:func:`~..classify.predict._routes_first`).
        self.settled_share = 0.0

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def classes(self) -> list[str]:
        return [c["name"] for c in self.card["classes"]]

    @property
    def colours(self) -> list[str]:
        return [c["colour"] for c in self.card["classes"]]

    @property
    def temperature(self) -> float:
        return float(self.card["calibration"]["temperature"])

    @property
    def modality(self) -> str:
        return self.card["modality"]

    def to(self, device):
        """Move every member to ``device`` (a no-op when already there)."""
        import torch

        device = torch.device(device)
        if self._device != device:
            for m in self.modules:
                m.to(device)
            self._device = device
        if self.fallback is not None:
            self.fallback.to(device)
        return self

    @property
    def device(self):
        return self._device

    def __repr__(self) -> str:
        return (
            f"ModelPackage({self.name!r}, kind={self.card['kind']!r}, "
            f"arch={self.card['architecture']['name']!r}, classes={self.classes}"
            + (", with a fallback model)" if self.fallback is not None else ")")
        )


def state_from_tensors(tensors: dict, members: int, path=None) -> list[dict]:
    import torch

    states = [dict() for _ in range(members)]
    for key, t in tensors.items():
        head, _, rest = key.partition(".")
        if not (head.startswith("m") and head[1:].isdigit() and rest):
            raise InputError(path, f"unexpected tensor name {key!r} in weights")
        i = int(head[1:])
        if i >= members:
            raise InputError(path, f"weights hold member {i} but the card declares {members}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(path, f"weights hold NaN or infinite values ({key})")
        states[i][rest] = t
    return states


FALLBACK = "fallback."  # the fallback model's tensor names start with this


def build_from(card: dict, tensors: dict, path=None) -> ModelPackage:
    """Build the card's modules and fill them from ``tensors`` (strict); the fallback model
    from its card and its ``fallback.`` tensors."""
    fallback = None
    if "fallback" in card:
        sub = {k[len(FALLBACK) :]: v for k, v in tensors.items() if k.startswith(FALLBACK)}
        tensors = {k: v for k, v in tensors.items() if not k.startswith(FALLBACK)}
        if not sub:
            raise InputError(path, "the card names a fallback model but the weights hold none")
        fallback = build_from(card["fallback"], sub, path)
    kind = get_kind(card["kind"], path)
    try:
        modules = kind.build(card)
    except InputError as e:
        raise InputError(path, e.problem) from None
    states = state_from_tensors(tensors, len(modules), path)
    for i, (m, state) in enumerate(zip(modules, states, strict=True)):
        try:
            m.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = " ".join(str(e).split())[:140]
            raise InputError(
                path, f"weights do not match the architecture of member {i}: {first}"
            ) from None
        m.eval()
    return ModelPackage(card, modules, path, fallback)


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 4


def load_model(path, *, cache: bool = True) -> ModelPackage:
    """Load a model package (folder, zip or single ``.safetensors``).

    Loaded packages are cached by path, size and modification time, so running a
    dock again does not reload (or re-upload to the GPU) the same model.
    """
    path = Path(path)
    key = None
    if cache and path.exists():
        target = path / WEIGHTS if path.is_dir() else path
        st = target.stat() if target.exists() else path.stat()
        key = (os.fspath(path.resolve()), st.st_size, st.st_mtime_ns)
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    card, tensors = read_package(path)
    package = build_from(card, tensors, path)
    if key is not None:
        _CACHE[key] = package
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return package


def clear_cache() -> None:
    _CACHE.clear()


def _stamped(card: dict, modules: list) -> dict:
    return dict(card, format=FORMAT, format_version=FORMAT_VERSION, members=len(modules))


def _tensors_of(modules: list, prefix: str = "") -> dict:
    return {
        f"{prefix}m{i}.{k}": v.detach().to("cpu").contiguous()
        for i, m in enumerate(modules)
        for k, v in m.state_dict().items()
    }


def save_model(
    card: dict, modules: list, out, *, as_zip: bool | None = None, fallback=None
) -> Path:
    """Write a package atomically; ``out`` ending in ``.zip`` gives a zip, else a folder.

    The card is validated first and also stored in the weights' metadata. ``fallback``
    (a :class:`ModelPackage`) is stored inside: its card under ``fallback``, its tensors
    under ``fallback.``.
    """
    from safetensors.torch import save

    from napari_nucleus_ai.core.files import atomic_write

    out = Path(out)
    card = _stamped(card, modules)
    card.pop("fallback", None)
    tensors = _tensors_of(modules)
    if fallback is not None:
        card["fallback"] = _stamped(fallback.card, fallback.modules)
        tensors.update(_tensors_of(fallback.modules, FALLBACK))
    validate_card(card)
    text = json.dumps(card, indent=2, sort_keys=False)
    blob = save(tensors, metadata={"format": FORMAT, "card": json.dumps(card)})
    if as_zip is None:
        as_zip = out.suffix.lower() == ".zip"
    if as_zip:
        import io

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(CARD, text)
            zf.writestr(WEIGHTS, blob)
        with atomic_write(out, "wb") as fh:
            fh.write(buf.getvalue())
        return out
    if out.suffix.lower() == ".safetensors":
        with atomic_write(out, "wb") as fh:
            fh.write(blob)
        return out
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / WEIGHTS, "wb") as fh:
        fh.write(blob)
    with atomic_write(out / CARD, "w") as fh:
        fh.write(text)
    return out


def as_package(model):
    """``model`` itself if it is a loaded :class:`ModelPackage`, else the package loaded from it."""
    return model if isinstance(model, ModelPackage) else load_model(model)
