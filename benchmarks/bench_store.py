"""Benchmark the corrections store under contention: writers at full speed, loaded or quiet.

Run: ``.venv/bin/python benchmarks/bench_store.py [--duration 10] [--writers 2 4]``

For each number of writers and each load (``quiet``: no extra load; ``loaded``:
one CPU-burning process per core), that many writer processes write
corrections into one store as fast as they can for ``--duration`` seconds
(````tests/_store_contention.py``, the harness of ``tests/test_store_contention.py``). Halfway, writer 0 is killed with
SIGKILL and a replacement process opens the store while the others keep writing.

Prints one row per run: saves per second of each writer, the longest gap
between two saves of one writer (the longest any writer waited), the p99 of one
save's duration (lock wait + durable commit), errors ("database is locked"),
how long the replacement took from its start to its first save, and lost
corrections (reported saved, absent from the store).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def one_run(n: int, burners: int, duration: float, seed: int) -> dict:
    from _store_contention import run_contention

    with tempfile.TemporaryDirectory() as d:
        run = run_contention(Path(d), n, duration, burners=burners, kill_at=duration / 2, seed=seed)
    rates, gaps, waits, errors = [], [], [], 0
    for w in run.writers:
        stop = run.stop if w.killed_at is None else w.killed_at
        rates.append(len([s for _, _, s in w.saves if s <= stop]) / (stop - run.start))
        gaps.append(float(w.gaps(run.start, stop).max()))
        waits.extend(w.waits.tolist())
        errors += len(w.errors)
    rep = run.replacement
    first = rep.saves[0][2] - rep.started_at if rep is not None and rep.saves else float("nan")
    errors += len(rep.errors) if rep is not None else 0
    sample = [e for w in [*run.writers, rep] if w is not None for e in w.errors][:1]
    return {
        "rates": rates,
        "longest": max(gaps),
        "p99": float(np.percentile(waits, 99)) if waits else float("nan"),
        "errors": errors,
        "error_sample": sample,
        "first_save": first,
        "lost": len(run.lost),
        "integrity": run.integrity,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--writers", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--loads", nargs="+", default=["quiet", "loaded"], choices=["quiet", "loaded"])
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"{cores} cores, load average before: {os.getloadavg()[0]:.1f}")
    print(
        "| writers | load | saves/s each | longest wait (s) | p99 save (ms) | errors "
        "| replacement's 1st save (s) | lost |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.writers:
        for load in args.loads:
            burners = cores if load == "loaded" else 0
            r = one_run(n, burners, args.duration, seed=n)
            each = ", ".join(f"{x:.0f}" for x in r["rates"])
            print(
                f"| {n} | {load} (+{burners} burners) | {each} | {r['longest']:.2f} "
                f"| {r['p99'] * 1000:.1f} | {r['errors']} | {r['first_save']:.2f} | {r['lost']} |",
                flush=True,
            )
            if r["error_sample"]:
                print(f"  e.g. {r['error_sample'][0]}", flush=True)
            if r["integrity"] != "ok":
                print(f"  integrity check: {r['integrity']}", flush=True)


if __name__ == "__main__":
    main()
