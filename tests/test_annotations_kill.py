"""Corrections reported as saved survive SIGKILL of their writer, with two writers at once.

This test really starts annotator processes, lets them write concurrently into
one store, kills them with SIGKILL at random moments (mid-write included) and
checks that every correction a writer reported as saved is in the store.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from napari_nucleus_ai.review.store import AnnotationStore

WRITER = r"""
import sys
from napari_nucleus_ai.review.store import AnnotationStore
path, author, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = AnnotationStore(path, author=author)
print("ready", flush=True)
i = start
while True:
    store.set_label("slide-1", i, "class_%d" % (i % 7), author=author, predicted="class_0")
    # reported saved only after set_label returned
    print(i, flush=True)
    i += 1
"""

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _reader(proc: subprocess.Popen, saved: list[int], ready: threading.Event) -> None:
    for line in proc.stdout:
        line = line.strip()
        if line == "ready":
            ready.set()
        elif line.isdigit():
            saved.append(int(line))


def test_sigkill_two_writers_zero_lost(tmp_path):
    store_dir = tmp_path / "project"
    rng = random.Random(7)
    reported: dict[str, list[int]] = {"ana": [], "ben": []}
    next_start = {"ana": 0, "ben": 10_000_000}
    kills = 0
    start = time.monotonic()

    def _more() -> bool:
        # at least 2 s and 3 rounds (6 kills) with > 50 saved corrections; on a slow or busy
        # machine keep going until there is that much evidence, up to 90 s
        enough = (
            time.monotonic() - start >= 2.0 and kills >= 6 and sum(map(len, reported.values())) > 50
        )
        return not enough and time.monotonic() - start < 90

    while _more():
        procs = []
        for author in ("ana", "ben"):
            p = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(store_dir), author, str(next_start[author])],
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            got: list[int] = []
            ready = threading.Event()
            t = threading.Thread(target=_reader, args=(p, got, ready), daemon=True)
            t.start()
            procs.append((author, p, got, ready, t))
        for _, _, _, ready, _ in procs:
            assert ready.wait(30), "writer did not start"
        # kill the two writers at different random moments while both write
        for author, p, got, _, t in rng.sample(procs, 2):
            time.sleep(rng.uniform(0.02, 0.25))
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
            t.join(10)
            assert p.returncode == -signal.SIGKILL
            kills += 1
            reported[author].extend(got)
            if got:
                next_start[author] = max(got) + 2  # the killed write may or may not have landed
    store = AnnotationStore(store_dir)
    assert store.check() == "ok"
    labels = store.labels("slide-1")
    total = 0
    for author, cells in reported.items():
        assert cells, f"{author} never reported a saved correction"
        lost = [c for c in cells if labels.get(c) != f"class_{c % 7}"]
        assert lost == [], f"{len(lost)} corrections by {author} reported saved were lost"
        total += len(cells)
    # the history knows who wrote what
    hist = store.history("slide-1")
    assert set(hist["author"]) == {"ana", "ben"}
    assert (hist["predicted"] == "class_0").all()
    assert kills >= 4 and total > 50
