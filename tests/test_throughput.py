"""Inference speed of the default model: the batched descriptor, adaptive test-time views,
the feature memo of ``morph`` and the inference threads (issue 24)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.models import engine  # noqa: E402
from napari_nucleus_ai.models.classifier_kind import adaptive_gate  # noqa: E402
from napari_nucleus_ai.models.nets import morphology as M  # noqa: E402

PBC = (
    Path(
        os.environ.get(
            "NAPARI_NUCLEUS_AI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "smear"
    / "pbc"
)


def _cell(lobes: int, seed: int, size: int = 64) -> np.ndarray:
    """A synthetic stained white cell in [0, 1]: cytoplasm disc, dark lobes, a red cell."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3))
    img[:] = (245, 225, 205)
    yy, xx = np.mgrid[:size, :size].astype(float)
    c = size / 2 - 0.5
    img[(yy - 0.15 * size) ** 2 + (xx - 0.2 * size) ** 2 < (0.09 * size) ** 2] = (225, 170, 170)
    img[(yy - c) ** 2 + (xx - c) ** 2 < (0.2 * size) ** 2] = (200, 170, 220)
    phase = rng.uniform(0, 2 * np.pi)
    for k in range(lobes):
        a = phase + 2 * np.pi * k / lobes
        off = 0.0 if lobes == 1 else 0.08 * size
        r = (0.12 if lobes == 1 else 0.055) * size
        img[(yy - c - off * np.sin(a)) ** 2 + (xx - c - off * np.cos(a)) ** 2 < r * r] = (
            90,
            40,
            130,
        )
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255)
    return (img / 255).astype(np.float32)


def test_batched_descriptor_matches_the_per_cell_loop():
    crops = np.stack([_cell(k, s) for k in (1, 2, 3) for s in range(3)])
    crops[-1] = 0.9  # an empty crop (no nucleus, no cytoplasm) in the same batch
    ref = np.stack([M.describe_cell(c) for c in crops])
    new = M.describe_cells(crops, chunk=4)  # several chunks
    assert new.shape == (len(crops), M.N_FEATURES) and new.dtype == np.float32
    np.testing.assert_allclose(new, ref, rtol=1e-4, atol=1e-5)
    assert M.describe_cells(crops[:0]).shape == (0, M.N_FEATURES)


def test_batched_descriptor_on_real_pbc_crops():
    if not PBC.is_dir():
        pytest.skip(f"real PBC crops not at {PBC}")
    from skimage.transform import resize

    from napari_nucleus_ai.classify.trainset import load_class_folders

    ts = load_class_folders(PBC)
    idx = np.arange(0, len(ts), 6)  # 16 crops over all classes
    crops = np.stack(
        [resize(np.asarray(ts.samples[i], np.float32) / 255, (96, 96)) for i in idx]
    ).astype(np.float32)
    ref = np.stack([M.describe_cell(c) for c in crops])
    new = M.describe_cells(crops)
    d = np.abs(new - ref) / (ref.std(0) + 1e-4)  # in units of the features' spread
    assert d.max() < 1e-3


class _Toy(torch.nn.Module):
    """Logits that change with the view: a fixed linear map of the flattened input."""

    def __init__(self, n_in: int, n_classes: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(n_in, n_classes, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_adaptive_tta_spends_extra_views_on_uncertain_inputs_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 1, 4, 4)).astype(np.float32)
    x[:6] *= 10.0  # confident
    x[6:] *= 0.01  # near-uniform probabilities: uncertain
    toy = _Toy(16).eval()
    dev = torch.device("cpu")
    full = engine.probability_samples([toy], x, device=dev, tta=4)
    first = engine.probability_samples([toy], x, device=dev, tta=1)[0]
    u = engine.normalised_entropy(first)
    gate = 0.5
    info = {}
    ad = engine.probability_samples([toy], x, device=dev, tta=4, adaptive=gate, info=info)
    assert ad.shape == full.shape
    hi = u > gate
    assert hi.any() and (~hi).any()
    assert info == {"n": 12, "n_extra": int(hi.sum())}
    np.testing.assert_allclose(ad[:, hi], full[:, hi], atol=1e-6)  # every view
    np.testing.assert_allclose(ad[:, ~hi], np.broadcast_to(first[~hi], ad[:, ~hi].shape))
    # a gate of 0 gives every input every view: the old behaviour
    np.testing.assert_allclose(
        engine.probability_samples([toy], x, device=dev, tta=4, adaptive=0.0), full, atol=1e-6
    )


