"""The fallback recipe with the late blocks of EfficientNet-Lite0 fine-tuned on the framed
PBC crops and "other microscope" copies of them, then the product's closed-form heads on
the new features.

The inputs are ``backbone_stats.build_inputs``'s (the canonical frame, two-point stain
normalisation; the 3 copies per crop the heads learn from) plus ``--copies`` more copies per
crop (``microscope_augment``, each in a random flip / rotation) that only the fine-tuning
sees. The stem and blocks before ``--cut`` stay frozen (their output is computed once);
blocks ``cut``-15 and the head convolution are trained with a linear layer (AdamW, one-cycle,
label smoothing 0.1, batch-norm statistics frozen) for ``--epochs`` epochs. One network per
PBC fold (fitted on the fold's training crops only) and one on all 96 crops for BCCD; figures
as ``backbone_stats.pbc_cv`` and ``bccd`` (``own_*``: the fine-tuned network's linear layer instead of the
heads).

Run::

    PYTHONPATH=benchmarks .venv/bin/python -m trust_prototype.finetune_late --cut 11 --epochs 10
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from trust_prototype.backbone_stats import HERE, bccd, build_inputs, confidence, pbc_cv


def main(argv=None) -> None:
    import torch
    import torch.nn.functional as Fn
    from bench_transfer import COUNTED, Inputs, bacc, microscope_augment, pbc_folds
    from torch import nn

    from napari_nucleus_ai.models.nets.imagenet import (
        MEAN,
        STD,
        build_backbone,
        load_imagenet_weights,
    )
    from napari_nucleus_ai.models.nets.morphology import describe_cells
    from trust_prototype.data import CLASSES, load_pbc

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cut", type=int, default=11)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--copies", type=int, default=12)
    ap.add_argument("--cache", default="/tmp/backbone_stats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "backbone_stats.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cache = Path(args.cache)
    D = build_inputs(cache)
    extra_path = cache / f"copies{args.copies}.npz"
    if not extra_path.exists():
        pbc, _, _ = load_pbc()
        make = Inputs("frame", "two_point", pbc)
        rng = np.random.default_rng(1)
        ex = [np.stack([make(microscope_augment(c, rng)) for c in pbc]) for _ in range(args.copies)]
        np.savez(extra_path, ex=np.stack(ex))
    ex = np.load(extra_path)["ex"]
    y, by = D["y"], D["by"]
    n_cls = len(CLASSES)

    net = build_backbone()
    load_imagenet_weights(net)
    net.eval()
    mean = torch.tensor(MEAN)[None, :, None, None]
    std = torch.tensor(STD)[None, :, None, None]

    def trunk(imgs, rng=None):
        """Output of the frozen stem and blocks before the cut (as ``features`` feeds it)."""
        outs = []
        with torch.inference_mode():
            for i in range(0, len(imgs), 32):
                x = torch.from_numpy(np.ascontiguousarray(imgs[i : i + 32].transpose(0, 3, 1, 2)))
                h = x.shape[-1]
                k = int(round(h / 1.4))
                o = (h - k) // 2
                x = Fn.interpolate(
                    x[..., o : o + k, o : o + k], size=(224, 224), mode="bilinear", antialias=True
                )
                x = (x - mean) / std
                if rng is not None:
                    x = torch.rot90(x, int(rng.integers(4)), (2, 3))
                    x = x.flip(3) if rng.integers(2) else x
                x = net._swish(net._bn0(net._conv_stem(x)))
                for b in net._blocks[: args.cut]:
                    x = b(x)
                outs.append(x.clone())
        return torch.cat(outs)

    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = copy.deepcopy(net._blocks[args.cut :])
            self.head = copy.deepcopy(net._conv_head)
            self.bn = copy.deepcopy(net._bn1)
            self.fc = nn.Linear(1280, n_cls)
            self.requires_grad_(True)  # the backbone is built frozen

        def feats(self, x):
            for b in self.blocks:
                x = b(x)
            return net._swish(self.bn(self.head(x))).mean((2, 3))

        def forward(self, x):
            return self.fc(self.feats(x))

    t0 = time.perf_counter()
    T = {k: trunk(D[k]) for k in ("clean", "harsh", "another", "bccd")}
    T["aug"] = [trunk(a) for a in D["aug"]]
    rng = np.random.default_rng(5)
    T["ex"] = [trunk(a, rng) for a in ex]
    desc = {k: describe_cells(D[k]) for k in ("clean", "harsh", "another", "bccd")}
    desc["aug"] = np.stack([describe_cells(a) for a in D["aug"]])

    def finetune(idx):
        top = Top()
        X = torch.cat([T["clean"][idx], *[a[idx] for a in T["aug"]], *[a[idx] for a in T["ex"]]])
        Y = torch.from_numpy(np.tile(y[idx], 1 + len(T["aug"]) + len(T["ex"]))).long()
        head_params = list(top.fc.parameters())
        body = [p for n, p in top.named_parameters() if not n.startswith("fc")]
        opt = torch.optim.AdamW(
            [{"params": body, "lr": 3e-4}, {"params": head_params, "lr": 3e-3}], weight_decay=0.05
        )
        n = len(X)
        steps = args.epochs * ((n + 63) // 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, [3e-4, 3e-3], total_steps=steps)
        top.train()
        for m in top.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()  # statistics frozen
        g = torch.Generator().manual_seed(0)
        for _ in range(args.epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, 64):
                b = perm[i : i + 64]
                loss = Fn.cross_entropy(top(X[b]), Y[b], label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return top.eval()

    def run(top, fn, x):
        with torch.inference_mode():
            return torch.cat(
                [getattr(top, fn)(x[i : i + 64]) for i in range(0, len(x), 64)]
            ).numpy()

    def feature_set(top):
        F = {
            k: np.concatenate([desc[k], run(top, "feats", T[k])], 1)
            for k in ("clean", "harsh", "another", "bccd")
        }
        F["aug"] = np.stack(
            [
                np.concatenate([desc["aug"][i], run(top, "feats", a)], 1)
                for i, a in enumerate(T["aug"])
            ]
        )
        return F

    # per fold: a network fitted on the fold's training crops; the heads on its features
    fold = pbc_folds(y)
    per_fold, own = {}, {k: np.zeros(len(y), int) for k in ("clean", "harsh", "another")}
    for k in range(4):
        te = np.flatnonzero(fold == k)
        top = finetune(np.flatnonzero(fold != k))
        per_fold[k] = feature_set(top)
        for key in own:
            own[key][te] = run(top, "forward", T[key][te]).argmax(1)
        print(f"fold {k}: {time.perf_counter() - t0:.0f} s", flush=True)
    r = pbc_cv(per_fold.__getitem__, y)
    top = finetune(np.arange(len(y)))  # BCCD: the network fitted on all 96 crops
    r.update(bccd(feature_set(top), y, by, confidence()))
    counted = [list(CLASSES).index(c) for c in COUNTED]
    r["own_pbc_cv"] = bacc(y, own["clean"])
    r["own_harsh"] = bacc(y, own["harsh"])
    r["own_another"] = bacc(y, own["another"])
    r["own_bccd_zero_shot"] = bacc(by, run(top, "forward", T["bccd"]).argmax(1), counted)
    r["seconds"] = time.perf_counter() - t0
    name = f"finetune_cut{args.cut}_e{args.epochs}_c{args.copies}"
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results[name] = r
    out_path.write_text(json.dumps(results, indent=1))
    print(name, json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
