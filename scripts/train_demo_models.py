"""Build the demo models shipped in ``src/napari_nucleus_ai/demo/models/`` (and check them).

    python scripts/train_demo_models.py --write            # train all three, write the shipped zips
    python scripts/train_demo_models.py --check            # retrain, compare with the shipped cards
    python scripts/train_demo_models.py --write --only infection-hoechst
    python scripts/train_demo_models.py --write --from-dir DIR   # ship packages DIR/<name>*.zip
                                                                 # already trained by the recipe

Every model comes from the project's own simulators with fixed seeds (the recipes are
``classify/demo_models.py`` and ``infection/score.py``'s ``DEMO_RECIPE``); no real data is
used for training. ``--check`` trains again into a temporary folder and compares the new
validation metrics with those recorded in the shipped card (same data digest and class counts;
every metric within ``--tol``, default 0.05, because CPU kernels and thread counts change the last
digits) and exits 1 on a mismatch. Training all three takes about 10-25 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _train(name: str, out: Path):
    from napari_nucleus_ai.core.progress import run_sync

    def say(p):
        print(f"  {name}: {p.message}", file=sys.stderr, flush=True)

    if name == "infection-hoechst":
        from napari_nucleus_ai.infection.score import DEMO_RECIPE, train_infection_model

        return run_sync(train_infection_model(out, **DEMO_RECIPE), say)
    from napari_nucleus_ai.classify.demo_models import build_demo_model_gen

    return run_sync(build_demo_model_gen(name, out), say)


def _numbers(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            flat[prefix + k] = float(v)
    return flat


def compare(shipped: dict, new: dict, tol: float) -> list[str]:
    """Differences between two cards' data and metrics (empty when they match)."""
    problems = []
    for key in ("data_digest", "class_counts", "n_train", "n_val", "seed"):
        a, b = shipped["provenance"].get(key), new["provenance"].get(key)
        if a != b:
            problems.append(f"provenance.{key}: shipped {a!r}, now {b!r}")
    a, b = _numbers(shipped.get("metrics", {})), _numbers(new.get("metrics", {}))
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x is None or y is None or (x != x) != (y != y) or abs(x - y) > tol:  # nan == nan
            problems.append(f"metrics.{key}: shipped {a.get(key)}, now {b.get(key)}")
    return problems


def ship(name: str, trained: Path) -> Path:
    """Write ``trained`` (a package the recipe made) as the shipped package, with the demo card."""
    from napari_nucleus_ai.classify.demo_models import demo_card, shipped_path
    from napari_nucleus_ai.models.package import load_model, save_model

    package = load_model(trained, cache=False)
    out = shipped_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(demo_card(package.card, name), package.modules, out, as_zip=True)
    return out


def main(argv=None) -> int:
    from napari_nucleus_ai.classify.demo_models import SHIPPED_MODELS, shipped_path
    from napari_nucleus_ai.models.package import read_package

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the shipped packages")
    mode.add_argument("--check", action="store_true", help="retrain and compare with them")
    p.add_argument("--only", nargs="+", choices=list(SHIPPED_MODELS), help="these models only")
    p.add_argument("--from-dir", type=Path, help="with --write: ship packages trained already")
    p.add_argument("--tol", type=float, default=0.05, help="metric tolerance of --check")
    args = p.parse_args(argv)
    failed = False
    for name in args.only or list(SHIPPED_MODELS):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            if args.from_dir is not None:
                trained = sorted(args.from_dir.glob(f"{name}*.zip"))[0]
            else:
                trained = Path(tmp) / f"{name}.zip"
                _train(name, trained)
            seconds = time.perf_counter() - started
            new_card = read_package(trained)[0]
            m = new_card.get("metrics", {})
            summary = (
                f"{name}: val balanced accuracy {m.get('val_balanced_accuracy', float('nan')):.3f} "
                f"(n_val {m.get('n_val')}), {seconds:.0f} s"
            )
            if args.write:
                out = ship(name, trained)
                print(f"{summary} -> {out} ({out.stat().st_size / 1024:.0f} KB)")
                continue
            problems = compare(read_package(shipped_path(name))[0], new_card, args.tol)
            print(f"{summary}: {'matches the shipped card' if not problems else 'MISMATCH'}")
            for line in problems:
                print(f"  {line}")
            failed |= bool(problems)
    if args.write:
        sizes = {
            n: shipped_path(n).stat().st_size for n in SHIPPED_MODELS if shipped_path(n).exists()
        }
        print(json.dumps({"bytes": sizes, "total": sum(sizes.values())}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
