"""The ``diffusion`` model kind: plugs the diffusion classifier into model packages.

Registered with :mod:`napari_nucleus_ai.models.kinds`, so
``napari-nucleus-ai train DATA --out MODEL --arch diffusion`` trains one and
``predict`` / ``classify`` / the classifier dock use it like any other package.

Card specifics: ``architecture = {"name": "diffusion", "params": {base, mults,
attention, dropout, schedule, timesteps}}``, or ``"latent-diffusion"`` whose params
add ``latent`` (see :mod:`.latent`: the UNet works on autoencoder latents); the input normalisation maps
``[0, 1]`` to ``[-1, 1]`` (mean 0.5, std 0.5); ``card["diffusion"]`` holds the
classification ``protocol`` and the ``calibration`` (temperature ``tau`` of the
error-gap softmax and the anomaly reference ``ref``), and for a latent model whose
autoencoder was trained here ``autoencoder``: how (:func:`autoencoder_training`; with
``init`` and ``init_sha256`` when it continued from a file, ``kind_options["ae_init"]``),
and ``precision``: the arithmetic of the UNet's and the autoencoder's training
(``kind_options["precision"]``); a latent model trained from scratch also records
``latent_std``, the standard deviation its UNet learnt the latents at
(``kind_options["latent_std"]``, :func:`.latent.latent_stats`) and ``latent_jitter``,
whether its latents were encoded from stain- and light-jittered copies
(``kind_options["latent_jitter"]``: ``"on"`` / ``"off"`` or a bool; :func:`.latent.latent_bank`).
``calibration.temperature`` stays 1 (probabilities are already calibrated by ``tau``).

``predict`` returns ``(samples, extra)``: probability samples ``(1, N, C)`` and
per-item columns ``evaluations``, ``anomaly``, ``confidence``, ``trials`` and
``uncertainty`` (``1 - confidence``, so ``unidentified`` means confidence below
the card's threshold).
"""

from __future__ import annotations

import os
import time

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.diffusion.latent import LATENT_DEFAULTS
from napari_nucleus_ai.models.diffusion.model import (
    BACKBONES,
    PROTOCOL_DEFAULTS,
    DiffusionClassifier,
    build_net,
)
from napari_nucleus_ai.models.diffusion.protocol import SCORES
from napari_nucleus_ai.models.diffusion.train import ARCH_DEFAULTS
from napari_nucleus_ai.models.kinds import Kind, register_kind

ARCHS = ("diffusion", "latent-diffusion")
CPU_CROP_SIZE = 32  # used on a CPU when the generic default crop size (96) was not changed
LATENT_CROP_SIZE = 64  # the same for latent-diffusion (its UNet works at 1/4 of this)
GENERIC_DEFAULT_CROP = 96


def config_from_card(card: dict) -> dict:
    """The :class:`DiffusionClassifier` config described by a package card."""
    params = dict(card["architecture"].get("params") or {})
    extra = card.get("diffusion") or {}
    arch = {k: params.get(k, v) for k, v in ARCH_DEFAULTS.items()}
    if params.get("latent"):
        arch["latent"] = dict(params["latent"])
    return {
        "kind": "diffusion",
        "class_names": [c["name"] for c in card["classes"]],
        "size": int(card["input"]["crop_size"]),
        "channels": int(card["input"]["channels"]),
        "schedule": params.get("schedule", "cosine"),
        "timesteps": int(params.get("timesteps", 1000)),
        "arch": arch,
        "protocol": {**PROTOCOL_DEFAULTS, **(extra.get("protocol") or {})},
        "calibration": dict(extra.get("calibration") or {}),
    }


