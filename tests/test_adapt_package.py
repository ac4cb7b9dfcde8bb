"""Test-time adaptation in the product: a package's fallback model adapted to the cells routed
to it (models/adapt.py, classify/predict.py ``adapt_routed``, the card's ``trust.adapt``,
``train``, ``retrain`` and ``--adapt``)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.core.errors import InputError
from test_fallback import NAMES, PAIR, _cells, _foreign, _retrain_folders


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet

    items, labels = _cells(16)
    ts = TrainingSet(items, labels, NAMES, "brightfield_rgb")
    out = tmp_path_factory.mktemp("adapt") / "pair.zip"
    return train(ts, out, **PAIR), out, ts


@pytest.fixture(scope="module")
def shifted():
    """40 cells of another microscope (half the magnification, a blue cast, less contrast),
    and their classes."""
    items, labels = _cells(20, first_seed=700)
    return _foreign(items), np.asarray(labels)


def _without_adapt(src, dst):
    """A copy of package ``src`` whose fallback card has no ``trust.adapt`` (an older card)."""
    with zipfile.ZipFile(src) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    card = json.loads(files["card.json"])
    del card["fallback"]["trust"]["adapt"]
    files["card.json"] = json.dumps(card).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return dst


def test_train_stores_the_reference_of_the_fallbacks_heads(pair):
    """The fallback's card holds the class means and pooled within-class s.d. of its
    standardised features on the rows its heads were fitted on (its training split); the
    first model's card holds none."""
    from napari_nucleus_ai.classify.train import embed_items
    from napari_nucleus_ai.classify.trainset import stratified_split
    from napari_nucleus_ai.models.adapt import MIN_CELLS, fit_reference
    from napari_nucleus_ai.models.package import load_model

    res, out, ts = pair
    assert "adapt" not in res.card["trust"]
    loaded = load_model(out, cache=False)
    entry = loaded.fallback.card["trust"]["adapt"]
    assert entry["min_cells"] == MIN_CELLS and entry["min_out_of_domain"] == 0.5
    tr, _ = stratified_split(ts.labels, PAIR["val_fraction"], 0)
    assert entry["n_rows"] == len(tr)
    fb = res.package.fallback
    z = embed_items(fb.modules[0], [ts.samples[i] for i in tr], fb.card)
    want = fit_reference(z, ts.labels[tr], len(NAMES))
    np.testing.assert_allclose(entry["class_means"], want["class_means"], atol=1e-4)
    np.testing.assert_allclose(entry["within_sd"], want["within_sd"], rtol=1e-4)


def test_the_linear_head_is_the_models_own(pair, shifted):
    """Unadapted, the adaptation's path (embed -> linear head -> softmax at the card's
    temperature) gives the fallback's own single-view probabilities."""
    from napari_nucleus_ai.classify.predict import _embed, predict_items
    from napari_nucleus_ai.models.adapt import head_probs
    from napari_nucleus_ai.models.inputs import prepare

    fb = pair[0].package.fallback
    items = shifted[0][:12] + _cells(3, first_seed=50)[0]
    x, _ = prepare(items, fb.card)
    ours = head_probs(_embed(fb, x), *fb.modules[0].linear_head(), fb.temperature)
    own = predict_items(fb, items, tta=1, workers=1).probs
    np.testing.assert_allclose(ours, own, atol=1e-5)


