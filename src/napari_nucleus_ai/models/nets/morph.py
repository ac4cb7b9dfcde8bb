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
same inner fold. With ``z_clip`` the standardised features are clipped to ``+-z_clip``
(:func:`standardise`) before the heads see them, in training and prediction alike, so a
feature nearly constant on the training crops cannot outweigh all others on a cell of
another microscope; ``train`` gives it (5) to new canonical-frame models, a package's
fallback.

This module imports torch at its top; only the builders import it (the registry inside
:func:`~.registry.build_architecture`). The defaults and :func:`resolve_params` live in
the torch-free :mod:`.morph_params` (re-exported here).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models import engine
from napari_nucleus_ai.models.nets.cnn import Hybrid
from napari_nucleus_ai.models.nets.morph_params import DEFAULTS, resolve_params
from napari_nucleus_ai.models.nets.morphology import N_FEATURES, describe_cells

_MEMO_LOCK = threading.Lock()  # the descriptor and the backbone fill the memo from two threads

__all__ = [
    "DEFAULTS",
    "Morph",
    "build_morph",
    "choose_c",
    "fit_head",
    "fit_logistic",
    "resolve_params",
    "standardise",
]


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

    with torch.enable_grad(), engine.one_thread():
        opt.step(closure)
    return w.detach().float(), b.detach().float()


def choose_c(
    f: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    grid,
    folds: int,
    seed: int = 0,
    groups=None,
    clip=None,
):
    """``C`` from ``grid`` with the lowest inner cross-validated NLL (ties: the smaller C).

    Rows with the same ``groups`` value (views of one crop) always share an inner fold;
    ``clip`` as for :func:`standardise`.
    """
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
            w, b = fit_logistic(standardise(f[tr], mu, sd, clip), y[tr], n_classes, c)
            z = torch.as_tensor(standardise(f[te], mu, sd, clip), dtype=torch.float32) @ w.T + b
            nll += float(
                torch.nn.functional.cross_entropy(z, torch.as_tensor(y[te]), reduction="sum")
            )
        scores.append(nll / len(y))
    return grid[int(np.argmin(scores))]


def standardise(f, mean, std, clip=None):
    """``(f - mean) / std``, clipped to ``+-clip`` when given (numpy or torch): what every
    head of a ``morph`` model reads (:data:`~.morph_params.Z_CLIP`)."""
    z = (f - mean) / std
    if clip is None:
        return z
    return z.clamp(-clip, clip) if isinstance(z, torch.Tensor) else np.clip(z, -clip, clip)


def fit_head(f, y, n_classes: int, grid, folds: int, seed: int = 0, groups=None, clip=None) -> dict:
    """A standardised logistic head on features ``f``: ``C`` by inner CV, then the fit;
    the standardised features clipped to ``+-clip`` when given (:func:`standardise`).

    Returns ``{"c", "mean", "std", "weight", "bias"}`` (numpy mean/std, torch weight/bias).
    """
    f = np.asarray(f, np.float64)
    y = np.asarray(y, np.int64)
    c = choose_c(f, y, n_classes, grid, folds, seed, groups, clip)
    mu, sd = f.mean(0), f.std(0) + 1e-4
    w, b = fit_logistic(standardise(f, mu, sd, clip), y, n_classes, c)
    return {"c": c, "mean": mu, "std": sd, "weight": w, "bias": b}


