"""Benchmark: one training step of a diffusion UNet in float32 and in bfloat16.

The step is the one :func:`napari_nucleus_ai.models.diffusion.train.train_diffusion` takes
(forward under :func:`napari_nucleus_ai.models.engine.autocast`, float32 loss, AdamW) on a
batch of 32 random 16 x 16 x 8 latents, the shape of the 128-px latent model of
docs/generative.md, with its UNet (base 64, self-attention at the lowest level);
``--autoencoder`` also times a step of that model's autoencoder. Prints
wall and CPU seconds per step for each precision and thread count, after 3 warm-up steps;
the two precisions alternate so that a change in the machine's load shows as a spread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_precision.py --threads 1 2 --autoencoder

bfloat16 is only fast where the processor computes it (``engine.native_bfloat16``: AMX or
AVX512-BF16); elsewhere it is emulated and slower than float32, which is why ``auto``
takes float32 there.
"""

from __future__ import annotations

import argparse
import json
import time


def _time_steps(step, steps: int, warmup: int, **rec) -> dict:
    """``rec`` with the wall and CPU seconds per call of ``step()`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        **rec,
        "wall_s_per_step": round(wall / steps, 4),
        "cpu_s_per_step": round(cpu / steps, 4),
    }


def _train_step(module, opt, forward, loss_of):
    """A closure: one optimiser step of ``module`` (``forward`` under ``autocast`` by the
    caller, ``loss_of(output)`` in float32)."""

    def step():
        loss = loss_of(forward())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def step_seconds(precision: str, threads: int, steps: int = 20, base: int = 64) -> dict:
    """One step of the UNet as ``train_diffusion`` takes it."""
    import torch

    from napari_nucleus_ai.models.diffusion.unet import ClassUNet
    from napari_nucleus_ai.models.engine import autocast

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = ClassUNet(8, 8, base=base, mults=(1, 2, 2), attention=True, dropout=0.1)
    x = torch.randn(32, 8, 16, 16)
    y = torch.randint(0, 9, (32,))
    t = torch.randint(0, 1000, (32,))

    def forward():
        with autocast(precision):
            return net(x, t, y)

    step = _train_step(
        net,
        torch.optim.AdamW(net.parameters(), 1e-3),
        forward,
        lambda out: torch.nn.functional.mse_loss(out.float(), x),
    )
    return _time_steps(step, steps, 3, network="unet", precision=precision, threads=threads)


def autoencoder_step_seconds(precision: str, threads: int, steps: int = 6) -> dict:
    """One step of :func:`~napari_nucleus_ai.models.diffusion.latent.train_autoencoder` as it
    takes it: the autoencoder (width 32, 128 px -> 16 x 16 x 8) under ``autocast``, the loss
    with the perceptual and colour terms in float32; a batch of 8 random crops."""
    import torch

    from napari_nucleus_ai.models.diffusion.latent import (
        PerceptualLoss,
        build_autoencoder,
        reconstruction_loss,
    )
    from napari_nucleus_ai.models.engine import autocast

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ae = build_autoencoder(3, {"channels": 8, "factor": 8, "width": 32})
    feat = PerceptualLoss()
    x = torch.rand(8, 3, 128, 128) * 2 - 1

    def forward():
        with autocast(precision):
            return ae.decode(ae.encode(x).latents).sample

    step = _train_step(
        ae,
        torch.optim.AdamW(ae.parameters(), 1e-3),
        forward,
        lambda r: reconstruction_loss(r.float(), x, feat, 1.0, 2.0),
    )
    rec = {"network": "autoencoder", "precision": precision, "threads": threads}
    return _time_steps(step, steps, 2, **rec)


def main(argv=None) -> int:
    from napari_nucleus_ai.models.engine import native_bfloat16

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--autoencoder", action="store_true", help="also time the autoencoder")
    args = p.parse_args(argv)
    print(json.dumps({"native_bfloat16": native_bfloat16()}))
    for threads in args.threads:
        for _ in range(args.repeats):
            for precision in ("float32", "bfloat16"):
                print(json.dumps(step_seconds(precision, threads, args.steps)), flush=True)
                if args.autoencoder:
                    rec = autoencoder_step_seconds(precision, threads)
                    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