def validate(card: dict) -> None:
    if card["architecture"]["name"] not in ARCHS:
        raise InputError(None, f"unknown diffusion architecture {card['architecture']['name']!r}")
    if len(card["classes"]) < 2:
        raise InputError(None, "a diffusion classifier needs at least 2 classes")
    params = card["architecture"].get("params") or {}
    mults = params.get("mults", ARCH_DEFAULTS["mults"])
    if not mults_ok(mults):
        raise InputError(None, f"diffusion 'mults' must be {MULTS_ALLOWED}")
    _check_unet(params)
    if not isinstance(params.get("attention", False), bool):
        raise InputError(None, "diffusion 'attention' must be true or false")
    if params.get("backbone", "unet") not in BACKBONES:
        raise InputError(None, f"diffusion 'backbone' must be one of {', '.join(BACKBONES)}")
    if params.get("schedule", "cosine") not in ("cosine", "linear"):
        raise InputError(None, "diffusion 'schedule' must be cosine or linear")
    timesteps = params.get("timesteps", 1000)
    if not (isinstance(timesteps, int) and 10 <= timesteps <= 10000):
        raise InputError(None, "diffusion 'timesteps' must be an integer in 10..10000")
    divisor = 2 ** (len(mults) - 1)
    latent = params.get("latent")
    if card["architecture"]["name"] == "latent-diffusion" and not isinstance(latent, dict):
        raise InputError(None, "a latent-diffusion card needs 'latent' settings")
    if latent is not None:
        divisor *= _check_latent(latent)["factor"]
    if card["input"]["crop_size"] % divisor:
        raise InputError(
            None, f"crop size {card['input']['crop_size']} must be divisible by {divisor}"
        )
    extra = card.get("diffusion", {})
    if not isinstance(extra, dict):
        raise InputError(None, "'diffusion' must be an object")
    proto = {**PROTOCOL_DEFAULTS, **(extra.get("protocol") or {})}
    if not (isinstance(proto["max_trials"], int) and 1 <= proto["max_trials"] <= 4096):
        raise InputError(None, "diffusion 'protocol.max_trials' must be 1..4096")
    if not (isinstance(proto["check_every"], int) and proto["check_every"] >= 1):
        raise InputError(None, "diffusion 'protocol.check_every' must be >= 1")
    if not (0 <= proto["t_lo"] < proto["t_hi"] <= 1):
        raise InputError(None, "diffusion 'protocol' needs 0 <= t_lo < t_hi <= 1")
    if proto["score"] not in SCORES:
        raise InputError(None, f"diffusion 'protocol.score' must be one of {', '.join(SCORES)}")
    if proto["anomaly"] not in ("reference", "unconditional"):
        raise InputError(
            None, "diffusion 'protocol.anomaly' must be 'reference' or 'unconditional'"
        )
    if not (isinstance(proto["anomaly_trials"], int) and proto["anomaly_trials"] >= 0):
        raise InputError(None, "diffusion 'protocol.anomaly_trials' must be >= 0")
    top = proto["keep_top"]
    if not (
        isinstance(top, list)
        and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) for v in p) for p in top
        )
        and all(k >= 1 for _, k in top)
    ):
        raise InputError(None, "diffusion 'protocol.keep_top' must be a list of [trials, k >= 1]")
    cal = extra.get("calibration") or {}
    ref = cal.get("ref")
    if ref is not None and not (
        isinstance(ref, list)
        and len(ref) >= proto["max_trials"]
        and all(isinstance(v, int | float) and np.isfinite(v) and v > 0 for v in ref)
    ):
        raise InputError(None, "diffusion 'calibration.ref' must list one positive error per trial")
    tau = cal.get("tau", 1.0)
    if not (isinstance(tau, int | float) and np.isfinite(tau) and tau > 0):
        raise InputError(None, "diffusion 'calibration.tau' must be > 0")
    if extra.get("proposer") is not None:
        from napari_nucleus_ai.models.diffusion.proposer import validate_proposer

        validate_proposer(extra["proposer"], len(card["classes"]))


#: The card's UNet settings (``architecture.params``) and the ``train`` options whose ranges
#: they share.
UNET_OPTIONS = {"base": "--unet-base"}

#: What the UNet's channel multipliers per level (``architecture.params.mults``,
#: ``train --unet-mults``) may be: one level per entry, each halving the resolution after
#: the first.
MULTS_ALLOWED = "a list of 1-5 integers in 1..16"


def mults_ok(mults) -> bool:
    """Whether ``mults`` is a card's list of UNet channel multipliers (:data:`MULTS_ALLOWED`)."""
    return (
        isinstance(mults, list)
        and 1 <= len(mults) <= 5
        and all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 16 for m in mults)
    )