class Morph(nn.Module):
    """The ``morph`` architecture (see the module docstring); RGB crops only.

    Parameters
    ----------
    in_channels : int
        Must be 3 (RGB brightfield crops); anything else raises :class:`InputError`.
    n_classes : int
        Number of classes (outputs).
    **params
        The architecture parameters, over :data:`DEFAULTS`: ``cnn`` (add the ``hybrid``
        CNN), ``cnn_size`` (its input size in pixels), ``widths`` and ``dropout`` (its
        stages and dropout), ``c_grid`` and ``inner_folds`` (the choice of ``C`` for the
        logistic heads), ``imagenet`` (a frozen ImageNet backbone name, or None),
        ``imagenet_view`` (the centre fraction of the crop it sees) and
        ``imagenet_c_grid``. Unknown names are ignored here (the registry refuses them).

    Attributes
    ----------
    params : dict
        The merged parameters.
    n_classes : int
    desc_head : torch.nn.Linear
        The logistic regression on the standardised morphology descriptor, with the
        buffers ``in_mean``, ``in_std`` (the input normalisation) and ``desc_mean``,
        ``desc_std`` (the descriptor's standardisation).
    cnn : Hybrid or None
        The optional CNN.
    img : torch.nn.Module or None
        The optional frozen ImageNet backbone, with the buffers ``img_mean``, ``img_std``
        and the head ``img_head``.
    cnn_only : bool
        True while the CNN part trains: ``forward`` then returns the CNN's logits only.

    Notes
    -----
    ``forward(x)`` maps ``(N, 3, H, W)`` normalised crops to ``(N, n_classes)`` logits: the
    sum of the descriptor head's, the ImageNet head's and the CNN's logits. The class
    attribute ``closed_form_heads`` tells training
    (:func:`napari_nucleus_ai.models.training.declares`) to fit the heads with
    :meth:`fit_descriptor` / :meth:`refit_heads` and to train the CNN alone.
    """

    closed_form_heads = True  # fit_descriptor / refit_heads / cnn_inputs / cnn_only

    def __init__(self, in_channels: int, n_classes: int, **params):
        if in_channels != 3:
            raise InputError(
                None, "the 'morph' architecture needs RGB (3-channel) brightfield crops"
            )
        super().__init__()
        p = {**DEFAULTS, **params}
        self.params = p
        self.n_classes = n_classes
        n_feat = N_FEATURES
        self.register_buffer("in_mean", torch.zeros(3))
        self.register_buffer("in_std", torch.ones(3))
        self.register_buffer("desc_mean", torch.zeros(n_feat))
        self.register_buffer("desc_std", torch.ones(n_feat))
        self.desc_head = nn.Linear(n_feat, n_classes)
        self.desc_head.requires_grad_(False)
        self.cnn = (
            Hybrid(3, n_classes, widths=p["widths"], dropout=p["dropout"]) if p["cnn"] else None
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
        if mode:
            self.clear_memo()
        if self.img is not None:
            self.img.eval()  # frozen: batch-norm statistics stay ImageNet's
        return self

    def rgb(self, x):
        """Normalised inputs back to RGB in [0, 1]."""
        m, s = self.in_mean[None, :, None, None], self.in_std[None, :, None, None]
        return (x * s + m).clamp(0, 1)

    def descriptors(self, x):
        """Morphology descriptors ``(N, F)`` of normalised crops (batched, :func:`describe_cells`)."""
        return self._memoised("desc", self.rgb(x), self._describe)

    @staticmethod
    def _describe(rgb):
        d = describe_cells(rgb.detach().float().cpu().permute(0, 2, 3, 1).numpy())
        return torch.from_numpy(np.asarray(d, np.float32)).to(rgb.device)

    def imagenet_features(self, x):
        return self._memoised("img", self.rgb(x), self._imagenet)

    def _imagenet(self, rgb):
        from napari_nucleus_ai.models.nets.imagenet import features

        return features(self._backbone(rgb), rgb, float(self.params["imagenet_view"]))

    def _backbone(self, rgb):
        """The backbone for this pass: on the CPU without gradients, a fast form of it
        (:meth:`_fast_backbone`); ``self.img`` itself otherwise (training, saliency, GPUs)."""
        if self.training or torch.is_grad_enabled() or rgb.device.type != "cpu":
            return self.img
        with _MEMO_LOCK:
            return self._fast_backbone()

    def _fast_backbone(self):
        """The backbone's fast form for inference on the CPU, made once per set of weights:
        ONNX Runtime's where the ``[onnx]`` extra is installed
        (:func:`~.onnx_backbone.onnx_backbone`), otherwise a copy with batch norms folded
        into the convolutions and channels-last weights (:func:`~.imagenet.inference_copy`).

        :meth:`clear_memo` sets ``_fast_img`` aside (None); the first pass after it takes the
        form back when the SHA-256 of the backbone's weights
        (:func:`~.onnx_backbone.weights_digest`, ~10-20 ms) is the one it was made from, and
        makes a new one otherwise, so heads refitted on a frozen backbone reuse it and new
        weights never meet a stale one. Call with ``_MEMO_LOCK`` held.
        """
        from napari_nucleus_ai.models.nets.imagenet import SIZE, inference_copy
        from napari_nucleus_ai.models.nets.onnx_backbone import onnx_backbone, weights_digest

        fast = self.__dict__.get("_fast_img")
        if fast is not None:
            return fast
        digest = weights_digest(self.img)
        made = self.__dict__.get("_fast_made")  # (digest of the weights, their fast form)
        if made is None or made[0] != digest:
            fast = inference_copy(self.img)
            made = (digest, onnx_backbone(fast, SIZE) or fast)
            self.__dict__["_fast_made"] = made
        self.__dict__["_fast_img"] = made[1]
        return made[1]

    # Features of crops already seen in this inference session (the first test-time view,
    # then ``embed`` for the domain score on the same crops) come from a small memo keyed by
    # a digest of the crop's pixels: both are fixed functions of the crop. Only in eval mode
    # without gradients; cleared whenever weights or statistics change.
    MEMO_SIZE = 4096

    def clear_memo(self) -> None:
        self.__dict__["_memo"] = {}
        self.__dict__["_fast_img"] = None  # checked against the weights before its next use

    # ``shared_views`` (set by the classifier kind for cards with adaptive test-time views):
    # the descriptor is measured once per crop and serves its 8 flips and rotations too. It
    # is rotation and flip invariant by construction (up to pixel ties in its segmentation),
    # so the test-time views then vary the ImageNet features, not the measurements.
    shared_views = False

    def _key(self, kind: str, r: np.ndarray) -> str:
        import hashlib

        if kind == "desc" and self.shared_views and r.shape[-1] == r.shape[-2]:
            # one key for the 8 views of a crop: the pixelwise max and min over its views
            # (exact, whatever the order), so a crop and its flips / rotations meet; taken
            # in three steps: the transpose and the two axis flips generate the 8 views
            t = np.ascontiguousarray(np.swapaxes(r, 1, 2))
            hi, lo = np.maximum(r, t), np.minimum(r, t)
            hi, lo = np.maximum(hi, hi[:, ::-1]), np.minimum(lo, lo[:, ::-1])
            hi, lo = np.maximum(hi, hi[..., ::-1]), np.minimum(lo, lo[..., ::-1])
            h = hashlib.sha256(hi)  # SHA-256: hardware-accelerated on current x86 and ARM CPUs
            h.update(lo)
            return kind + "d" + h.hexdigest()[:32]
        return kind + hashlib.sha256(np.ascontiguousarray(r)).hexdigest()[:32]

    def _memoised(self, kind: str, rgb, compute):
        memo = self.__dict__.setdefault("_memo", {})
        if self.training or torch.is_grad_enabled() or rgb.requires_grad or not len(rgb):
            return compute(rgb)
        host = rgb.detach().float().cpu().contiguous().numpy()
        keys = [self._key(kind, r) for r in host]
        with _MEMO_LOCK:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # first row per key
            todo = sorted(i for k, i in first.items() if k not in memo)
            have = {k: memo[k] for k in keys if k in memo}
        if todo:
            new = compute(rgb[todo] if len(todo) < len(keys) else rgb)
            for i, row in zip(todo, new, strict=True):
                have[keys[i]] = row
            with _MEMO_LOCK:
                memo.update((keys[i], have[keys[i]]) for i in todo)
                while len(memo) > self.MEMO_SIZE:
                    memo.pop(next(iter(memo)))
        return torch.stack([have[k] for k in keys]).to(rgb.device)

    def _load_from_state_dict(self, *args, **kwargs):
        self.clear_memo()
        return super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def embed(self, x, descriptor_only: bool = False):
        """Features the domain-shift score measures (:mod:`napari_nucleus_ai.models.trust`).

        The standardised morphology descriptor, and the standardised ImageNet features
        where the model has them (unless ``descriptor_only``), clipped to ``+-z_clip``
        where the model has it, as the heads read them: ``(N, F)``.
        """
        clip = self.params.get("z_clip")
        parts = [standardise(self.descriptors(x), self.desc_mean, self.desc_std, clip)]
        if self.img is not None and not descriptor_only:
            parts.append(standardise(self.imagenet_features(x), self.img_mean, self.img_std, clip))
        return torch.cat(parts, 1)

    def _cnn(self, x):
        s = int(self.params["cnn_size"])
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True)
        return self.cnn(x)

    @torch.no_grad()
    def cnn_inputs(self, x: np.ndarray) -> np.ndarray:
        """Inputs resized to ``cnn_size`` once, for training the CNN part."""
        s = int(self.params["cnn_size"])
        if self.cnn is None or x.shape[-1] == s:
            return x
        t = F.interpolate(torch.as_tensor(x), size=(s, s), mode="bilinear", antialias=True)
        return t.numpy()

    @torch.no_grad()
    def fit_descriptor(self, x, y, normalisation: dict, seed: int = 0, groups=None) -> dict:
        """Fit input/descriptor statistics and the logistic heads on training crops ``x``
        (rows sharing a ``groups`` value - a crop and its augmented copies - stay in one
        inner fold when ``C`` is chosen)."""
        self.clear_memo()
        self.in_mean.copy_(torch.tensor(normalisation["mean"], dtype=torch.float32))
        self.in_std.copy_(torch.tensor(normalisation["std"], dtype=torch.float32))
        x = torch.as_tensor(x)
        out = self.refit_heads(x, y, seed, groups=groups, load_weights=True)
        if self.cnn is not None:
            s = int(self.params["cnn_size"])
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
        from napari_nucleus_ai.models.adapt import fit_reference, join_references

        self.clear_memo()
        self.adapt_reference = None
        x = torch.as_tensor(x).to(self.in_mean.device)
        y = np.asarray(y, np.int64)
        f = self.descriptors(x).cpu().numpy()
        p = self.params
        clip = p.get("z_clip")
        head = fit_head(f, y, self.n_classes, p["c_grid"], p["inner_folds"], seed, groups, clip)
        self._set_head(self.desc_head, self.desc_mean, self.desc_std, head)
        out = {"c": head["c"]}
        z = standardise(f, head["mean"], head["std"], clip)
        parts = [fit_reference(z, y, self.n_classes)]
        if self.img is not None:
            out["imagenet"] = self._fit_imagenet(x, y, seed, groups, load_weights, parts)
        self.adapt_reference = {**join_references(parts), "n_rows": len(y)}
        return out

    # The reference of the test-time adaptation (:mod:`napari_nucleus_ai.models.adapt`):
    # class means and pooled within-class s.d. of the standardised features on the rows the
    # heads were last fitted on (the descriptor's rows; the ImageNet head's views), set by
    # :meth:`refit_heads`. A plain attribute, not in the weights: the card keeps it.
    adapt_reference = None

    def linear_head(self):
        """The model as one linear head on its :meth:`embed` columns: ``(weight (C, F), bias
        (C,))`` float64 arrays whose logits ``embed(x) @ weight.T + bias`` are
        :meth:`forward`'s (the descriptor head's and the ImageNet head's summed); None for a
        model with a CNN, whose logits are not a function of those columns."""
        if self.cnn is not None:
            return None
        heads = [self.desc_head] + ([self.img_head] if self.img is not None else [])
        weight = np.concatenate([h.weight.detach().cpu().double().numpy() for h in heads], 1)
        bias = sum(h.bias.detach().cpu().double().numpy() for h in heads)
        return weight, bias

    @staticmethod
    def _set_head(linear, mean, std, head: dict) -> None:
        mean.copy_(torch.as_tensor(head["mean"], dtype=torch.float32))
        std.copy_(torch.as_tensor(head["std"], dtype=torch.float32))
        linear.weight.copy_(head["weight"])
        linear.bias.copy_(head["bias"])

    def _fit_imagenet(self, x, y, seed: int, groups=None, load_weights=True, parts=None) -> dict:
        """ImageNet weights into the backbone (training); its head on dihedral views.

        All 8 views up to 500 crops, fewer for larger sets (4000 crop-views at least,
        1 view from 4000 crops), so large data sets do not cost 8 passes. ``parts`` (a
        list): the adaptation reference of the standardised views is appended to it.
        """
        from napari_nucleus_ai.models.nets.imagenet import load_imagenet_weights

        info = load_imagenet_weights(self.img, self.params["imagenet"]) if load_weights else {}
        self.clear_memo()
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
            self.n_classes,
            self.params["imagenet_c_grid"],
            self.params["inner_folds"],
            seed,
            np.tile(groups, views),
            self.params.get("z_clip"),
        )
        self._set_head(self.img_head, self.img_mean, self.img_std, head)
        if parts is not None:
            from napari_nucleus_ai.models.adapt import fit_reference

            z = standardise(f, head["mean"], head["std"], self.params.get("z_clip"))
            parts.append(fit_reference(z, np.tile(y, views), self.n_classes))
        return {**info, "c": head["c"], "views": views}

    def forward(self, x):
        if self.cnn_only and self.cnn is not None:
            return self._cnn(x)
        img = None
        if self.img is not None and not torch.is_grad_enabled() and not self.training:
            # the backbone (torch threads, no GIL) runs while numpy measures the descriptor
            from concurrent.futures import ThreadPoolExecutor

            inference = torch.is_inference_mode_enabled()

            def backbone():
                with torch.inference_mode(inference), torch.no_grad():
                    return self.imagenet_features(x)

            with ThreadPoolExecutor(1) as pool:
                job = pool.submit(backbone)
                d = self.descriptors(x)
                img = job.result()
        else:
            d = self.descriptors(x)
        clip = self.params.get("z_clip")
        z = _by_row(self.desc_head, standardise(d, self.desc_mean, self.desc_std, clip))
        if self.img is not None:
            img = self.imagenet_features(x) if img is None else img
            z = z + _by_row(self.img_head, standardise(img, self.img_mean, self.img_std, clip))
        return z if self.cnn is None else z + self._cnn(x)


def _by_row(head, z):
    """``head(z)``; without gradients one row at a time, so that a crop's logits are the same
    whatever other crops share its batch (a batched matrix product rounds differently with
    the number of rows: a package's router may send a chunk's crops to this model, or only
    some of them)."""
    if torch.is_grad_enabled() or len(z) <= 1:
        return head(z)
    return torch.cat([head(z[i : i + 1]) for i in range(len(z))])


def build_morph(in_channels: int, n_classes: int, **params):
    """The ``morph`` module (:class:`Morph`, see the module docstring); RGB crops only."""
    return Morph(in_channels, n_classes, **params)
