"""Every reader on seeded corrupt files: one-line errors naming the file, never a traceback.

For each format family (CSV tables, Picasso / storm-analysis / DECODE HDF5, SMAP .mat,
.smlm zip, Insight3 .bin, TIFF incl. a huge-header TIFF, JPEG / PNG) the cases of
``_fuzz_files.fuzz_cases`` go to ``io.describe``, ``io.read_layers`` and the CLI's
``info``. Allowed outcomes: success, or a
:class:`~napari_nucleus_ai.core.errors.NucleusAIError` (CLI: exit 1 with one
``error:`` line naming the file). Anything else is a traceback and fails the test.
The counts are printed (``-s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import collections
import time
import warnings

import pytest

from _fuzz_files import fuzz_cases, seed_files
from conftest import SHARED_DATA
from napari_nucleus_ai import io
from napari_nucleus_ai.cli import main
from napari_nucleus_ai.core.errors import NucleusAIError


def _call(fn, path):
    """'ok', 'error' (one line naming the file) or 'traceback: ...'."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(path)
    except NucleusAIError as e:
        text = str(e)
        if "\n" in text or path.name not in text:
            return f"bad message: {text!r}"
        return "error"
    except Exception as e:  # noqa: BLE001 - this is what the test looks for
        return f"traceback: {type(e).__name__}: {e}"
    return "ok"


def _cli_info(path, capsys):
    capsys.readouterr()
    try:
        rc = main(["info", str(path)])
    except SystemExit as e:  # argparse only
        rc = e.code
    except Exception as e:  # noqa: BLE001
        return f"traceback: {type(e).__name__}: {e}"
    out, err = capsys.readouterr()
    if "Traceback" in err or "Traceback" in out:
        return "traceback in output"
    if rc == 0:
        return "ok"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc != 1 or len(lines) != 1 or path.name not in lines[0]:
        return f"bad exit {rc}: {err!r}"
    return "error"


def run_fuzz(root, capsys=None):
    """Run every case; return ``(counts, failures, seconds)``."""
    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    seeds = seed_files(root, shared)
    counts: collections.Counter = collections.Counter()
    failures = []
    t0 = time.perf_counter()
    for family, kind, path in fuzz_cases(seeds, root):
        results = {
            "describe": _call(io.describe, path),
            "read_layers": _call(io.read_layers, path),
        }
        if capsys is not None:
            results["cli info"] = _cli_info(path, capsys)
        counts["cases"] += 1
        for entry, res in results.items():
            counts[f"{entry} {res if res in ('ok', 'error') else 'FAIL'}"] += 1
            if res not in ("ok", "error"):
                failures.append(f"{family}/{kind} {path.name} [{entry}]: {res}")
        counts[f"family {family}"] += 1
    return counts, failures, time.perf_counter() - t0


def test_no_reader_lets_a_traceback_through(tmp_path, capsys):
    counts, failures, seconds = run_fuzz(tmp_path, capsys)
    with capsys.disabled():
        print(f"\nfuzz: {counts['cases']} cases in {seconds:.1f} s")
        for key in sorted(counts):
            print(f"  {key}: {counts[key]}")
    assert counts["cases"] >= 150
    assert not failures, "\n".join(failures[:20])
    assert seconds < 120  # about 45 s on the 2-core development machine under load


def test_huge_header_is_refused_before_allocation(tmp_path):
    from _fuzz_files import huge_png, huge_tiff
    from napari_nucleus_ai.images import read_image

    for path in (huge_tiff(tmp_path / "h.tif"), huge_png(tmp_path / "h.png")):
        with pytest.raises(NucleusAIError) as e:
            read_image(path)
        assert path.name in str(e.value) and "\n" not in str(e.value)
