"""The ``morph`` architecture: a fixed morphology descriptor, a logistic head, optionally a CNN
and frozen ImageNet features.

``morph`` classifies a centred brightfield crop from the measurements of
:mod:`.morphology` (nucleus segmentation, lobes, nucleus / cell ratio, cytoplasm
colour and granularity, texture, radial profiles) with a multinomial logistic
regression, optionally fused with the ``hybrid`` CNN and with a second logistic
regression on frozen ImageNet features of the cell (:mod:`.imagenet`, parameter
``imagenet``) by adding the logit vectors (a product of experts; the sum is then
temperature-calibrated).

Everything a trained model holds is a plain tensor in its safetensors file:

* ``in_mean`` / ``in_std`` - the card's input normalisation, to get back to RGB;
* ``desc_mean`` / ``desc_std`` - standardisation of the descriptor (training set);
* ``desc_head.weight`` / ``desc_head.bias`` - the logistic regression;
* ``cnn.*`` - the optional CNN;
* ``img.*``, ``img_mean`` / ``img_std``, ``img_head.*`` - the optional frozen ImageNet
  backbone (its weights are stored, so a package is self-contained), the standardisation
  of its pooled features and their logistic regression.

The logistic heads are fitted by full-batch L-BFGS on standardised features of the
training crops, with an L2 penalty ``|W|^2 / (2 C N)`` on the mean cross-entropy
(``C`` as in scikit-learn). ``C`` is chosen inside the training set by stratified inner
cross-validation (lowest held-out NLL) among ``c_grid`` (``imagenet_c_grid``); the
validation split is never used for it. The ImageNet head is fitted on the features of
the 8 flips and rotations of every training crop, the 8 views of a crop always in the
same inner fold.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.errors import InputError

DEFAULTS = {
    "cnn": True,
    "cnn_size": 64,
    "widths": [16, 32, 64, 128],
    "dropout": 0.3,
    "c_grid": [0.03, 0.1, 0.3, 1.0],
    "inner_folds": 4,
    # frozen ImageNet features (models/imagenet.py): a backbone name or None; ``train``
    # turns the absent key into "efficientnet-lite0" where the [pretrained] extra is installed
    "imagenet": None,
    "imagenet_view": 1 / 1.4,
    "imagenet_c_grid": [0.01, 0.03, 0.1, 0.3, 1.0],
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


def choose_c(
    f: np.ndarray, y: np.ndarray, n_classes: int, grid, folds: int, seed: int = 0, groups=None
):
    """``C`` from ``grid`` with the lowest inner cross-validated NLL (ties: the smaller C).

    Rows with the same ``groups`` value (views of one crop) always share an inner fold.
    """
    import torch

    grid = [float(c) for c in grid]
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    first = np.unique(groups, return_index=True)[1]
    gy = y[first]  # one label per group
    counts = np.bincount(gy, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min()))
    if len(grid) == 1 or k < 2:
        return grid[len(grid) // 2]
    rng = np.random.default_rng(seed)
    gfold = np.zeros(len(gy), int)
    for cls in range(n_classes):
        idx = rng.permutation(np.flatnonzero(gy == cls))
        gfold[idx] = np.arange(len(idx)) % k
    fold = gfold[np.searchsorted(groups[first], groups)]
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


def fit_head(f, y, n_classes: int, grid, folds: int, seed: int = 0, groups=None) -> dict:
    """A standardised logistic head on features ``f``: ``C`` by inner CV, then the fit.

    Returns ``{"c", "mean", "std", "weight", "bias"}`` (numpy mean/std, torch weight/bias).
    """
    f = np.asarray(f, np.float64)
    y = np.asarray(y, np.int64)
    c = choose_c(f, y, n_classes, grid, folds, seed, groups)
    mu, sd = f.mean(0), f.std(0) + 1e-4
    w, b = fit_logistic((f - mu) / sd, y, n_classes, c)
    return {"c": c, "mean": mu, "std": sd, "weight": w, "bias": b}


def resolve_params(params) -> tuple[dict, str | None]:
    """``params`` with ``imagenet`` (and with it ``cnn``) filled in when absent, and a note.

    The absent ``imagenet`` becomes ``"efficientnet-lite0"`` where the ``[pretrained]`` extra
    is installed and ``None`` (morphology only) elsewhere, so the card always says which.
    With ImageNet features the small CNN is off unless asked for: on PBC it added no
    accuracy beside them and took 5x the training time, and saliency maps come through the
    backbone instead.
    """
    from napari_nucleus_ai.models.nets.imagenet import EXTRA, available

    params = dict(params or {})
    if "imagenet" not in params:
        params["imagenet"] = "efficientnet-lite0" if available() else None
        if params["imagenet"] is None:
            return params, f"ImageNet features: not installed, morphology only ({EXTRA})"
    if params["imagenet"] is None:
        return params, None
    params.setdefault("cnn", False)
    return params, f"ImageNet features: {params['imagenet']} (frozen), beside the morphology"


def build_morph(in_channels: int, n_classes: int, **params):
    """The ``morph`` module (see the module docstring); RGB crops only."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from napari_nucleus_ai.models.nets.cnn import build_hybrid
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES, describe_cells

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
            self.img = None
            if p["imagenet"]:
                from napari_nucleus_ai.models.nets.imagenet import N_FEATURES as N_IMG
                from napari_nucleus_ai.models.nets.imagenet import build_backbone

                self.img = build_backbone(p["imagenet"])
                self.register_buffer("img_mean", torch.zeros(N_IMG))
                self.register_buffer("img_std", torch.ones(N_IMG))
                self.img_head = nn.Linear(N_IMG, n_classes)
                self.img_head.requires_grad_(False)
            self.cnn_only = False  # set while the CNN part trains (fast, no descriptor)

        def train(self, mode: bool = True):
            super().train(mode)
            if self.img is not None:
                self.img.eval()  # frozen: batch-norm statistics stay ImageNet's
            return self

        def rgb(self, x):
            """Normalised inputs back to RGB in [0, 1]."""
            m, s = self.in_mean[None, :, None, None], self.in_std[None, :, None, None]
            return (x * s + m).clamp(0, 1)

        def descriptors(self, x):
            rgb = self.rgb(x)
            d = describe_cells(rgb.detach().float().cpu().permute(0, 2, 3, 1).numpy())
            return torch.from_numpy(np.asarray(d, np.float32)).to(x.device)

        def imagenet_features(self, x):
            from napari_nucleus_ai.models.nets.imagenet import features

            return features(self.img, self.rgb(x), float(p["imagenet_view"]))

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
            """Fit input/descriptor statistics and the logistic heads on training crops ``x``."""
            self.in_mean.copy_(torch.tensor(normalisation["mean"], dtype=torch.float32))
            self.in_std.copy_(torch.tensor(normalisation["std"], dtype=torch.float32))
            x = torch.as_tensor(x)
            out = self.refit_heads(x, y, seed, load_weights=True)
            if self.cnn is not None:
                s = int(p["cnn_size"])
                xc = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True)
                self.cnn.fit_feature_stats(xc)
            return out

        @torch.no_grad()
        def refit_heads(self, x, y, seed: int = 0, groups=None, load_weights: bool = False):
            """Refit the logistic heads (descriptor, ImageNet) on normalised crops ``x``.

            The input normalisation, the backbone and the CNN stay as they are (``retrain``
            uses this for corrected cells); rows sharing a ``groups`` value stay in one inner
            fold when ``C`` is chosen.
            """
            x = torch.as_tensor(x).to(self.in_mean.device)
            y = np.asarray(y, np.int64)
            f = self.descriptors(x).cpu().numpy()
            head = fit_head(f, y, n_classes, p["c_grid"], p["inner_folds"], seed, groups)
            self._set_head(self.desc_head, self.desc_mean, self.desc_std, head)
            out = {"c": head["c"]}
            if self.img is not None:
                out["imagenet"] = self._fit_imagenet(x, y, seed, groups, load_weights)
            return out

        @staticmethod
        def _set_head(linear, mean, std, head: dict) -> None:
            mean.copy_(torch.as_tensor(head["mean"], dtype=torch.float32))
            std.copy_(torch.as_tensor(head["std"], dtype=torch.float32))
            linear.weight.copy_(head["weight"])
            linear.bias.copy_(head["bias"])

        def _fit_imagenet(self, x, y, seed: int, groups=None, load_weights=True) -> dict:
            """ImageNet weights into the backbone (training); its head on dihedral views.

            All 8 views up to 500 crops, fewer for larger sets (4000 crop-views at least,
            1 view from 4000 crops), so large data sets do not cost 8 passes.
            """
            from napari_nucleus_ai.models.nets.imagenet import load_imagenet_weights

            info = load_imagenet_weights(self.img, p["imagenet"]) if load_weights else {}
            views = int(min(8, max(1, 4000 // max(len(y), 1))))
            feats = []
            for k in range(views):
                v = torch.rot90(x, k % 4, (-2, -1))
                v = v.flip(-1) if k >= 4 else v
                feats += [self.imagenet_features(b) for b in v.split(32)]
            f = torch.cat(feats).cpu().numpy()
            groups = np.arange(len(y)) if groups is None else np.asarray(groups)
            head = fit_head(
                f,
                np.tile(y, views),
                n_classes,
                p["imagenet_c_grid"],
                p["inner_folds"],
                seed,
                np.tile(groups, views),
            )
            self._set_head(self.img_head, self.img_mean, self.img_std, head)
            return {**info, "c": head["c"], "views": views}

        def forward(self, x):
            if self.cnn_only and self.cnn is not None:
                return self._cnn(x)
            d = (self.descriptors(x) - self.desc_mean) / self.desc_std
            z = self.desc_head(d)
            if self.img is not None:
                z = z + self.img_head((self.imagenet_features(x) - self.img_mean) / self.img_std)
            return z if self.cnn is None else z + self._cnn(x)

    return Morph()
