"""Can one network evaluation propose the candidate classes? (a negative result)

To get below the naive protocol at its saturation point (16 levels x 8 classes = 128
evaluations) by 10x, a cell may spend ~13 evaluations, less than two passes over the classes.
This tries a proposal from the diffusion UNet itself: one unconditional ("no class")
evaluation at a low noise level, the block outputs average-pooled into a feature vector, and
a logistic regression (scikit-learn, C by inner CV) fitted on the fold's training crops and
their 8 rotations/flips; the top-k proposed classes are then compared by denoising error over
the first L trials of the saved error matrices (``1 + k * L`` evaluations).

    .venv/bin/python benchmarks/bench_diffusion.py cv --fold F --size 32 --steps 3000 \
        --trials 32 --t-lo 0 --t-hi 0.9 --name ens --model-dir /tmp/bench/dmodels   # F = 0, 1, 2
    FOLDS=0 .venv/bin/python benchmarks/diffusion_proposal.py T_FRAC [NAME] [MODEL_DIR]
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_diffusion import OUT, PBC, _load, folds_of  # noqa: E402

from napari_nucleus_ai.models.diffusion.data import load_crop_folder  # noqa: E402
from napari_nucleus_ai.models.uncertainty import balanced_accuracy  # noqa: E402

torch.set_num_threads(1)
T_FRAC = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1
NAME = sys.argv[2] if len(sys.argv) > 2 else "ens"
MODEL_DIR = Path(sys.argv[3] if len(sys.argv) > 3 else "/tmp/bench/dmodels")


def features(model, x, t_frac, seed=0):
    net = model.net
    feats = []

    def hook(_m, _i, o):
        feats.append(o.float().mean(dim=(2, 3)))

    hooks = [b.register_forward_hook(hook) for b in [*net.down, net.mid2, *net.up]]
    steps = int(model.config.get("timesteps", 1000))
    t = torch.full((len(x),), int(t_frac * (steps - 1)), dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn((1, *x.shape[1:]), generator=g).expand(len(x), -1, -1, -1)
    with torch.inference_mode():
        xt = model.noisy(torch.as_tensor(x), t, eps)
        y = torch.full((len(x),), model.net.n_classes, dtype=torch.long)  # no class
        model.net(xt, t, y)
    for h in hooks:
        h.remove()
    return torch.cat(feats, 1).numpy()


def dihedral(x):
    out = []
    for k in range(4):
        r = np.rot90(x, k, axes=(2, 3))
        out += [r, r[..., ::-1]]
    return np.ascontiguousarray(np.concatenate(out))


x, y, names, _ = load_crop_folder(PBC, 32)
x = np.asarray(x, np.float32)
fold = folds_of(y, 3, 0)
from sklearn.linear_model import LogisticRegressionCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

all_y, all_p, all_err = [], [], []
for f in [int(v) for v in os.environ.get("FOLDS", "0,1,2").split(",")]:
    model = _load(MODEL_DIR / f"cv32_{f}")
    tr, te = fold != f, fold == f
    xtr = dihedral(x[tr])
    ytr = np.tile(y[tr], 8)
    ftr = np.concatenate([features(model, xtr, T_FRAC, s) for s in range(2)])
    ytr2 = np.tile(ytr, 2)
    clf = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1], cv=4, max_iter=3000)
    )
    clf.fit(ftr, ytr2)
    fte = features(model, x[te], T_FRAC, 99)
    p = clf.predict_proba(fte)
    d = np.load(OUT / f"{NAME}_fold{f}.npz")
    assert np.array_equal(d["y"], y[te])
    all_y.append(y[te])
    all_p.append(p)
    all_err.append(d["errors"])
    print(f"fold {f}: proposal acc {balanced_accuracy(y[te], p.argmax(1)):.3f}", flush=True)

Y, P, E = np.concatenate(all_y), np.concatenate(all_p), np.concatenate(all_err)
rank = np.argsort(-P, 1)
res = {"t_frac": T_FRAC, "proposal_bacc": round(balanced_accuracy(Y, P.argmax(1)), 3)}
for k in (2, 3, 4):
    res[f"top{k}_recall"] = round(float((rank[:, :k] == Y[:, None]).any(1).mean()), 3)
naive = {L: balanced_accuracy(Y, np.nanmean(E[:, :, :L], 2).argmin(1)) for L in (8, 16, 32)}
res["naive"] = {L: round(v, 3) for L, v in naive.items()}
grid = {}
for k in (2, 3, 4):
    cand = rank[:, :k]
    for L in (1, 2, 3, 4, 5, 6, 8, 12, 16):
        m = np.nanmean(E[:, :, :L], 2)
        mc = np.take_along_axis(m, cand, 1)
        pick = cand[np.arange(len(Y)), mc.argmin(1)]
        # fused: proposal log-prob minus the error gap over its spread among candidates
        gap = (mc - mc.min(1, keepdims=True)) / (np.nanmean(E[:, :, :L].std(2)) + 1e-12)
        lp = np.log(np.take_along_axis(P, cand, 1) + 1e-9)
        fused = cand[np.arange(len(Y)), (lp - gap).argmax(1)]
        grid[f"k{k}_L{L}"] = {
            "evals": 1 + k * L,
            "bacc": round(balanced_accuracy(Y, pick), 3),
            "fused": round(balanced_accuracy(Y, fused), 3),
        }
res["grid"] = grid
print(json.dumps(res, indent=1))