def parse_mults(text: str) -> list[int]:
    """``train --unet-mults`` (``"1,2,4,4"``) as the card's list; a :class:`UsageError`
    naming the option and the rule of :func:`mults_ok` for anything else."""
    from napari_nucleus_ai.core.errors import UsageError

    try:
        mults = [int(m) for m in str(text).split(",")]
    except ValueError:
        mults = None
    if not mults_ok(mults):
        raise UsageError(
            f"--unet-mults {text}: must be 1-5 comma-separated integers in 1..16 (e.g. 1,2,4,4)"
        )
    return mults


def _check_unet(params: dict) -> None:
    """The card's UNet settings of :data:`UNET_OPTIONS` (defaults where absent), each an
    integer in the range of its ``train`` option (``core.params.COMMANDS``); else
    :class:`InputError`."""
    from napari_nucleus_ai.core.params import command_param

    for key, option in UNET_OPTIONS.items():
        p = command_param("train", option)
        value = params.get(key, ARCH_DEFAULTS[key])
        try:
            ok = isinstance(value, int) and not isinstance(value, bool) and p.check(value) == value
        except InputError:
            ok = False
        if not ok:
            raise InputError(None, f"diffusion '{key}' must be {p.allowed()}")


#: The card's ``latent`` settings and the ``train`` options whose ranges they share.
LATENT_OPTIONS = {"channels": "--latent-channels", "factor": "--ae-factor", "width": "--ae-width"}


def _check_latent(latent) -> dict:
    """A card's ``latent`` settings with the defaults filled in, each an integer in the range
    of its ``train`` option (``core.params.COMMANDS``); else :class:`InputError`."""
    from napari_nucleus_ai.core.params import command_param

    params = {k: command_param("train", o) for k, o in LATENT_OPTIONS.items()}
    allowed = ", ".join(f"{k}: {p.allowed()}" for k, p in params.items())
    lat = {**LATENT_DEFAULTS, **latent} if isinstance(latent, dict) else {}
    ok = set(lat) == set(LATENT_DEFAULTS) and all(
        isinstance(lat[k], int) and not isinstance(lat[k], bool) for k in params
    )
    if ok:
        try:
            for k, p in params.items():
                p.check(lat[k])
        except InputError:
            ok = False
    if not ok:
        raise InputError(None, f"diffusion 'latent' must be {{{allowed}}}")
    return lat


def build(card: dict) -> list:
    try:
        return [build_net(config_from_card(card))]
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(None, f"cannot build the diffusion network from the card ({e})") from None


def as_classifier(package) -> DiffusionClassifier:
    """The :class:`DiffusionClassifier` view of a loaded package (cached on it)."""
    import torch

    dev = package.device or torch.device("cpu")
    cached = getattr(package, "_diffusion", None)
    if cached is None or cached.net is not package.modules[0] or cached.device != dev:
        cached = DiffusionClassifier(package.modules[0], config_from_card(package.card), device=dev)
        package._diffusion = cached
    return cached


def proposal(card: dict, items, options: dict | None = None):
    """The proposer's candidates ``(N, C)`` for raw ``items``, its protocol overrides and
    the prior the decision weighs (its probabilities ``(N, C)`` when the card says
    ``"prior": true``, else None); ``(None, {}, None)`` when the package has no proposer,
    it is switched off (``propose=False``), the run is exhaustive or the raw items are not
    at hand."""
    options = options or {}
    prop = (card.get("diffusion") or {}).get("proposer")
    if not prop or items is None or options.get("exhaustive") or options.get("propose") is False:
        return None, {}, None
    from napari_nucleus_ai.models.diffusion.proposer import candidates, proposer_probs

    probs = proposer_probs(prop, items)
    prior = probs if prop.get("prior") else None
    return candidates(probs, prop["top"]), dict(prop.get("protocol") or {}), prior


def predict(package, x: np.ndarray, options: dict):
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.classify import classify_crops

    model = as_classifier(package)
    cand, over, prior = proposal(package.card, options.get("items"), options)
    over.update(
        {
            k: options[k]
            for k in ("max_trials", "check_every", "alpha")
            if options.get(k) is not None
        }
    )
    res = run_sync(
        classify_crops(
            model,
            x,
            exhaustive=bool(options.get("exhaustive")),
            batch_size=max(64, int(options.get("batch_size") or 256)),
            candidates=cand,
            prior=prior,
            **over,
        )
    )
    extra = {
        "confidence": res["confidence"],
        "uncertainty": 1.0 - res["confidence"],
        "anomaly": res["anomaly"],
        "evaluations": res["evaluations"].astype(np.int64),
        "trials": res["trials"].astype(np.int64),
    }
    return res["p"][None].astype(np.float32), extra


