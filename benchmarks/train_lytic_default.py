"""Re-train the shipped lytic predictor (src/napari_nucleus_ai/infection/lytic_default.json).

    nice -n 10 .venv/bin/python benchmarks/train_lytic_default.py MODEL

MODEL is an infection model package trained with
``napari_nucleus_ai.infection.score.train_infection_model`` (the lytic window starts at
the infection onset this model reports). Movies: simulated, seeds 201-204.
"""

from __future__ import annotations

import sys
import time

if __name__ == "__main__":
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.infection.evaluate import train_lytic_on_simulation
    from napari_nucleus_ai.infection.lytic import default_model_path
    from napari_nucleus_ai.models.package import load_model

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = load_model(sys.argv[1])
    lm = run_sync(
        train_lytic_on_simulation(model, seeds=(201, 202, 203, 204), n_frames=60, shape=(320, 320)),
        lambda p: print(p.message, f"{time.perf_counter() - t0:.0f} s", flush=True),
    )
    lm.provenance["infection_model"] = model.name
    lm.save(default_model_path())
    print(lm.provenance, dict(zip(lm.features, [round(c, 2) for c in lm.coef], strict=True)))