def test_old_cards_keep_every_view_new_morph_cards_are_adaptive():
    old = {"uncertainty": {"threshold": 0.5, "tta": 4, "mc_dropout": 0}}
    assert adaptive_gate(old) is None
    new = {"uncertainty": {"threshold": 0.4, "tta": 4, "tta_mode": "adaptive", "tta_gate": 0.5}}
    assert adaptive_gate(new) == pytest.approx(0.2)


def test_use_cores_leaves_a_chosen_thread_count():
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as batch workers and --threads 1 leave it
        assert engine.use_cores() == 1
    finally:
        torch.set_num_threads(n)


def test_morph_memo_gives_the_same_features_and_is_cleared_by_training():
    from napari_nucleus_ai.models.nets.morph import Morph

    m = Morph(3, 2, cnn=False, imagenet=None).eval()
    x = torch.from_numpy(np.stack([_cell(k, 1) for k in (1, 3)]).transpose(0, 3, 1, 2).copy())
    direct = torch.from_numpy(M.describe_cells(x.permute(0, 2, 3, 1).numpy()))
    with torch.inference_mode():
        z = m(x)
        assert len(m._memo) == 2
        z2 = m(x[1:])  # a row seen before comes from the memo
    torch.testing.assert_close(z2, z[1:])
    e = m.embed(x)
    torch.testing.assert_close(e, (direct - m.desc_mean) / m.desc_std)
    m.train()
    assert m._memo == {}
    with torch.no_grad():  # no memo while training
        m(x)
    assert m._memo == {}


def test_shared_views_measure_the_descriptor_once_per_crop():
    from napari_nucleus_ai.models.nets.morph import Morph

    m = Morph(3, 2, cnn=False, imagenet=None).eval()
    x = torch.from_numpy(_cell(3, 2)[None].transpose(0, 3, 1, 2).copy())
    views = torch.cat([engine.dihedral(x, k, f) for k, f in engine._DIHEDRAL])
    with torch.inference_mode():
        per_view = m.descriptors(views)  # default: each view measured
        assert len(m._memo) == 8
        m.clear_memo()
        m.shared_views = True
        shared = m.descriptors(views)
        assert len(m._memo) == 1
    torch.testing.assert_close(shared, per_view[:1].expand(8, -1))
    spread = per_view.std(0) + 1e-3  # the descriptor is flip / rotation invariant (nearly)
    assert float(((per_view - shared) / spread).abs().median()) < 0.05


@pytest.fixture(scope="module")
def tiny_morph(tmp_path_factory):
    """A small descriptor-only ``morph`` model trained on synthetic cells."""
    from napari_nucleus_ai.classify.train import train
    from test_morph import _tiny_set

    return train(
        _tiny_set(6),
        tmp_path_factory.mktemp("tiny") / "m.zip",
        arch="morph",
        crop_size=64,
        epochs=1,
        threads=1,
        tta=2,
        params={"cnn": False, "imagenet": None},
    )


def test_worker_processes_give_the_same_predictions(tiny_morph):
    from napari_nucleus_ai.classify.predict import predict_items
    from test_morph import cell

    res = tiny_morph
    items = [cell(1 + i % 3, 100 + i) for i in range(20)]  # 3 chunks of at most 8
    one = predict_items(res.package, items, workers=1)
    two = predict_items(res.package, items, workers=2)
    assert list(two.labels) == list(one.labels)
    np.testing.assert_allclose(two.probs, one.probs, atol=1e-5)
    np.testing.assert_allclose(two.uncertainty, one.uncertainty, atol=1e-5)