def _load_init(path, latent: bool) -> dict | None:
    """Trained weights to start from (``kind_options["init"]``): a safetensors file of
    the whole denoiser (for a latent model ``unet.*``, ``ae.*`` and ``scale``)."""
    if not path:
        return None
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise InputError(path, f"cannot read the initial weights ({type(e).__name__})") from None
    if not latent:
        return {"net": state}
    if "scale" not in state:
        raise InputError(path, "not the weights of a latent-diffusion denoiser (no 'scale')")
    scale = state["scale"].flatten().numpy()
    shift = state["shift"].flatten().numpy() if "shift" in state else np.zeros_like(scale)
    return {
        "net": {k[5:]: v for k, v in state.items() if k.startswith("unet.")},
        "ae": {k[3:]: v for k, v in state.items() if k.startswith("ae.")},
        "shift": shift,
        "scale": scale,
    }


def _perceptual_weight(option, channels: int) -> float:
    """The autoencoder's perceptual-loss weight: ``option`` when given, else the default
    for RGB crops where the frozen ImageNet backbone is installed, else 0."""
    if option is not None:
        return float(option)
    from napari_nucleus_ai.models.diffusion.latent import AE_TRAIN_DEFAULTS
    from napari_nucleus_ai.models.nets.imagenet import available

    return AE_TRAIN_DEFAULTS["perceptual"] if channels == 3 and available() else 0.0


#: ``kind_options`` for the autoencoder's training -> :func:`~.latent.train_autoencoder`'s
#: arguments (``ae_perceptual`` is resolved by :func:`_perceptual_weight`); ``ae_init`` is
#: the file to continue from (:func:`~.latent.autoencoder_init`).
AE_OPTIONS = {
    "ae_steps": "steps",
    "ae_lr": "lr",
    "ae_perceptual": "perceptual",
    "ae_colour": "colour",
    "ae_latent_noise": "latent_noise",
}


def autoencoder_training(options: dict, channels: int) -> dict:
    """How the latent model's autoencoder is trained: ``train_autoencoder``'s ``steps``,
    ``batch_size``, ``lr``, ``seed``, ``perceptual``, ``colour`` and ``latent_noise`` from the
    ``ae_*`` ``options`` (see :data:`AE_OPTIONS`), the defaults of
    :data:`~.latent.AE_TRAIN_DEFAULTS` for what they leave out (``None``)."""
    from napari_nucleus_ai.models.diffusion.latent import AE_TRAIN_DEFAULTS

    out = dict(AE_TRAIN_DEFAULTS)
    for key, arg in AE_OPTIONS.items():
        if options.get(key) is not None:
            out[arg] = type(AE_TRAIN_DEFAULTS[arg])(options[key])
    out["perceptual"] = _perceptual_weight(options.get("ae_perceptual"), channels)
    out["seed"] = int(options.get("seed", AE_TRAIN_DEFAULTS["seed"]))
    return out


