"""``napari-nucleus-ai train DATA [DATA ...] --out MODEL``: train a model package from class folders."""

from __future__ import annotations

import argparse

from napari_nucleus_ai.cli._localization_options import add_localization_options

HELP = "train a classifier from class sub-folders of crops or STORM localization files"


def add_arguments(p) -> None:
    p.add_argument(
        "data",
        nargs="+",
        action=_DataSources,
        metavar="DATA",
        help="folder with one sub-folder per class (image crops or one localization file per "
        "nucleus); several folders train one model from all of them (e.g. a public set and a "
        "lab's own corrections), weighted by --source-weights",
    )
    p.add_argument(
        "--source-weights",
        default="auto",
        action=_SourceWeights,
        metavar="auto|W1,W2,...",
        help="with several DATA folders: auto (default; every source counts equally in every "
        "class, however few its cells: a small source's cells are repeated in training), or "
        "one relative weight per cell of each source (1,5: a cell of the second counts as 5 "
        "of the first)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="MODEL",
        help="model package to write: a folder, or a .zip / .safetensors file",
    )
    p.add_argument(
        "--arch",
        default="auto",
        help="auto (default: morph for RGB brightfield crops, smallcnn otherwise), smallcnn, "
        "hybrid (CNN + colour/texture descriptor), morph (cell morphology descriptor + "
        "logistic head + hybrid CNN), densenet121, resnext50_32x4d, efficientnet_b0 (need the "
        "'backbones' extra), or another kind's arch (diffusion, latent-diffusion: a 64-px latent "
        "diffusion classifier and generator, its UNet set by --unet-base and its autoencoder by "
        "the --ae-* options)",
    )
    p.add_argument("--name", help="model name shown in the dock (default: ARCH on DATA)")
    p.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    p.add_argument(
        "--patience",
        type=int,
        default=10,
        help="early stopping: epochs without validation improvement (default 10)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (default 3e-3)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="stratified validation hold-out per class (default 0.2)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--device",
        default=None,
        help="auto, cuda, cuda:N, mps or cpu (default: the plugin setting)",
    )
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (1 is often fastest on a busy machine)"
    )
    p.add_argument(
        "--crop-size",
        type=int,
        help="network input side in pixels (default 96, morph 192; STORM patches 64)",
    )
    p.add_argument(
        "--field",
        help="centre fraction of each image crop the network sees, or 'auto' (sized to the "
        "cells in the crops); default auto for morph, 1 (whole crop) otherwise",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        help="physical pixel size of the crops (recorded in the model card)",
    )
    p.add_argument(
        "--unit", default="um", choices=("um", "nm"), help="unit of --pixel-size (default um)"
    )
    p.add_argument("--members", type=int, default=1, help="ensemble members (default 1)")
    p.add_argument(
        "--tta",
        type=int,
        default=4,
        help="test-time augmentations used at inference (1, 2, 4 or 8; default 4)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="uncertainty above which cells are 'unidentified' (default 0.5)",
    )
    p.add_argument(
        "--render-pixel-nm",
        type=float,
        default=10.0,
        help="STORM render pixel, <= 20 nm (default 10)",
    )
    p.add_argument(
        "--patches",
        type=int,
        default=16,
        help="STORM patches per nucleus at inference (default 16)",
    )
    p.add_argument(
        "--init-weights",
        metavar="FILE",
        help="start from the matching tensors of a local weights file (.safetensors or a torch "
        "state dict, e.g. ImageNet weights of a timm backbone); nothing is downloaded",
    )
    p.add_argument(
        "--imagenet",
        default="auto",
        metavar="auto|none|efficientnet-lite0",
        help="morph: fuse frozen ImageNet features (EfficientNet-Lite0 from the 'pretrained' "
        "extra); auto (default) uses them where the extra is installed",
    )
    p.add_argument(
        "--frame",
        default="auto",
        choices=("auto", "on", "off"),
        help="bring every crop to the canonical cell frame (cell found, centred, scaled, "
        "stain-normalised) instead of a --field; auto (default): off, see docs/trust.md",
    )
    p.add_argument(
        "--stain-augment",
        type=int,
        metavar="N",
        help="'other microscope' copies of each training crop (framing, pixel size, stain, "
        "background, defocus, JPEG), 0-8 (canonical frame only; default 3)",
    )
    p.add_argument(
        "--fallback",
        default="auto",
        choices=("auto", "frame", "none"),
        help="also train a canonical-frame model, kept in the same package, for the cells the "
        "first model finds out of its domain (another microscope); auto (default): frame for "
        "morph on RGB crops, see docs/trust.md",
    )
    p.add_argument(
        "--coverage",
        type=float,
        default=0.9,
        help="target coverage of the conformal prediction sets, 0.5-0.99 (default 0.9): higher "
        "gives larger sets and fewer confident wrong answers, see docs/trust.md",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    _add_unet_options(p)
    _add_autoencoder_options(p)
    add_localization_options(p)  # --camera-pixel, --columns (STORM training files)


def _add_unet_options(p) -> None:
    """``--unet-base``, ``--unet-mults``, ``--unet-attention`` and ``--precision``: the UNet
    of the diffusion models and its training (ranges in ``core.params.COMMANDS["train"]`` and
    ``models/diffusion/kind.py``, defaults in ``models/diffusion/train.py`` and
    ``models/engine.py``)."""
    from napari_nucleus_ai.models.diffusion.train import ARCH_DEFAULTS
    from napari_nucleus_ai.models.engine import PRECISIONS

    g = p.add_argument_group(
        "UNet of --arch diffusion and latent-diffusion",
        "the card records them (architecture.params.base, .mults and .attention)",
    )
    g.add_argument(
        "--unet-base",
        type=int,
        metavar="N",
        help=f"channels of the UNet's first level; the deeper levels have multiples of it "
        f"(default {ARCH_DEFAULTS['base']}; the 128-px recipe of docs/generative.md uses 64)",
    )
    g.add_argument(
        "--unet-mults",
        metavar="M,M,..",
        help="channel multipliers of the UNet's levels, one per level, each level at half "
        f"the resolution of the one before (architecture.params.mults; default "
        f"{','.join(map(str, ARCH_DEFAULTS['mults']))}; the crop size must be divisible by "
        "2 ** (levels - 1) times --ae-factor)",
    )
    g.add_argument(
        "--unet-attention",
        choices=("on", "off"),
        help="self-attention at the UNet's lowest level (architecture.params.attention; "
        f"default {'on' if ARCH_DEFAULTS['attention'] else 'off'}; the 128-px recipe uses on)",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="the arithmetic of training the UNet and the autoencoder (diffusion.precision); "
        "auto (default): bfloat16 where the processor computes it natively (AMX, "
        "AVX512-BF16, recent GPUs), float32 elsewhere",
    )


def _add_autoencoder_options(p) -> None:
    """``--ae-*`` / ``--latent-channels``: the latent model's autoencoder (ranges in
    ``core.params.COMMANDS["train"]``, defaults in ``models/diffusion/latent.py``)."""
    from napari_nucleus_ai.models.diffusion.latent import AE_TRAIN_DEFAULTS, LATENT_DEFAULTS

    lat, tr = LATENT_DEFAULTS, AE_TRAIN_DEFAULTS
    g = p.add_argument_group(
        "autoencoder of --arch latent-diffusion",
        "trained first, on the training crops; the card records these settings "
        "(architecture.params.latent, diffusion.autoencoder)",
    )
    g.add_argument(
        "--ae-width",
        type=int,
        metavar="N",
        help=f"channels of every autoencoder block (default {lat['width']})",
    )
    g.add_argument(
        "--latent-channels",
        type=int,
        metavar="N",
        help=f"channels of the latent (default {lat['channels']})",
    )
    g.add_argument(
        "--ae-factor",
        type=int,
        metavar="N",
        help=f"down-sampling of the autoencoder, 2, 4 or 8 (default {lat['factor']}: a 64-px "
        "crop becomes a 16 x 16 latent; 8 keeps 128-px crops at 16 x 16)",
    )
    g.add_argument(
        "--ae-steps",
        type=int,
        metavar="N",
        help=f"autoencoder optimiser steps, batch {tr['batch_size']} (default {tr['steps']}; "
        "0 with --ae-init: its autoencoder as it is)",
    )
    g.add_argument(
        "--ae-lr",
        type=float,
        metavar="LR",
        help=f"autoencoder learning rate (default {tr['lr']:g})",
    )
    g.add_argument(
        "--ae-perceptual",
        type=float,
        metavar="W",
        help=f"weight of the perceptual loss (frozen ImageNet EfficientNet-Lite0 features; "
        f"default {tr['perceptual']:g} for RGB crops with the 'pretrained' extra, else 0)",
    )
    g.add_argument(
        "--ae-colour",
        type=float,
        metavar="W",
        help=f"weight of the colour loss (L1 of 8-px block mean colours; default {tr['colour']:g})",
    )
    g.add_argument(
        "--ae-latent-noise",
        type=float,
        metavar="S",
        help="Gaussian noise added to the latents the decoder sees, as a fraction of each "
        f"channel's standard deviation (default {tr['latent_noise']:g})",
    )
    g.add_argument(
        "--ae-init",
        metavar="FILE",
        help="continue training the autoencoder of FILE: a latent-diffusion model package or "
        "an autoencoder's .safetensors, of the same width, latent channels, factor (and, for "
        "a package, crop size)",
    )
    g.add_argument(
        "--latent-std",
        type=float,
        metavar="S",
        help="standard deviation of the latents the UNet learns (diffusion.latent_std; "
        "default 1; below 1 lowers the signal-to-noise ratio of every noise level by S "
        "squared: the 128-px recipe of docs/generative.md, with 32 x 32 latents, uses 0.5)",
    )
    g.add_argument(
        "--latent-jitter",
        choices=("on", "off"),
        help="HED stain and light jitter in the augmented copies the UNet learns from "
        "(diffusion.latent_jitter; default on; off: dihedral transforms only, so generated "
        "cells keep the training microscope's colours)",
    )


class _DataSources(argparse.Action):
    """``DATA ...`` as one path, or as :class:`~.classify.trainset.Sources` with the weights
    of ``--source-weights`` (either may come first on the command line)."""

    def __call__(self, parser, namespace, values, option_string=None):
        weights = getattr(namespace, "source_weights", "auto")
        setattr(namespace, self.dest, _data(parser, values, weights))


class _SourceWeights(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        data = getattr(namespace, "data", None)
        if data is not None:
            paths = data.paths if hasattr(data, "paths") else [data]
            namespace.data = _data(parser, paths, values)


def _data(parser, paths: list, weights: str):
    """One path as it is (auto weights); otherwise the sources with their weights checked
    (a bad ``--source-weights`` is a usage error: exit 2)."""
    if len(paths) == 1 and weights == "auto":
        return paths[0]
    from napari_nucleus_ai.classify.trainset import Sources
    from napari_nucleus_ai.core.errors import NucleusAIError, one_line

    try:
        return Sources(list(paths), weights)
    except NucleusAIError as e:
        parser.error(f"--source-weights: {one_line(e)}")


def run(args) -> int:
    import json
    import logging
    import sys

    from napari_nucleus_ai.classify.train import train_gen
    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.progress import EpochProgress, run_sync

    bar = ProgressPrinter("train", quiet=args.quiet, every=2.0)

    def show(p):
        if args.quiet:
            return
        if isinstance(p, EpochProgress):  # one lasting line per epoch, a bar in between
            bar.close()
            print(f"[{p.done}/{p.total or '?'}] {p.message}", file=sys.stderr, flush=True)
        else:
            bar(p)

    skipped: list[str] = []  # unreadable training files (classify.trainset logs each)

    class _Skips(logging.Handler):
        def emit(self, record):
            skipped.append(record.getMessage().removeprefix("skipped: "))

    trainset_log = logging.getLogger("napari_nucleus_ai.classify.trainset")
    handler = _Skips(logging.WARNING)
    trainset_log.addHandler(handler)
    propagate, trainset_log.propagate = trainset_log.propagate, False
    try:
        result = _train(args, train_gen, run_sync, show)
    finally:
        bar.close()
        trainset_log.removeHandler(handler)
        trainset_log.propagate = propagate
    m = result.metrics
    summary = {k: round(v, 4) for k, v in m.items() if isinstance(v, float)}
    print(result.path)
    print(
        json.dumps(
            {
                "classes": result.package.classes,
                "temperature": round(result.card["calibration"]["temperature"], 3),
                "seconds": result.card["provenance"]["seconds"],
                **summary,
            }
        )
    )
    for msg in skipped:
        print(f"  failed: {msg}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} unreadable file(s) skipped", file=sys.stderr)
    return 2 if skipped else 0


def _diffusion_options(args) -> tuple[dict | None, dict | None]:
    """``(params, kind_options)`` of ``train_gen`` from the diffusion kind's options given:
    the UNet's (``UNET_OPTIONS``, ``--unet-mults`` and ``--unet-attention``, any diffusion
    ``--arch``) to ``params`` and ``--precision`` to ``kind_options``; the autoencoder's
    shape (``LATENT_OPTIONS``) to ``params["latent"]`` and its training (``AE_OPTIONS``,
    ``ae_init``) to ``kind_options`` (``--arch latent-diffusion``); a :class:`UsageError`
    naming the options given with an ``--arch`` they are not for."""
    from napari_nucleus_ai.models.diffusion.kind import (
        AE_OPTIONS,
        ARCHS,
        LATENT_OPTIONS,
        UNET_OPTIONS,
        parse_mults,
    )

    latent = ("latent-diffusion",)
    table = [  # (option, where it goes, its key there, the archs it is for)
        *((f"--{k.replace('_', '-')}", "kind", k, latent) for k in (*AE_OPTIONS, "ae_init")),
        ("--latent-std", "kind", "latent_std", latent),
        ("--latent-jitter", "kind", "latent_jitter", latent),
        *((o, "latent", k, latent) for k, o in LATENT_OPTIONS.items()),
        *((o, "params", k, ARCHS) for k, o in UNET_OPTIONS.items()),
        ("--unet-mults", "params", "mults", ARCHS),
        ("--unet-attention", "params", "attention", ARCHS),
        ("--precision", "kind", "precision", ARCHS),
    ]
    out: dict = {"kind": {}, "latent": {}, "params": {}}
    wrong: dict = {}  # archs -> the options given for them
    for option, where, key, archs in table:
        value = getattr(args, option[2:].replace("-", "_"))
        if value is None:
            continue
        if args.arch in archs:
            if option == "--unet-attention":
                value = value == "on"
            elif option == "--unet-mults":
                value = parse_mults(value)
            out[where][key] = value
        else:
            wrong.setdefault(archs, []).append(option)
    for archs, names in wrong.items():
        from napari_nucleus_ai.core.errors import UsageError

        raise UsageError(
            f"{', '.join(names)}: for --arch {' or '.join(archs)} only, not --arch {args.arch}"
        )
    params = {**({"latent": out["latent"]} if out["latent"] else {}), **out["params"]}
    return params or None, out["kind"] or None


def _train(args, train_gen, run_sync, show):
    params, kind_options = _diffusion_options(args)
    return run_sync(
        train_gen(
            args.data,
            args.out,
            arch=args.arch,
            name=args.name,
            epochs=args.epochs,
            patience=args.patience,
            batch_size=args.batch_size,
            lr=args.lr,
            val_fraction=args.val_fraction,
            seed=args.seed,
            device=args.device,
            crop_size=args.crop_size,
            field=args.field,
            pixel_size=args.pixel_size,
            unit=args.unit,
            members=args.members,
            tta=args.tta,
            threshold=args.threshold,
            render_pixel_nm=args.render_pixel_nm,
            patches=args.patches,
            threads=args.threads,
            init_weights=args.init_weights,
            imagenet=_imagenet_choice(args.imagenet),
            frame={"auto": None, "on": True, "off": False}[args.frame],
            stain_augment=args.stain_augment,  # 0..8, checked by the schema
            fallback=args.fallback,
            coverage=args.coverage,
            params=params,
            kind_options=kind_options,
        ),
        show,
    )


def _imagenet_choice(choice: str):
    """``--imagenet`` as ``train_gen``'s ``imagenet`` ("auto", None or a backbone name)."""
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.nets.imagenet import BACKBONES

    if choice in ("auto", *BACKBONES):
        return choice
    if choice == "none":
        return None
    raise InputError(None, f"--imagenet takes auto, none or {', '.join(BACKBONES)}, not {choice!r}")
