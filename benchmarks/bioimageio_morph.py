"""Benchmark: the default ``morph`` model exported to bioimage.io against ``predict``.

Exports MODEL (made by ``napari-nucleus-ai train <PBC folder>``) to OUT, builds its
``pytorch_state_dict`` network as bioimage.io tools build it (the architecture imported from
``rdf.yaml``, the state dict loaded strictly), runs it on every PBC crop with the rdf's
preprocessing and compares its probabilities with ``predict``'s. Cells ``predict`` sends to
the package's fallback model are counted apart (the exported network is the first model).

Run::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bioimageio_morph.py MODEL OUT.zip
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
PBC = Path(os.environ.get("PBC", HERE.parents[1] / "shared" / "data" / "smear" / "pbc"))


def network_of(files: dict):
    """The rdf, and its ``pytorch_state_dict`` network built and loaded as bioimage.io does."""
    import torch
    import yaml

    rdf = yaml.safe_load(files["rdf.yaml"])
    entry = rdf["weights"]["pytorch_state_dict"]
    arch = entry["architecture"]
    net = getattr(importlib.import_module(arch["import_from"]), arch["callable"])(**arch["kwargs"])
    state = torch.load(io.BytesIO(files[entry["source"]]), weights_only=True)
    net.load_state_dict(state, strict=True)
    return rdf, net.eval()


def main(model: str, out: str) -> None:
    import torch
    from PIL import Image

    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.models import bioimageio as bio
    from napari_nucleus_ai.models.inputs import raw_inputs
    from napari_nucleus_ai.models.package import load_model

    paths = sorted(PBC.glob("*/*.png"))
    t = time.perf_counter()
    res = bio.export_bioimageio(model, out, sample=paths[0])
    print(f"export {time.perf_counter() - t:.1f} s, {res['status']}, weights {res['weights']}")
    with zipfile.ZipFile(out) as z:
        files = {n: z.read(n) for n in z.namelist()}
    print(f"zip {sum(map(len, files.values())) / 1e6:.1f} MB")
    rdf, net = network_of(files)
    kw = rdf["inputs"][0]["preprocessing"][-1]["kwargs"]
    pkg = load_model(model, cache=False)
    items = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    t = time.perf_counter()
    pred = predict_items(pkg, items)
    t_predict = time.perf_counter() - t
    raw, _ = raw_inputs(items, pkg.card)
    mean = np.asarray(kw["mean"], np.float32)[None, :, None, None]
    std = np.asarray(kw["std"], np.float32)[None, :, None, None]
    x = torch.from_numpy(((raw - mean) / std).astype(np.float32))
    t = time.perf_counter()
    with torch.no_grad():
        got = np.concatenate([net(x[i : i + 32]).numpy() for i in range(0, len(x), 32)])
    t_net = time.perf_counter() - t
    diff = np.abs(got - pred.probs).max(1)
    routed = np.asarray(pred.extra.get("routed", np.zeros(len(items), bool)), bool)
    kept = diff[~routed].max() if (~routed).any() else float("nan")
    print(f"{len(items)} crops: predict {t_predict:.1f} s, the bioimage.io network {t_net:.1f} s")
    print(f"max |network - predict|: {kept:.2e} on the {int((~routed).sum())} crops kept by the")
    print(f"first model; {int(routed.sum())} sent to the fallback (max {diff.max():.2e} over all)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