def fit(train, val, card: dict, options: dict):
    """Train the denoiser; yields progress, returns ``(modules, card, info)``."""
    from napari_nucleus_ai.models.diffusion.classify import calibrate
    from napari_nucleus_ai.models.diffusion.train import train_diffusion

    device = options.get("device_obj")
    if device is None:
        from napari_nucleus_ai.core.device import select_device

        device = select_device(options.get("device") or "cpu")
    spec = card["input"]
    latent = card["architecture"]["name"] == "latent-diffusion"
    cpu_size = LATENT_CROP_SIZE if latent else CPU_CROP_SIZE
    if (
        device.type == "cpu"
        and spec["crop_size"] == GENERIC_DEFAULT_CROP
        and card["modality"] != "storm"
    ):
        spec["pixel_size"] = float(spec["pixel_size"]) * spec["crop_size"] / cpu_size
        spec["crop_size"] = cpu_size
        yield Progress(
            0,
            None,
            f"diffusion on the CPU: crops resized to {cpu_size} px (set --crop-size to change)",
        )
    if card["modality"] == "storm":
        raise InputError(
            None,
            "the diffusion kind classifies image crops; use a classifier arch for STORM nuclei",
        )
    c = spec["channels"]
    spec["normalisation"] = {"mean": [0.5] * c, "std": [0.5] * c}
    params = {**ARCH_DEFAULTS, **card["architecture"].get("params", {})}
    if latent:
        params["latent"] = {**LATENT_DEFAULTS, **(params.get("latent") or {})}
    card["architecture"]["params"] = params
    validate(card)
    init = _load_init(options.get("init"), latent)
    ae_given = [k for k in (*AE_OPTIONS, "ae_init") if options.get(k) is not None]
    if ae_given and not latent:
        raise InputError(None, f"{', '.join(ae_given)}: for latent-diffusion models only")
    if ae_given and init is not None:
        raise InputError(
            options.get("init"),
            f"holds a trained autoencoder already: {', '.join(ae_given)} would not be used",
        )
    ae_init = None
    if latent and options.get("ae_init") is not None:  # refused before any training
        from napari_nucleus_ai.models.diffusion.latent import autoencoder_init

        ae_init = autoencoder_init(options["ae_init"], params["latent"], c, spec["crop_size"])
    from napari_nucleus_ai.models.inputs import prepare

    x_tr, _ = prepare(train.samples, card)
    y_tr = np.asarray(train.labels)
    steps = options.get("steps")
    steps = int(steps) if steps is not None else 40 * int(options.get("epochs", 40))
    lr = min(float(options.get("lr", 2e-3)), 2e-3)
    t0 = time.perf_counter()
    model = None
    x_fit, y_fit, ae, stats, ae_training = x_tr, y_tr, None, None, None
    if latent:
        from napari_nucleus_ai.models.diffusion.latent import (
            latent_bank,
            latent_stats,
            train_autoencoder,
        )

        if init is not None:
            from napari_nucleus_ai.models.diffusion.latent import build_autoencoder

            ae = build_autoencoder(c, params["latent"])
            ae.load_state_dict(init["ae"])
            ae.eval()
        else:
            ae_training = autoencoder_training(options, c)
            if options.get("ae_perceptual") is None and not ae_training["perceptual"]:
                yield Progress(
                    0,
                    None,
                    "autoencoder without its perceptual loss (needs the 'pretrained' extra): "
                    "granules are smoothed away",
                )
            ae = yield from train_autoencoder(
                x_tr,
                latent=params["latent"],
                init=ae_init,
                device=device,
                precision=options.get("precision") or "auto",
                **ae_training,
            )
            if ae_init is not None:  # which weights it continued from
                from napari_nucleus_ai.models.init_weights import _digest

                ae_file = os.fspath(options["ae_init"])
                ae_training["init"] = ae_file
                if os.path.isfile(ae_file):
                    ae_training["init_sha256"] = _digest(ae_file)
        jitter = options.get("latent_jitter", "on") not in ("off", False)
        yield Progress(
            0,
            None,
            "encoding augmented crops (dihedral"
            + (", stain and light jitter)" if jitter else " transforms only)"),
        )
        x_fit, y_fit = latent_bank(
            ae,
            x_tr,
            y_tr,
            copies=int(options.get("copies") or 16),
            seed=int(options.get("seed", 0)),
            jitter=jitter,
        )
        latent_std = float(options.get("latent_std") or 1.0)
        stats = latent_stats(x_fit, std=latent_std)
        if init is not None:  # a scalar scale (older weights) applies to every channel
            stats = tuple(
                np.array(np.broadcast_to(init[k], stats[0].shape)) for k in ("shift", "scale")
            )
        x_fit = (x_fit - stats[0][:, None, None]) * stats[1][:, None, None]
    gen = train_diffusion(
        x_fit,
        y_fit,
        [c_["name"] for c_ in card["classes"]],
        arch={k: params[k] for k in ARCH_DEFAULTS},
        steps=steps,
        batch_size=int(options.get("batch_size", 32)),
        lr=lr,
        seed=int(options.get("seed", 0)),
        schedule=params.get("schedule", "cosine"),
        timesteps=int(params.get("timesteps", 1000)),
        protocol=(card.get("diffusion") or {}).get("protocol"),
        device=device,
        calibrate_after=False,
        augment=not latent,
        init_state=None if init is None else init["net"],
        precision=options.get("precision") or "auto",
    )
    from napari_nucleus_ai.core.progress import EpochProgress
    from napari_nucleus_ai.models.diffusion.train import StepProgress

    per_epoch = 40  # optimiser steps reported as one "epoch" (the CLI and the dock's loss plot)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            model = stop.value
            break
        if isinstance(p, StepProgress) and (p.done % per_epoch == 0 or p.done == steps):
            epoch = -(-p.done // per_epoch)
            rec = {"member": 0, "epoch": epoch, "train_loss": p.loss}
            yield EpochProgress(
                p.done, steps + 1, f"diffusion epoch {epoch}: loss {p.loss:.4f}", rec
            )
        else:
            yield p
    if latent:
        from napari_nucleus_ai.models.diffusion.unet import LatentDenoiser

        wrapped = LatentDenoiser(model.net, ae)
        wrapped.set_stats(*stats)
        config = {
            **model.config,
            "size": int(spec["crop_size"]),
            "channels": c,
            "arch": {**model.config["arch"], "latent": params["latent"]},
        }
        model = DiffusionClassifier(wrapped, config, device=device)
    # calibration: anomaly reference on the training crops, temperature on the validation
    # crops when there are any (training crops are denoised too well to calibrate on)
    info = {"seconds": time.perf_counter() - t0}
    yield Progress(steps, steps + 1, "calibrating on held-out crops")
    prop = None
    if params.get("proposer", True) and card["modality"] == "brightfield_rgb" and c == 3:
        from napari_nucleus_ai.models.diffusion.proposer import fit_proposer

        yield Progress(steps, steps + 1, "fitting the proposer (morphology descriptor)")
        prop = fit_proposer(
            train.samples, y_tr, len(card["classes"]), seed=int(options.get("seed", 0))
        )
        card.setdefault("diffusion", {})["proposer"] = prop
    tau_samples = val.samples if len(val.samples) else train.samples
    cand, over, prior = proposal(card, tau_samples)
    if len(val.samples):
        x_va, _ = prepare(val.samples, card)
        cal = calibrate(
            model,
            x_tr,
            y_tr,
            x_tau=x_va,
            y_tau=np.asarray(val.labels),
            candidates=cand,
            overrides=over,
            prior=prior,
        )
    else:
        cal = calibrate(model, x_tr, y_tr, candidates=cand, overrides=over, prior=prior)
    card["diffusion"] = {"protocol": model.protocol, "calibration": cal}
    card["diffusion"]["precision"] = model.config["training"]["precision"]
    if prop is not None:
        card["diffusion"]["proposer"] = prop
    if latent and init is None:
        card["diffusion"]["latent_std"] = latent_std
        card["diffusion"]["latent_jitter"] = jitter
    if ae_training is not None:  # a record of how the autoencoder was trained
        card["diffusion"]["autoencoder"] = ae_training
    card["calibration"]["temperature"] = 1.0
    card["uncertainty"].update(tta=1, mc_dropout=0)
    info["history"] = [
        {"member": 0, "epoch": -(-int(s) // per_epoch), "train_loss": float(v)}
        for s, v in model.config["history"]
        if int(s) % per_epoch == 0 or int(s) == steps
    ]
    val_p = cal.pop("_val_p", None)
    if len(val.samples) and val_p is not None:
        info["val_probs"] = val_p[None].astype(np.float32)  # calibrated (S=1, N, C)
        info["val_logits"] = np.log(np.clip(info["val_probs"], 1e-8, 1))  # older trainer API
    return [model.net.cpu().eval()], card, info


register_kind(
    Kind(
        name="diffusion",
        archs=ARCHS,
        build=build,
        fit=fit,
        predict=predict,
        validate=validate,
        description="class-conditional denoising diffusion: classifies by per-class denoising error "
        "with adaptive pruning; confidence from the error gap, anomaly score, generation",
    )
)