def test_worker_processes_only_where_forking_is_safe():
    import threading

    from napari_nucleus_ai.classify.predict import MIN_ITEMS_PER_WORKER, cpu_workers

    assert cpu_workers(MIN_ITEMS_PER_WORKER - 1) == 1  # too few items to share
    cores = len(os.sched_getaffinity(0))
    if threading.active_count() == 1:
        assert cpu_workers(100 * MIN_ITEMS_PER_WORKER) == cores
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()  # another thread running (a viewer, a worker thread): this process only
    try:
        assert cpu_workers(100 * MIN_ITEMS_PER_WORKER) == 1
    finally:
        stop.set()
        t.join()


def test_an_error_in_a_worker_process_is_the_same_error(monkeypatch):
    from napari_nucleus_ai.classify import predict as P
    from napari_nucleus_ai.core.errors import InputError

    def broken(package, chunk, *args):
        raise InputError("cell_7.png", "a problem\nin two lines")

    monkeypatch.setattr(P, "_classify_chunk", broken)  # the forked workers inherit it

    class Package:
        device = torch.device("cpu")

    jobs = iter([([np.zeros((8, 8, 3))], None, 1)] * 3)
    with pytest.raises(InputError) as e:
        list(P._run_chunks(Package(), jobs, 3, 1, {}, False, [], workers=2))
    assert str(e.value) == "cell_7.png: a problem in two lines"
    assert e.value.path == "cell_7.png" and e.value.problem == "a problem in two lines"


def test_files_read_while_workers_classify_give_the_same_table(tmp_path, tiny_morph):
    import imageio.v3 as iio

    from napari_nucleus_ai.classify.predict import predict_paths
    from test_morph import cell

    res = tiny_morph
    paths = []
    for i in range(20):
        paths.append(tmp_path / f"c{i:02d}.png")
        iio.imwrite(paths[-1], cell(1 + i % 3, 200 + i))
    paths[9].write_bytes(b"not a png")  # one unreadable file in the middle
    one = predict_paths(res.package, paths, skip_bad=True, workers=1)
    two = predict_paths(res.package, paths, skip_bad=True, workers=2)
    assert list(two["path"]) == [str(p) for p in paths]
    assert list(two["label"].fillna("")) == list(one["label"].fillna(""))
    assert two.loc[9, "error"] and not two.loc[8, "error"]
    np.testing.assert_allclose(two["uncertainty"], one["uncertainty"], atol=1e-5)


def test_cell_windows_cut_lazily_are_the_windows_cut_at_once():
    from napari_nucleus_ai.models.crops import CellWindows, cell_windows

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    cents = np.column_stack([rng.uniform(-20, 320, 23), rng.uniform(-20, 420, 23)])
    whole = cell_windows(image, cents, 90.0, 48)
    lazy = CellWindows(image, cents, 90.0, 48)
    assert len(lazy) == 23
    got = [w for i in range(0, 23, 8) for w in lazy[i : i + 8]]
    np.testing.assert_array_equal(np.stack(got), whole)
    np.testing.assert_array_equal(lazy[22], whole[22])
    with pytest.raises(IndexError):
        lazy[23]


def test_worker_processes_are_fed_a_few_chunks_ahead_not_the_whole_input(monkeypatch):
    from napari_nucleus_ai.classify import predict as P

    monkeypatch.setattr(P, "_classify_chunk", lambda package, chunk, *a: (None, None, None))

    class Package:
        device = torch.device("cpu")

    pulled, ahead = [0], []

    def jobs():
        for _ in range(40):
            pulled[0] += 1
            yield [np.zeros((4, 4, 3))], None, 1

    got = 0
    for _ in P._run_chunks(Package(), jobs(), 40, 1, {}, False, [], workers=2):
        got += 1
        ahead.append(pulled[0] - got)
    assert got == 40
    assert max(ahead) <= P.AHEAD * 2  # never the whole input read ahead of the results