def test_the_linear_head_sums_the_descriptor_and_imagenet_heads():
    """With ImageNet features the model's logits are the two heads' summed: the joint head
    on :meth:`embed` gives them (random heads, so every column counts)."""
    import torch

    from napari_nucleus_ai.models.adapt import head_probs
    from napari_nucleus_ai.models.nets.imagenet import available
    from napari_nucleus_ai.models.nets.morph import Morph

    if not available():
        pytest.skip("the [pretrained] extra (ImageNet features) is not installed")
    torch.manual_seed(0)
    m = Morph(3, 3, cnn=False, imagenet="efficientnet-lite0").eval()
    for head in (m.desc_head, m.img_head):
        head.weight.copy_(torch.randn_like(head.weight) * 0.05)
        head.bias.copy_(torch.randn_like(head.bias))
    m.desc_std.fill_(2.0)
    m.img_mean.fill_(0.1)
    x = torch.as_tensor(np.stack([c.transpose(2, 0, 1) for c in _cells(2)[0]]) / 255.0).float()
    with torch.inference_mode():
        logits = m(x).double()
        z = m.embed(x).numpy()
    want = torch.softmax(logits / 1.7, 1).numpy()
    np.testing.assert_allclose(head_probs(z, *m.linear_head(), 1.7), want, atol=1e-5)
    m_cnn = Morph(3, 3, cnn=True, imagenet=None)
    assert m_cnn.linear_head() is None  # a CNN's logits are not a function of embed


def test_a_shifted_batch_is_adapted_and_a_small_one_is_not(pair, shifted):
    from napari_nucleus_ai.classify.predict import predict_items

    package = pair[0].package
    items, truth = shifted
    notes_off, notes = [], []
    off = predict_items(package, items, workers=1, adapt="off", notes=notes_off)
    on = predict_items(package, items, workers=1, notes=notes)
    assert [n for n in notes if "adapted to the 40 cells" in n] and not notes_off
    routed = np.asarray(on.extra["routed"], bool)
    assert routed.all() and np.asarray(on.extra["out_of_domain"]).mean() >= 0.5
    assert np.asarray(on.extra["adapted"], bool).all()
    assert "adapted" not in off.extra
    # the adaptation improves the guess; the alarm stays as it was
    assert (on.index == truth).mean() > (off.index == truth).mean() + 0.2
    np.testing.assert_array_equal(on.extra["ood"], off.extra["ood"])
    np.testing.assert_array_equal(on.extra["out_of_domain"], off.extra["out_of_domain"])
    # sets follow the adapted probabilities: every set starts with the adapted argmax
    tops = [str(s).split("|")[0] for s in on.extra["set"]]
    assert tops == [package.classes[k] for k in on.index]
    assert list(on.extra["set_size"]) == [len(str(s).split("|")) for s in on.extra["set"]]
    small = predict_items(package, items[:10], workers=1)
    assert not np.asarray(small.extra["adapted"], bool).any()
    np.testing.assert_allclose(small.probs, off.probs[:10], atol=1e-6)


def test_in_domain_batches_are_left_alone(pair):
    """Cells like the training cells: few routed, fewer out of the fallback's domain."""
    from napari_nucleus_ai.classify.predict import predict_items

    package = pair[0].package
    items = _cells(20, first_seed=900)[0]
    on = predict_items(package, items, workers=1)
    off = predict_items(package, items, workers=1, adapt="off")
    assert not np.asarray(on.extra["adapted"], bool).any()
    np.testing.assert_array_equal(on.probs, off.probs)


def test_views_and_worker_processes_give_the_same_adapted_cells(pair, shifted):
    """Adapted cells take their adapted single-view probabilities for every test-time view
    (no disagreement left); chunks classified in forked workers bring their routed cells'
    features back, so the batch is adapted as one."""
    from napari_nucleus_ai.classify.predict import predict_items

    package = pair[0].package
    items = shifted[0]
    one = predict_items(package, items, workers=1, tta=1)
    views = predict_items(package, items, workers=1, tta=4)
    forked = predict_items(package, items, workers=2)
    adapted = np.asarray(one.extra["adapted"], bool)
    assert adapted.all()
    np.testing.assert_allclose(views.probs, one.probs, atol=1e-6)
    assert np.all(views.disagreement[adapted] == 0)
    np.testing.assert_allclose(forked.probs, one.probs, atol=1e-6)
    assert list(forked.extra["adapted"]) == list(one.extra["adapted"])


