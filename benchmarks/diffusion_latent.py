"""Train a latent diffusion model on PBC (64 px by default) with checkpoints, in CPU seconds.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/diffusion_latent.py train \
        ../shared/data/smear/pbc /tmp/G/l64 [--ae-steps 250] [--ae-width 16] [--channels 4] \
        [--perceptual 1.0] [--steps 6000] [--threads 1] [--size 64] [--factor 4] \
        [--colour 0] [--latent-noise 0] [--ae-lr LR] [--ae-init OTHER_RUN/ae.safetensors]

``--size`` is the crop size (64, 96, 128, ...) and ``--factor`` the autoencoder's
down-sampling (4 or 8: at 128 px, ``--factor 8`` keeps the UNet on 16 x 16 latents);
both go to ``meta.json``, which every other command reads.

Holds back 3 crops per class (seed 0; their paths go to ``held.txt``), trains the
autoencoder on the other crops (``ae.safetensors``), encodes 16 augmented copies of
each (dihedral + HED / light jitter) and trains the latent UNet (``--steps 0``: the
autoencoder only; a RUN that holds ``ae.safetensors`` reuses it), writing
``denoiser.safetensors`` (the whole :class:`LatentDenoiser`) every 250 steps, so a
stopped run still leaves a model (``--keep-every N``: also ``denoiser_N.safetensors``
every N steps). ``log.jsonl`` records the CPU seconds
(``resource.getrusage``) after each stage and checkpoint.

Latents are centred and scaled per channel (``latent_stats``; the ``latents`` log record
holds the shift, scale and each channel's standardised range).

    .venv/bin/python benchmarks/diffusion_latent.py recon /tmp/G/l64 \
        [--classifier CLASSIFIER.zip [--all]]

writes ``recon.png`` (held-back crops, each row above its autoencoder reconstruction) and
logs their L1 error; with ``--classifier`` (the default classifier) the share of the
reconstructions it recognises as their class (the reconstruction check), ``--all`` also
over all 96 crops, beside the real crops at the run's size. ``--beside OTHER_RUN`` writes
``recon_beside.png``: 8 held-back crops, OTHER_RUN's reconstructions, this run's.

    .venv/bin/python benchmarks/diffusion_latent.py grid /tmp/G/l64 \
        [--weights denoiser_4250.safetensors] [--guidance 2]

samples 8 cells per class from a checkpoint without packaging it (``grid_*.png``).

    .venv/bin/python benchmarks/diffusion_latent.py ceiling CLASSIFIER.zip /tmp/G/ceiling \
        [--sizes 64 96 128]

the ceiling of the recognition check: the share of the real crops that the default
classifier recognises after down-sampling to each size (anti-aliased, written as PNGs
and read back up by ``predict``, as ``evaluate`` does), beside the crops as they are.

    .venv/bin/python benchmarks/diffusion_latent.py package /tmp/G/l64 OUT.zip

turns the latest checkpoint (or ``--weights denoiser_4250.safetensors``) into an ordinary model package (``--arch
latent-diffusion`` card, ``kind_options={"init": ..., "steps": 0}``; the temperature is
calibrated on a split of the training crops, never the held-back ones) for
``generate``, ``predict`` and the Generative dock.

    .venv/bin/python benchmarks/diffusion_latent.py evaluate /tmp/G/l64 OUT.zip \
        CLASSIFIER.zip /tmp/G/eval [--guidance 2] [-n 16] [--adapt off]

(``OUT.zip`` may be the name of a checkpoint in RUN, e.g. ``denoiser.safetensors``: sampling
needs no calibration, so the checkpoint is evaluated without packaging it.)

draws ``n`` cells per class (DDIM, 50 steps, classifier-free guidance), writes them and
the held-back crops (at the run's size S: ``realS``, and through the autoencoder:
``reconS``, what the decoder can give at best) as class folders, runs ``predict`` with the default
classifier (``train DATA --out CLASSIFIER.zip``) on both (the share recognised as their
class), writes a grid (``grid.png``, 8 per class, one class per row) and the Frechet
distance on EfficientNet-Lite0 features (the morph model's frozen backbone, whole crop at
224 px) of 9 generated cells per class to the 24 held-back crops, beside that of the 72
training crops to the same held-back crops (real vs real), and per class the median
diameter of the generated cells over that of the real crops (``gen_size_ratio``; the
canonical frame's measure, from the nucleus hull).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ARCH = {"base": 32, "mults": [1, 2, 2], "attention": False, "dropout": 0.1, "backbone": "unet"}
LATENT = {"channels": 4, "factor": 4, "width": 16}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_size(run: Path) -> int:
    """The crop size of a run (``meta.json``; runs made before ``--size`` are 64 px)."""
    return int(json.loads((run / "meta.json").read_text()).get("size", 64))


def held_paths(run: Path) -> set:
    """The paths of the crops ``train`` held back for RUN (``held.txt``)."""
    return set((Path(run) / "held.txt").read_text().split("\n"))


def held_mask(run: Path, paths) -> np.ndarray:
    """Which of ``paths`` RUN held back."""
    held = held_paths(run)
    return np.array([p in held for p in paths])


def split(y: np.ndarray, per_class: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    held = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )
    keep = np.setdiff1d(np.arange(len(y)), held)
    return keep, np.sort(held)


def log(out: Path, **rec) -> None:
    rec = {"time": time.strftime("%H:%M:%S"), "cpu_s": round(cpu_seconds(), 1), **rec}
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


def train(args) -> None:
    import shutil

    import torch
    from safetensors.torch import save_file

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.models.diffusion.kind import autoencoder_training
    from napari_nucleus_ai.models.diffusion.latent import (
        autoencoder_init,
        build_autoencoder,
        latent_bank,
        latent_stats,
        train_autoencoder,
    )
    from napari_nucleus_ai.models.diffusion.train import train_diffusion
    from napari_nucleus_ai.models.diffusion.unet import ClassUNet, LatentDenoiser

    torch.set_num_threads(args.threads)
    LATENT["width"], LATENT["channels"] = args.ae_width, args.channels
    ARCH["base"], ARCH["attention"] = args.base, args.attention
    ARCH["mults"] = [int(m) for m in args.mults.split(",")]
    LATENT["factor"] = args.factor
    if args.size % args.factor:
        raise SystemExit(f"--size {args.size} is not divisible by --factor {args.factor}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, names, paths = load_crop_folder(args.data, args.size)
    keep, held = split(y)
    (out / "held.txt").write_text("\n".join(paths[i] for i in held) + "\n")
    (out / "meta.json").write_text(
        json.dumps(
            {
                "class_names": names,
                "arch": ARCH,
                "latent": LATENT,
                "size": args.size,
                "perceptual": args.perceptual,
                "unet_training": {
                    "lr": args.lr,
                    "ema": args.ema,
                    "copies": args.copies,
                    "precision": args.precision,
                    "latent_std": args.latent_std,
                    "no_jitter": args.no_jitter,
                },
            }
        )
    )
    log(out, stage="loaded", n_train=len(keep), n_held=len(held))
    ae_file = out / "ae.safetensors"
    if ae_file.exists():
        ae = build_autoencoder(3, LATENT)
        ae.load_state_dict(autoencoder_init(ae_file, LATENT, 3, args.size))
        ae.eval()
    else:  # the settings and the call of `train --arch latent-diffusion --ae-*`
        training = autoencoder_training(
            {
                "ae_steps": args.ae_steps,
                "ae_lr": args.ae_lr,
                "ae_perceptual": args.perceptual,
                "ae_colour": args.colour,
                "ae_latent_noise": args.latent_noise,
            },
            3,
        )
        ae = run_sync(train_autoencoder(x[keep], latent=LATENT, init=args.ae_init, **training))
        save_file(ae.state_dict(), ae_file)
        with torch.inference_mode():
            r = ae.decode(ae.encode(torch.from_numpy(x[held])).latents).sample.numpy()
        log(
            out,
            stage="autoencoder",
            steps=args.ae_steps,
            perceptual=args.perceptual,
            colour=args.colour,
            latent_noise=args.latent_noise,
            ae_init=args.ae_init,
            latent=LATENT,
            held_l1=float(np.abs(r - x[held]).mean()),
        )
    if args.steps == 0:
        return
    z, zy = latent_bank(ae, x[keep], y[keep], copies=args.copies, jitter=not args.no_jitter)
    shift, scale = latent_stats(z, std=args.latent_std)
    zs = (z - shift[:, None, None]) * scale[:, None, None]
    log(
        out,
        stage="latents",
        n=len(z),
        shift=shift.round(3).tolist(),
        scale=scale.round(3).tolist(),
        range=[np.round([zs[:, c].min(), zs[:, c].max()], 2).tolist() for c in range(z.shape[1])],
    )

    def checkpoint(ema_net, step):
        net = LatentDenoiser(ClassUNet(len(names), LATENT["channels"], **_unet_kwargs()), ae)
        net.unet.load_state_dict(ema_net.state_dict())
        net.set_stats(shift, scale)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out / "tmp.safetensors")
        (out / "tmp.safetensors").replace(out / "denoiser.safetensors")
        if args.keep_every and step % args.keep_every == 0:
            shutil.copy(out / "denoiser.safetensors", out / f"denoiser_{step}.safetensors")
        log(out, stage="checkpoint", step=step)

    run_sync(
        train_diffusion(
            zs,
            zy,
            names,
            arch=ARCH,
            steps=args.steps,
            batch_size=32,
            lr=args.lr,
            ema=args.ema,
            precision=args.precision,
            calibrate_after=False,
            augment=False,
            checkpoint=checkpoint,
            checkpoint_every=250,
        )
    )
    log(out, stage="done")


def patch_discriminator(width: int = 64):
    """A PatchGAN critic (Isola et al. 2017) with spectral norm: one logit per ~30-px patch."""
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    def conv(ci, co, stride):
        return spectral_norm(nn.Conv2d(ci, co, 4, stride, 1))

    w = width
    return nn.Sequential(
        conv(3, w, 2),
        nn.LeakyReLU(0.2),
        conv(w, 2 * w, 2),
        nn.LeakyReLU(0.2),
        conv(2 * w, 4 * w, 2),
        nn.LeakyReLU(0.2),
        conv(4 * w, 1, 1),
    )


def decoder(args) -> None:
    """Fine-tune RUN's decoder on the reconstruction loss (with ``--adv`` > 0 also a patch
    adversarial term); the encoder, and so every latent the UNet learnt, stays as it is.
    Writes OUT/ae.safetensors with OUT/meta.json and held.txt."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.models.diffusion.latent import (
        PerceptualLoss,
        add_latent_noise,
        augment_pixels,
        build_autoencoder,
        reconstruction_loss,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in ("meta.json", "held.txt"):
        shutil.copy(run / f, out / f)
    meta = json.loads((run / "meta.json").read_text())
    x, _, _, paths = load_crop_folder(args.data, meta["size"])
    x = x[~held_mask(run, paths)]
    ae = build_autoencoder(3, meta["latent"])
    ae.load_state_dict(load_file(run / "ae.safetensors"))
    for prm in ae.encoder.parameters():
        prm.requires_grad_(False)
    ae.encoder.eval()
    ae.decoder.train()
    disc = patch_discriminator()  # built at any --adv: the seeded runs draw the same numbers
    feat = PerceptualLoss()
    opt_g = torch.optim.Adam(ae.decoder.parameters(), lr=args.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    log(out, stage="decoder_start", run=str(run), steps=args.steps, adv=args.adv, lr=args.lr)
    for step in range(args.steps):
        xb = torch.from_numpy(augment_pixels(x[rng.integers(0, len(x), args.batch_size)], rng))
        with torch.no_grad():
            z = add_latent_noise(ae.encode(xb).latents, args.latent_noise)
        r = ae.decode(z).sample
        loss = reconstruction_loss(r, xb, feat, args.perceptual, args.colour)
        d_loss = g_adv = torch.zeros(())
        if args.adv > 0:  # critic: hinge loss on real crops against reconstructions
            d_loss = torch.relu(1 - disc(xb)).mean() + torch.relu(1 + disc(r.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_adv = -disc(r).mean()
            if step >= args.warmup:
                loss = loss + args.adv * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if (step + 1) % 100 == 0 or step == args.steps - 1:
            log(
                out,
                stage="decoder",
                step=step + 1,
                loss=round(float(loss.detach()), 4),
                d_loss=round(float(d_loss.detach()), 4),
                g_adv=round(float(g_adv.detach()), 4),
            )
            save_file(
                {k: v.contiguous() for k, v in ae.state_dict().items()}, out / "ae.safetensors"
            )


def _unet_kwargs() -> dict:
    return {
        "base": ARCH["base"],
        "mults": tuple(ARCH["mults"]),
        "attention": ARCH["attention"],
        "dropout": ARCH["dropout"],
    }


def recon(args) -> None:
    """Held-back crops above their autoencoder reconstructions (``recon.png``) and the L1;
    with ``--classifier`` the share of reconstructions it recognises (``--all``: of every
    crop, the 72 the autoencoder trained on too, beside the real crops at its size)."""
    import imageio.v3 as iio
    import torch
    from safetensors.torch import load_file

    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.models.diffusion.generate import grid
    from napari_nucleus_ai.models.diffusion.latent import build_autoencoder

    run = Path(args.run)
    size = run_size(run)
    x, y, _, paths = load_crop_folder(args.data, size)
    held = held_mask(run, paths)

    def reconstruct(folder: Path) -> np.ndarray:
        lat = json.loads((folder / "meta.json").read_text())["latent"]
        ae = build_autoencoder(3, lat)
        ae.load_state_dict(load_file(folder / "ae.safetensors"))
        with torch.inference_mode():
            r = ae.eval().decode(ae.encode(torch.from_numpy(x)).latents).sample.numpy()
        return r.clip(-1, 1)

    r = reconstruct(run)
    xh, rh = x[held], r[held]
    rows = [a for s in range(0, len(rh), 8) for a in (xh[s : s + 8], rh[s : s + 8])]
    iio.imwrite(run / "recon.png", grid(np.concatenate(rows), cols=8))
    if args.beside:  # the first 8 held-back crops, another run's reconstructions, this run's
        other = reconstruct(Path(args.beside))[held]
        tiles = np.concatenate([xh[:8], other[:8], rh[:8]])
        iio.imwrite(run / "recon_beside.png", grid(tiles, cols=8))
    rec = {"held_l1": round(float(np.abs(rh - xh).mean()), 4)}
    if args.classifier:
        work = run / "recon_check"
        part = f"recon{size}"
        write_class_folders(work / part, rh, [paths[i] for i in np.flatnonzero(held)])
        rec.update(recognised(args.classifier, work, part))
        if args.all:
            for part, crops in ((f"all_recon{size}", r), (f"all_real{size}", x)):
                write_class_folders(work / part, crops, list(paths))
                rec.update(recognised(args.classifier, work, part))
    log(run, stage="recon", **rec)


def write_class_folders(folder: Path, crops: np.ndarray, paths: list) -> None:
    """Crops ``(N, 3, S, S)`` in [-1, 1] as PNGs in ``folder/<class>/<name>`` of ``paths``."""
    import imageio.v3 as iio

    from napari_nucleus_ai.models.diffusion.generate import to_uint8

    for crop, p in zip(to_uint8(crops), paths, strict=True):
        d = folder / Path(p).parent.name
        d.mkdir(parents=True, exist_ok=True)
        iio.imwrite(d / Path(p).name, crop)


def recognised(
    classifier: str, work: Path, part: str, folder: Path | None = None, adapt: str = "auto"
) -> dict:
    """Share of the crops in ``work/part/<class>/`` (or ``folder/<class>/``) that
    ``classifier`` calls their class (``adapt``: ``predict --adapt``)."""
    import pandas as pd

    from napari_nucleus_ai.cli import main as cli

    csv = work / f"{part}.csv"
    src = str(folder if folder is not None else work / part)
    cli(["predict", classifier, src, "--out", str(csv), "--device", "cpu", "--adapt", adapt])
    df = pd.read_csv(csv)
    df = df[df["path"].map(lambda p: Path(p).suffix.lower() == ".png")]  # not LICENSE etc.
    truth = df["path"].map(lambda p: Path(p).parent.name)
    ok = df["predicted"] == truth
    per_class = {c: round(float(ok[truth == c].mean()), 2) for c in sorted(set(truth))}
    rec = {f"{part}_recognised": round(float(ok.mean()), 3), f"{part}_per_class": per_class}
    for col in ("routed", "adapted"):  # a package with a fallback model: how often it decided
        if col in df:
            rec[f"{part}_{col}"] = round(float(df[col].astype(bool).mean()), 3)
    return rec


def ceiling(args) -> None:
    """Real crops down-sampled to each size and read back up: the share recognised."""
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rec = recognised(args.classifier, work, "original", folder=Path(args.data))
    for size in args.sizes:
        x, _, _, paths = load_crop_folder(args.data, size)
        write_class_folders(work / f"real{size}", x, paths)
        rec.update(recognised(args.classifier, work, f"real{size}"))
    log(work, stage="ceiling", classifier=args.classifier, **rec)


def with_autoencoder(model, ae: str | None):
    """``model`` (a latent :class:`DiffusionClassifier`) with the weights of ``ae``, an
    ``ae.safetensors`` (e.g. of ``decoder``), in place of its autoencoder's; as it is
    without ``ae``."""
    if ae:
        from safetensors.torch import load_file

        model.net.ae.load_state_dict(load_file(ae))
    return model


def checkpoint_model(run: Path, weights: str = "denoiser.safetensors"):
    """A checkpoint of ``train`` as a :class:`DiffusionClassifier` (uncalibrated; for sampling)."""
    from safetensors.torch import load_file

    from napari_nucleus_ai.models.diffusion.model import DiffusionClassifier, build_net

    meta = json.loads((run / "meta.json").read_text())
    config = {
        "kind": "diffusion",
        "class_names": meta["class_names"],
        "size": meta["size"],
        "channels": 3,
        "schedule": "cosine",
        "timesteps": 1000,
        "arch": {**meta["arch"], "latent": meta["latent"]},
    }
    net = build_net(config)
    net.load_state_dict(load_file(run / weights))
    return DiffusionClassifier(net.eval(), config)


def sample_grid(args) -> None:
    """``grid_<weights>_g<guidance>.png``: ``--grid`` samples per class, one class per row."""
    import imageio.v3 as iio

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.generate import generate, grid

    run = Path(args.run)
    model = with_autoencoder(checkpoint_model(run, args.weights), args.ae)
    tiles = [
        run_sync(generate(model, c, n=args.grid, steps=args.steps, guidance=args.guidance, seed=1))
        for c in model.class_names
    ]
    tag = "_" + Path(args.ae).parent.name if args.ae else ""
    out = run / f"grid_{Path(args.weights).stem}{tag}_g{args.guidance:g}.png"
    iio.imwrite(out, grid(np.concatenate(tiles), cols=args.grid))
    log(run, stage="grid", weights=args.weights, guidance=args.guidance, png=str(out))


def main(argv=None) -> int:
    from napari_nucleus_ai.models.diffusion.train import TRAIN_DEFAULTS
    from napari_nucleus_ai.models.engine import PRECISIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("data")
    t.add_argument("out")
    t.add_argument("--ae-steps", type=int, default=250)
    t.add_argument("--steps", type=int, default=6000)
    t.add_argument("--ae-width", type=int, default=LATENT["width"], help="autoencoder channels")
    t.add_argument("--channels", type=int, default=LATENT["channels"], help="latent channels")
    t.add_argument(
        "--perceptual", type=float, default=0.0, help="weight of the autoencoder's feature loss"
    )
    t.add_argument("--threads", type=int, default=1)
    t.add_argument(
        "--colour", type=float, default=0.0, help="weight of the autoencoder's colour loss"
    )
    t.add_argument("--ae-lr", type=float, help="autoencoder learning rate (default: the package's)")
    t.add_argument(
        "--latent-noise", type=float, default=0.0, help="autoencoder: noise on latents (x std)"
    )
    t.add_argument(
        "--ae-init",
        help="an ae.safetensors or a latent-diffusion package of the same settings to continue from",
    )
    t.add_argument(
        "--keep-every", type=int, default=0, help="also keep denoiser_STEP.safetensors (0: off)"
    )
    t.add_argument("--size", type=int, default=64, help="crop size in px")
    t.add_argument("--base", type=int, default=ARCH["base"], help="UNet channels, first level")
    t.add_argument("--mults", default="1,2,2", help="UNet channel multipliers per level")
    t.add_argument("--attention", action="store_true", help="self-attention, lowest level")
    t.add_argument("--lr", type=float, default=TRAIN_DEFAULTS["lr"], help="UNet learning rate")
    t.add_argument("--ema", type=float, default=TRAIN_DEFAULTS["ema"], help="UNet weight EMA")
    t.add_argument("--copies", type=int, default=16, help="augmented latents per crop")
    t.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="the UNet's training arithmetic"
    )
    t.add_argument(
        "--latent-std",
        type=float,
        default=1.0,
        help="standard deviation of the latents the UNet learns (train --latent-std)",
    )
    t.add_argument(
        "--no-jitter",
        action="store_true",
        help="the UNet's augmented copies without stain and light jitter (dihedral only)",
    )
    t.add_argument("--factor", type=int, default=LATENT["factor"], help="autoencoder down-sampling")
    dd = sub.add_parser("decoder")
    dd.add_argument("run")
    dd.add_argument("out")
    dd.add_argument("--data", default="../shared/data/smear/pbc")
    dd.add_argument("--steps", type=int, default=1000)
    dd.add_argument(
        "--adv", type=float, default=0.1, help="weight of the adversarial term (0: none)"
    )
    dd.add_argument("--warmup", type=int, default=100, help="critic-only steps first")
    dd.add_argument("--lr", type=float, default=2e-4)
    dd.add_argument("--batch-size", type=int, default=8)
    dd.add_argument("--perceptual", type=float, default=1.0)
    dd.add_argument("--colour", type=float, default=2.0)
    dd.add_argument("--latent-noise", type=float, default=0.1)
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--threads", type=int, default=1)
    r = sub.add_parser("recon")
    r.add_argument("run")
    r.add_argument("--data", default="../shared/data/smear/pbc")
    r.add_argument("--classifier", help="also: the share of reconstructions it recognises")
    r.add_argument("--all", action="store_true", help="check all crops, not only held-back")
    r.add_argument("--beside", help="another run: recon_beside.png shows its reconstructions too")
    g = sub.add_parser("grid")
    g.add_argument("run")
    g.add_argument("--weights", default="denoiser.safetensors", help="a checkpoint in RUN")
    g.add_argument("--grid", type=int, default=8, help="cells per class")
    g.add_argument("--steps", type=int, default=50)
    g.add_argument("--guidance", type=float, default=2.0)
    g.add_argument("--ae", help="an ae.safetensors replacing the checkpoint's autoencoder")
    c = sub.add_parser("ceiling")
    c.add_argument("classifier", help="the default classifier (train DATA --out pbc.zip)")
    c.add_argument("work", help="scratch folder for the down-sampled crops and CSVs")
    c.add_argument("--data", default="../shared/data/smear/pbc")
    c.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    p = sub.add_parser("package")
    p.add_argument("run")
    p.add_argument("out")
    p.add_argument("--weights", default="denoiser.safetensors", help="a checkpoint in RUN")
    p.add_argument("--data", default="../shared/data/smear/pbc")
    e = sub.add_parser("evaluate")
    e.add_argument("run")
    e.add_argument("package", help="a package, or the name of a checkpoint in RUN")
    e.add_argument("classifier", help="the default classifier (train DATA --out pbc.zip)")
    e.add_argument("work", help="scratch folder for the generated crops and CSVs")
    e.add_argument("--data", default="../shared/data/smear/pbc")
    e.add_argument("-n", type=int, default=16, help="generated cells per class")
    e.add_argument("--fid-per-class", type=int, default=9)
    e.add_argument("--grid", type=int, default=8, help="cells per class in the grid")
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--guidance", type=float, default=2.0)
    e.add_argument("--seed", type=int, default=1, help="seed of the generated cells")
    e.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    e.add_argument("--interval", type=float, nargs=2, help="guide only at noise levels in (LO, HI]")
    e.add_argument(
        "--ae", help="an ae.safetensors replacing the autoencoder of a checkpoint or package"
    )
    e.add_argument(
        "--adapt",
        choices=("auto", "off"),
        default="auto",
        help="predict --adapt: off keeps the fallback from adapting to the generated batch",
    )
    args = ap.parse_args(argv)
    {
        "train": train,
        "decoder": decoder,
        "recon": recon,
        "grid": sample_grid,
        "ceiling": ceiling,
        "package": package,
        "evaluate": evaluate,
    }[args.cmd](args)
    return 0


def package(args) -> None:
    """The latest checkpoint as a model package, calibrated on the training crops' split."""
    import shutil
    import tempfile

    from napari_nucleus_ai.classify.train import train as train_package

    run = Path(args.run)
    held = held_paths(run)
    meta = json.loads((run / "meta.json").read_text())
    latent, arch = meta["latent"], meta.get("arch", ARCH)
    data = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted(data.glob("*/*.png")):
            if str(f) not in held:
                (Path(tmp) / f.parent.name).mkdir(exist_ok=True)
                shutil.copy(f, Path(tmp) / f.parent.name / f.name)
        train_package(
            tmp,
            args.out,
            arch="latent-diffusion",
            crop_size=run_size(run),
            seed=0,
            params={**arch, "latent": latent, "proposer": False},
            kind_options={"init": str(run / args.weights), "steps": 0},
        )
    log(run, stage="package", package=str(args.out), weights=args.weights)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` and ``b`` (FID formula)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def lite0_features(x: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite0 (ImageNet, frozen: the morph model's backbone) pooled features of
    crops ``(N, 3, S, S)`` in [-1, 1], the whole crop resized to 224 px."""
    import torch

    from napari_nucleus_ai.models.nets.imagenet import (
        build_backbone,
        features,
        inference_copy,
        load_imagenet_weights,
    )

    net = build_backbone()
    load_imagenet_weights(net)
    net = inference_copy(net)
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), 16):
            rgb = torch.from_numpy((np.asarray(x[s : s + 16], np.float32) + 1) / 2)
            out.append(features(net, rgb, view=1.0).numpy())
    return np.concatenate(out).astype(np.float64)


def evaluate(args) -> None:
    """Generated cells: share recognised by the default classifier, and Frechet distance."""
    import imageio.v3 as iio

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.models.diffusion.generate import generate, grid, to_uint8
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.package import load_model

    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    c0 = cpu_seconds()
    if args.package.endswith(".safetensors"):  # a checkpoint in RUN, not packaged
        model = checkpoint_model(run, args.package)
    else:
        model = as_classifier(load_model(args.package))
    model = with_autoencoder(model, args.ae)
    size = run_size(run)
    x, y, names, paths = load_crop_folder(args.data, size)
    held = held_mask(run, paths)
    gen, tiles = {}, []
    for name in names:
        g = run_sync(
            generate(
                model,
                name,
                n=args.n,
                steps=args.steps,
                guidance=args.guidance,
                seed=args.seed,
                eta=args.eta,
                interval=tuple(args.interval) if args.interval else None,
            )
        )
        gen[name] = g
        tiles.append(g[: args.grid])
        for i, crop in enumerate(to_uint8(g)):
            (work / "gen" / name).mkdir(parents=True, exist_ok=True)
            iio.imwrite(work / "gen" / name / f"gen{i:03d}.png", crop)
    recon = to_uint8(model.decode(model.encode(x[held])).numpy())
    real_part, recon_part = f"real{size}", f"recon{size}"
    for k, i in enumerate(np.flatnonzero(held)):
        for part, crop in ((real_part, to_uint8(x[i : i + 1])[0]), (recon_part, recon[k])):
            d = work / part / Path(paths[i]).parent.name
            d.mkdir(parents=True, exist_ok=True)
            iio.imwrite(d / Path(paths[i]).name, crop)
    iio.imwrite(work / "grid.png", grid(np.concatenate(tiles), cols=args.grid))
    gen_cpu = cpu_seconds() - c0
    rec = {"evaluated": args.package, "ae": args.ae, "generation_cpu_s": round(gen_cpu, 1)}
    rec.update(n_per_class=args.n, steps=args.steps)
    rec["guidance"] = args.guidance
    if args.seed != 1:
        rec["seed"] = args.seed
    if args.eta or args.interval:
        rec.update(eta=args.eta, interval=args.interval)
    for part in ("gen", real_part, recon_part):
        rec.update(recognised(args.classifier, work, part, adapt=args.adapt))
    rec["adapt"] = args.adapt
    f_gen = lite0_features(np.concatenate([gen[n][: args.fid_per_class] for n in names]))
    f_train, f_held = lite0_features(x[~held]), lite0_features(x[held])
    rec["fd_generated_vs_held"] = round(frechet(f_gen, f_held), 1)
    rec["fd_train_vs_held"] = round(frechet(f_train, f_held), 1)
    rec["n_fd"] = [len(f_gen), len(f_train), len(f_held)]
    rec["gen_size_ratio"] = {  # median cell diameter, generated / all real crops of the class
        n: round(float(np.median(cell_diameters(gen[n])) / np.median(cell_diameters(x[y == c]))), 2)
        for c, n in enumerate(names)
    }
    log(run, stage="evaluate", **rec)


def cell_diameters(crops: np.ndarray) -> np.ndarray:
    """The central white cell's diameter in pixels of crops ``(N, 3, S, S)`` in [-1, 1], as
    the canonical frame measures it (the nucleus hull; ``cellframe.find_cell``)."""
    from napari_nucleus_ai.models.cellframe import find_cell

    return np.array([find_cell(np.moveaxis((c + 1) / 2, 0, -1))["diameter"] for c in crops])


if __name__ == "__main__":
    sys.exit(main())
