"""Batched forward passes: devices, pinned memory, mixed precision, TTA and MC dropout.

:func:`probability_samples` is what the classifier kind's ``predict`` runs. On
CUDA, batches go through pinned host memory (``non_blocking`` copies) and
``torch.autocast`` (float16); on MPS and CPU in float32. :func:`use_cores` sets the
inference threads from the cores; ``adaptive`` test-time augmentation spends the extra
views only on inputs whose first view is uncertain; :func:`one_thread` runs a block on one
torch thread. :func:`training_precision` and :func:`autocast` decide and apply the
precision of training passes (bfloat16 where the processor computes it natively).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

# Dihedral transforms in the order they are added for tta = 1, 2, 4, 8.
_DIHEDRAL = (
    (0, False),
    (0, True),
    (1, False),
    (3, False),
    (2, False),
    (1, True),
    (2, True),
    (3, True),
)


def dihedral(x, k: int, flip: bool):
    import torch

    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def set_mc_dropout(module, on: bool) -> None:
    """Dropout layers in train mode (sampling) while everything else stays in eval."""
    from torch import nn

    if not on and not any(m.training for m in module.modules()):
        return  # all in eval already: ``eval()`` would set every submodule's flag again
    module.eval()
    if on:
        for m in module.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d | nn.AlphaDropout):
                m.train()


def to_device(batch: np.ndarray, device):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def logits_batched(module, x: np.ndarray, device, batch_size: int = 64, transform=None):
    """Logits ``(N, C)`` float32 of ``module`` over ``x`` in batches (no grad)."""
    import torch

    out = []
    amp = device.type == "cuda"
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            t = to_device(x[i : i + batch_size], device)
            if transform is not None:
                t = transform(t)
            if amp:
                with torch.autocast("cuda", dtype=torch.float16):
                    y = module(t)
            else:
                y = module(t)
            out.append(y.float().cpu())
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy()


def use_cores() -> int:
    """Inference threads from the cores: ``torch.set_num_threads`` to the CPUs this process
    may run on, unless the user chose a number (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
    set, or torch already at 1 thread, as ``batch`` workers and ``--threads 1`` leave it).
    Returns the number of threads in use."""
    import torch

    n = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS") or n == 1:
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or n
    if n < cores:
        torch.set_num_threads(cores)
    return torch.get_num_threads()


@contextlib.contextmanager
def one_thread():
    """torch on one CPU thread inside the block (the count before is restored after).

    L-BFGS on a logistic head is thousands of small operations (dot products of ~10^4
    numbers in its two-loop recursion): with two threads each one waits for the other, so
    a fit takes 2-10x the time of one thread, far more while other processes share the
    cores; the arithmetic is the same. ``retrain`` also runs on one thread while a forked
    process fits a fallback model beside it.
    """
    import torch

    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


#: ``precision`` values of the training functions: ``auto`` takes bfloat16 where the device
#: computes it natively (:func:`native_bfloat16`), float32 elsewhere.
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device=None) -> bool:
    """True when ``device`` (default: the CPU) computes bfloat16 in hardware: a CPU with AMX
    or AVX512-BF16 (oneDNN runs convolutions and matrix products on them), or a CUDA GPU
    that supports it. Elsewhere bfloat16 is emulated and slower than float32."""
    import torch

    kind = getattr(device, "type", device) or "cpu"
    try:
        if kind == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        if kind == "cpu":
            cpu = torch.cpu
            return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # private probes of the installed torch
        return False
    return False


def training_precision(precision: str = "auto", device=None) -> str:
    """``float32`` or ``bfloat16``: the precision a training loop on ``device`` runs in for
    the ``precision`` asked (one of :data:`PRECISIONS`).

    ``auto`` is bfloat16 where :func:`native_bfloat16` (on a CPU with AMX a diffusion UNet's
    training step takes 0.6x the time of float32 on one thread, docs/generative.md),
    float32 elsewhere. Weights, optimiser state and losses stay float32 either way
    (``torch.autocast`` runs only the layers' arithmetic in bfloat16).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision


def autocast(precision: str, device=None):
    """The context a training pass runs its forward in for a resolved ``precision``
    (:func:`training_precision`): ``torch.autocast`` to bfloat16, or nothing for float32."""
    import torch

    if precision != "bfloat16":
        return contextlib.nullcontext()
    kind = getattr(device, "type", device) or "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16)


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy of probabilities ``(..., C)`` over ``log C`` (in [0, 1])."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1.0)
    c = p.shape[-1]
    return -(p * np.log(p)).sum(-1) / (np.log(c) if c > 1 else 1.0)


def probability_samples(
    modules,
    x: np.ndarray,
    *,
    device,
    temperature: float = 1.0,
    batch_size: int = 64,
    tta: int = 1,
    mc_dropout: int = 0,
    adaptive: float | None = None,
    info: dict | None = None,
    settled=None,
    skip=None,
    n_classes: int | None = None,
) -> np.ndarray:
    """Calibrated softmax samples ``(S, N, C)``: members x TTA transforms x dropout passes.

    ``adaptive`` (a normalised entropy): adaptive test-time augmentation. Every input gets
    the first (identity) view; only inputs whose first-view mean probabilities (over members
    and dropout passes) have a normalised entropy above ``adaptive`` get the other ``tta - 1``
    views. For the others the first view's samples stand in for the views not run, so the
    shape is the same and their mean is the first view's. ``None``: every view for every
    input. ``settled`` (with ``adaptive``): called after the first view when some inputs
    are uncertain, returns a boolean mask ``(N,)`` of inputs whose outcome the extra views
    cannot change (a package routes them to its fallback whatever they give), which do not
    get them. ``skip``: a boolean mask ``(N,)`` of inputs that get no pass at all (a package
    routes them to its fallback whatever they give, known before any view); their samples
    are uniform over ``n_classes`` classes, for the caller to replace. ``info``, when given,
    receives ``n_extra`` (inputs that got the extra views) and ``n`` (inputs that got a pass).
    """
    import torch

    views = _DIHEDRAL[: max(1, int(tta))]
    passes = [False] + [True] * int(mc_dropout)
    if skip is not None and np.asarray(skip, bool).any():
        if n_classes is None:
            raise ValueError("skip needs n_classes")
        keep = np.flatnonzero(~np.asarray(skip, bool))
        out = np.full(
            (len(modules) * len(views) * len(passes), len(x), int(n_classes)),
            1.0 / int(n_classes),
            np.float32,
        )
        if info is not None:
            info.update(n=0, n_extra=0)
        if len(keep):
            out[:, keep] = probability_samples(
                modules,
                x[keep],
                device=device,
                temperature=temperature,
                batch_size=batch_size,
                tta=tta,
                mc_dropout=mc_dropout,
                adaptive=adaptive,
                info=info,
                settled=None if settled is None else (lambda: np.asarray(settled(), bool)[keep]),
            )
        return out

    def run(module, xs, k, flip):
        def transform(t, k=k, flip=flip):
            return dihedral(t, k, flip)

        out = []
        for mc in passes:
            set_mc_dropout(module, mc)
            logits = logits_batched(module, xs, device, batch_size, transform)
            if logits.size == 0:
                logits = np.zeros((0, 1), np.float32)
            out.append(torch.softmax(torch.from_numpy(logits) / temperature, 1).numpy())
        set_mc_dropout(module, False)
        return out

    first = [run(module, x, *views[0]) for module in modules]
    extra = np.arange(len(x)) if adaptive is None else np.zeros(0, int)
    if adaptive is not None and len(views) > 1 and len(x):
        mean0 = np.mean([p for member in first for p in member], 0)
        extra = np.flatnonzero(normalised_entropy(mean0) > float(adaptive))
        if settled is not None and len(extra):
            extra = extra[~np.asarray(settled(), bool)[extra]]
    if info is not None:
        info["n"] = len(x)
        info["n_extra"] = len(extra) if len(views) > 1 else 0
    samples = []
    for module, base in zip(modules, first, strict=True):
        samples += base
        for k, flip in views[1:]:
            if len(extra) == len(x):
                samples += run(module, x, k, flip)
                continue
            got = run(module, x[extra], k, flip) if len(extra) else [None] * len(passes)
            for b, g in zip(base, got, strict=True):
                s = b.copy()
                if g is not None:
                    s[extra] = g
                samples.append(s)
    return np.stack(samples)


def pool_items(samples: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Pool per-patch probability samples ``(S, M, C)`` into per-item ``(S, n, C)``.

    Patches of one STORM nucleus are pooled by their geometric mean (mean
    log-probability, renormalised): each patch is evidence about the same nucleus.
    Items with one input each are returned unchanged.
    """
    if len(groups) == n and np.array_equal(groups, np.arange(n)):
        return samples
    logp = np.log(np.clip(np.asarray(samples, np.float64), 1e-12, 1.0))
    out = np.zeros((logp.shape[0], n, logp.shape[2]), np.float64)
    np.add.at(out, (slice(None), groups), logp)
    out /= np.bincount(groups, minlength=n)[None, :, None]
    out = np.exp(out - out.max(-1, keepdims=True))
    return out / out.sum(-1, keepdims=True)