def test_adapt_off_and_an_older_card_predict_as_before(pair, shifted, tmp_path, capsys):
    """``--adapt off`` gives exactly what a package without the adaptation gives (an older
    fallback card, without ``trust.adapt``, which ``auto`` leaves as it was)."""
    from PIL import Image

    from napari_nucleus_ai.cli import main

    _, out, _ = pair
    old = _without_adapt(out, tmp_path / "old.zip")
    paths = []
    for k, x in enumerate(shifted[0]):
        paths.append(tmp_path / f"{k:02d}.png")
        Image.fromarray(x).save(paths[-1])
    runs = {
        "off": [str(out), "--adapt", "off"],
        "old": [str(old)],
        "old_off": [str(old), "--adapt", "off"],
        "auto": [str(out)],
    }
    tables = {}
    for name, (model, *opts) in runs.items():
        csv = tmp_path / f"{name}.csv"
        argv = ["predict", model, *map(str, paths), "--out", str(csv), "--quiet", *opts]
        assert main(argv) == 0
        tables[name] = pd.read_csv(csv)
    capsys.readouterr()
    pd.testing.assert_frame_equal(tables["off"], tables["old"])
    pd.testing.assert_frame_equal(tables["old_off"], tables["old"])
    assert "adapted" not in tables["old"] and tables["auto"]["adapted"].all()
    changed = tables["auto"]["predicted"] != tables["off"]["predicted"]
    assert changed.any()
    with pytest.raises(SystemExit):
        main(
            ["predict", str(out), str(paths[0]), "--out", str(tmp_path / "x.csv"), "--adapt", "on"]
        )


def test_bad_adapt_entries_are_refused_in_one_line(pair):
    from napari_nucleus_ai.models.card import validate_card

    card = json.loads(json.dumps(pair[0].package.fallback.card))
    validate_card(card)
    cases = {
        "within_sd must be > 0": lambda a: a.update(within_sd=[-1.0] * len(a["within_sd"])),
        "one row per class": lambda a: a.update(class_means=a["class_means"][:1]),
        "one number per feature": lambda a: a.update(within_sd=a["within_sd"][:-1]),
        "min_out_of_domain must be 0..1": lambda a: a.update(min_out_of_domain=2),
        "adapt.method": lambda a: a.update(method="magic"),
    }
    for problem, spoil in cases.items():
        bad = json.loads(json.dumps(card))
        spoil(bad["trust"]["adapt"])
        with pytest.raises(InputError, match=problem) as e:
            validate_card(bad, "m.zip")
        assert "\n" not in str(e.value) and "m.zip" in str(e.value)
    blind = json.loads(json.dumps(card))
    del blind["trust"]["domain"]
    with pytest.raises(InputError, match="adapt needs the domain-shift score"):
        validate_card(blind)


def _spy_on_refits(monkeypatch) -> list:
    """Retrain both models in this process; the list receives each refit's adaptation
    reference (the first model's, then the fallback's)."""
    import napari_nucleus_ai.review.retrain as retrain

    monkeypatch.setattr(retrain, "_start_fallback", lambda *a: None)  # both here
    refits = []
    refit_closed_form = retrain._refit_closed_form

    def spy(modules, x, labels, n_learn, n_replay, seed):
        got = refit_closed_form(modules, x, labels, n_learn, n_replay, seed)
        refits.append(modules[0].adapt_reference)
        return got

    monkeypatch.setattr(retrain, "_refit_closed_form", spy)
    return refits


