"""The ``morph`` architecture: a fixed morphology descriptor, a logistic head, optionally a CNN.

``morph`` classifies a centred brightfield crop from the measurements of
:mod:`.morphology` (nucleus segmentation, lobes, nucleus / cell ratio, cytoplasm
colour and granularity, texture, radial profiles) with a multinomial logistic
regression, optionally fused with the ``hybrid`` CNN by adding the two logit
vectors (a product of experts; the sum is then temperature-calibrated).

Everything a trained model holds is a plain tensor in its safetensors file:

* ``in_mean`` / ``in_std`` - the card's input normalisation, to get back to RGB;
* ``desc_mean`` / ``desc_std`` - standardisation of the descriptor (training set);
* ``desc_head.weight`` / ``desc_head.bias`` - the logistic regression;
* ``cnn.*`` - the optional CNN.

The logistic head is fitted by full-batch L-BFGS on the standardised
descriptors of the training crops, with an L2 penalty ``|W|^2 / (2 C N)`` on the
mean cross-entropy (``C`` as in scikit-learn). ``C`` is chosen inside the
training set by stratified inner cross-validation (lowest held-out NLL) among
``c_grid``; the validation split is never used for it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

DEFAULTS = {
    "cnn": True,
    "cnn_size": 64,
    "widths": [16, 32, 64, 128],
    "dropout": 0.3,
    "c_grid": [0.03, 0.1, 0.3, 1.0],
    "inner_folds": 4,
}


def fit_logistic(f: np.ndarray, y: np.ndarray, n_classes: int, c: float, iters: int = 200):
    """Multinomial logistic regression on standardised features by L-BFGS.

    Parameters
    ----------
    f : np.ndarray (N, F)
        Standardised features.
    y : np.ndarray (N,)
        Class indices.
    n_classes : int
    c : float
        Inverse L2 strength (scikit-learn's ``C``): penalty ``|W|^2 / (2 C N)``.

    Returns
    -------
    (weight (C, F), bias (C,)) as torch tensors.
    """
    import torch

    x = torch.as_tensor(f, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.int64)
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    lam = 1.0 / (c * max(len(y), 1))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, t) + 0.5 * lam * (w**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().float(), b.detach().float()


def choose_c(f: np.ndarray, y: np.ndarray, n_classes: int, grid, folds: int, seed: int = 0):
    """``C`` from ``grid`` with the lowest inner cross-validated NLL (ties: the smaller C)."""
    import torch

    grid = [float(c) for c in grid]
    counts = np.bincount(y, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min()))
    if len(grid) == 1 or k < 2:
        return grid[len(grid) // 2]
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for cls in range(n_classes):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    scores = []
    for c in grid:
        nll = 0.0
        for j in range(k):
            tr, te = fold != j, fold == j
            mu, sd = f[tr].mean(0), f[tr].std(0) + 1e-4
            w, b = fit_logistic((f[tr] - mu) / sd, y[tr], n_classes, c)
            z = torch.as_tensor((f[te] - mu) / sd, dtype=torch.float32) @ w.T + b
            nll += float(
                torch.nn.functional.cross_entropy(z, torch.as_tensor(y[te]), reduction="sum")
            )
        scores.append(nll / len(y))
    return grid[int(np.argmin(scores))]


def build_morph(in_channels: int, n_classes: int, **params):
    """The ``morph`` module (see the module docstring); RGB crops only."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .architectures import build_hybrid
    from .morphology import N_FEATURES, describe_cells

    if in_channels != 3:
        raise InputError(None, "the 'morph' architecture needs RGB (3-channel) brightfield crops")
    p = {**DEFAULTS, **params}
    n_feat = N_FEATURES

    class Morph(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("in_mean", torch.zeros(3))
            self.register_buffer("in_std", torch.ones(3))
            self.register_buffer("desc_mean", torch.zeros(n_feat))
            self.register_buffer("desc_std", torch.ones(n_feat))
            self.desc_head = nn.Linear(n_feat, n_classes)
            self.desc_head.requires_grad_(False)
            self.cnn = (
                build_hybrid(3, n_classes, widths=p["widths"], dropout=p["dropout"])
                if p["cnn"]
                else None
            )
            self.cnn_only = False  # set while the CNN part trains (fast, no descriptor)

        def descriptors(self, x):
            rgb = (x * self.in_std[None, :, None, None] + self.in_mean[None, :, None, None]).clamp(
                0, 1
            )
            d = describe_cells(rgb.detach().float().cpu().permute(0, 2, 3, 1).numpy())
            return torch.from_numpy(np.asarray(d, np.float32)).to(x.device)

        def _cnn(self, x):
            s = int(p["cnn_size"])
            if x.shape[-1] != s:
                x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True)
            return self.cnn(x)

        @torch.no_grad()
        def cnn_inputs(self, x: np.ndarray) -> np.ndarray:
            """Inputs resized to ``cnn_size`` once, for training the CNN part."""
            s = int(p["cnn_size"])
            if self.cnn is None or x.shape[-1] == s:
                return x
            t = F.interpolate(torch.as_tensor(x), size=(s, s), mode="bilinear", antialias=True)
            return t.numpy()

        @torch.no_grad()
        def fit_descriptor(self, x, y, normalisation: dict, seed: int = 0) -> dict:
            """Fit input/descriptor statistics and the logistic head on training crops ``x``."""
            self.in_mean.copy_(torch.tensor(normalisation["mean"], dtype=torch.float32))
            self.in_std.copy_(torch.tensor(normalisation["std"], dtype=torch.float32))
            x = torch.as_tensor(x)
            f = self.descriptors(x).cpu().numpy().astype(np.float64)
            y = np.asarray(y, np.int64)
            c = choose_c(f, y, n_classes, p["c_grid"], int(p["inner_folds"]), seed)
            mu, sd = f.mean(0), f.std(0) + 1e-4
            w, b = fit_logistic((f - mu) / sd, y, n_classes, c)
            self.desc_mean.copy_(torch.as_tensor(mu, dtype=torch.float32))
            self.desc_std.copy_(torch.as_tensor(sd, dtype=torch.float32))
            self.desc_head.weight.copy_(w)
            self.desc_head.bias.copy_(b)
            if self.cnn is not None:
                s = int(p["cnn_size"])
                xc = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True)
                self.cnn.fit_feature_stats(xc)
            return {"c": c}

        def forward(self, x):
            if self.cnn_only and self.cnn is not None:
                return self._cnn(x)
            d = (self.descriptors(x) - self.desc_mean) / self.desc_std
            z = self.desc_head(d)
            return z if self.cnn is None else z + self._cnn(x)

    return Morph()