def test_retrain_refits_the_reference_or_drops_it(pair, tmp_path, monkeypatch):
    """Retrain refits the fallback's heads: its card gets the reference of the new heads
    (fitted on the corrections and the replayed crops); heads not refitted drop it."""
    import napari_nucleus_ai.review.retrain as retrain
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.package import load_model

    _, out, _ = pair
    root, replay = _retrain_folders(tmp_path, n_replay=12)
    refits = _spy_on_refits(monkeypatch)
    opts = dict(base_data=str(replay), epochs=1, threads=1)
    got = run_sync(retrain.retrain_gen(out, root, tmp_path / "v2.zip", **opts))
    base = load_model(out, cache=False).fallback.card["trust"]["adapt"]
    new = load_model(got["out"], cache=False).fallback.card["trust"]["adapt"]
    fresh = refits[-1]  # the fallback is updated after the first model
    assert new["n_rows"] == fresh["n_rows"] != base["n_rows"]
    np.testing.assert_allclose(new["class_means"], fresh["class_means"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(new["class_means"], base["class_means"], atol=1e-3)
    assert fresh["class_means"].shape == np.asarray(base["class_means"]).shape

    monkeypatch.setattr(retrain, "_refit_closed_form", lambda *a: [])
    got = run_sync(retrain.retrain_gen(out, root, tmp_path / "v3.zip", **opts))
    assert "adapt" not in load_model(got["out"], cache=False).fallback.card["trust"]


def test_retrain_gives_an_older_fallback_card_the_reference_of_its_new_heads(
    pair, shifted, tmp_path, monkeypatch, capsys
):
    """A package whose fallback card predates ``trust.adapt``: after retrain refits the
    fallback's heads, its card carries the reference of those heads (not of others), the card
    validates, and ``predict`` adapts with it (``--adapt auto``, the default)."""
    from PIL import Image

    import napari_nucleus_ai.review.retrain as retrain
    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.card import validate_card
    from napari_nucleus_ai.models.package import load_model

    old = _without_adapt(pair[1], tmp_path / "old.zip")
    assert "adapt" not in load_model(old, cache=False).fallback.card["trust"]
    root, replay = _retrain_folders(tmp_path, n_replay=12)
    refits = _spy_on_refits(monkeypatch)
    opts = dict(base_data=str(replay), epochs=1, threads=1)
    got = run_sync(retrain.retrain_gen(old, root, tmp_path / "v2.zip", **opts))
    new = load_model(got["out"], cache=False)
    assert "adapt" not in new.card["trust"]  # the first model's card: none, as train leaves it
    entry = new.fallback.card["trust"]["adapt"]
    validate_card(json.loads(json.dumps(new.fallback.card)), "v2.zip")
    fresh = refits[-1]  # the fallback is updated after the first model
    assert entry["n_rows"] == fresh["n_rows"]
    np.testing.assert_allclose(entry["class_means"], fresh["class_means"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(entry["within_sd"], fresh["within_sd"], rtol=1e-5, atol=1e-6)
    base = load_model(pair[1], cache=False).fallback.card["trust"]["adapt"]  # the old heads'
    assert entry["n_rows"] != base["n_rows"]
    assert not np.allclose(entry["class_means"], base["class_means"], atol=1e-3)

    paths = []  # further from the training cells than the corrections it learnt
    for k, x in enumerate(_foreign(shifted[0])):
        paths.append(tmp_path / f"{k:02d}.png")
        Image.fromarray(x).save(paths[-1])
    csv = tmp_path / "auto.csv"
    argv = ["predict", str(got["out"]), *map(str, paths), "--out", str(csv), "--quiet"]
    assert main([*argv, "--adapt", "auto"]) == 0
    capsys.readouterr()
    table = pd.read_csv(csv)
    assert len(table) == len(paths) and "adapted" in table
    routed = table["routed"].astype(bool)
    assert routed.all() and table["adapted"].astype(bool).all()


def _mosaic(items):
    """The crops side by side in one image, a disk label at each crop's centre."""
    items = list(items)
    side, cols = items[0].shape[0], 8
    rows = -(-len(items) // cols)
    image = np.full((rows * side, cols * side, 3), 235, np.uint8)
    labels = np.zeros(image.shape[:2], np.int32)
    yy, xx = np.mgrid[:side, :side]
    disk = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 8) ** 2
    for k, x in enumerate(items):
        r, c = divmod(k, cols)
        image[r * side : (r + 1) * side, c * side : (c + 1) * side] = x
        labels[r * side : (r + 1) * side, c * side : (c + 1) * side][disk] = k + 1
    return image, labels


def test_classify_adapts_the_cells_of_an_image_as_one_batch(pair, shifted):
    """``classify`` (the dock's and batch's path) takes the same ``adapt`` keyword: the cells
    of one image routed to the fallback are adapted together; ``off`` leaves them."""
    from napari_nucleus_ai.classify.cells import classify_cells

    image, labels = _mosaic(shifted[0])
    package = pair[0].package
    on = classify_cells(package, image, labels)
    off = classify_cells(package, image, labels, adapt="off")
    assert "adapted" not in off.table
    adapted = on.table["adapted"].astype(bool)
    assert adapted.sum() >= 30 and (adapted <= on.table["routed"].astype(bool)).all()
    changed = on.table["predicted"].to_numpy() != off.table["predicted"].to_numpy()
    assert changed.any() and not changed[~adapted.to_numpy()].any()


def test_refit_heads_leaves_the_reference_of_both_heads_rows(monkeypatch):
    """With ImageNet features the reference joins the descriptor's columns (one row per
    crop) and the ImageNet columns (the 8 flips and rotations of each crop the ImageNet head
    is fitted on), each standardised as its head standardises it."""
    import torch

    from napari_nucleus_ai.models.adapt import fit_reference
    from napari_nucleus_ai.models.nets.registry import build_architecture

    params = {"cnn": False, "imagenet": "efficientnet-lite0", "c_grid": [1.0]}
    m = build_architecture("morph", 3, 2, {**params, "imagenet_c_grid": [1.0]})
    rng = np.random.default_rng(0)
    n_desc = m.desc_mean.numel()
    p_desc = torch.as_tensor(rng.normal(size=(3 * 8 * 8, n_desc)), dtype=torch.float32)
    p_img = torch.as_tensor(rng.normal(size=(3 * 8 * 8, 1280)), dtype=torch.float32)
    monkeypatch.setattr(m, "descriptors", lambda b: b.flatten(1) @ p_desc)
    monkeypatch.setattr(m, "imagenet_features", lambda b: b.flatten(1) @ p_img)
    x = torch.as_tensor(rng.normal(size=(12, 3, 8, 8)), dtype=torch.float32)
    y = np.arange(12) % 2
    m.eval().refit_heads(x, y, load_weights=False)
    ref = m.adapt_reference
    assert ref["class_means"].shape == (2, n_desc + 1280) and ref["n_rows"] == 12

    def standardised(f, mean, std):
        return (f.double() - mean.double()) / std.double()

    d = standardised(x.flatten(1) @ p_desc, m.desc_mean, m.desc_std).numpy()
    views = [torch.rot90(x, k % 4, (-2, -1)) for k in range(8)]
    views = [v.flip(-1) if k >= 4 else v for k, v in enumerate(views)]
    f = torch.cat([v.flatten(1) @ p_img for v in views])
    i = standardised(f, m.img_mean, m.img_std).numpy()
    want_d, want_i = fit_reference(d, y, 2), fit_reference(i, np.tile(y, 8), 2)
    for key in ("class_means", "within_sd"):
        np.testing.assert_allclose(ref[key][..., :n_desc], want_d[key], atol=1e-4)
        np.testing.assert_allclose(ref[key][..., n_desc:], want_i[key], atol=1e-4)


def test_chunks_of_one_input_are_adapted_as_one_batch(pair, shifted):
    """Two chunks of an input's cells (20 each, under the gate alone) classified with
    ``adapt="off"``, their tables and routed features joined: :func:`adapt_table` gives what
    one ``auto`` call on all the cells gives (what ``batch`` needs for a large input)."""
    from napari_nucleus_ai.cells import measure_cells
    from napari_nucleus_ai.classify.cells import classify_cells
    from napari_nucleus_ai.classify.predict import adapt_table

    image, labels = _mosaic(shifted[0])
    package = pair[0].package
    table = measure_cells(labels)
    whole = classify_cells(package, image, labels, table).table
    parts, features = [], []
    for half in (table.iloc[:20], table.iloc[20:]):
        got = classify_cells(package, image, labels, half, adapt="off", routed_features=features)
        parts.append(got.table)
    assert len(features) == 2
    joined = pd.concat(parts, ignore_index=True)
    alone = [classify_cells(package, image, labels, t).table for t in (table.iloc[:20],)]
    assert not alone[0]["adapted"].astype(bool).any()  # 20 cells: under the gate
    adapted = adapt_table(package, joined, features)
    assert adapted["adapted"].astype(bool).all()
    cols = ["label", "class", "predicted", "set", "set_size", "ood", "out_of_domain"]
    pd.testing.assert_frame_equal(
        adapted[cols].reset_index(drop=True), whole[cols].reset_index(drop=True), check_dtype=False
    )
    nums = ["uncertainty", "entropy", "disagreement", *[f"p_{c}" for c in package.classes]]
    np.testing.assert_allclose(
        adapted[nums].to_numpy(float), whole[nums].to_numpy(float), atol=1e-5
    )
    assert adapt_table(package, joined.iloc[:20], features[:1])["adapted"].sum() == 0


def test_batch_adapts_the_cell_chunks_of_an_input_as_one_batch(pair, shifted, tmp_path):
    """``batch``'s cell-chunk tasks of one input (20 cells each, under the gate alone) are
    adapted together when merged (the default, ``adapt="auto"``): the merged cell table is
    ``classify``'s of the whole input. With ``adapt="folder"`` the merged table is kept
    unadapted, with the routed features of every chunk, for the run's adaptation across
    inputs."""
    import time

    import tifffile

    from napari_nucleus_ai.batch.tasks import Segmented, Settings, classify_chunk, merge_chunks
    from napari_nucleus_ai.cells import measure_cells
    from napari_nucleus_ai.classify.cells import classify_cells

    image, labels = _mosaic(shifted[0])
    src = tmp_path / "mosaic.tif"
    tifffile.imwrite(src, image)
    work = tmp_path / "out" / ".batch" / "work" / "mosaic"
    work.mkdir(parents=True)
    tifffile.imwrite(work / "labels.tif", labels)
    table = measure_cells(labels)
    seg = Segmented(
        path=str(src), stem="mosaic", row={"path": str(src), "height": labels.shape[0],
        "width": labels.shape[1]}, work=str(work),
        staged={"labels": str(work / "labels.tif"), "cells": str(work / "cells.csv")},
        labels=str(work / "labels.tif"), table=table, scale=(1.0, 1.0), translate=(0.0, 0.0),
        unit="px", method="wbc", t0=time.time(),
    )  # fmt: skip
    settings = Settings(method="wbc", model=str(pair[1]))
    parts = [classify_chunk(seg, a, b, settings) for a, b in seg.chunks(20)]
    assert len(parts) == 2 and all(f is not None and len(f) for _, _, f in parts)
    assert not any(t["adapted"].astype(bool).any() for t, _, _ in parts if "adapted" in t)
    row = merge_chunks(seg, parts, str(tmp_path / "out"), settings)
    assert row["status"] == "ok", row["error"]
    got = pd.read_csv(tmp_path / "out" / "mosaic_cells.csv")
    whole = classify_cells(pair[0].package, image, labels).table
    assert got["adapted"].astype(bool).all()
    assert list(got["class"]) == list(whole["class"])
    np.testing.assert_allclose(got["uncertainty"], whole["uncertainty"], atol=1e-5)
    counts = {c: int(v) for c, v in whole["class"].value_counts().items()}
    assert {k[2:]: v for k, v in row.items() if k.startswith("n_") and v} == {
        "cells": len(whole),
        **counts,
    }
    off = Settings(method="wbc", model=str(pair[1]), adapt="off")
    auto = Settings(method="wbc", model=str(pair[1]), adapt="folder")
    assert len({off.key(), settings.key(), auto.key()}) == 3
    # folder: the merged table unadapted, kept with the chunks' features in order
    from napari_nucleus_ai.batch.tasks import kept_paths

    seg.work = str(work)
    work.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(work / "labels.tif", labels)
    parts = [classify_chunk(seg, a, b, auto) for a, b in seg.chunks(20)]
    row = merge_chunks(seg, parts, str(tmp_path / "out"), auto)
    assert row["status"] == "ok", row["error"]
    kept_csv, kept_npy = kept_paths(tmp_path / "out", "mosaic")
    got = pd.read_csv(tmp_path / "out" / "mosaic_cells.csv")
    assert "adapted" not in got
    pd.testing.assert_frame_equal(pd.read_csv(kept_csv), got)
    features = np.load(kept_npy)
    assert len(features) == got["routed"].astype(bool).sum()
    np.testing.assert_allclose(features, np.concatenate([f for _, _, f in parts]))


def _strips(items, tmp_path, folder: str):
    """The 40 cells of ``_mosaic`` as 5 images of one row (8 cells each, under the gate
    alone) in ``folder``: ``[(path, labels)]``."""
    import tifffile

    image, labels = _mosaic(items)
    side = items[0].shape[0]
    d = tmp_path / folder
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for r in range(image.shape[0] // side):
        path = d / f"strip{r}.tif"
        tifffile.imwrite(path, image[r * side : (r + 1) * side])
        out.append((path, labels[r * side : (r + 1) * side]))
    return out


def _classified_inputs(settings, strips, out, rows) -> None:
    """What ``batch``'s input tasks do for each strip: classify its cells (and, with
    ``adapt="folder"``, keep the unadapted table and routed features) and write the table."""
    from napari_nucleus_ai.batch.tasks import _classify_kept, output_paths
    from napari_nucleus_ai.cells import measure_cells, write_cell_table
    from napari_nucleus_ai.segment.run import Segmentation

    (out / ".batch").mkdir(parents=True, exist_ok=True)
    for path, labels in strips:
        stem = f"{path.parent.name}_{path.stem}"
        seg = Segmentation(labels, measure_cells(labels), (1.0, 1.0), (0.0, 0.0), "px", "wbc", {})
        table, counts = _classify_kept(settings, out, stem, str(path), seg)
        write_cell_table(table, output_paths(out, stem)["cells"])
        rows[stem] = {
            "path": str(path), "stem": stem, "status": "ok", "method": "wbc",
            "height": labels.shape[0], "width": labels.shape[1],
            **{f"n_{k}": v for k, v in counts.items()},
        }  # fmt: skip


def test_batch_adapts_small_inputs_of_one_microscope_as_one_batch(pair, shifted, tmp_path):
    """Five images of 8 cells each (each under the gate alone) in one folder and of one size:
    ``batch --adapt folder`` adapts the fallback to their routed cells together after the
    last input, as ``classify`` adapts the 40 cells of one image; tables, class counts and
    status records are rewritten, and adapting again (a resumed run) gives the same files.
    The default (``auto``: each input alone) leaves them; two images in another folder form
    their own group (16 cells, under the gate) and stay unadapted."""
    from napari_nucleus_ai.batch.adapt import adapt_groups
    from napari_nucleus_ai.batch.tasks import Settings, kept_paths, output_paths, state_path
    from napari_nucleus_ai.classify.cells import classify_cells
    from napari_nucleus_ai.core.progress import run_sync

    package = pair[0].package
    image, labels = _mosaic(shifted[0])
    whole = classify_cells(package, image, labels).table
    assert whole["adapted"].astype(bool).all()
    out, rows = tmp_path / "out", {}
    settings = Settings(method="wbc", model=str(pair[1]), adapt="folder")
    strips = _strips(shifted[0], tmp_path, "scope")
    other = _strips(_cells(8, first_seed=900)[0], tmp_path, "other")[:2]
    _classified_inputs(settings, strips + other, out, rows)
    stems = [f"scope_strip{r}" for r in range(5)]
    before = pd.concat([pd.read_csv(output_paths(out, s)["cells"]) for s in stems])
    assert "adapted" not in before and all(kept_paths(out, s)[0].exists() for s in stems)
    notes: list = []
    run_sync(adapt_groups(out, rows, settings, notes))
    got = pd.concat([pd.read_csv(output_paths(out, s)["cells"]) for s in stems])
    assert got["adapted"].astype(bool).all()
    assert len(notes) == 1 and "40 cells" in notes[0] and "5 inputs" in notes[0]
    # the same cells as one image: the same classes, nearly the same probabilities
    assert (got["predicted"].to_numpy() == whole["predicted"].to_numpy()).mean() >= 0.95
    assert (got["predicted"].to_numpy() != before["predicted"].to_numpy()).any()
    for s in stems:
        table = pd.read_csv(output_paths(out, s)["cells"])
        counts = {k[2:]: v for k, v in rows[s].items() if k.startswith("n_")}
        assert counts == {
            **{c: int((table["class"] == c).sum()) for c in package.classes},
            "unidentified": int((table["class"] == "unidentified").sum()),
        }
        assert rows[s]["adapted_cells"] == len(table)
        record = json.loads(state_path(out, s).read_text())
        assert record["adapted_cells"] == len(table)
        assert all(record[k] == v for k, v in rows[s].items() if k.startswith("n_"))
    # the other folder: its own group of 16 cells, under the gate
    for s in ("other_strip0", "other_strip1"):
        table = pd.read_csv(output_paths(out, s)["cells"])
        assert not table["adapted"].astype(bool).any()
        assert rows[s]["adapted_cells"] == 0
    # adapting again starts from the kept unadapted tables: the same files
    first = {s: output_paths(out, s)["cells"].read_bytes() for s in stems}
    run_sync(adapt_groups(out, rows, settings, []))
    assert {s: output_paths(out, s)["cells"].read_bytes() for s in stems} == first
    # each input alone: under the gate, nothing adapted, nothing kept
    out2, rows2 = tmp_path / "out2", {}
    alone = Settings(method="wbc", model=str(pair[1]))
    _classified_inputs(alone, strips, out2, rows2)
    for s in stems:
        table = pd.read_csv(output_paths(out2, s)["cells"])
        assert "adapted" not in table or not table["adapted"].astype(bool).any()
        assert not kept_paths(out2, s)[0].exists()
    assert alone.key() != settings.key()


def test_batch_run_adapts_fields_of_one_folder_together(pair, shared_data, client, tmp_path):
    """End to end on 36 real BCCD fields (1-2 white cells each): ``run_batch(...,
    adapt="folder")`` with the pair adapts its fallback to all their routed cells as one
    batch (a note says so), the summary's counts are the cell tables', a zarr store carries
    the adapted table, and a resumed run gives the same tables; the default adapts none."""
    from napari_nucleus_ai.batch import run_batch
    from napari_nucleus_ai.io.ngff import read_ngff

    fields = sorted((shared_data / "smear" / "bccd" / "JPEGImages").glob("*.jpg"))[:36]
    src = tmp_path / "fields"
    src.mkdir()
    for f in fields:
        (src / f.name).symlink_to(f)
    out = tmp_path / "out"
    res = run_batch([src], out, client=client, model=str(pair[1]), output="zarr", adapt="folder")
    assert res.n_failed == 0
    tables = {s: pd.read_csv(out / f"{s}_cells.csv") for s in res.summary["stem"]}
    joined = pd.concat(tables.values())
    assert joined["routed"].astype(bool).mean() > 0.9 and len(joined) >= 30
    assert joined["adapted"].astype(bool).sum() == joined["routed"].astype(bool).sum()
    assert len(res.notes) == 1 and f"{len(joined)} cells" in res.notes[0]
    for _, row in res.summary.iterrows():
        t = tables[row["stem"]]
        for c in package_classes(pair):
            assert row[f"n_{c}"] == int((t["class"] == c).sum())
        stored = read_ngff(out / f"{row['stem']}.zarr")["labels"]["cells"]["table"]
        assert list(stored["class"]) == list(t["class"])
    again = run_batch([src], out, client=client, model=str(pair[1]), output="zarr", adapt="folder")
    assert again.summary["resumed"].all()
    for s, t in tables.items():
        pd.testing.assert_frame_equal(pd.read_csv(out / f"{s}_cells.csv"), t)
    alone = run_batch([src], tmp_path / "alone", client=client, model=str(pair[1]))
    assert alone.notes == []
    for s in alone.summary["stem"]:
        t = pd.read_csv(tmp_path / "alone" / f"{s}_cells.csv")
        assert "adapted" not in t or not t["adapted"].astype(bool).any()


def package_classes(pair) -> list:
    return list(pair[0].package.classes)
